"""SchedulerDriver: connects a Scheduler to the master and carries its calls.

``SchedulerDriver(scheduler, framework_info, master)`` subscribes the framework over ZeroMQ
(one DEALER socket, held by its Session in a MasterLink), turns master Events into Scheduler
callbacks and the methods below into scheduler Calls (Mesos v1 semantics). ``master`` is
``HOST:PORT`` or ``zk://HOST:PORT,.../PATH``: the driver follows the leading master (found in
ZooKeeper, or named by a standby's NOT_LEADER answer) and re-subscribes there when it changes.
It runs an asyncio loop on a daemon thread: callbacks run on that thread, one at a time; every
public method is thread-safe, never blocks on the master, and may be called from a callback or
any thread.

It keeps the framework subscribed: SUBSCRIBE is retried with backoff (0.5s doubling to 10s)
until SUBSCRIBED; when the master goes silent (nothing for max(3 x heartbeat interval, 5s)),
drops the connection, or answers NOT_SUBSCRIBED, the scheduler hears ``disconnected`` and the
driver re-subscribes with its framework id (``reregistered`` follows). Calls made while not
subscribed are queued and sent once subscribed; a stop drops them (with a warning).

Framework failover: FrameworkInfo.failover_timeout defaults to 7 days here (the master keeps a
disconnected framework's tasks that long). With ``framework_id_file`` the driver re-subscribes
with the id stored there (taking its tasks over) and stores the id after SUBSCRIBED; if the
master answers that the framework was removed, the driver aborts and says to delete the file.

Reconciliation (``auto_reconcile=True``, the default; the Mesos docs' algorithm): the driver
tracks every task it believes live, i.e. launched through launch_tasks/accept_offers (with
the agent of the offer) or named by a status update, until a terminal update for it was
delivered to ``status_update``. After every re-subscription (a lost master, a new leader), and
after the first SUBSCRIBED of a failover (a framework id given or stored in the file), it sends
RECONCILE for the tracked tasks with their agent ids, then again for those still unanswered
after a backoff (``reconcile_backoff_initial`` 1s, doubling to ``reconcile_backoff_max`` 30s;
a new re-subscription starts over) until each got a status update. A failover that tracks
nothing (a fresh process) sends one implicit RECONCILE, so the scheduler hears of every task
the master knows. The answers reach ``status_update`` like any update (they carry no uuid and
are not acknowledged). ``auto_reconcile=False`` leaves reconciliation to the scheduler
(``reconcile_tasks``).

Usage::

    driver = SchedulerDriver(MyScheduler(), mensa_pb2.FrameworkInfo(name="demo"), "127.0.0.1:5050")
    status = driver.run()          # start() + join(); a callback calls driver.stop() when done
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import getpass
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from mensa.frameworks import convert
from mensa.frameworks.idfile import DEFAULT_FAILOVER_TIMEOUT, FrameworkIdFile
from mensa.frameworks.offerbook import OfferBook
from mensa.frameworks.scheduler import Scheduler
from mensa.frameworks.session import Session, SessionOptions
from mensa.proto import mensa_pb2, scheduler_pb2, transport
from mensa.proto.detector import (
    DEFAULT_ZK_SESSION_TIMEOUT,
    FixedDetector,
    MasterDetector,
    detector_for,
)
from mensa.proto.zk import Leader

log = structlog.get_logger(__name__)


class DriverStatus(enum.Enum):
    """Where a driver is in its life: NOT_STARTED -> RUNNING -> STOPPED or ABORTED."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    ABORTED = "aborted"
    STOPPED = "stopped"


def with_defaults(info: mensa_pb2.FrameworkInfo) -> mensa_pb2.FrameworkInfo:
    """Returns a copy of ``info`` with user (the OS user) and hostname filled in when empty,
    and failover_timeout 7 days when unset (an explicit 0 stays 0)."""
    out = mensa_pb2.FrameworkInfo()
    out.CopyFrom(info)
    if not out.HasField("failover_timeout"):
        out.failover_timeout = DEFAULT_FAILOVER_TIMEOUT
    if not out.user:
        try:
            out.user = getpass.getuser()
        except Exception:
            out.user = str(os.getuid())
    if not out.hostname:
        out.hostname = socket.gethostname()
    return out


def make_detector(
    master: str | transport.Endpoint | None, zk_session_timeout: float = DEFAULT_ZK_SESSION_TIMEOUT
) -> MasterDetector:
    """Returns the detector for a ``master`` value (``HOST:PORT``, ``tcp://HOST:PORT``,
    ``zk://HOSTS/PATH`` or an Endpoint); raises ValueError saying what is wrong with it."""
    if isinstance(master, transport.Endpoint):
        return FixedDetector(master)
    if master is None:
        raise ValueError("no master: give HOST:PORT or zk://HOSTS/PATH (or a detector)")
    if not zk_session_timeout > 0:
        raise ValueError(f"zk_session_timeout must be positive, not {zk_session_timeout!r}")
    try:
        return detector_for(master, session_timeout=zk_session_timeout)
    except ValueError as exc:
        raise ValueError(
            f"bad master {master!r} (want HOST:PORT or zk://HOST:PORT,.../PATH): {exc}"
        ) from None


class SchedulerDriver:
    """Runs a Scheduler against a master; see the module docstring for the contract."""

    def __init__(
        self,
        scheduler: Scheduler,
        framework_info: mensa_pb2.FrameworkInfo | Mapping[str, Any],
        master: str | transport.Endpoint | None = None,
        *,
        detector: MasterDetector | None = None,
        zk_session_timeout: float = DEFAULT_ZK_SESSION_TIMEOUT,
        framework_id_file: str | os.PathLike[str] | None = None,
        implicit_acknowledgements: bool = True,
        min_master_silence: float = 5.0,
        heartbeat_timeout_factor: float = 3.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        flush_timeout: float = 2.0,
        max_message_bytes: int = transport.DEFAULT_MAX_MESSAGE_BYTES,
        auto_reconcile: bool = True,
        reconcile_backoff_initial: float = 1.0,
        reconcile_backoff_max: float = 30.0,
    ) -> None:
        """Raises ValueError when ``master`` is malformed (or missing without ``detector``), the
        framework id file is unreadable or names another framework than ``framework_info``, or
        the reconciliation backoff is not 0 < initial <= max.

        ``detector`` replaces the detector ``master`` implies (the driver starts and stops it);
        ``zk_session_timeout`` is the ZooKeeper session timeout for a ``zk://`` master.
        """
        info = with_defaults(convert.parse(framework_info, mensa_pb2.FrameworkInfo))
        if detector is None:
            detector = make_detector(master, zk_session_timeout)
        id_file = FrameworkIdFile(framework_id_file) if framework_id_file is not None else None
        if id_file is not None:
            stored = id_file.read()
            if stored and info.id.value and stored != info.id.value:
                raise ValueError(
                    f"framework_info.id {info.id.value!r} differs from {stored!r} in {id_file}"
                )
            if stored:
                info.id.value = stored
        self._detector = detector
        self._implicit_acks = implicit_acknowledgements
        self._log = log.bind(framework=info.name, master=str(master or detector))
        self._lock = threading.RLock()
        self._status = DriverStatus.NOT_STARTED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._offers = OfferBook()
        options = SessionOptions(
            implicit_acknowledgements=implicit_acknowledgements,
            min_master_silence=min_master_silence,
            heartbeat_timeout_factor=heartbeat_timeout_factor,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            flush_timeout=flush_timeout,
            max_message_bytes=max_message_bytes,
            auto_reconcile=auto_reconcile,
            reconcile_backoff_initial=reconcile_backoff_initial,
            reconcile_backoff_max=reconcile_backoff_max,
        )
        self._session = Session(
            scheduler,
            self,
            info,
            detector,
            options,
            self._offers,
            self._is_running,
            self.abort,
            id_file,
        )

    # -- properties -----------------------------------------------------------------------------

    @property
    def framework_id(self) -> str | None:
        """The framework's id once the master assigned it (or the one given to fail over)."""
        return self._session.framework_id

    @property
    def status(self) -> DriverStatus:
        return self._status

    @property
    def connected(self) -> bool:
        """True while running and subscribed with the master."""
        return self._session.subscribed and self._is_running()

    @property
    def master(self) -> transport.Endpoint | None:
        """The ZeroMQ endpoint of the master the driver talks to (None while no leader is known)."""
        leader = self._session.leader
        return leader.zmq if leader is not None else None

    @property
    def leader(self) -> Leader | None:
        """The leading master as last detected or named (None while no leader is known)."""
        return self._session.leader

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> DriverStatus:
        """Starts the driver thread, which subscribes; returns RUNNING (or the status if not new)."""
        with self._lock:
            if self._status is not DriverStatus.NOT_STARTED:
                return self._status
            self._loop = asyncio.new_event_loop()
            self._status = DriverStatus.RUNNING
            self._thread = threading.Thread(
                target=contextvars.copy_context().run,  # keeps bound log context, e.g. component
                args=(self._thread_main,),
                name="mensa-scheduler-driver",
                daemon=True,
            )
            self._thread.start()
        self._log.info("driver_started")
        return DriverStatus.RUNNING

    def stop(self, failover: bool = False) -> DriverStatus:
        """Stops the driver: sends TEARDOWN (the master kills the framework's tasks) unless
        ``failover``, which just disconnects and leaves the tasks running for failover_timeout.

        Returns at once (safe in callbacks and signal handlers); join() waits until the calls
        made before it were flushed and the socket closed.
        """
        return self._request_stop(DriverStatus.STOPPED, teardown=not failover)

    def abort(self) -> DriverStatus:
        """Stops the driver without TEARDOWN; run()/join() return ABORTED."""
        return self._request_stop(DriverStatus.ABORTED, teardown=False)

    def join(self, timeout: float | None = None) -> DriverStatus:
        """Blocks until the driver stopped (or ``timeout`` seconds passed); returns the status."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("join() from a scheduler callback would never return")
        if self._status is DriverStatus.NOT_STARTED:
            return self._status
        # Short waits keep the main thread responsive to signals.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self._status

    def run(self) -> DriverStatus:
        """start() then join()."""
        self.start()
        return self.join()

    # -- calls ----------------------------------------------------------------------------------

    def launch_tasks(
        self,
        offer_ids: convert.OfferLike | Iterable[convert.OfferLike],
        tasks: Any,
        filters: convert.FiltersLike = None,
    ) -> DriverStatus:
        """ACCEPTs the offers with one LAUNCH of ``tasks`` (TaskInfo messages or dicts); a task
        without agent_id gets the offers' agent. ``filters`` applies to what is left unused."""
        call = convert.launch_call(offer_ids, tasks, filters, self._offers.snapshot())
        self._offers.forget(call.accept.offer_ids)
        return self._submit(call)

    def accept_offers(
        self,
        offer_ids: convert.OfferLike | Iterable[convert.OfferLike],
        operations: Any,
        filters: convert.FiltersLike = None,
    ) -> DriverStatus:
        """ACCEPTs the offers with these Offer.Operation messages (or dicts); a launched task
        without agent_id gets the offers' agent."""
        call = convert.accept_call(offer_ids, operations, filters, self._offers.snapshot())
        self._offers.forget(call.accept.offer_ids)
        return self._submit(call)

    def decline_offer(
        self,
        offer_ids: convert.OfferLike | Iterable[convert.OfferLike],
        filters: convert.FiltersLike = None,
    ) -> DriverStatus:
        """DECLINEs the offers; ``filters`` (Filters, dict, or refuse_seconds) delays re-offers."""
        call = convert.decline_call(offer_ids, filters)
        self._offers.forget(call.decline.offer_ids)
        return self._submit(call)

    def revive_offers(self, roles: convert.RolesLike = None) -> DriverStatus:
        """REVIVE: clears filters and resumes offers (for these roles, or all)."""
        return self._submit(convert.revive_call(roles))

    def suppress_offers(self, roles: convert.RolesLike = None) -> DriverStatus:
        """SUPPRESS: no more offers (for these roles, or all) until revive_offers."""
        return self._submit(convert.suppress_call(roles))

    def kill_task(
        self, task_id: Any, agent_id: Any = None, kill_policy: convert.KillPolicyLike = None
    ) -> DriverStatus:
        """KILLs a task; ``kill_policy`` may be a KillPolicy, dict or grace period in seconds."""
        return self._submit(convert.kill_call(task_id, agent_id, kill_policy))

    def acknowledge_status_update(
        self, status: mensa_pb2.TaskStatus | Mapping[str, Any]
    ) -> DriverStatus:
        """ACKNOWLEDGEs a status update (only with implicit acknowledgements off)."""
        if self._implicit_acks:
            self._log.warning("acknowledgement_ignored", reason="implicit acknowledgements are on")
            return self._status
        call = convert.acknowledge_call(status)
        if call is None:
            self._log.debug("acknowledgement_skipped", reason="status has no uuid")
            return self._status
        return self._submit(call)

    def reconcile_tasks(self, tasks: Any = None) -> DriverStatus:
        """RECONCILEs these tasks (TaskStatus or (task_id, agent_id) entries), or with None/[]
        all of them: the master answers with status updates."""
        return self._submit(convert.reconcile_call(tasks))

    def send_framework_message(
        self, executor_id: Any, agent_id: Any, data: bytes | str
    ) -> DriverStatus:
        """MESSAGE: sends opaque data to an executor (best effort)."""
        return self._submit(convert.message_call(executor_id, agent_id, data))

    # -- any thread -----------------------------------------------------------------------------

    def _is_running(self) -> bool:
        return self._status is DriverStatus.RUNNING

    def _submit(self, call: scheduler_pb2.Call) -> DriverStatus:
        with self._lock:
            status = self._status
            if status is DriverStatus.NOT_STARTED:
                self._session.on_call(call)  # queued until subscribed
                return status
            if status is not DriverStatus.RUNNING:
                self._log.warning("call_dropped", call=convert.call_name(call), driver=status.value)
                return status
        self._schedule(self._session.on_call, call)
        return status

    def _request_stop(self, status: DriverStatus, teardown: bool) -> DriverStatus:
        with self._lock:
            if self._status is DriverStatus.NOT_STARTED:
                self._status = status
                self._done.set()
                return status
            if self._status is not DriverStatus.RUNNING:
                return self._status
            self._status = status
        self._log.info("driver_stop_requested", status=status.value, teardown=teardown)
        self._schedule(self._session.begin_stop, teardown)
        return status

    def _schedule(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(fn, *args)

    def _thread_main(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._session.run())
        except BaseException:
            self._log.exception("driver_failed")
            with self._lock:
                self._status = DriverStatus.ABORTED
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._log.info("driver_stopped", status=self._status.value)
            self._done.set()
