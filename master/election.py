"""Leader election through ZooKeeper (kazoo), in Mesos's znode layout, and the registry znode.

``Contender`` keeps one ZooKeeper session. Once connected it creates an ephemeral sequential
``json.info_N`` znode under the URI's path holding this master's MasterInfo as JSON, watches its
siblings, and reports a ``Leadership`` whenever that changes: leading when its own znode is the
one ``proto.zk.elect`` picks (the lowest valid sequence). A lost connection (SUSPENDED) is
reported at once as not leading (``suspended``): the session may expire any moment and another
master take over, so this one must stop acting as leader; if the connection comes back within the
session, the znode is still there and leadership resumes with the master's state intact. An
expired session (LOST) is reported as ``lost``: the znode is gone, the master drops its state,
and on reconnection contends again with a new znode (and a new MasterInfo id, from ``make_info``).

The contender is also the ZooKeeper ``RegistryStore`` (``load``/``store`` on ``PATH/registry``,
writes conditional on the znode version), so a master that lost leadership cannot overwrite
its successor's registry. Callbacks come from kazoo's threads; the shell hops to its loop.

Usage::

    contender = Contender(parse_zk_uri(uri), 10.0, make_info, on_change)
    contender.start()
    data, version = contender.load()
    version = contender.store(data, version)
    contender.stop()      # closes the session: the znode vanishes and a standby takes over
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from mensa.master.stores import RegistryConflict, RegistryUnavailable
from mensa.proto import mensa_pb2
from mensa.proto.detector import kazoo_options
from mensa.proto.zk import MASTER_PREFIX, REGISTRY_NODE, ZkUri, elect, master_info_json, sequence_of

log = structlog.get_logger(__name__)

# ZooKeeper's default jute.maxbuffer is 1 MiB; a larger write would cost the session.
MAX_ZNODE_BYTES = 1_000_000
# A leader acts only while a request it sent less than this fraction of the session timeout ago
# was answered: the server cannot have expired the session before then.
LEASE_FRACTION = 0.75


@dataclass(frozen=True, slots=True)
class Leadership:
    """What the contender knows: whether this master leads, and who does (when known)."""

    leading: bool
    leader: mensa_pb2.MasterInfo | None
    # The ZooKeeper connection is down: whether the session survives is not known yet.
    suspended: bool = False
    # The session expired: this master's znode is gone.
    lost: bool = False


class Contender:
    """Contends for leadership under a ``zk://`` URI; see the module docstring."""

    def __init__(
        self,
        uri: ZkUri,
        session_timeout: float,
        make_info: Callable[[], mensa_pb2.MasterInfo],
        on_change: Callable[[Leadership], None],
    ) -> None:
        self.uri = uri
        self.session_timeout = session_timeout
        self._make_info = make_info
        self._on_change = on_change
        self._client: Any = None
        # Reports and the flags they depend on; never held across a ZooKeeper call.
        self._lock = threading.Lock()
        # Serializes contending and evaluating the contenders (ZooKeeper calls under it).
        self._election = threading.RLock()
        self._info: mensa_pb2.MasterInfo | None = None
        self._own: str | None = None  # our znode's name, while our session holds it
        self._watching = False
        self._suspended = False
        self._stopped = False
        self._last: tuple[bool, str, bool, bool] | None = None
        # Monotonic time a request was sent that the server answered: the session lives until
        # at least this plus the session timeout (the lease).
        self._confirmed = float("-inf")
        self._lease_thread: threading.Thread | None = None

    @property
    def info(self) -> mensa_pb2.MasterInfo | None:
        """The MasterInfo in this master's current znode."""
        return self._info

    @property
    def connected(self) -> bool:
        """True while the ZooKeeper session is connected."""
        client = self._client
        return bool(client is not None and client.connected)

    def lease_valid(self, now: float) -> bool:
        """True while the session is certainly alive at the server: a request sent less than
        LEASE_FRACTION of the session timeout before ``now`` (monotonic) was answered."""
        return now < self._confirmed + LEASE_FRACTION * self.session_timeout

    def start(self) -> None:
        from kazoo.client import KazooClient

        self._stopped = False
        client = KazooClient(**kazoo_options(self.uri, self.session_timeout))
        self._client = client
        client.add_listener(lambda state: self._on_state(client, state))
        log.info("contender_started", zk=str(self.uri), session_timeout=self.session_timeout)
        client.start_async()
        if self._lease_thread is None:
            self._lease_thread = threading.Thread(target=self._renew_lease, name="mensa-zk-lease",
                                                  daemon=True)
            self._lease_thread.start()

    def stop(self) -> None:
        """Closes the session (the znode goes with it, so a standby takes over at once)."""
        self._stopped = True
        self._close()

    def restart(self) -> None:
        """Gives up leadership for good: closes the session (our znode goes, so another master
        can lead) and contends again with a new session and a new znode. Blocking."""
        log.warning("contender_restarting", zk=str(self.uri), znode=self._own)
        self._close()
        self.start()

    def _close(self) -> None:
        # Not under `_election`: a thread inside a ZooKeeper call holds it, and closing the
        # client is what fails that call. Reports from the old client are dropped by `_report`.
        with self._lock:
            client, self._client = self._client, None
            self._own = None
            self._info = None
            self._watching = False
            self._suspended = True
            self._last = None
            self._confirmed = float("-inf")
        if client is None:
            return
        try:
            client.stop()
            client.close()
        except Exception:
            log.debug("contender_stop_failed", exc_info=True)

    # -- leadership ------------------------------------------------------------------------------

    def _on_state(self, client: Any, state: str) -> None:
        """Kazoo's connection listener: must not block (it runs on the connection thread)."""
        from kazoo.protocol.states import KazooState

        if self._stopped or client is not self._client:
            return
        log.info("zookeeper_state_changed", zk=str(self.uri), state=str(state))
        if state == KazooState.CONNECTED:
            client.handler.spawn(self._contend, client)
        elif state == KazooState.SUSPENDED:
            with self._lock:
                self._suspended = True
            self._report(client, Leadership(False, None, suspended=True))
        elif state == KazooState.LOST:
            with self._lock:
                self._suspended = True
                self._own = None
            self._report(client, Leadership(False, None, lost=True))

    def _contend(self, client: Any) -> None:
        """On (re)connection: creates our znode if the session has none (first removing any
        znode of this session left by a create whose reply was lost), then evaluates."""
        from kazoo.exceptions import KazooException, NoNodeError

        with self._election:
            if client is not self._client or self._stopped:
                return
            try:
                if self._own is None:
                    client.ensure_path(self.uri.path)
                    session_id = client.client_id[0] if client.client_id else None
                    for child in client.get_children(self.uri.path):
                        if sequence_of(child) is None:
                            continue
                        stat = client.exists(self.uri.child(child))
                        if stat is not None and stat.ephemeralOwner == session_id:
                            log.warning("contender_stale_znode_removed", znode=child)
                            with contextlib.suppress(NoNodeError):
                                client.delete(self.uri.child(child))
                    info = self._make_info()
                    created = client.create(self.uri.child(MASTER_PREFIX), master_info_json(info),
                                            ephemeral=True, sequence=True)
                    with self._lock:
                        self._info, self._own = info, created.rsplit("/", 1)[1]
                    log.info("contender_znode_created", znode=created, master_id=info.id)
                with self._lock:
                    self._suspended = False
                if not self._watching:
                    self._watching = True
                    client.ChildrenWatch(self.uri.path,
                                         lambda _children: self._evaluate(client))
                else:
                    self._evaluate(client)
            except KazooException as exc:
                log.warning("contender_failed", zk=str(self.uri), error=repr(exc))

    def _evaluate(self, client: Any) -> bool:
        """Reads the contenders afresh and reports whether we lead; False stops the watch."""
        from kazoo.exceptions import KazooException, NoNodeError

        with self._election:
            if self._stopped or client is not self._client:
                return False
            if self._suspended:
                return True
            try:
                sent = time.monotonic()
                children = client.get_children(self.uri.path)
                self._confirm(sent)
                nodes: dict[str, bytes | None] = {}
                for child in children:
                    if sequence_of(child) is None:
                        continue
                    try:
                        nodes[child] = client.get(self.uri.child(child))[0]
                    except NoNodeError:
                        nodes[child] = None
                own = self._own
                if own is not None and own not in children and client.exists(self.uri.child(own)) is None:
                    # Our znode was deleted under a live session (by an operator, say).
                    log.warning("contender_znode_vanished", znode=own)
                    with self._lock:
                        self._own = None
                    client.handler.spawn(self._contend, client)
            except KazooException as exc:
                log.warning("contender_evaluation_failed", zk=str(self.uri), error=repr(exc))
                return True
            election = elect(nodes)
            for child, why in election.invalid:
                log.warning("leader_znode_invalid", zk=str(self.uri), child=child, reason=why)
            info = self._info
            leading = (info is not None and self._own is not None and election.leader is not None
                       and election.leader.id == info.id and election.leader_child == self._own)
            self._report(client, Leadership(leading, election.leader))
            return True

    def _confirm(self, sent: float) -> None:
        with self._lock:
            self._confirmed = max(self._confirmed, sent)

    def _renew_lease(self) -> None:
        """Round-trips to ZooKeeper every quarter session timeout, recording when the last
        answered request was sent (see ``lease_valid``)."""
        while True:
            time.sleep(self.session_timeout / 4)
            client = self._client
            if client is None or not client.connected:
                continue
            sent = time.monotonic()
            try:
                client.exists(self.uri.path)
            except Exception:  # No answer: the lease is not renewed, which is the point.
                continue
            if client is self._client:
                self._confirm(sent)

    def _report(self, client: Any, leadership: Leadership) -> None:
        """Delivers a change of leadership, in order; a report about a closed session, or a
        "leading" computed before the connection was lost, is dropped."""
        leader_id = leadership.leader.id if leadership.leader is not None else ""
        key = (leadership.leading, leader_id, leadership.suspended, leadership.lost)
        with self._lock:
            if client is not self._client or (leadership.leading and self._suspended):
                return
            if key == self._last:
                return
            self._last = key
            try:
                self._on_change(leadership)
            except Exception:
                log.exception("contender_callback_failed")

    # -- the registry znode ------------------------------------------------------------------------

    def load(self) -> tuple[bytes | None, int]:
        """Returns the registry znode's data and version (creating it empty when missing)."""
        from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError

        client = self._client
        if client is None:
            raise RegistryUnavailable("not connected to ZooKeeper")
        path = self.uri.child(REGISTRY_NODE)
        try:
            try:
                data, stat = client.get(path)
            except NoNodeError:
                with contextlib.suppress(NodeExistsError):
                    client.create(path, b"", makepath=True)
                data, stat = client.get(path)
        except KazooException as exc:
            raise RegistryUnavailable(f"cannot read {path}: {exc!r}") from None
        return (data or None), int(stat.version)

    def set_aside(self, suffix: str) -> str | None:
        """Copies an unreadable registry to ``registry.<suffix>`` before it is overwritten;
        returns that path (None when the copy failed)."""
        from kazoo.exceptions import KazooException

        client = self._client
        if client is None:
            return None
        path = self.uri.child(REGISTRY_NODE)
        try:
            data, _stat = client.get(path)
            client.create(f"{path}.{suffix}", data)
        except KazooException:
            return None
        return f"{path}.{suffix}"

    def store(self, data: bytes, version: int) -> int:
        """Replaces the registry znode's data if its version is still ``version``."""
        from kazoo.exceptions import BadVersionError, KazooException, NoNodeError

        client = self._client
        if client is None:
            raise RegistryUnavailable("not connected to ZooKeeper")
        if len(data) > MAX_ZNODE_BYTES:
            raise RegistryUnavailable(
                f"the registry is {len(data)} bytes, over ZooKeeper's {MAX_ZNODE_BYTES}-byte znode limit")
        path = self.uri.child(REGISTRY_NODE)
        try:
            stat = client.set(path, data, version=version)
        except (BadVersionError, NoNodeError):
            raise RegistryConflict(f"{path} was changed by another master") from None
        except KazooException as exc:
            raise RegistryUnavailable(f"cannot write {path}: {exc!r}") from None
        return int(stat.version)
