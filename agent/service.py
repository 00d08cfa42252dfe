"""The agent's I/O shell: the master socket, timers and containers around ``AgentState``.

``AgentService.run(stop)`` connects a DEALER socket to the master and feeds ``AgentState``
everything that happens: each decoded envelope (a malformed frame is logged and ignored), a
Tick every ``tick_seconds``, a reconnection of the socket (a restarted master), and the start,
exit or launch failure of each container. It carries out the commands the state returns, in
order: sends to the master (non-blocking), launches (sandbox first, then the first containerizer
whose ``can_run`` accepts the task), kills, and health-check probes (``health_probes``, at most
``max_health_checks`` at once; a COMMAND check runs through the containerizer's ``exec_in``
when it has one), whose results come back as ``HealthCheckResult`` events. When ``stop`` is set
it kills every task and returns once their containers are gone (or after a bounded wait).

Recovery (``config.checkpoint``): the state's checkpoint commands are carried out by
``checkpoint.CheckpointStore`` as they come, in order. At start, before anything else, the
checkpoint is read back and fed to the state (``Recovered``); for every task it names the
shell finds the container again (``RecoverContainer``: a process task by its waiter, pid and
cgroup, a Docker task by its labels) and reports it running (``ContainerRecovered``) or ended,
with its real exit status (``ContainerExited``). Docker containers labelled with this agent's
id that no checkpointed task owns (a launch given up on) are removed.

The master: ``master`` is a detector (``proto.detector``; an ``Endpoint`` means a fixed one).
Each leader it reports gets a new DEALER socket, and the state is told (``LeaderChanged``, with
a random jitter for its re-registration); while no master leads, nothing is sent and the tasks
and their updates wait. A master that does not lead may name the one that does
(``SwitchMaster``): with a fixed detector the agent follows it.

Usage::

    service = AgentService(config, Endpoint.parse("127.0.0.1:5050"))
    await service.run(stop_event)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from mensa.agent import recovery
from mensa.agent.checkpoint import CheckpointGuard, CheckpointStore
from mensa.agent.containerizer.base import (
    ContainerHandle,
    Containerizer,
    LaunchError,
    LaunchSpec,
    Termination,
)
from mensa.agent.containerizer.process import ProcessContainerizer
from mensa.agent.events import (
    CheckpointAck,
    CheckpointAgent,
    CheckpointCommand,
    CheckpointKill,
    CheckpointStarted,
    CheckpointTask,
    CheckpointUpdate,
    ContainerExited,
    ContainerStarted,
    Event,
    KillContainer,
    LaunchContainer,
    LaunchFailed,
    LeaderChanged,
    MasterMessage,
    MasterReconnected,
    RecoverContainer,
    RemoveCheckpoint,
    SendToMaster,
    StopRequested,
    SwitchMaster,
    Tick,
)
from mensa.agent.health import HealthCheckResult, RunHealthCheck
from mensa.agent.health_probes import ContainerExec, ExecIn, run_probe
from mensa.agent.metrics import AgentMetrics
from mensa.agent.sandbox import InvalidTask, create_sandbox
from mensa.agent.state import AgentCommand, AgentConfig, AgentEvent, AgentState
from mensa.agent.status_updates import TaskKey
from mensa.deploy.runtime import write_endpoints
from mensa.proto import internal_pb2, mensa_pb2, transport
from mensa.proto.detector import FixedDetector, MasterDetector
from mensa.proto.transport import Endpoint, TransportError
from mensa.proto.zk import Leader

log = structlog.get_logger(__name__)

CHECKPOINT_COMMANDS = (
    CheckpointUpdate,
    CheckpointKill,
    CheckpointAck,
    CheckpointStarted,
    CheckpointTask,
    RemoveCheckpoint,
    CheckpointAgent,
)
TICK_SECONDS = 0.1
# After the last task's grace period, how long to wait for containers before exiting anyway.
STOP_MARGIN_SECONDS = 10.0
# How long closing the socket may take to flush the last messages (e.g. TASK_KILLED updates).
CLOSE_LINGER_MS = 500
MAX_HEALTH_CHECKS = 32  # Probes running at once; more wait for a slot.


@dataclass(slots=True)
class Container:
    spec: LaunchSpec
    containerizer: Containerizer | None = None
    handle: ContainerHandle | None = None
    kill_grace: float | None = None  # A kill asked for before the container was spawned.
    task: asyncio.Task[None] | None = None


class AgentService:
    """Runs one agent; see the module docstring."""

    def __init__(
        self,
        config: AgentConfig,
        master: Endpoint | MasterDetector,
        containerizers: Sequence[Containerizer] | None = None,
        *,
        tick_seconds: float = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        publish_endpoints: bool = True,
        max_health_checks: int = MAX_HEALTH_CHECKS,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.detector: MasterDetector = (
            FixedDetector(master) if isinstance(master, Endpoint) else master
        )
        self.master: Endpoint | None = master if isinstance(master, Endpoint) else None
        self.state = AgentState(config)
        # Counts for /metrics (agent/metrics.py); uptime from now.
        self.metrics = AgentMetrics(started_at=wall_clock())
        self.store = (
            CheckpointStore(config.work_dir, background_removal=True) if config.checkpoint else None
        )
        self._jitter = jitter
        self._ctx: zmq.asyncio.Context | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._socket_loops: list[asyncio.Task[None]] = []
        self._docker_found: dict[str, Any] = {}
        self._docker_unreachable = False  # Docker could not be asked at recovery.
        self.checkpoints = CheckpointGuard(self.store) if self.store is not None else None
        self.containerizers: list[Containerizer] = list(containerizers or [ProcessContainerizer()])
        if self.checkpoints is not None:
            for containerizer in self.containerizers:
                if isinstance(containerizer, ProcessContainerizer):
                    containerizer.on_spawned = self.checkpoints.waiter_spawned
        self.tick_seconds = tick_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._publish = publish_endpoints
        self._published_agent_id: str | None = None
        self._containers: dict[TaskKey, Container] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._probes: set[asyncio.Task[None]] = set()
        self._probe_slots = asyncio.Semaphore(max(1, max_health_checks))
        self._sock: zmq.asyncio.Socket | None = None

    def usage(self, framework_id: str, task_id: str) -> dict[str, Any] | None:
        """Returns a live task's resource usage (cpu time, memory) if its containerizer measures it."""
        container = self._containers.get((framework_id, task_id))
        if container is None or container.handle is None or container.containerizer is None:
            return None
        measure = getattr(container.containerizer, "usage", None)
        reading = measure(container.handle) if callable(measure) else None
        to_json = getattr(reading, "to_json", None)
        return to_json() if callable(to_json) else None

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serves until ``stop`` is set, then kills every task and returns when they are gone."""
        self._ctx = zmq.asyncio.Context()
        loop = asyncio.get_running_loop()
        log.info(
            "agent_started",
            master=str(self.detector),
            hostname=self.config.hostname,
            http_port=self.config.http_port,
            work_dir=self.config.work_dir,
        )
        loops = [asyncio.create_task(self._tick_loop(), name="agent-tick")]
        try:
            await self.recover()
            if not isinstance(self.detector, FixedDetector):
                self.dispatch(LeaderChanged(None))  # until the detector reports one
            home = threading.get_ident()

            def on_change(leader: Leader | None) -> None:
                # A FixedDetector reports at once, on this thread; a ZkDetector from kazoo's.
                if threading.get_ident() == home:
                    self._on_leader(leader)
                else:
                    loop.call_soon_threadsafe(self._on_leader, leader)

            self.detector.start(on_change)
            self.dispatch(Tick())
            await stop.wait()
            await self._stop_tasks()
        finally:
            self.detector.stop()
            loops += self._socket_loops
            for task in [*loops, *self._probes]:
                task.cancel()
            await asyncio.gather(*loops, *self._probes, return_exceptions=True)
            self._close_socket(CLOSE_LINGER_MS)
            self._ctx.term()
            if self.store is not None:
                self.store.close()
            log.info("agent_stopped", agent_id=self.state.agent_id)

    # -- the leading master --------------------------------------------------------------------

    def _on_leader(self, leader: Leader | None) -> None:
        """The detector (or a NOT_LEADER answer) named the leading master, or none."""
        if leader is None:
            self.dispatch(LeaderChanged(None))
            return
        if self._sock is None or self.master != leader.zmq:
            self._connect(leader.zmq)
        info = mensa_pb2.MasterInfo()
        info.CopyFrom(leader.info)
        info.zmq_endpoint = info.zmq_endpoint or leader.zmq.url
        self.dispatch(LeaderChanged(info, jitter=self._jitter()))

    def _connect(self, endpoint: Endpoint) -> None:
        """Replaces the DEALER socket by a new one connected to ``endpoint``."""
        self._close_socket(0)
        if self._ctx is None:
            return
        self.master = endpoint
        sock = transport.new_dealer(self._ctx)
        self._monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)  # before connecting
        sock.connect(endpoint.url)
        self._sock = sock
        self._socket_loops = [
            asyncio.create_task(self._receive_loop(sock), name="agent-receive"),
            asyncio.create_task(self._monitor_loop(self._monitor), name="agent-monitor"),
        ]
        log.info("master_socket_connected", master=str(endpoint))

    def _close_socket(self, linger_ms: int) -> None:
        loops, self._socket_loops = self._socket_loops, []
        for task in loops:
            task.cancel()
        sock, monitor, self._sock, self._monitor = self._sock, self._monitor, None, None
        if sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            sock.close(linger=linger_ms)
        if monitor is not None:
            monitor.close(linger=0)

    # -- recovery ------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Reads the checkpoint (when checkpointing) and rebuilds the state from it
        (``recovery.recover``)."""
        await recovery.recover(self)

    async def _stop_tasks(self) -> None:
        log.info("agent_stopping_killing_tasks", tasks=len(self._containers))
        self.dispatch(StopRequested())
        running = [c for c in self._containers.values() if c.task is not None]
        grace = max([c.kill_grace or 0.0 for c in running] + [self.config.kill_grace_seconds])
        waiting = [c.task for c in running if c.task is not None]
        if waiting:
            _done, pending = await asyncio.wait(waiting, timeout=grace + STOP_MARGIN_SECONDS)
            if pending:
                log.error("tasks_survived_stop", tasks=len(pending))
        # One more round so the last updates (TASK_KILLED) go out before the socket closes.
        self.dispatch(Tick())

    async def _receive_loop(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            if len(frames) != 1 and any(frames[:-1]):
                log.warning("malformed_frame_ignored", reason=f"{len(frames)} frames, expected 1")
                continue
            try:
                envelope = transport.decode(frames[-1])
            except TransportError as exc:
                log.warning("malformed_frame_ignored", reason=str(exc))
                continue
            self.dispatch(MasterMessage(envelope))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            self.dispatch(Tick())

    async def _monitor_loop(self, monitor: zmq.asyncio.Socket) -> None:
        # Every connection (re-)registers at once: a restarted master is found without waiting
        # for the ping timeout, and a duplicate registration is harmless (same id back).
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] != zmq.EVENT_CONNECTED:
                continue
            log.info("master_connected", master=str(self.master))
            self.dispatch(MasterReconnected())

    # -- state machine plumbing ----------------------------------------------------------------

    def dispatch(self, event: AgentEvent) -> None:
        """Feeds one event to the state and runs the commands it returns."""
        try:
            commands = self.state.handle(event, self._clock(), self._wall_clock())
        except Exception:
            # A bug must not take the agent (and its tasks' updates) down; log it loudly.
            log.exception("event_handling_failed", event=type(event).__name__)
            return
        batch: list[CheckpointCommand] = []
        refused: dict[TaskKey, str] = {}  # tasks whose checkpoint failed: not launched
        for command in commands:
            if isinstance(command, CHECKPOINT_COMMANDS):
                batch.append(command)
                continue
            if batch:
                self._checkpoint(batch, refused)
            if isinstance(command, LaunchContainer) and (
                    (command.framework_id, command.task_id) in refused):
                continue
            if isinstance(command, SendToMaster) and not self._update_saved(command.envelope):
                continue
            self._execute(command)
        if batch:
            self._checkpoint(batch, refused)
        self.metrics.observe_completed(self.state.completed)
        for key, error in refused.items():
            log.error("task_not_launched", framework_id=key[0], task_id=key[1],
                      reason="its checkpoint could not be written", error=error)
            self.dispatch(LaunchFailed(*key, message="the agent could not checkpoint the task "
                                       f"before launching it: {error}"))
        if self._publish and self.state.agent_id != self._published_agent_id:
            self._published_agent_id = self.state.agent_id
            with contextlib.suppress(OSError):
                write_endpoints(
                    self.config.work_dir,
                    http_port=self.config.http_port,
                    agent_id=self.state.agent_id,
                )

    def _checkpoint(self, batch: list[CheckpointCommand], refused: dict[TaskKey, str]) -> None:
        """Carries out consecutive checkpoint commands (before the commands after them); a task
        whose CheckpointTask failed goes into ``refused`` (``CheckpointGuard.write``)."""
        if self.checkpoints is not None:
            self.checkpoints.write(batch, refused)
        batch.clear()

    def _update_saved(self, envelope: internal_pb2.Envelope) -> bool:
        """False for a status update held back because its checkpoint is still unwritten."""
        if self.checkpoints is None or not envelope.HasField("status_update"):
            return True
        return self.checkpoints.update_saved(envelope.status_update.status.uuid)

    def _execute(self, command: AgentCommand) -> None:
        if isinstance(command, SendToMaster):
            self._send(command.envelope)
        elif isinstance(command, RecoverContainer):
            key = (command.framework_id, command.task_id)
            container = Container(command.spec)
            self._containers[key] = container
            container.task = asyncio.create_task(
                recovery.recover_container(self, key, container, command)
            )
        elif isinstance(command, SwitchMaster):
            self._switch_master(command.leader)
        elif isinstance(command, LaunchContainer):
            key = (command.framework_id, command.task_id)
            container = Container(command.spec)
            self._containers[key] = container
            container.task = asyncio.create_task(self._run_container(key, container))
        elif isinstance(command, KillContainer):
            self._kill(command)
        elif isinstance(command, RunHealthCheck):
            probe = asyncio.create_task(self._run_health_check(command))
            self._probes.add(probe)
            probe.add_done_callback(self._probes.discard)
            probe.add_done_callback(_log_task_failure)

    def _switch_master(self, info: mensa_pb2.MasterInfo) -> None:
        if not isinstance(self.detector, FixedDetector):
            log.info("leader_hint_ignored", leader=info.zmq_endpoint,
                     reason="the leader is detected through ZooKeeper")
            return
        try:
            leader = Leader.from_info(info)
        except ValueError as exc:
            log.warning("leader_hint_ignored", leader=info.zmq_endpoint, reason=str(exc))
            return
        if leader.zmq == self.master:
            return
        log.info("master_redirected", leader=str(leader.zmq))
        asyncio.get_running_loop().call_soon(self._on_leader, leader)

    def _send(self, envelope: internal_pb2.Envelope) -> None:
        if self._sock is None:
            log.warning("message_not_sent", kind=envelope.WhichOneof("message"), reason="closed")
            return
        future = asyncio.ensure_future(self._sock.send(transport.encode(envelope), zmq.NOBLOCK))
        future.add_done_callback(lambda f: _log_send_failure(f, envelope))

    # -- containers ----------------------------------------------------------------------------

    def _pick(self, task_info: mensa_pb2.TaskInfo) -> Containerizer | None:
        return next((c for c in self.containerizers if c.can_run(task_info)), None)

    async def _run_container(self, key: TaskKey, container: Container) -> None:
        """Launches one container, reports its start, waits for it and reports its end."""
        final: Event
        try:
            final = await self._launch_and_wait(key, container)
        except Exception as exc:  # A containerizer bug: report the task failed, keep going.
            log.exception("container_failed", framework_id=key[0], task_id=key[1])
            if container.handle is None:
                final = LaunchFailed(*key, message=f"container launch failed: {exc}")
            else:
                final = ContainerExited(
                    *key,
                    reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
                    message=f"lost track of the container: {exc}",
                )
        if self._containers.get(key) is container:
            del self._containers[key]
        self.dispatch(final)

    async def _launch_and_wait(self, key: TaskKey, container: Container) -> Event:
        spec = container.spec
        try:
            create_sandbox(spec.sandbox, self.config.work_dir)
        except InvalidTask as exc:
            return LaunchFailed(*key, message=str(exc), invalid=True)
        except OSError as exc:
            return LaunchFailed(*key, message=f"cannot create the sandbox: {exc}")
        if container.kill_grace is not None:
            return ContainerExited(*key, killed_by_us=True)
        containerizer = self._pick(spec.task_info)
        if containerizer is None:
            names = ", ".join(c.name for c in self.containerizers)
            return LaunchFailed(*key, message=f"no containerizer ({names}) can run this task")
        container.containerizer = containerizer
        try:
            container.handle = await containerizer.launch(spec)
        except LaunchError as exc:
            return LaunchFailed(*key, message=str(exc))
        self.dispatch(ContainerStarted(*key, pid=container.handle.pid,
                                       containerizer=containerizer.name,
                                       waiter_pid=getattr(container.handle, "waiter_pid", None),
                                       pid_start=getattr(container.handle, "pid_start", None)))
        if container.kill_grace is not None:
            # Killed while it was being launched (an image pull, say): it never ran as far as
            # the framework knows, so it gets no grace period.
            self._spawn(containerizer.kill(container.handle, 0.0))
        termination: Termination = await containerizer.wait(container.handle)
        return ContainerExited(
            *key,
            exit_code=termination.exit_code,
            signal=termination.signal,
            killed_by_us=termination.killed_by_us,
            reason=termination.reason,
            message=termination.message,
        )

    def _kill(self, command: KillContainer) -> None:
        key = (command.framework_id, command.task_id)
        container = self._containers.get(key)
        if container is None:
            log.warning("kill_of_missing_container", framework_id=key[0], task_id=key[1])
            return
        if container.kill_grace is None:
            container.kill_grace = command.grace_seconds
        if container.handle is not None and container.containerizer is not None:
            self._spawn(container.containerizer.kill(container.handle, command.grace_seconds))

    # -- health checks -------------------------------------------------------------------------

    async def _run_health_check(self, command: RunHealthCheck) -> None:
        """Runs one probe (waiting for a free slot first) and reports its result."""
        key = (command.framework_id, command.task_id)
        async with self._probe_slots:
            outcome = await run_probe(command.probe, self._exec_in(key))
        self.dispatch(HealthCheckResult(*key, healthy=outcome.healthy, message=outcome.message))

    def _exec_in(self, key: TaskKey) -> ExecIn | None:
        """The task's containerizer's ``exec_in``, bound to its container, if it has one."""
        container = self._containers.get(key)
        if container is None or container.handle is None:
            return None
        containerizer, handle = container.containerizer, container.handle
        if not isinstance(containerizer, ContainerExec):
            return None

        async def exec_in(argv: Sequence[str], env: Mapping[str, str]) -> int:
            return await containerizer.exec_in(handle, argv, env)

        return exec_in

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_task_failure)


def _log_send_failure(future: asyncio.Future[Any], envelope: internal_pb2.Envelope) -> None:
    if future.cancelled() or future.exception() is None:
        return
    # Registration and status updates are retried by the state; pongs are cheap to lose.
    log.warning(
        "message_not_sent", kind=envelope.WhichOneof("message"), error=str(future.exception())
    )


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background_task_failed", error=repr(task.exception()))
