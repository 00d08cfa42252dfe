"""Which instance of a bundled framework (batch, service) leads: the only one, or one elected
in ZooKeeper.

Only the leader loads the state, runs the engine and subscribes to the master; the others
answer the REST API with a redirect to it. Two kinds:

- ``Standalone(work_dir, address, name)``: leads at once, holding an exclusive lock on
  ``<work-dir>/<name>.lock`` so that two instances never share one state folder.
- ``ZkLeadership(uri, session_timeout, address)``: contends with kazoo's ``Lock`` recipe under
  ``PATH/leader``; each contender's znode holds its HTTP ``host:port``, so a standby can name the
  leader (the lowest sequence). The leader's own znode is the *fence* of its writes
  (``ZkStore(fence=leadership.fence)``): when its session expires the znode goes, its writes
  fail, and ``on_lost`` is called: the service then stops (as Mesos masters do), and a standby
  takes over with the state as the old leader last wrote it. A lost connection that comes back
  within the session changes nothing.

Callbacks come from other threads (kazoo's, the election thread); the service hops to its loop.

Usage::

    leadership = ZkLeadership(parse_zk_uri("zk://zk1:2181/mensa-batch"), 10.0, "10.0.0.5:9000")
    leadership.start(on_elected=..., on_lost=...)
    leadership.leader()      # "10.0.0.5:9000", or None while nobody leads
    leadership.stop()
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from mensa.proto.detector import kazoo_options
from mensa.proto.zk import ZkUri

log = structlog.get_logger(__name__)

LEADER_NODE = "leader"
STATE_NODE = "state"
FRAMEWORK_ID_NODE = "framework_id"


class LeadershipError(RuntimeError):
    """This instance cannot contend (its work dir is locked by another, say); ``str()`` says why."""


class Leadership(Protocol):
    """How the service learns that it leads, or that it lost the lead."""

    def start(self, on_elected: Callable[[], None], on_lost: Callable[[str], None]) -> None: ...

    def leader(self) -> str | None: ...

    def stop(self) -> None: ...


class Standalone:
    """The only instance: leads once it holds ``<work-dir>/<name>.lock``."""

    def __init__(self, work_dir: str | os.PathLike[str], address: str, name: str = "batch") -> None:
        self.path = Path(work_dir) / f"{name}.lock"
        self.name = name
        self.address = address
        self._fd: int | None = None

    def start(self, on_elected: Callable[[], None], on_lost: Callable[[str], None]) -> None:
        """Takes the lock (raises LeadershipError when another instance holds it), then leads."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LeadershipError(
                f"another mensa {self.name} (pid {holder or '?'}) uses {self.path.parent}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        on_elected()

    def leader(self) -> str | None:
        return self.address

    def stop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


class ZkLeadership:
    """Contends for leadership under ``uri.path/leader``; see the module docstring."""

    def __init__(self, uri: ZkUri, session_timeout: float, address: str, name: str = "batch") -> None:
        self.uri = uri
        self.name = name
        self.session_timeout = session_timeout
        self.address = address
        self.client: Any = None
        self._lock: Any = None
        self._elected = False
        self._stopped = False
        self._on_lost: Callable[[str], None] = lambda _why: None
        self._thread: threading.Thread | None = None

    def start(self, on_elected: Callable[[], None], on_lost: Callable[[str], None]) -> None:
        """Connects (blocking until ZooKeeper answers, at most a session timeout at first) and
        contends on a thread of its own; ``on_elected`` is called from it once this leads."""
        from kazoo.client import KazooClient

        self._on_lost = on_lost
        self.client = KazooClient(**kazoo_options(self.uri, self.session_timeout))
        self.client.add_listener(self._on_state)
        self.client.start(timeout=max(self.session_timeout, 5.0))
        self._lock = self.client.Lock(self.uri.child(LEADER_NODE), self.address)
        self._thread = threading.Thread(target=self._contend, args=(on_elected,),
                                        name=f"mensa-{self.name}-election", daemon=True)
        self._thread.start()

    def _contend(self, on_elected: Callable[[], None]) -> None:
        from kazoo.exceptions import CancelledError

        log.info("framework_contending", framework=self.name, zk=str(self.uri), address=self.address)
        try:
            self._lock.acquire()
        except CancelledError:
            return
        except Exception as exc:
            if not self._stopped:
                log.exception("framework_election_failed", framework=self.name)
                self._on_lost(f"the election failed: {exc!r}")
            return
        if self._stopped:
            return
        self._elected = True
        log.info("framework_elected", framework=self.name, zk=str(self.uri), znode=self.fence())
        on_elected()

    def _on_state(self, state: str) -> None:
        from kazoo.protocol.states import KazooState

        log.info("zookeeper_state_changed", zk=str(self.uri), state=str(state))
        if state == KazooState.LOST and self._elected and not self._stopped:
            self._elected = False
            self._on_lost("the ZooKeeper session expired")

    @property
    def elected(self) -> bool:
        return self._elected

    def fence(self) -> str | None:
        """The full path of this instance's election znode while it leads (else None)."""
        lock = self._lock
        if not self._elected or lock is None or not lock.node:
            return None
        return f"{lock.path}/{lock.node}"

    def leader(self) -> str | None:
        """The leader's HTTP ``host:port`` (a blocking ZooKeeper read), None while nobody leads."""
        if self._elected:
            return self.address
        if self._lock is None:
            return None
        try:
            contenders = self._lock.contenders()
        except Exception as exc:
            log.debug("framework_leader_unknown", framework=self.name, error=repr(exc))
            return None
        return contenders[0] if contenders and contenders[0] else None

    def stop(self) -> None:
        """Gives up (or stops contending) and closes the session: a standby takes over at once."""
        self._stopped = True
        lock, client = self._lock, self.client
        if lock is not None:
            lock.cancel()
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop()
                client.close()
