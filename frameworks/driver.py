"""SchedulerDriver: connects a Scheduler to the master and carries its calls.

``SchedulerDriver(scheduler, framework_info, master)`` subscribes the framework over ZeroMQ
(one DEALER socket, held by its Session in a MasterLink), turns master Events into Scheduler
callbacks and the methods below into scheduler Calls (Mesos v1 semantics). It runs an asyncio
loop on a daemon thread: callbacks run on that thread, one at a time; every public method is
thread-safe, never blocks on the master, and may be called from a callback or any thread.

It keeps the framework subscribed: SUBSCRIBE is retried with backoff (0.5s doubling to 10s)
until SUBSCRIBED; when the master goes silent (nothing for max(3 x heartbeat interval, 5s)),
drops the connection, or answers NOT_SUBSCRIBED, the scheduler hears ``disconnected`` and the
driver re-subscribes with its framework id (``reregistered`` follows). Calls made while not
subscribed are queued and sent once subscribed; a stop drops them (with a warning).

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
from mensa.frameworks.scheduler import Scheduler
from mensa.frameworks.session import OfferBook, Session, SessionOptions
from mensa.proto import mensa_pb2, scheduler_pb2, transport

log = structlog.get_logger(__name__)


class DriverStatus(enum.Enum):
    """Where a driver is in its life: NOT_STARTED -> RUNNING -> STOPPED or ABORTED."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    ABORTED = "aborted"
    STOPPED = "stopped"


def with_defaults(info: mensa_pb2.FrameworkInfo) -> mensa_pb2.FrameworkInfo:
    """Returns a copy of ``info`` with user (the OS user) and hostname filled in when empty."""
    out = mensa_pb2.FrameworkInfo()
    out.CopyFrom(info)
    if not out.user:
        try:
            out.user = getpass.getuser()
        except Exception:
            out.user = str(os.getuid())
    if not out.hostname:
        out.hostname = socket.gethostname()
    return out


class SchedulerDriver:
    """Runs a Scheduler against a master; see the module docstring for the contract."""

    def __init__(
        self,
        scheduler: Scheduler,
        framework_info: mensa_pb2.FrameworkInfo | Mapping[str, Any],
        master: str | transport.Endpoint,
        *,
        implicit_acknowledgements: bool = True,
        min_master_silence: float = 5.0,
        heartbeat_timeout_factor: float = 3.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        flush_timeout: float = 2.0,
        max_message_bytes: int = transport.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        info = with_defaults(convert.parse(framework_info, mensa_pb2.FrameworkInfo))
        if isinstance(master, str):
            master = transport.Endpoint.parse(master)
        self._endpoint = master
        self._implicit_acks = implicit_acknowledgements
        self._log = log.bind(framework=info.name, master=str(master))
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
        )
        self._session = Session(
            scheduler, self, info, master, options, self._offers, self._is_running, self.abort
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
    def master(self) -> transport.Endpoint:
        return self._endpoint

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
        """ACCEPTs the offers with these Offer.Operation messages (or dicts)."""
        call = convert.accept_call(offer_ids, operations, filters)
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
