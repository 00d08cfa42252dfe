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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from mensa.master.stores import RegistryConflict, RegistryUnavailable
from mensa.proto import mensa_pb2
from mensa.proto.detector import kazoo_options, read_contenders
from mensa.proto.zk import MASTER_PREFIX, REGISTRY_NODE, ZkUri, elect, master_info_json

log = structlog.get_logger(__name__)

# ZooKeeper's default jute.maxbuffer is 1 MiB; a larger write would cost the session.
MAX_ZNODE_BYTES = 1_000_000


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
        self._lock = threading.Lock()
        self._info: mensa_pb2.MasterInfo | None = None
        self._own: str | None = None  # our znode's name, while our session holds it
        self._watching = False
        self._suspended = False
        self._stopped = False
        self._last: tuple[bool, str, bool, bool] | None = None

    @property
    def info(self) -> mensa_pb2.MasterInfo | None:
        """The MasterInfo in this master's current znode."""
        return self._info

    @property
    def connected(self) -> bool:
        """True while the ZooKeeper session is connected."""
        client = self._client
        return bool(client is not None and client.connected)

    def start(self) -> None:
        from kazoo.client import KazooClient

        self._client = KazooClient(**kazoo_options(self.uri, self.session_timeout))
        self._client.add_listener(self._on_state)
        log.info("contender_started", zk=str(self.uri), session_timeout=self.session_timeout)
        self._client.start_async()

    def stop(self) -> None:
        """Closes the session (the znode goes with it, so a standby takes over at once)."""
        self._stopped = True
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.stop()
            client.close()
        except Exception:
            log.debug("contender_stop_failed", exc_info=True)

    # -- leadership ------------------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        from kazoo.protocol.states import KazooState

        if self._stopped:
            return
        log.info("zookeeper_state_changed", zk=str(self.uri), state=str(state))
        if state == KazooState.CONNECTED:
            self._client.handler.spawn(self._contend)
        elif state == KazooState.SUSPENDED:
            self._suspended = True
            self._report(Leadership(False, None, suspended=True))
        elif state == KazooState.LOST:
            self._suspended = True
            self._own = None
            self._report(Leadership(False, None, lost=True))

    def _contend(self) -> None:
        """On (re)connection: creates our znode if the session has none, then reads the
        contenders (the children watch fires on every later change)."""
        from kazoo.exceptions import KazooException

        client = self._client
        if client is None or self._stopped:
            return
        try:
            if self._own is None:
                client.ensure_path(self.uri.path)
                info = self._make_info()
                created = client.create(self.uri.child(MASTER_PREFIX), master_info_json(info),
                                        ephemeral=True, sequence=True)
                self._info, self._own = info, created.rsplit("/", 1)[1]
                log.info("contender_znode_created", znode=created, master_id=info.id)
            self._suspended = False
            if not self._watching:
                self._watching = True
                client.ChildrenWatch(self.uri.path, self._on_children)
            else:
                self._on_children(client.get_children(self.uri.path))
        except KazooException as exc:
            log.warning("contender_failed", zk=str(self.uri), error=repr(exc))

    def _on_children(self, children: list[str]) -> bool:
        if self._stopped or self._client is None:
            return False
        if self._suspended:
            return True
        nodes = read_contenders(self._client, self.uri, children)
        election = elect(nodes)
        for child, why in election.invalid:
            log.warning("leader_znode_invalid", zk=str(self.uri), child=child, reason=why)
        if self._own is not None and self._own not in children:
            # Our znode was deleted under a live session (by an operator, say): contend anew.
            log.warning("contender_znode_vanished", znode=self._own)
            self._own = None
            self._client.handler.spawn(self._contend)
        info = self._info
        leading = (info is not None and self._own in children and election.leader is not None
                   and election.leader.id == info.id)
        self._report(Leadership(leading, election.leader))
        return True

    def _report(self, leadership: Leadership) -> None:
        leader_id = leadership.leader.id if leadership.leader is not None else ""
        key = (leadership.leading, leader_id, leadership.suspended, leadership.lost)
        with self._lock:
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
