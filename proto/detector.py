"""Finding the leading master: a fixed address, or the leader znodes under a ``zk://`` URI.

``detector_for(text)`` parses a ``--master`` value and returns a detector: ``FixedDetector``
for ``HOST:PORT`` (the master named is taken to lead; a standby answers NOT_LEADER and says who
does), ``ZkDetector`` for ``zk://HOSTS/PATH``. ``start(on_change)`` reports the leader, and every
change of leader afterwards, as a ``Leader`` (None while no master leads); a ZkDetector calls
``on_change`` on kazoo's thread, so asyncio callers hop over with ``loop.call_soon_threadsafe``.
A detector only reports what it read: a lost ZooKeeper connection keeps the last leader (the
master may well be fine), and ZooKeeper down at start is retried in the background forever.

``resolve_leader(text, timeout)`` is the one-shot form for command-line tools, and
``fetch_master_info`` asks a master over ZeroMQ who and where it is (with its HTTP port).

Usage::

    detector = detector_for("zk://127.0.0.1:2181/mensa")
    detector.start(lambda leader: print("leader is", leader))
    ...
    detector.stop()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import structlog
import zmq

from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.transport import Endpoint, TransportError, connect_dealer, decode, encode
from mensa.proto.zk import Leader, ZkUri, elect, is_zk_uri, parse_zk_uri

log = structlog.get_logger(__name__)

DEFAULT_ZK_SESSION_TIMEOUT = 10.0
OnChange = Callable[[Leader | None], None]


class MasterUnreachable(RuntimeError):
    """No answer from the master (or from ZooKeeper) within the timeout."""


class MasterDetector(Protocol):
    """Reports the leading master and its changes; see the module docstring."""

    def start(self, on_change: OnChange) -> None: ...

    def stop(self) -> None: ...


def parse_master(text: str) -> Endpoint:
    """Parses a fixed ``--master`` value (``HOST:PORT`` or ``tcp://HOST:PORT``); ValueError if
    it is malformed or a ``zk://`` URI (use ``detector_for`` for those)."""
    if is_zk_uri(text):
        raise ValueError("a zk:// URI names no single master; use detector_for()")
    return Endpoint.parse(text)


def detector_for(text: str, *, session_timeout: float = DEFAULT_ZK_SESSION_TIMEOUT) -> MasterDetector:
    """Returns the detector for a ``--master`` value; raises ValueError when it is malformed."""
    if is_zk_uri(text):
        return ZkDetector(parse_zk_uri(text), session_timeout=session_timeout)
    return FixedDetector(Endpoint.parse(text))


class FixedDetector:
    """A master at a fixed address, taken to lead (``Leader.master_id`` and ``http`` unknown)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def start(self, on_change: OnChange) -> None:
        on_change(Leader("", self.endpoint, "", mensa_pb2.MasterInfo()))

    def stop(self) -> None:
        pass

    def __str__(self) -> str:
        return str(self.endpoint)


class ZkDetector:
    """Follows the leader znodes under a ``zk://`` URI with kazoo (see the module docstring)."""

    def __init__(self, uri: ZkUri, *, session_timeout: float = DEFAULT_ZK_SESSION_TIMEOUT) -> None:
        self.uri = uri
        self.session_timeout = session_timeout
        self._client: Any = None
        self._on_change: OnChange | None = None
        self._lock = threading.Lock()
        # What was last reported: (master id, ZeroMQ endpoint, HTTP address), None for no leader.
        self._current: tuple[str, str, str] | None = None
        self._reported = False
        self._stopped = False
        self._watching = False

    def __str__(self) -> str:
        return str(self.uri)

    def start(self, on_change: OnChange) -> None:
        from kazoo.client import KazooClient

        self._on_change = on_change
        self._client = KazooClient(**kazoo_options(self.uri, self.session_timeout))
        self._client.add_listener(self._on_state)
        log.info("master_detector_started", zk=str(self.uri))
        self._client.start_async()  # connects (and retries) in the background

    def stop(self) -> None:
        self._stopped = True
        client, self._client = self._client, None
        if client is not None:
            try:
                client.stop()
                client.close()
            except Exception:  # Stopping must not fail whatever state the client is in.
                log.debug("master_detector_stop_failed", exc_info=True)

    def _on_state(self, state: str) -> None:
        from kazoo.protocol.states import KazooState

        log.info("zookeeper_state_changed", zk=str(self.uri), state=str(state))
        if state == KazooState.CONNECTED and not self._watching and self._client is not None:
            self._client.handler.spawn(self._watch)

    def _watch(self) -> None:
        from kazoo.exceptions import KazooException

        client = self._client
        if client is None or self._stopped or self._watching:
            return
        try:
            client.ensure_path(self.uri.path)
            self._watching = True
            client.ChildrenWatch(self.uri.path, self._on_children)
        except KazooException as exc:
            self._watching = False
            log.warning("master_detector_watch_failed", zk=str(self.uri), error=repr(exc))

    def _on_children(self, children: list[str]) -> bool:
        if self._stopped or self._client is None:
            return False
        nodes = read_contenders(self._client, self.uri, children)
        election = elect(nodes)
        for child, why in election.invalid:
            log.warning("leader_znode_invalid", zk=str(self.uri), child=child, reason=why)
        leader: Leader | None = None
        if election.leader is not None:
            try:
                leader = Leader.from_info(election.leader)
            except ValueError as exc:
                log.warning("leader_znode_invalid", zk=str(self.uri), child=election.leader_child,
                            reason=str(exc))
        self._report(leader)
        return True

    def _report(self, leader: Leader | None) -> None:
        key = (leader.master_id, str(leader.zmq), leader.http) if leader is not None else None
        with self._lock:
            if self._reported and key == self._current:
                return
            self._reported, self._current = True, key
        if leader is None:
            log.warning("no_master_leading", zk=str(self.uri))
        else:
            log.info("leading_master_detected", zk=str(self.uri), master_id=leader.master_id,
                     zmq=str(leader.zmq), http=leader.http)
        if self._on_change is not None:
            try:
                self._on_change(leader)
            except Exception:
                log.exception("master_detector_callback_failed")


def kazoo_options(uri: ZkUri, session_timeout: float) -> dict[str, Any]:
    """Returns KazooClient keyword arguments: retry forever, with backoff capped at 1 s."""
    from kazoo.retry import KazooRetry

    options: dict[str, Any] = {
        "hosts": uri.hosts,
        "timeout": session_timeout,
        "connection_retry": KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
        "command_retry": KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
    }
    if uri.auth:
        options["auth_data"] = [("digest", uri.auth)]
    return options


def read_contenders(client: Any, uri: ZkUri, children: list[str]) -> dict[str, bytes | None]:
    """Reads the data of every ``json.info_`` child (None for a child that vanished meanwhile)."""
    from kazoo.exceptions import NoNodeError

    nodes: dict[str, bytes | None] = {}
    for child in children:
        if not child.startswith("json.info_"):
            continue
        try:
            data, _stat = client.retry(client.get, uri.child(child))
        except NoNodeError:
            data = None
        nodes[child] = data
    return nodes


def resolve_leader(text: str, timeout: float = 5.0) -> Leader:
    """Returns the leading master for a ``--master`` value, once (for command-line tools).

    A fixed address is asked over ZeroMQ (so the answer carries its HTTP port, and a standby
    names the leader); a ``zk://`` URI is read from ZooKeeper. Raises MasterUnreachable.
    """
    if not is_zk_uri(text):
        reply = fetch_master_info(Endpoint.parse(text), timeout)
        info = reply.leader if reply.HasField("leader") else reply.master_info
        if not reply.leading and not reply.HasField("leader"):
            raise MasterUnreachable(f"the master at {text} does not lead and knows no leader")
        try:
            return Leader.from_info(info)
        except ValueError as exc:
            raise MasterUnreachable(f"the master at {text} answered with {exc}") from None
    from kazoo.client import KazooClient
    from kazoo.exceptions import KazooException, NoNodeError
    from kazoo.handlers.threading import KazooTimeoutError

    uri = parse_zk_uri(text)
    client = KazooClient(**kazoo_options(uri, max(timeout, 2.0)))
    try:
        client.start(timeout=timeout)
        children = client.get_children(uri.path)
        election = elect(read_contenders(client, uri, children))
    except KazooTimeoutError:
        raise MasterUnreachable(f"ZooKeeper at {uri.hosts} did not answer within {timeout:g}s") from None
    except NoNodeError:
        raise MasterUnreachable(f"no masters have ever run under {uri}") from None
    except KazooException as exc:
        raise MasterUnreachable(f"ZooKeeper at {uri.hosts} failed: {exc!r}") from None
    finally:
        try:
            client.stop()
            client.close()
        except Exception:
            log.debug("zookeeper_close_failed", exc_info=True)
    if election.leader is None:
        raise MasterUnreachable(f"no master leads under {uri}")
    try:
        return Leader.from_info(election.leader)
    except ValueError as exc:
        raise MasterUnreachable(f"the leader under {uri} is unusable: {exc}") from None


def fetch_master_info(endpoint: Endpoint, timeout: float = 5.0) -> internal_pb2.MasterInfoResponse:
    """Asks the master at ``endpoint`` for its MasterInfo; raises MasterUnreachable on timeout."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = connect_dealer(ctx, endpoint)
    try:
        request = internal_pb2.Envelope(master_info_request=internal_pb2.MasterInfoRequest())
        sock.send(encode(request))
        if not sock.poll(int(timeout * 1000)):
            raise MasterUnreachable(f"no answer from the master at {endpoint} within {timeout:g}s")
        try:
            reply = decode(sock.recv())
        except TransportError as exc:
            raise MasterUnreachable(f"bad answer from {endpoint}: {exc}") from None
        if reply.WhichOneof("message") != "master_info_response":
            raise MasterUnreachable(f"unexpected answer from {endpoint}: {reply.WhichOneof('message')}")
        return reply.master_info_response
    finally:
        sock.close(linger=0)
