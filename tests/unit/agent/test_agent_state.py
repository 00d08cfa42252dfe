"""AgentState: feed events, compare the commands (no sockets, no processes, no sleeps)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from mensa.agent.state import (
    AgentConfig,
    AgentState,
    Command,
    ContainerExited,
    ContainerStarted,
    KillContainer,
    LaunchContainer,
    LaunchFailed,
    MasterMessage,
    MasterReconnected,
    SendToMaster,
    StopRequested,
    Tick,
)
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources

TS = mensa_pb2.TaskStatus
FW = "fw-1"
AGENT = "agent-1"


class Harness:
    """An AgentState with deterministic uuids and helpers to speak as the master."""

    def __init__(self, **config: object) -> None:
        counter = itertools.count(1)
        defaults: dict[str, object] = {
            "work_dir": "/srv/mensa",
            "hostname": "host-1",
            "resources": Resources.parse("cpus:4;mem:1024;ports:[31000-31010]").to_proto(),
            "http_port": 5052,
            "path_env": "/usr/bin:/bin",
            "update_retry_min": 1.0,
            "update_retry_max": 8.0,
        }
        defaults.update(config)
        self.state = AgentState(
            AgentConfig(**defaults),
            uuid_factory=lambda: next(counter).to_bytes(16, "big"),
        )

    def handle(self, event: object, now: float, wall: float | None = None) -> list[Command]:
        return self.state.handle(event, now, wall)

    def master(self, now: float, **message: object) -> list[Command]:
        return self.handle(MasterMessage(internal_pb2.Envelope(**message)), now)

    def register(self, now: float = 0.0, ping_timeout: float = 10.0) -> list[Command]:
        commands = self.handle(Tick(), now)
        assert kinds(commands) == ["register_agent"]
        reply = internal_pb2.AgentRegistered(
            ping_interval_seconds=1.0, ping_timeout_seconds=ping_timeout
        )
        reply.agent_id.value = AGENT
        return self.master(now, agent_registered=reply)

    def run_task(
        self,
        now: float,
        task_id: str = "t1",
        framework: mensa_pb2.FrameworkInfo | None = None,
        **task: object,
    ) -> list[Command]:
        info = mensa_pb2.TaskInfo(name=f"name-{task_id}", **task)
        info.task_id.value = task_id
        if not info.HasField("command"):
            info.command.value = "echo hello"
        if framework is None:
            framework = mensa_pb2.FrameworkInfo(name="fw")
            framework.id.value = FW
        return self.master(now, run_task=internal_pb2.RunTask(framework=framework, task=info))

    def ack(self, now: float, update: internal_pb2.StatusUpdate) -> list[Command]:
        ack = internal_pb2.StatusUpdateAcknowledgement(uuid=update.status.uuid)
        ack.agent_id.value = AGENT
        ack.framework_id.value = update.framework_id.value
        ack.task_id.value = update.status.task_id.value
        return self.master(now, status_update_acknowledgement=ack)

    def kill(
        self, now: float, task_id: str = "t1", framework_id: str = FW, grace_ns: int | None = None
    ) -> list[Command]:
        kill = internal_pb2.KillTask()
        kill.framework_id.value = framework_id
        kill.task_id.value = task_id
        if grace_ns is not None:
            kill.kill_policy.grace_period.nanoseconds = grace_ns
        return self.master(now, kill_task=kill)

    def exited(self, now: float, task_id: str = "t1", **kw: object) -> list[Command]:
        return self.handle(ContainerExited(FW, task_id, **kw), now)

    def run_to_running(self, task_id: str = "t1", now: float = 1.0) -> None:
        """RunTask, start and acknowledge STARTING and RUNNING."""
        (starting,) = updates(self.run_task(now, task_id))
        self.ack(now, starting)
        (running,) = updates(self.handle(ContainerStarted(FW, task_id, pid=4242), now))
        self.ack(now, running)


def sent(commands: Iterable[Command]) -> list[internal_pb2.Envelope]:
    return [c.envelope for c in commands if isinstance(c, SendToMaster)]


def kinds(commands: Iterable[Command]) -> list[str]:
    out = []
    for c in commands:
        if isinstance(c, SendToMaster):
            out.append(str(c.envelope.WhichOneof("message")))
        else:
            out.append(type(c).__name__)
    return out


def updates(commands: Iterable[Command]) -> list[internal_pb2.StatusUpdate]:
    return [e.status_update for e in sent(commands) if e.HasField("status_update")]


def states(commands: Iterable[Command]) -> list[str]:
    return [mensa_pb2.TaskState.Name(u.status.state) for u in updates(commands)]


def kills(commands: Iterable[Command]) -> list[KillContainer]:
    return [c for c in commands if isinstance(c, KillContainer)]


def launched(commands: Iterable[Command]) -> LaunchContainer:
    (launch,) = [c for c in commands if isinstance(c, LaunchContainer)]
    return launch


def registered_harness(ping_timeout: float = 10.0, **config: object) -> Harness:
    h = Harness(**config)
    h.register(ping_timeout=ping_timeout)
    return h


# -- registration ------------------------------------------------------------------------------


def test_first_tick_registers_and_retries_with_backoff_until_registered() -> None:
    h = Harness()
    sent_at = []
    now = 0.0
    while now < 20.0:
        if kinds(h.handle(Tick(), now)) == ["register_agent"]:
            sent_at.append(now)
        now = round(now + 0.25, 2)
    # 0.5s doubling to 5s.
    assert sent_at == [0.0, 0.5, 1.5, 3.5, 7.5, 12.5, 17.5]
    reply = internal_pb2.AgentRegistered(ping_timeout_seconds=10.0)
    reply.agent_id.value = AGENT
    assert h.master(20.0, agent_registered=reply) == []
    assert h.state.registered and h.state.agent_id == AGENT
    assert h.handle(Tick(), 25.0) == []


def test_register_agent_message_describes_the_agent() -> None:
    h = Harness(
        attributes=[
            mensa_pb2.Attribute(
                name="rack", type=mensa_pb2.Value.TEXT, text=mensa_pb2.Value.Text(value="a")
            )
        ]
    )
    (envelope,) = sent(h.handle(Tick(), 0.0))
    reg = envelope.register_agent
    assert reg.agent_info.hostname == "host-1"
    assert reg.agent_info.port == 5052 and reg.http_port == 5052
    assert not reg.agent_info.HasField("id")
    assert Resources.from_proto(reg.agent_info.resources) == Resources.parse(
        "cpus:4;mem:1024;ports:[31000-31010]"
    )
    assert [a.name for a in reg.agent_info.attributes] == ["rack"]
    assert reg.version and list(reg.tasks) == []


def test_duplicate_agent_registered_is_harmless() -> None:
    h = registered_harness()
    h.run_task(1.0)
    reply = internal_pb2.AgentRegistered(ping_timeout_seconds=10.0)
    reply.agent_id.value = AGENT
    # Already registered: no re-send burst of the pending update, no registration.
    assert h.master(1.1, agent_registered=reply) == []
    assert h.state.registered


def test_ping_is_answered_with_pong() -> None:
    h = registered_harness()
    assert kinds(h.master(1.0, ping=internal_pb2.Ping())) == ["pong"]


def test_master_silence_makes_the_agent_reregister_with_its_id_and_tasks() -> None:
    h = registered_harness(ping_timeout=10.0)
    (starting,) = updates(h.run_task(1.0))
    assert "register_agent" not in kinds(h.handle(Tick(), 9.0))
    h.master(9.0, ping=internal_pb2.Ping())  # a ping keeps the master alive
    assert "register_agent" not in kinds(h.handle(Tick(), 18.0))
    commands = h.handle(Tick(), 19.5)  # 10.5s of silence
    assert kinds(commands) == ["register_agent"]
    reg = sent(commands)[0].register_agent
    assert reg.agent_info.id.value == AGENT
    (task,) = reg.tasks
    assert task.task_id.value == "t1" and task.framework_id.value == FW
    assert task.state == mensa_pb2.TASK_STARTING
    assert task.status_update_state == mensa_pb2.TASK_STARTING
    assert task.status_update_uuid == starting.status.uuid
    assert [f.id.value for f in reg.frameworks] == [FW]
    assert not h.state.registered
    assert kinds(h.handle(Tick(), 19.6)) == []
    assert kinds(h.handle(Tick(), 20.0)) == ["register_agent"]  # backoff 0.5s
    # No status updates while unregistered, even when due.
    assert kinds(h.handle(Tick(), 24.5)) == ["register_agent"]
    due_at = h.state.updates.next_due_at()
    assert due_at is not None and due_at < 24.5


def test_pending_updates_are_resent_at_once_after_reregistration() -> None:
    h = registered_harness(ping_timeout=5.0)
    (starting,) = updates(h.run_task(1.0))
    h.handle(Tick(), 6.5)  # master lost
    reply = internal_pb2.AgentRegistered(ping_timeout_seconds=5.0)
    reply.agent_id.value = AGENT
    commands = h.master(6.6, agent_registered=reply)
    assert [u.status.uuid for u in updates(commands)] == [starting.status.uuid]


def test_not_registered_error_reregisters_now() -> None:
    h = registered_harness()
    error = internal_pb2.Error(code=internal_pb2.Error.NOT_REGISTERED, message="who are you")
    commands = h.master(1.0, error=error)
    assert kinds(commands) == ["register_agent"]
    assert sent(commands)[0].register_agent.agent_info.id.value == AGENT
    # A burst of the same error does not make a burst of registrations.
    assert h.master(1.1, error=error) == []


def test_reconnection_reregisters() -> None:
    h = registered_harness()
    assert kinds(h.handle(MasterReconnected(), 1.0)) == ["register_agent"]
    assert not h.state.registered


def test_unknown_task_error_drops_nothing() -> None:
    h = registered_harness()
    (starting,) = updates(h.run_task(1.0))
    error = internal_pb2.Error(code=internal_pb2.Error.UNKNOWN_TASK, refused="status_update")
    assert h.master(1.1, error=error) == []
    assert [u.status.uuid for u in updates(h.handle(Tick(), 2.0))] == [starting.status.uuid]


def test_framework_message_is_dropped() -> None:
    h = registered_harness()
    assert h.master(1.0, framework_to_executor=internal_pb2.FrameworkToExecutor(data=b"x")) == []


def test_unexpected_message_is_ignored() -> None:
    h = registered_harness()
    assert h.master(1.0, pong=internal_pb2.Pong()) == []


# -- running tasks -----------------------------------------------------------------------------


def test_run_task_reports_starting_running_finished_in_order() -> None:
    h = registered_harness()
    commands = h.run_task(
        1.0, resources=Resources.parse("cpus:1;ports:[31005-31006,31001-31001]").to_proto()
    )
    assert kinds(commands) == ["LaunchContainer", "status_update"]
    (starting,) = updates(commands)
    assert starting.status.state == mensa_pb2.TASK_STARTING
    assert starting.latest_state == mensa_pb2.TASK_STARTING
    spec = launched(commands).spec
    assert spec.sandbox == "/srv/mensa/agents/agent-1/frameworks/fw-1/executors/t1/runs/latest"
    assert spec.argv == ("/bin/sh", "-c", "echo hello") and spec.executable == "/bin/sh"
    assert spec.env["PORT0"] == "31001" and spec.env["PORT1"] == "31005"
    assert spec.env["PORT2"] == "31006" and spec.env["PORT"] == "31001"
    assert spec.env["PORTS"] == "31001,31005,31006"
    assert spec.env["MESOS_SANDBOX"] == spec.sandbox == spec.env["MESOS_DIRECTORY"]
    assert spec.env["MESOS_TASK_ID"] == "t1" and spec.env["MESOS_FRAMEWORK_ID"] == FW
    assert spec.env["MESOS_AGENT_ID"] == AGENT and spec.env["MESOS_EXECUTOR_ID"] == "t1"
    assert spec.env["HOST"] == "host-1" and spec.env["PATH"] == "/usr/bin:/bin"

    # RUNNING waits behind the unacknowledged STARTING ...
    assert h.handle(ContainerStarted(FW, "t1", pid=99), 1.1) == []
    # ... and goes out as soon as STARTING is acknowledged.
    (running,) = updates(h.ack(1.2, starting))
    assert running.status.state == mensa_pb2.TASK_RUNNING
    assert h.state.tasks[(FW, "t1")].pid == 99

    assert h.exited(1.3, exit_code=0) == []
    (finished,) = updates(h.ack(1.4, running))
    assert finished.status.state == mensa_pb2.TASK_FINISHED
    assert finished.status.message == "Command exited with status 0"
    assert (FW, "t1") in h.state.tasks  # until its terminal update is acknowledged
    assert h.ack(1.5, finished) == []
    assert (FW, "t1") not in h.state.tasks
    assert [r.task_id for r in h.state.completed] == ["t1"]
    assert h.state.completed[0].state == mensa_pb2.TASK_FINISHED


def test_status_update_fields() -> None:
    h = registered_harness()
    commands = h.state.handle(
        MasterMessage(internal_pb2.Envelope(run_task=_run_task_message("t1"))), 1.0, 1700000000.5
    )
    (update,) = updates(commands)
    status = update.status
    assert update.framework_id.value == FW
    assert status.source == TS.SOURCE_EXECUTOR
    assert status.agent_id.value == AGENT
    assert status.executor_id.value == "t1" and status.task_id.value == "t1"
    assert status.timestamp == 1700000000.5
    assert len(status.uuid) == 16


def _run_task_message(task_id: str) -> internal_pb2.RunTask:
    msg = internal_pb2.RunTask()
    msg.framework.id.value = FW
    msg.task.task_id.value = task_id
    msg.task.command.value = "true"
    return msg


def test_unacknowledged_update_is_retried_with_backoff() -> None:
    h = registered_harness()
    (_starting,) = updates(h.run_task(0.0))
    resent = [t for t in (0.5, 1.0, 1.5, 2.0, 3.0) if updates(h.handle(Tick(), t))]
    assert resent == [1.0, 3.0]


def test_latest_state_runs_ahead_of_the_update_in_flight() -> None:
    h = registered_harness()
    h.run_task(0.0)
    h.handle(ContainerStarted(FW, "t1", pid=1), 0.1)
    h.exited(0.2, exit_code=0)
    (retry,) = updates(h.handle(Tick(), 1.0))
    assert retry.status.state == mensa_pb2.TASK_STARTING
    assert retry.latest_state == mensa_pb2.TASK_FINISHED


def test_failed_exit_code_and_foreign_signal_messages() -> None:
    h = registered_harness()
    h.run_to_running("t1")
    h.run_to_running("t2")
    (failed,) = updates(h.exited(5.0, "t1", exit_code=3))
    assert failed.status.state == mensa_pb2.TASK_FAILED
    assert failed.status.message == "Command exited with status 3"
    (signalled,) = updates(h.exited(5.0, "t2", signal=9))
    assert signalled.status.state == mensa_pb2.TASK_FAILED
    assert signalled.status.message == "Command terminated with signal SIGKILL"


def test_launch_failure_is_task_failed_with_the_error() -> None:
    h = registered_harness()
    (starting,) = updates(h.run_task(1.0))
    h.handle(LaunchFailed(FW, "t1", "failed to execute 'nope': No such file"), 1.1)
    (failed,) = updates(h.ack(1.2, starting))
    assert failed.status.state == mensa_pb2.TASK_FAILED
    assert failed.status.reason == TS.REASON_CONTAINER_LAUNCH_FAILED
    assert "No such file" in failed.status.message


def test_shell_false_command_uses_value_and_arguments() -> None:
    h = registered_harness()
    command = mensa_pb2.CommandInfo(value="/bin/echo", shell=False, arguments=["echo", "a b"])
    spec = launched(h.run_task(1.0, command=command)).spec
    assert spec.executable == "/bin/echo" and spec.argv == ("echo", "a b")
    command = mensa_pb2.CommandInfo(value="/bin/true", shell=False)
    spec = launched(h.run_task(1.0, "t2", command=command)).spec
    assert spec.argv == ("/bin/true",)


def test_command_environment_is_passed_and_wins() -> None:
    h = registered_harness()
    command = mensa_pb2.CommandInfo(value="env")
    command.environment.variables.add(name="GREETING", value="hi")
    command.environment.variables.add(name="HOST", value="override")
    spec = launched(h.run_task(1.0, command=command)).spec
    assert spec.env["GREETING"] == "hi" and spec.env["HOST"] == "override"


def test_duplicate_run_task_is_ignored() -> None:
    h = registered_harness()
    h.run_task(1.0)
    assert h.run_task(1.1) == []


@pytest.mark.parametrize("task_id", ["..", ".", "../escape", "a/b", "x\0y", "t" * 256])
def test_task_id_that_would_escape_the_sandbox_is_refused(task_id: str) -> None:
    h = registered_harness()
    commands = h.run_task(1.0, task_id)
    assert kinds(commands) == ["status_update"]  # no LaunchContainer
    (error,) = updates(commands)
    assert error.status.state == mensa_pb2.TASK_ERROR
    assert error.status.reason == TS.REASON_TASK_INVALID
    assert error.status.task_id.value == task_id
    assert h.ack(1.1, error) == []
    assert not h.state.tasks


def test_framework_id_that_would_escape_is_refused() -> None:
    h = registered_harness()
    framework = mensa_pb2.FrameworkInfo()
    framework.id.value = ".."
    commands = h.run_task(1.0, framework=framework)
    assert states(commands) == ["TASK_ERROR"]


def test_run_task_without_ids_or_before_registration_is_ignored() -> None:
    h = Harness()
    assert h.run_task(0.0) == []  # no agent id yet
    h.register()
    assert h.run_task(1.0, task_id="") == []


def test_bad_environment_variable_is_task_error() -> None:
    h = registered_harness()
    command = mensa_pb2.CommandInfo(value="true")
    command.environment.variables.add(name="A=B", value="x")
    assert states(h.run_task(1.0, command=command)) == ["TASK_ERROR"]


# -- killing -----------------------------------------------------------------------------------


def test_kill_uses_the_grace_period_of_the_kill_then_task_then_agent() -> None:
    h = registered_harness(kill_grace_seconds=3.0)
    h.run_to_running("t1")
    h.run_to_running("t2", now=2.0)
    policy = mensa_pb2.KillPolicy()
    policy.grace_period.nanoseconds = 7_000_000_000
    h.run_task(3.0, "t3", kill_policy=policy)
    assert kills(h.kill(4.0, "t1", grace_ns=2_500_000_000)) == [KillContainer(FW, "t1", 2.5)]
    assert kills(h.kill(4.0, "t2")) == [KillContainer(FW, "t2", 3.0)]
    assert kills(h.kill(4.0, "t3")) == [KillContainer(FW, "t3", 7.0)]


def test_kill_flow_reports_killed_and_repeated_kills_are_harmless() -> None:
    h = registered_harness()
    h.run_to_running("t1")
    assert h.kill(5.0) == [KillContainer(FW, "t1", 3.0)]  # no TASK_KILLING without capability
    assert h.kill(5.1) == []
    (killed,) = updates(h.exited(5.2, signal=15, killed_by_us=True))
    assert killed.status.state == mensa_pb2.TASK_KILLED
    assert killed.status.message == "Command terminated with signal SIGTERM"
    h.ack(5.3, killed)
    assert not h.state.tasks
    # A kill of the now-completed task is a kill of an unknown task.
    assert states(h.kill(6.0)) == ["TASK_LOST"]


def test_kill_with_task_killing_capability_reports_killing_first() -> None:
    h = registered_harness()
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = FW
    framework.capabilities.add(type=mensa_pb2.FrameworkInfo.Capability.TASK_KILLING_STATE)
    (starting,) = updates(h.run_task(1.0, framework=framework))
    h.ack(1.0, starting)
    (running,) = updates(h.handle(ContainerStarted(FW, "t1", pid=5), 1.1))
    h.ack(1.2, running)
    commands = h.kill(2.0)
    assert kinds(commands) == ["KillContainer", "status_update"]
    (killing,) = updates(commands)
    assert killing.status.state == mensa_pb2.TASK_KILLING
    assert h.kill(2.1) == []  # no second TASK_KILLING
    h.exited(2.5, signal=9, killed_by_us=True)
    (killed,) = updates(h.ack(2.6, killing))
    assert killed.status.state == mensa_pb2.TASK_KILLED


def test_kill_before_the_container_started_does_not_run_it() -> None:
    h = registered_harness()
    (starting,) = updates(h.run_task(1.0))
    assert h.kill(1.1) == [KillContainer(FW, "t1", 3.0)]
    # The shell did not start it and reports it ended without a code.
    h.exited(1.2, killed_by_us=True)
    (killed,) = updates(h.ack(1.3, starting))
    assert killed.status.state == mensa_pb2.TASK_KILLED
    assert killed.status.reason == TS.REASON_TASK_KILLED_DURING_LAUNCH
    # A late ContainerStarted for it would not report RUNNING.
    assert h.handle(ContainerStarted(FW, "t1", pid=3), 1.4) == []


def test_container_started_after_kill_reports_no_running() -> None:
    h = registered_harness()
    (starting,) = updates(h.run_task(1.0))
    h.ack(1.0, starting)
    h.kill(1.1)
    assert h.handle(ContainerStarted(FW, "t1", pid=3), 1.2) == []
    assert states(h.exited(1.3, signal=15, killed_by_us=True)) == ["TASK_KILLED"]


def test_kill_of_an_unknown_task_reports_lost_which_is_acknowledged_and_dropped() -> None:
    h = registered_harness()
    (lost,) = updates(h.kill(1.0, "ghost"))
    assert lost.status.state == mensa_pb2.TASK_LOST
    assert lost.status.reason == TS.REASON_TASK_UNKNOWN
    assert lost.status.message == "task unknown to the agent"
    assert h.ack(1.1, lost) == []
    assert updates(h.handle(Tick(), 5.0)) == []


def test_a_task_killed_before_its_run_task_arrived_is_never_launched() -> None:
    h = registered_harness()
    (lost,) = updates(h.kill(1.0, "late"))
    assert lost.status.state == mensa_pb2.TASK_LOST
    commands = h.run_task(1.1, "late")
    assert not [c for c in commands if isinstance(c, LaunchContainer)]
    assert ("fw-1", "late") not in h.state.tasks
    assert lost.latest_state == mensa_pb2.TASK_LOST


# -- shutdowns ---------------------------------------------------------------------------------


def test_shutdown_framework_kills_its_tasks_and_discards_its_updates() -> None:
    h = registered_harness()
    h.run_task(1.0, "t1")  # STARTING unacknowledged
    other = mensa_pb2.FrameworkInfo(name="other")
    other.id.value = "fw-2"
    (_other_update,) = updates(h.run_task(1.0, "t9", framework=other))
    shutdown = internal_pb2.ShutdownFramework()
    shutdown.framework_id.value = FW
    commands = h.master(2.0, shutdown_framework=shutdown)
    assert kills(commands) == [KillContainer(FW, "t1", 3.0)]
    assert [u.status.task_id.value for u in updates(commands)] == ["t9"]  # its retry was due
    assert [p.task_id for p in h.state.updates.pending()] == ["t9"]
    # The kill's outcome is not reported either, and the task completes.
    assert h.exited(2.5, signal=15, killed_by_us=True) == []
    assert (FW, "t1") not in h.state.tasks
    assert [u.status.task_id.value for u in updates(h.handle(Tick(), 5.0))] == ["t9"]
    assert (("fw-2", "t9")) in h.state.tasks


def test_shutdown_agent_kills_everything_forgets_its_id_and_registers_afresh() -> None:
    h = registered_harness()
    h.run_to_running("t1")
    h.run_task(2.0, "t2")
    commands = h.master(3.0, shutdown_agent=internal_pb2.ShutdownAgent(message="removed"))
    assert kinds(commands) == ["KillContainer", "KillContainer", "register_agent"]
    reg = sent(commands)[0].register_agent
    assert not reg.agent_info.HasField("id") and list(reg.tasks) == []
    assert h.state.agent_id is None and len(h.state.updates) == 0


def test_stop_requested_kills_every_running_task_and_stops_registering() -> None:
    h = registered_harness()
    h.run_to_running("t1")
    h.run_task(2.0, "t2")
    commands = h.handle(StopRequested(), 3.0)
    assert [c for c in commands if isinstance(c, KillContainer)] == [
        KillContainer(FW, "t1", 3.0),
        KillContainer(FW, "t2", 3.0),
    ]
    assert h.state.has_running_containers()
    h.exited(3.1, "t1", signal=15, killed_by_us=True)
    h.exited(3.1, "t2", signal=15, killed_by_us=True)
    assert not h.state.has_running_containers()
    assert "register_agent" not in kinds(h.handle(Tick(), 100.0))


def test_a_task_with_an_image_stays_staging_until_its_container_exists() -> None:
    h = registered_harness()
    container = mensa_pb2.ContainerInfo(type=mensa_pb2.ContainerInfo.DOCKER)
    container.docker.image = "busybox:latest"
    commands = h.run_task(1.0, "boxed", container=container)
    assert [c for c in commands if isinstance(c, LaunchContainer)]
    assert updates(commands) == []  # No STARTING while the image may be pulling.
    (starting,) = updates(h.handle(ContainerStarted(FW, "boxed", pid=7), 2.0))
    assert starting.status.state == mensa_pb2.TASK_STARTING
    assert states(h.ack(2.1, starting)) == ["TASK_RUNNING"]


def test_a_task_whose_image_cannot_be_pulled_fails_from_staging() -> None:
    h = registered_harness()
    container = mensa_pb2.ContainerInfo(type=mensa_pb2.ContainerInfo.DOCKER)
    container.docker.image = "busybox:nope"
    h.run_task(1.0, "boxed", container=container)
    failed = updates(h.handle(LaunchFailed(FW, "boxed", "image busybox:nope not found", False), 2.0))
    assert [u.status.state for u in failed] == [mensa_pb2.TASK_FAILED]
    assert "busybox:nope" in failed[0].status.message
