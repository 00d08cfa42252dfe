"""The I/O shell a bundled framework (batch, service) runs its pure engine in.

``FrameworkHost`` owns one asyncio loop (the framework's tornado REST API serves on it) and,
while this instance leads, the engine, its state store and a ``SchedulerDriver``. The engine is
any object with the ``Engine`` methods; each returns the commands of ``frameworks.commands``
(and whatever else the framework adds) in the order they must be carried out.

Contract:

- **One way in.** Everything that changes the engine goes through ``apply(fn)`` (or
  ``apply_returning``): under one lock it calls ``fn(now)``, an engine method returning commands.
- **Write, then send.** Every ``Persist``/``Forget`` of those commands is written to the store
  in one batch (the latest change per record, sorted by the framework's write order), and only
  then are the other commands carried out, in their order: the shared ones through the driver,
  the framework's own (``handle_command``) by the subclass. So an intent is durable before
  anything acts on it. A write that fails leaves the engine ahead of its store: the host logs
  ``framework_state_write_failed``, drops the engine and stops (exit status 1) rather than act on
  state it could not keep; a restart reloads the store.
- **Refused or broken.** An exception of the framework's refusal types (or ``NotLeading``)
  means the engine changed nothing and is passed on. Any other exception may have left the engine
  half-changed: it is rebuilt from the store (``framework_engine_failed``), then passed on.
- **Grouped acknowledgements.** Driver callbacks (on the driver's thread) are handed to
  ``apply`` on the loop and waited for; offers that could not be handed over are declined.
  Status updates are queued instead: the loop applies all that are waiting in one engine step
  and one state write, and only then acknowledges them (explicit acknowledgements), so an update
  lost to a crash is delivered again, and a burst of updates costs one fsynced write.
- **Timer.** ``engine.tick(now)`` runs at ``engine.next_wakeup()`` (at least every 30 s).
- **Leadership.** Standalone, the instance leads once it holds ``<work-dir>/<name>.lock`` and
  keeps its state in ``<work-dir>/state`` and its framework id in ``<work-dir>/framework_id``.
  With ``--zk`` instances elect a leader under the given path, the state lives in its ``state``
  znode (writes fenced by the leader's election znode) and the framework id in ``framework_id``.
  Becoming leader: ``store.load()`` -> ``engine.restore(records, now)`` -> its commands -> the
  driver subscribes with the kept framework id, so the master hands the running tasks back.
  Losing the lead stops the instance (exit status 1); a supervisor restarts it as a standby.
  Stopping never tears the framework down: its tasks keep running for the failover timeout.

Usage (a subclass supplies the engine, its refusals and its HTTP server)::

    class BatchService(FrameworkHost[BatchEngine]):
        def __init__(self, opts: HostOptions) -> None:
            super().__init__(opts, name="batch", make_engine=BatchEngine, refusals=(SpecError,))

        def start_http(self) -> tuple[HttpServer, int]:
            return start_http(self, self.opts.ip, self.opts.http_port)

    exit_code = asyncio.run(BatchService(opts).run())
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import structlog

from mensa.deploy.runtime import write_endpoints
from mensa.frameworks import commands as cmds
from mensa.frameworks.driver import DriverStatus, SchedulerDriver
from mensa.frameworks.idfile import DEFAULT_FAILOVER_TIMEOUT
from mensa.frameworks.leadership import FRAMEWORK_ID_NODE, STATE_NODE, Leadership, Standalone, ZkLeadership
from mensa.frameworks.scheduler import Scheduler
from mensa.frameworks.store import (
    Change,
    Drop,
    FileStore,
    Put,
    Records,
    StateStore,
    StoreError,
    ZkStore,
    ZkText,
)
from mensa.proto import mensa_pb2
from mensa.proto.zk import parse_zk_uri

log = structlog.get_logger(__name__)

T = TypeVar("T")

CALLBACK_TIMEOUT = 60.0  # a driver callback waits this long for the loop before giving up
MAX_TIMER_DELAY = 30.0  # the timer wakes at least this often (clock jumps, missed wakeups)
REFUSE_SECONDS_DEFAULT = 5.0  # offers declined because the engine could not take them
FRAMEWORK_ID_FILE = "framework_id"  # in the work dir, without --zk

DRIVER_COMMANDS = (cmds.Launch, cmds.Decline, cmds.Kill, cmds.Reconcile, cmds.Revive, cmds.Suppress)


class NotLeading(RuntimeError):
    """This instance does not lead (or stopped leading): the engine is not here."""


class Engine(Protocol):
    """What the host needs of a framework's pure engine; each method returns commands."""

    def restore(self, records: Records, now: float) -> Sequence[Any] | None: ...

    def subscribed(self, now: float) -> Sequence[Any] | None: ...

    def offers(self, offers: list[mensa_pb2.Offer], now: float) -> Sequence[Any] | None: ...

    def status_update(self, status: mensa_pb2.TaskStatus, now: float) -> Sequence[Any] | None: ...

    def tick(self, now: float) -> Sequence[Any] | None: ...

    def next_wakeup(self) -> float | None: ...


class HttpServer(Protocol):
    """The framework's REST server, as the host stops it."""

    def stop(self) -> None: ...


E = TypeVar("E", bound=Engine)


@dataclass(slots=True)
class HostOptions:
    """What a bundled framework's command was started with."""

    master: str
    work_dir: Path
    zk: str | None = None
    zk_session_timeout: float = 10.0
    ip: str = "127.0.0.1"
    http_port: int = 0
    advertise_ip: str | None = None
    hostname: str | None = None
    name: str = "mensa"
    role: str = "*"
    user: str = ""
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT
    flags: dict[str, str] = field(default_factory=dict)


def removals_last(change: Change) -> int:
    """The default write order: every put, then every removal (each in the engine's order)."""
    return 1 if isinstance(change, Drop) else 0


class FrameworkHost(Generic[E]):
    """See the module docstring. Subclasses implement ``start_http`` and may override
    ``handle_command``, ``framework_info`` and ``make_driver``."""

    def __init__(self, opts: HostOptions, *, name: str, make_engine: Callable[[], E],
                 refusals: tuple[type[Exception], ...] = (),
                 write_order: Callable[[Change], Any] = removals_last) -> None:
        self.opts = opts
        self.name = name
        self.make_engine = make_engine
        self.refusals: tuple[type[Exception], ...] = (*refusals, NotLeading)
        self.write_order = write_order
        self.started_at = time.time()
        self.engine: E | None = None
        self.store: StateStore | None = None
        self.driver: SchedulerDriver | None = None
        self.framework_id: str | None = None
        self.exit_code = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self.http_port = 0
        self.address = ""
        self.leadership: Leadership | None = None
        self._id_store: ZkText | None = None  # the framework id with --zk (else the driver's file)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._ticking = False
        self._background: set[asyncio.Future[Any]] = set()
        self._context = contextvars.copy_context()
        self._leader_cache: tuple[float, str | None] = (0.0, None)
        # Status updates from the driver's thread, waiting for the next group write.
        self._updates: list[mensa_pb2.TaskStatus] = []
        self._updates_lock = threading.Lock()
        self._draining = False
        self.log = log.bind(framework=name)

    # -- hooks -------------------------------------------------------------------------------------

    def start_http(self) -> tuple[HttpServer, int]:
        """Starts the framework's REST API on ``opts.ip:opts.http_port`` (on the running loop);
        returns the server and the port it listens on."""
        raise NotImplementedError

    def handle_command(self, command: Any) -> bool:
        """Carries out a command that is neither a store change nor a driver command. Called on
        the loop under the apply lock, only after the step's state write succeeded, in the
        engine's order among the driver commands; must not block. Returns False for a command it
        does not know either (logged and skipped). An exception is logged and skipped too."""
        return False

    def framework_info(self) -> mensa_pb2.FrameworkInfo:
        """The FrameworkInfo the driver subscribes with (the id is added by the host)."""
        opts = self.opts
        info = mensa_pb2.FrameworkInfo(name=opts.name, user=opts.user, role=opts.role,
                                       failover_timeout=opts.failover_timeout, checkpoint=True)
        # Partition-aware: an unreachable agent's task is TASK_UNREACHABLE (it may still run)
        # rather than TASK_LOST, so the engine waits instead of running it twice.
        info.capabilities.add(type=mensa_pb2.FrameworkInfo.Capability.PARTITION_AWARE)
        if opts.hostname:
            info.hostname = opts.hostname
        info.webui_url = f"http://{self.address}"
        return info

    def make_driver(self, info: mensa_pb2.FrameworkInfo, framework_id_file: Path | None) -> SchedulerDriver:
        """The driver (not started yet) whose callbacks reach this host."""
        return SchedulerDriver(
            HostScheduler(self), info, self.opts.master,
            zk_session_timeout=self.opts.zk_session_timeout,
            framework_id_file=framework_id_file,
            implicit_acknowledgements=False,  # acknowledged once their effect is stored
            auto_reconcile=False,  # the engine reconciles its own tasks (engine.subscribed)
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Serves until stop(); returns the exit status."""
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()  # log context (component) for hops from threads
        server, self.http_port = self.start_http()
        opts = self.opts
        host = opts.advertise_ip or (opts.ip if opts.ip != "0.0.0.0" else socket.gethostname())
        self.address = f"{host}:{self.http_port}"
        self._write_endpoints()
        self.log.info("framework_started", name=opts.name, http_port=self.http_port, master=opts.master,
                      zk=opts.zk, work_dir=str(opts.work_dir))
        if opts.zk:
            self.leadership = ZkLeadership(parse_zk_uri(opts.zk), opts.zk_session_timeout, self.address,
                                           self.name)
        else:
            self.leadership = Standalone(opts.work_dir, self.address, self.name)
        try:
            await self._loop.run_in_executor(
                None, self.leadership.start, self._threadsafe(self._elected), self._threadsafe(self._lost))
        except Exception as exc:
            self.log.error("framework_contending_failed", error=str(exc))
            self.exit_code = 1
            self._stopping.set()
        await self._stopping.wait()
        await self._shutdown(server)
        return self.exit_code

    def stop(self, exit_code: int = 0) -> None:
        """Stops serving (from the loop's thread)."""
        self.exit_code = self.exit_code or exit_code
        self._stopping.set()

    def stop_threadsafe(self, exit_code: int = 0) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.stop, exit_code)

    async def _shutdown(self, server: HttpServer) -> None:
        if self._timer is not None:
            self._timer.cancel()
        driver, self.driver = self.driver, None
        if driver is not None:
            driver.stop(failover=True)  # the tasks keep running; the next leader takes them over
            await asyncio.get_running_loop().run_in_executor(None, driver.join, 10.0)
        if self.leadership is not None:
            self.leadership.stop()
        server.stop()
        self.closing()
        self.log.info("framework_stopped", exit_code=self.exit_code)

    def closing(self) -> None:
        """Invoked once the instance has stopped serving (on the loop): ends what the subclass
        keeps open beyond requests (event streams, say). Does nothing by default."""

    def _threadsafe(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """Wraps ``fn`` (a coroutine function or a plain one) to run on the loop, from any thread."""
        loop = self._loop
        assert loop is not None

        def call(*args: Any) -> None:
            def go() -> None:
                result = fn(*args)
                if asyncio.iscoroutine(result):
                    self._spawn(result)
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(go, context=self._context.copy())
        return call

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Runs a coroutine in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _write_endpoints(self) -> None:
        write_endpoints(self.opts.work_dir, http_port=self.http_port, framework_id=self.framework_id,
                        leading=self.leading)

    # -- leadership --------------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self.engine is not None

    async def _elected(self) -> None:
        """Loads the state, rebuilds the engine, reconciles, subscribes; stops the instance
        (exit status 1) when that fails."""
        try:
            await self._lead()
        except Exception:
            self.log.exception("framework_leading_failed")
            self.engine = None
            self.stop(1)

    async def _lead(self) -> None:
        loop = asyncio.get_running_loop()
        id_store: ZkText | None
        if isinstance(self.leadership, ZkLeadership):
            uri = self.leadership.uri
            store: StateStore = ZkStore(self.leadership.client, uri.child(STATE_NODE),
                                        fence=self.leadership.fence)
            id_store = ZkText(self.leadership.client, uri.child(FRAMEWORK_ID_NODE))
        else:
            store = FileStore(self.opts.work_dir / "state")
            id_store = None
        try:
            records = await loop.run_in_executor(None, store.load)
            framework_id = await loop.run_in_executor(None, id_store.read) if id_store else None
        except StoreError as exc:
            self.log.error("framework_state_load_failed", error=str(exc))
            self.stop(1)
            return
        async with self._lock:
            engine = self.make_engine()
            commands = engine.restore(records, time.time()) or []
            self.engine, self.store = engine, store
            self._id_store = id_store
            info = self.framework_info()
            if framework_id:
                info.id.value = framework_id
            self.framework_id = framework_id
            self.driver = driver = self.make_driver(
                info, None if id_store else self.opts.work_dir / FRAMEWORK_ID_FILE)
            self.framework_id = driver.framework_id
            self.log.info("framework_leading", records={k: len(v) for k, v in records.items()},
                          unreadable=len(getattr(store, "unreadable", [])),
                          framework_id=self.framework_id, commands=len(commands))
            await self._execute(commands)
            driver.start()
            self._arm_timer()
        self._write_endpoints()
        threading.Thread(target=self._watch_driver, args=(driver,), name=f"mensa-{self.name}-driver-watch",
                         daemon=True).start()

    def _watch_driver(self, driver: SchedulerDriver) -> None:
        """Stops the instance when the driver ends by itself (aborted: the framework was removed)."""
        status = driver.join()
        if self.driver is driver and status is DriverStatus.ABORTED:
            self.log.error("framework_driver_aborted")
            self.stop_threadsafe(1)

    def _lost(self, why: str) -> None:
        """Leadership is gone: another instance may lead now, so this one must not act on its
        engine any more. It stops; a supervisor restarts it as a standby."""
        self.log.error("framework_leadership_lost", reason=why)
        self.engine = None
        self.stop(1)

    def on_registered(self, framework_id: str) -> None:
        """From the driver's thread: keeps the framework id (the file is the driver's)."""
        self.framework_id = framework_id
        self.log.info("framework_registered", framework_id=framework_id)
        id_store = self._id_store
        if id_store is not None and id_store.read() != framework_id:
            id_store.write(framework_id)
        self._threadsafe(self._write_endpoints)()

    def leader(self) -> str | None:
        """The leading instance's HTTP ``host:port`` (cached for a second; may block briefly)."""
        if self.leading:
            return self.address
        if self.leadership is None:
            return None
        at, value = self._leader_cache
        if time.monotonic() - at < 1.0:
            return value
        value = self.leadership.leader()
        if value == self.address:
            value = None  # ourselves, not leading yet (loading the state)
        self._leader_cache = (time.monotonic(), value)
        return value

    # -- applying the engine's decisions -----------------------------------------------------------

    def require_engine(self) -> E:
        """The engine; raises NotLeading when this instance has none."""
        engine = self.engine
        if engine is None:
            raise NotLeading("this instance does not lead")
        return engine

    async def apply(self, fn: Callable[[float], Sequence[Any] | None]) -> None:
        """Runs ``fn(now)`` (an engine change returning commands) and carries its commands out."""
        await self.apply_returning(lambda now: (None, fn(now)))

    async def apply_returning(self, fn: Callable[[float], tuple[T, Sequence[Any] | None]]) -> T:
        """Runs ``fn(now) -> (value, commands)`` under the lock, stores the Persist/Forget
        commands, carries out the rest, and returns ``value``. Raises what ``fn`` raises (a
        refusal: nothing changed; anything else: the engine was rebuilt from the store),
        NotLeading, or StoreError (the instance is stopping)."""
        async with self._lock:
            engine = self.require_engine()
            try:
                value, commands = fn(time.time())
            except self.refusals:
                raise  # refused: the engine changed nothing
            except Exception:
                # A bug may have left the engine half-changed: it is rebuilt from the store, the
                # truth, before anything else acts on it.
                self.log.exception("framework_engine_failed", consequence="rebuilding from the stored state")
                if self.engine is engine:
                    await self._rebuild()
                raise
            await self._execute(commands or [])
            self._arm_timer()
            return value

    async def _rebuild(self) -> None:
        """Replaces the engine by one restored from the store (under the lock)."""
        store = self.store
        assert store is not None
        try:
            records = await asyncio.get_running_loop().run_in_executor(None, store.load)
        except StoreError as exc:
            self.log.error("framework_state_load_failed", error=str(exc))
            self.engine = None
            self.stop(1)
            return
        engine = self.make_engine()
        now = time.time()
        commands = list(engine.restore(records, now) or [])
        if self.framework_id:
            # Subscribed already: the new engine reconciles and acts as after a (re)subscription.
            commands += engine.subscribed(now) or []
        self.engine = engine
        await self._execute(commands)

    def queue_update(self, status: mensa_pb2.TaskStatus) -> None:
        """From the driver's thread: queues a status update for the next group write."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not acknowledged: the agent sends it again
        with self._updates_lock:
            self._updates.append(status)
            if self._draining:
                return
            self._draining = True
        loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._spawn(self._drain_updates())

    async def _drain_updates(self) -> None:
        """Applies every queued status update in one engine step and one state write, then
        acknowledges them. Updates that arrive meanwhile go into the next round."""
        try:
            await self._drain_rounds()
        finally:
            with self._updates_lock:
                self._draining = False
                again = bool(self._updates)
            if again and not self._stopping.is_set():  # whatever arrived after a failure
                with self._updates_lock:
                    self._draining = True
                self._start_drain()

    async def _drain_rounds(self) -> None:
        while True:
            with self._updates_lock:
                updates, self._updates = self._updates, []
                if not updates:
                    return

            def step(now: float, batch: list[mensa_pb2.TaskStatus] = updates) -> list[Any]:
                engine = self.require_engine()
                return [command for status in batch for command in engine.status_update(status, now) or ()]
            try:
                await self.apply(step)
            except Exception as exc:  # not stored: not acknowledged, so the agents resend
                self.log.warning("framework_updates_not_applied", updates=len(updates), error=str(exc))
                continue
            self.counters["status_update_batches"] += 1
            driver = self.driver
            if driver is not None:
                for status in updates:
                    if status.uuid:
                        try:
                            driver.acknowledge_status_update(status)
                        except Exception as exc:  # unacknowledged: the agent resends it
                            self.log.warning("framework_acknowledgement_failed", error=str(exc))

    def from_driver(self, fn: Callable[[float], Sequence[Any] | None]) -> None:
        """From the driver's thread: applies ``fn`` on the loop and waits until it is done."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise NotLeading("the instance is not running")
        future: Future[None] = asyncio.run_coroutine_threadsafe(self.apply(fn), loop)
        future.result(CALLBACK_TIMEOUT)

    async def _execute(self, commands: Sequence[Any]) -> None:
        latest: dict[tuple[str, str], Change] = {}
        for command in commands:
            if isinstance(command, cmds.Persist):
                latest[(command.kind, command.key)] = Put(command.kind, command.key, command.doc)
            elif isinstance(command, cmds.Forget):
                latest[(command.kind, command.key)] = Drop(command.kind, command.key)
        # One write per record (the latest), in the framework's write order whatever order
        # several engine steps produced them in (a stable sort: the engine's order otherwise).
        changes = sorted(latest.values(), key=self.write_order)
        if changes:
            store = self.store
            assert store is not None
            try:
                await asyncio.get_running_loop().run_in_executor(None, store.commit, changes)
            except (StoreError, ValueError) as exc:
                self.log.error("framework_state_write_failed", error=str(exc), changes=len(changes))
                self.engine = None  # ahead of its store: never act on it again
                self.stop(1)
                raise StoreError(str(exc)) from None
            self.counters["state_records_written"] += len(changes)
            self.counters["state_batches_written"] += 1
        driver = self.driver
        for command in commands:
            if isinstance(command, (cmds.Persist, cmds.Forget)):
                continue
            if isinstance(command, DRIVER_COMMANDS):
                if driver is None:
                    self.log.warning("framework_command_dropped", command=type(command).__name__)
                else:
                    self._send(driver, command)
                continue
            try:
                known = self.handle_command(command)
            except Exception:
                self.log.exception("framework_command_failed", command=type(command).__name__)
                continue
            if not known:
                self.log.warning("framework_command_unknown", command=repr(command))

    def _send(self, driver: SchedulerDriver, command: Any) -> None:
        if isinstance(command, cmds.Launch):
            driver.launch_tasks(command.offer_id, list(command.tasks), filters=command.refuse_seconds)
        elif isinstance(command, cmds.Decline):
            driver.decline_offer(list(command.offer_ids), filters=command.refuse_seconds)
        elif isinstance(command, cmds.Kill):
            driver.kill_task(command.task_id, command.agent_id or None, kill_policy=command.grace)
            self.counters["kills_sent"] += 1
        elif isinstance(command, cmds.Reconcile):
            if command.tasks:  # an empty list would reconcile every task (implicitly)
                driver.reconcile_tasks([(task_id, agent_id or None) for task_id, agent_id in command.tasks])
        elif isinstance(command, cmds.Revive):
            driver.revive_offers()
        elif isinstance(command, cmds.Suppress):
            driver.suppress_offers()

    # -- the timer ---------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        engine, loop = self.engine, self._loop
        if engine is None or loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        wake = engine.next_wakeup()
        delay = MAX_TIMER_DELAY if wake is None else min(max(0.0, wake - time.time()), MAX_TIMER_DELAY)
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._ticking or self.engine is None:
            return
        self._ticking = True

        async def tick() -> None:
            try:
                await self.apply(lambda now: self.require_engine().tick(now))
            except (NotLeading, StoreError):
                pass
            except Exception:
                self.log.exception("framework_tick_failed")
                self._arm_timer()
            finally:
                self._ticking = False

        self._spawn(tick())


class HostScheduler(Scheduler):
    """The driver's callbacks, each handed to the host's loop and waited for, but status
    updates, which are queued and acknowledged after a group write (``queue_update``)."""

    def __init__(self, host: FrameworkHost[Any]) -> None:
        self.host = host

    def registered(self, driver: SchedulerDriver, framework_id: mensa_pb2.FrameworkID,
                   master_info: mensa_pb2.MasterInfo) -> None:
        self.host.on_registered(framework_id.value)
        self.host.from_driver(lambda now: self.host.require_engine().subscribed(now))

    def reregistered(self, driver: SchedulerDriver, master_info: mensa_pb2.MasterInfo) -> None:
        self.host.log.info("framework_reregistered", master=master_info.id)
        self.host.from_driver(lambda now: self.host.require_engine().subscribed(now))

    def disconnected(self, driver: SchedulerDriver) -> None:
        self.host.log.warning("framework_master_disconnected")

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        try:
            self.host.from_driver(lambda now: self.host.require_engine().offers(offers, now))
        except Exception:
            # Offers left unanswered would hold their resources until rescinded.
            driver.decline_offer([o.id for o in offers], filters=REFUSE_SECONDS_DEFAULT)
            raise

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        self.host.counters["status_updates"] += 1
        # Queued, not waited for: the loop applies every queued update, stores their effect in
        # one write, and only then acknowledges them (until then the agent keeps the update).
        self.host.queue_update(status)

    def agent_lost(self, driver: SchedulerDriver, agent_id: mensa_pb2.AgentID) -> None:
        self.host.log.warning("framework_agent_lost", agent_id=agent_id.value)

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self.host.log.error("framework_driver_error", message=message)
