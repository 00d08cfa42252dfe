"""The agent's decisions: registration, tasks and their status updates (pure).

``AgentState.handle(event, now)`` takes one event (a message from the master, a container that
started or ended, a timer tick; see ``events.py``) and returns the commands the shell must carry
out: messages to the master, containers to launch or kill. It never reads the clock (``now`` is
monotonic time for timers, ``wall_time`` the epoch time stamped on status updates) and does no
I/O, so every decision is tested by feeding events and comparing commands.

Registration and the leading master: ``leader_handling``. Recovery after a restart:
``task_recovery``. Health checks: ``health_handling`` (``task_health(framework_id, task_id)``
gives a task's health). What to launch: ``launch_specs``.

Tasks: RunTask -> TASK_STARTING + LaunchContainer; ContainerStarted -> TASK_RUNNING;
ContainerExited -> TASK_FINISHED / TASK_FAILED / TASK_KILLED. Every update goes through the
``StatusUpdateManager`` (retried until acknowledged, sent only while registered); a task whose
terminal update is acknowledged moves to ``completed`` (the last 1000 are kept).

Usage::

    state = AgentState(AgentConfig(work_dir="/var/lib/mensa", hostname="h1"))
    for command in state.handle(Tick(), now=0.0):
        ...  # SendToMaster(Envelope(register_agent=...))
"""

from __future__ import annotations

import uuid as _uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from mensa.agent import health_handling, leader_handling, task_recovery
from mensa.agent.containerizer.base import LaunchSpec
from mensa.agent.events import (
    CheckpointAck,
    CheckpointKill,
    CheckpointStarted,
    CheckpointTask,
    CheckpointUpdate,
    Command,
    ContainerExited,
    ContainerRecovered,
    ContainerStarted,
    Event,
    KillContainer,
    LaunchContainer,
    LaunchFailed,
    LeaderChanged,
    MasterMessage,
    MasterReconnected,
    Recovered,
    RemoveCheckpoint,
    SendToMaster,
    StopRequested,
    Tick,
)
from mensa.agent.health import HealthChecker, HealthCheckResult, RunHealthCheck, health_checker
from mensa.agent.launch_specs import has_image, launch_spec
from mensa.agent.registration import MasterLink
from mensa.agent.sandbox import InvalidTask
from mensa.agent.status_updates import Ack, StatusUpdateManager, TaskKey
from mensa.agent.tasks import (
    TaskRecord,
    duration_seconds,
    state_name,
    task_log,
    termination_text,
)
from mensa.proto import internal_pb2, mensa_pb2

log = structlog.get_logger(__name__)

TaskStatus = mensa_pb2.TaskStatus
Error = internal_pb2.Error
KILLING_CAPABILITY = mensa_pb2.FrameworkInfo.Capability.TASK_KILLING_STATE
COMPLETED_TASKS_KEPT = 1000
HEALTH_REASON = TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED

AgentEvent = Event | HealthCheckResult
AgentCommand = Command | RunHealthCheck


@dataclass(slots=True)
class AgentConfig:
    """What the agent is and how patient it is."""

    work_dir: str
    hostname: str
    resources: list[mensa_pb2.Resource] = field(default_factory=list)
    attributes: list[mensa_pb2.Attribute] = field(default_factory=list)
    http_port: int = 0
    # The IP others reach this agent at (its HTTP endpoints); "" when unknown.
    advertise_ip: str = ""
    version: str = "0.1.0"
    path_env: str = "/usr/local/bin:/usr/bin:/bin"
    kill_grace_seconds: float = 3.0
    registration_backoff: float = 0.5
    registration_backoff_max: float = 5.0
    default_ping_timeout: float = 15.0
    update_retry_min: float = 1.0
    update_retry_max: float = 60.0
    # Emit checkpoint commands (what a restarted agent needs to recover its tasks).
    checkpoint: bool = False


def _new_uuid() -> bytes:
    return _uuid.uuid4().bytes


class AgentState:
    """The agent's state machine; see the module docstring."""

    def __init__(self, config: AgentConfig, uuid_factory: Callable[[], bytes] = _new_uuid) -> None:
        self.config = config
        self.uuid_factory = uuid_factory
        self.link = MasterLink(
            backoff_min=config.registration_backoff,
            backoff_max=config.registration_backoff_max,
            ping_timeout=config.default_ping_timeout,
        )
        self.stopping = False
        self.tasks: dict[TaskKey, TaskRecord] = {}
        self.completed: deque[TaskRecord] = deque(maxlen=COMPLETED_TASKS_KEPT)
        # Tasks killed before their RunTask arrived (reported TASK_LOST): never launched later.
        self.killed_unknown: OrderedDict[TaskKey, None] = OrderedDict()
        self.updates = StatusUpdateManager(config.update_retry_min, config.update_retry_max)
        # Tasks with a health check, until they complete.
        self.health: dict[TaskKey, HealthChecker] = {}
        self._now = 0.0
        self._wall = 0.0
        self._out: list[AgentCommand] = []

    @property
    def agent_id(self) -> str | None:
        return self.link.agent_id

    @property
    def registered(self) -> bool:
        return self.link.registered

    def has_running_containers(self) -> bool:
        """True while any task's container is starting or running."""
        return any(t.container_running for t in self.tasks.values())

    def task_health(self, framework_id: str, task_id: str) -> bool | None:
        """Returns an active task's last reported health (None: no check, or no result yet)."""
        checker = self.health.get((framework_id, task_id))
        return None if checker is None else checker.healthy

    def handle(
        self, event: AgentEvent, now: float, wall_time: float | None = None
    ) -> list[AgentCommand]:
        """Applies one event at monotonic time ``now``; returns the commands to run, in order.

        ``wall_time`` (epoch seconds, default ``now``) stamps the status updates it creates.
        """
        self._now = now
        self._wall = now if wall_time is None else wall_time
        out: list[AgentCommand] = []
        self._out = out
        if isinstance(event, Tick):
            leader_handling.on_tick(self)
            health_handling.start_due_health_checks(self)
        elif isinstance(event, HealthCheckResult):
            health_handling.on_health_check_result(self, event)
        elif isinstance(event, MasterMessage):
            self._on_master_message(event.envelope)
        elif isinstance(event, ContainerStarted):
            self._on_container_started(event)
        elif isinstance(event, ContainerExited):
            self._on_container_exited(event)
        elif isinstance(event, LaunchFailed):
            self._on_launch_failed(event)
        elif isinstance(event, MasterReconnected):
            log.info("master_reconnected", agent_id=self.agent_id)
            leader_handling.register_now(self)
        elif isinstance(event, ContainerRecovered):
            task_recovery.on_container_recovered(self, event)
        elif isinstance(event, Recovered):
            task_recovery.on_recovered(self, event.checkpoint)
        elif isinstance(event, LeaderChanged):
            leader_handling.on_leader_changed(self, event)
        elif isinstance(event, StopRequested):
            self._on_stop()
        if self.link.registered:
            self._send_due_updates()
        self._out = []
        return out

    # -- registration --------------------------------------------------------------------------

    # -- messages from the master --------------------------------------------------------------

    def _on_master_message(self, envelope: internal_pb2.Envelope) -> None:
        self.link.heard(self._now)
        kind = envelope.WhichOneof("message")
        if kind == "ping":
            if envelope.ping.timeout_seconds > 0 and self.link.registered:
                self.link.ping_timeout = envelope.ping.timeout_seconds
            self._out.append(SendToMaster(internal_pb2.Envelope(pong=internal_pb2.Pong())))
        elif kind == "agent_registered":
            leader_handling.on_registered(self, envelope.agent_registered)
        elif kind == "run_task":
            self._on_run_task(envelope.run_task)
        elif kind == "kill_task":
            self._on_kill_task(envelope.kill_task)
        elif kind == "status_update_acknowledgement":
            self._on_ack(envelope.status_update_acknowledgement)
        elif kind == "shutdown_framework":
            self._on_shutdown_framework(envelope.shutdown_framework.framework_id.value)
        elif kind == "framework_to_executor":
            message = envelope.framework_to_executor
            log.info(
                "framework_message_dropped",
                framework_id=message.framework_id.value,
                executor_id=message.executor_id.value,
                reason="command tasks have no executor",
            )
        elif kind == "shutdown_agent":
            self._on_shutdown_agent(envelope.shutdown_agent.message)
        elif kind == "error":
            leader_handling.on_error(self, envelope.error)
        else:
            log.warning("unexpected_message_ignored", kind=kind)

    def _on_run_task(self, message: internal_pb2.RunTask) -> None:
        framework_id, task_id = message.framework.id.value, message.task.task_id.value
        tlog = task_log(framework_id, task_id)
        if not framework_id or not task_id:
            tlog.warning("run_task_ignored", reason="missing framework id or task id")
            return
        if self.agent_id is None:
            tlog.warning("run_task_ignored", reason="agent is not registered")
            return
        key = (framework_id, task_id)
        if key in self.tasks:
            tlog.info("duplicate_run_task_ignored")
            return
        if self.killed_unknown.pop(key, 0) is None:
            tlog.warning("run_task_ignored", reason="the task was killed before it arrived")
            return
        record = TaskRecord(mensa_pb2.FrameworkInfo(), mensa_pb2.TaskInfo())
        record.framework.CopyFrom(message.framework)
        record.task_info.CopyFrom(message.task)
        self.tasks[key] = record
        if self.stopping:
            self._checkpoint(record)
            self._set_state(record, mensa_pb2.TASK_DROPPED, "the agent is shutting down")
            self._maybe_complete(key)
            return
        try:
            spec = self._launch_spec(record, self.agent_id)
            if message.task.HasField("health_check"):
                self.health[key] = health_checker(
                    message.task.health_check, env=spec.env, sandbox=spec.sandbox, user=spec.user
                )
        except InvalidTask as exc:
            tlog.warning("task_refused", reason=str(exc))
            self._checkpoint(record)
            self._set_state(record, mensa_pb2.TASK_ERROR, str(exc), TaskStatus.REASON_TASK_INVALID)
            self._maybe_complete(key)
            return
        record.sandbox = spec.sandbox
        record.container_id = spec.container_id
        record.container_running = True
        self._checkpoint(record)
        if has_image(record.task_info):
            # STAGING while the image may be pulled: STARTING comes when the container exists.
            tlog.info("task_staging", reason="its container image may need pulling")
        else:
            self._set_state(record, mensa_pb2.TASK_STARTING)
        self._out.append(LaunchContainer(framework_id, task_id, spec))
        tlog.info("task_launching", sandbox=spec.sandbox)

    def _launch_spec(
        self, record: TaskRecord, agent_id: str, container_id: str | None = None
    ) -> LaunchSpec:
        """Returns what to launch for a task (``launch_specs.launch_spec``)."""
        return launch_spec(self.config, record, agent_id, container_id, self.uuid_factory)

    def _on_kill_task(self, message: internal_pb2.KillTask) -> None:
        framework_id, task_id = message.framework_id.value, message.task_id.value
        tlog = task_log(framework_id, task_id)
        record = self.tasks.get((framework_id, task_id))
        if record is None:
            if not framework_id or not task_id:
                tlog.warning("kill_task_ignored", reason="missing framework id or task id")
                return
            tlog.warning("kill_of_unknown_task")
            self.killed_unknown[(framework_id, task_id)] = None
            while len(self.killed_unknown) > COMPLETED_TASKS_KEPT:
                self.killed_unknown.popitem(last=False)
            self._emit(
                framework_id,
                task_id,
                mensa_pb2.TASK_LOST,
                None,
                "task unknown to the agent",
                TaskStatus.REASON_TASK_UNKNOWN,
            )
        elif record.terminal or record.kill_requested:
            tlog.info("duplicate_kill_ignored", state=state_name(record.state))
        elif message.kill_policy.HasField("grace_period"):
            self._kill(record, duration_seconds(message.kill_policy.grace_period))
        else:
            self._kill(record, record.grace_seconds(self.config.kill_grace_seconds))

    def _kill(self, record: TaskRecord, grace: float | None = None, message: str = "") -> None:
        """Kills a task's container (once); emits TASK_KILLING when the framework wants it."""
        if record.kill_requested or not record.container_running:
            return
        if grace is None:
            grace = record.grace_seconds(self.config.kill_grace_seconds)
        record.kill_requested = True
        if self.config.checkpoint:
            # Before the kill: a restarted agent finishes a kill it finds recorded.
            self._out.append(CheckpointKill(record.framework_id, record.task_id, grace,
                                            self._wall))
        checker = self.health.get((record.framework_id, record.task_id))
        if checker is not None:
            checker.stop()
        capable = any(c.type == KILLING_CAPABILITY for c in record.framework.capabilities)
        if capable and record.state in (mensa_pb2.TASK_STARTING, mensa_pb2.TASK_RUNNING):
            self._set_state(
                record, mensa_pb2.TASK_KILLING, message, healthy=health_handling.health_kill(self, record)
            )
        self._out.append(KillContainer(record.framework_id, record.task_id, grace))
        task_log(record.framework_id, record.task_id).info("task_killing", grace_seconds=grace)

    def _on_ack(self, message: internal_pb2.StatusUpdateAcknowledgement) -> None:
        key = (message.framework_id.value, message.task_id.value)
        result = self.updates.acknowledge(*key, message.uuid, self._now)
        task_log(*key).debug("status_update_acknowledgement_received", result=result.value)
        if result is Ack.ACCEPTED:
            if self.config.checkpoint and key in self.tasks:
                self._out.append(CheckpointAck(*key, message.uuid))
            self._maybe_complete(key)

    def _silence_and_kill(self, records: list[TaskRecord]) -> None:
        """Kills tasks whose updates are no longer wanted (framework or agent shut down)."""
        for record in records:
            record.silent = True
            self._checkpoint(record)
            self._kill(record)
        for record in records:
            self._maybe_complete((record.framework_id, record.task_id))

    def _on_shutdown_framework(self, framework_id: str) -> None:
        discarded = self.updates.discard_framework(framework_id)
        records = [r for r in self.tasks.values() if r.framework_id == framework_id]
        self._silence_and_kill(records)
        log.info(
            "framework_shut_down",
            framework_id=framework_id,
            tasks=len(records),
            discarded_updates=discarded,
        )

    def _on_shutdown_agent(self, reason: str) -> None:
        discarded = self.updates.discard_all()
        records = list(self.tasks.values())
        self._silence_and_kill(records)
        log.warning(
            "agent_shut_down_by_master",
            agent_id=self.agent_id,
            message=reason,
            tasks=len(records),
            discarded_updates=discarded,
        )
        self.link.forget()
        if not self.stopping:
            leader_handling.register(self)

    def _on_stop(self) -> None:
        self.stopping = True
        running = [r for r in self.tasks.values() if r.container_running]
        for record in running:
            self._kill(record)
        log.info("agent_stopping", tasks_killed=len(running))

    # -- checkpoint and recovery ---------------------------------------------------------------

    def _checkpoint(self, record: TaskRecord) -> None:
        if self.config.checkpoint:
            self._out.append(CheckpointTask(record.to_checkpoint()))

    # -- the leading master --------------------------------------------------------------------

    # -- container events ----------------------------------------------------------------------

    def _running_record(self, framework_id: str, task_id: str, what: str) -> TaskRecord | None:
        record = self.tasks.get((framework_id, task_id))
        if record is None or not record.container_running:
            task_log(framework_id, task_id).warning(f"{what}_ignored", reason="no such container")
            return None
        return record

    def _on_container_started(self, event: ContainerStarted) -> None:
        record = self._running_record(event.framework_id, event.task_id, "container_start")
        if record is None:
            return
        record.pid = event.pid
        record.containerizer = event.containerizer
        record.waiter_pid = event.waiter_pid
        record.pid_start = event.pid_start
        if self.config.checkpoint:
            self._out.append(CheckpointStarted(event.framework_id, event.task_id, event.pid,
                                               event.waiter_pid, event.containerizer,
                                               event.pid_start))
        task_log(event.framework_id, event.task_id).info("task_started", pid=event.pid)
        if not record.kill_requested:
            if record.state == mensa_pb2.TASK_STAGING:
                self._set_state(record, mensa_pb2.TASK_STARTING)
            self._set_state(record, mensa_pb2.TASK_RUNNING)
            checker = self.health.get((event.framework_id, event.task_id))
            if checker is not None:
                checker.start(self._now)

    def _on_container_exited(self, event: ContainerExited) -> None:
        record = self._running_record(event.framework_id, event.task_id, "container_exit")
        if record is None:
            return
        record.container_running = False
        text = termination_text(event)
        reason: mensa_pb2.TaskStatus.Reason | None = None
        checker = self.health.get((event.framework_id, event.task_id))
        if checker is not None:
            checker.stop()
        if record.kill_requested or event.killed_by_us:
            state = mensa_pb2.TASK_KILLED
            if event.exit_code is None and event.signal is None:
                reason = TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH
            if checker is not None and checker.kill_message:
                text = checker.kill_message
        elif event.reason is not None:
            state, reason, text = mensa_pb2.TASK_FAILED, event.reason, event.message or text
        elif event.exit_code == 0:
            state = mensa_pb2.TASK_FINISHED
        else:
            state = mensa_pb2.TASK_FAILED
        self._set_state(record, state, text, reason, healthy=health_handling.health_kill(self, record))
        self._maybe_complete((event.framework_id, event.task_id))

    def _on_launch_failed(self, event: LaunchFailed) -> None:
        record = self._running_record(event.framework_id, event.task_id, "launch_failure")
        if record is None:
            return
        record.container_running = False
        task_log(event.framework_id, event.task_id).warning("task_launch_failed", error=event.message)
        if record.kill_requested:
            state, reason = mensa_pb2.TASK_KILLED, TaskStatus.REASON_TASK_KILLED_DURING_LAUNCH
        elif event.invalid:
            state, reason = mensa_pb2.TASK_ERROR, TaskStatus.REASON_TASK_INVALID
        else:
            state, reason = mensa_pb2.TASK_FAILED, TaskStatus.REASON_CONTAINER_LAUNCH_FAILED
        self._set_state(record, state, event.message, reason)
        self._maybe_complete((event.framework_id, event.task_id))

    # -- health checks -------------------------------------------------------------------------

    # -- status updates ------------------------------------------------------------------------

    def _set_state(
        self, record: TaskRecord, state: mensa_pb2.TaskState, message: str = "",
        reason: mensa_pb2.TaskStatus.Reason | None = None, healthy: bool | None = None
    ) -> None:
        record.state = state
        record.latest_status = self._emit(
            record.framework_id, record.task_id, state, record, message, reason, healthy=healthy
        )
        task_log(record.framework_id, record.task_id).info(
            "task_state_changed", state=state_name(state), message=message or None
        )

    def _emit(
        self,
        framework_id: str,
        task_id: str,
        state: mensa_pb2.TaskState,
        record: TaskRecord | None,
        message: str = "",
        reason: mensa_pb2.TaskStatus.Reason | None = None,
        healthy: bool | None = None,
    ) -> mensa_pb2.TaskStatus:
        """Builds a status update; queues it for delivery unless the task is silent."""
        status = TaskStatus(
            state=state,
            source=TaskStatus.SOURCE_EXECUTOR,
            timestamp=self._wall,
            uuid=self.uuid_factory(),
        )
        status.task_id.value = task_id
        status.executor_id.value = task_id
        if self.agent_id:
            status.agent_id.value = self.agent_id
        if message:
            status.message = message
        if reason is not None:
            status.reason = reason
        if healthy is not None:
            status.healthy = healthy
        if record is None or not record.silent:
            if self.config.checkpoint and record is not None:
                self._out.append(CheckpointUpdate(framework_id, task_id, status))
            self.updates.enqueue(framework_id, task_id, status, self._now)
        return status

    def _send_due_updates(self) -> None:
        for pending in self.updates.due(self._now):
            record = self.tasks.get((pending.framework_id, pending.task_id))
            latest = record.state if record else pending.status.state
            update = internal_pb2.StatusUpdate(status=pending.status, latest_state=latest)
            update.framework_id.value = pending.framework_id
            self._out.append(SendToMaster(internal_pb2.Envelope(status_update=update)))
            if pending.attempts > 1:
                task_log(pending.framework_id, pending.task_id).info(
                    "status_update_retried",
                    attempt=pending.attempts,
                    state=state_name(pending.status.state),
                )

    def _maybe_complete(self, key: TaskKey) -> None:
        """Moves a task to ``completed`` once it is terminal, its container is gone and every
        update of it is acknowledged (or discarded)."""
        record = self.tasks.get(key)
        if record is None or not record.terminal or record.container_running:
            return
        if self.updates.has_pending(*key):
            return
        del self.tasks[key]
        self.health.pop(key, None)
        self.completed.append(record)
        if self.config.checkpoint:
            self._out.append(RemoveCheckpoint(*key))
        task_log(*key).info("task_completed", state=state_name(record.state))
