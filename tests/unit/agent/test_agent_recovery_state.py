"""AgentState with checkpointing: the checkpoint commands it emits, recovery from a checkpoint,
jittered re-registration on a leader change and NOT_LEADER redirects (no I/O)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from mensa.agent.checkpoint_records import (
    RecoveredAgent,
    RecoveredTask,
    TaskCheckpoint,
    replay_updates,
    task_dir,
    update_record,
)
from mensa.agent.events import (
    CheckpointAck,
    CheckpointAgent,
    CheckpointStarted,
    CheckpointUpdate,
    ContainerExited,
    ContainerRecovered,
    ContainerStarted,
    KillContainer,
    LaunchContainer,
    LeaderChanged,
    MasterMessage,
    MasterReconnected,
    RecoverContainer,
    Recovered,
    RemoveCheckpoint,
    SendToMaster,
    SwitchMaster,
    Tick,
)
from mensa.agent.state import AgentConfig, AgentState
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources

FW = "fw-1"
AGENT = "agent-1"
WORK = "/srv/mensa"


def new_state(**config: object) -> AgentState:
    counter = itertools.count(1)
    defaults: dict[str, object] = {
        "work_dir": WORK, "hostname": "h1", "checkpoint": True,
        "resources": Resources.parse("cpus:4;mem:1024").to_proto(),
    }
    defaults.update(config)
    return AgentState(AgentConfig(**defaults),  # type: ignore[arg-type]
                      uuid_factory=lambda: next(counter).to_bytes(16, "big"))


def master(state: AgentState, now: float, **message: object) -> list[object]:
    return list(state.handle(MasterMessage(internal_pb2.Envelope(**message)), now))


def registered_reply() -> internal_pb2.AgentRegistered:
    reply = internal_pb2.AgentRegistered(ping_timeout_seconds=10.0)
    reply.agent_id.value = AGENT
    return reply


def register(state: AgentState, now: float = 0.0) -> list[object]:
    state.handle(Tick(), now)
    return master(state, now, agent_registered=registered_reply())


def run_task(state: AgentState, now: float, task_id: str = "t1") -> list[object]:
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    info.command.value = "sleep 100"
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = FW
    return master(state, now, run_task=internal_pb2.RunTask(framework=framework, task=info))


def updates(commands: Iterable[object]) -> list[internal_pb2.StatusUpdate]:
    return [c.envelope.status_update for c in commands
            if isinstance(c, SendToMaster) and c.envelope.HasField("status_update")]


def registrations(commands: Iterable[object]) -> list[internal_pb2.RegisterAgent]:
    return [c.envelope.register_agent for c in commands
            if isinstance(c, SendToMaster) and c.envelope.HasField("register_agent")]


def ack(state: AgentState, now: float, update: internal_pb2.StatusUpdate) -> list[object]:
    message = internal_pb2.StatusUpdateAcknowledgement(uuid=update.status.uuid)
    message.framework_id.value = FW
    message.task_id.value = update.status.task_id.value
    return master(state, now, status_update_acknowledgement=message)


# -- checkpoint commands -----------------------------------------------------------------------


def test_registration_checkpoints_the_agent_id_once() -> None:
    state = new_state()
    assert register(state) == [CheckpointAgent(AGENT)]
    assert master(state, 1.0, agent_registered=registered_reply()) == []


def test_a_task_is_checkpointed_before_its_launch_and_updates_before_they_are_sent() -> None:
    state = new_state()
    register(state)
    commands = run_task(state, 1.0)
    kinds = [type(c).__name__ for c in commands]
    assert kinds == ["CheckpointTask", "CheckpointUpdate", "LaunchContainer", "SendToMaster"]
    record = commands[0].record  # type: ignore[attr-defined]
    launch = commands[2]
    assert isinstance(launch, LaunchContainer)
    assert record.container_id == launch.spec.container_id and record.sandbox == launch.spec.sandbox
    assert launch.spec.runtime_dir == task_dir(WORK, FW, "t1")
    starting = commands[1]
    assert isinstance(starting, CheckpointUpdate)
    assert starting.status.state == mensa_pb2.TASK_STARTING
    assert updates(commands)[0].status.uuid == starting.status.uuid


def test_start_ack_and_completion_are_checkpointed() -> None:
    state = new_state()
    register(state)
    (starting,) = updates(run_task(state, 1.0))
    assert ack(state, 1.1, starting) == [CheckpointAck(FW, "t1", starting.status.uuid)]
    started = state.handle(ContainerStarted(FW, "t1", pid=42, containerizer="process",
                                            waiter_pid=41), 1.2)
    assert started[0] == CheckpointStarted(FW, "t1", 42, 41, "process")  # task.json not rewritten
    (running,) = updates(started)
    ack(state, 1.3, running)
    (finished,) = updates(state.handle(ContainerExited(FW, "t1", exit_code=0), 2.0))
    assert ack(state, 2.1, finished) == [CheckpointAck(FW, "t1", finished.status.uuid),
                                        RemoveCheckpoint(FW, "t1")]


def test_without_checkpointing_no_checkpoint_commands() -> None:
    state = new_state(checkpoint=False)
    register(state)
    commands = run_task(state, 1.0)
    assert [type(c).__name__ for c in commands] == ["LaunchContainer", "SendToMaster"]
    assert commands[0].spec.runtime_dir == ""  # type: ignore[attr-defined]


# -- recovery ----------------------------------------------------------------------------------


def status(task_id: str, state: mensa_pb2.TaskState, uuid: bytes) -> mensa_pb2.TaskStatus:
    s = mensa_pb2.TaskStatus(state=state, uuid=uuid)
    s.task_id.value = task_id
    return s


def checkpoint_of(task_id: str, **kw: object) -> TaskCheckpoint:
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = FW
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    info.command.value = "sleep 100"
    info.resources.extend(Resources.parse("cpus:1;mem:32").to_proto())
    return TaskCheckpoint(framework, info, **kw)  # type: ignore[arg-type]


def test_recovery_rebuilds_tasks_updates_and_asks_for_the_containers() -> None:
    state = new_state()
    running = status("t1", mensa_pb2.TASK_RUNNING, b"u2")
    recovered = RecoveredAgent(AGENT, [
        RecoveredTask(checkpoint_of("t1", container_id="c1", containerizer="process", pid=42,
                                    waiter_pid=41, sandbox="/srv/mensa/sb1"),
                      pending=[running], latest=running),
        RecoveredTask(checkpoint_of("t2", container_id="c2", containerizer="docker",
                                    sandbox="/srv/mensa/sb2"),
                      pending=[], latest=status("t2", mensa_pb2.TASK_RUNNING, b"u3")),
    ])
    commands = state.handle(Recovered(recovered), 0.0)
    finds = [c for c in commands if isinstance(c, RecoverContainer)]
    assert [(c.task_id, c.containerizer, c.pid, c.waiter_pid) for c in finds] == [
        ("t1", "process", 42, 41), ("t2", "docker", None, None)]
    assert finds[0].spec.container_id == "c1" and finds[0].spec.sandbox == "/srv/mensa/sb1"
    assert finds[0].spec.runtime_dir == task_dir(WORK, FW, "t1")
    assert state.agent_id == AGENT
    assert state.tasks[(FW, "t1")].state == mensa_pb2.TASK_RUNNING
    # Re-registers with the same id and both tasks, then resends the unacknowledged update.
    (registration,) = registrations(state.handle(Tick(), 0.1))
    assert registration.agent_info.id.value == AGENT
    assert sorted(t.task_id.value for t in registration.tasks) == ["t1", "t2"]
    (resent,) = updates(master(state, 0.2, agent_registered=registered_reply()))
    assert resent.status.uuid == b"u2"
    # The reattached task is tracked: a kill reaches its container.
    assert state.handle(ContainerRecovered(FW, "t1", pid=42), 0.4) == []
    kill = internal_pb2.KillTask()
    kill.framework_id.value, kill.task_id.value = FW, "t1"
    assert any(isinstance(c, KillContainer) for c in master(state, 0.5, kill_task=kill))


def test_a_task_that_ended_while_the_agent_was_down_reports_its_exit_code() -> None:
    state = new_state()
    running = status("t1", mensa_pb2.TASK_RUNNING, b"u2")
    state.handle(Recovered(RecoveredAgent(AGENT, [RecoveredTask(
        checkpoint_of("t1", container_id="c1", pid=42), [], running)])), 0.0)
    register(state, 0.1)
    commands = state.handle(ContainerExited(FW, "t1", exit_code=3), 0.2)
    (failed,) = updates(commands)
    assert failed.status.state == mensa_pb2.TASK_FAILED
    assert failed.status.message == "Command exited with status 3"
    assert any(isinstance(c, CheckpointUpdate) for c in commands)


def test_a_starting_task_found_running_becomes_running() -> None:
    state = new_state()
    starting = status("t1", mensa_pb2.TASK_STARTING, b"u1")
    state.handle(Recovered(RecoveredAgent(AGENT, [RecoveredTask(
        checkpoint_of("t1", container_id="c1", pid=42), [], starting)])), 0.0)
    register(state, 0.1)
    (running,) = updates(state.handle(ContainerRecovered(FW, "t1", pid=42), 0.2))
    assert running.status.state == mensa_pb2.TASK_RUNNING


def test_a_terminal_task_only_waits_for_its_acknowledgement() -> None:
    state = new_state()
    finished = status("t1", mensa_pb2.TASK_FINISHED, b"u9")
    commands = state.handle(Recovered(RecoveredAgent(AGENT, [RecoveredTask(
        checkpoint_of("t1", container_id="c1"), [finished], finished)])), 0.0)
    assert not any(isinstance(c, RecoverContainer) for c in commands)
    state.handle(Tick(), 0.1)
    (resent,) = updates(master(state, 0.2, agent_registered=registered_reply()))
    assert resent.status.uuid == b"u9"
    assert RemoveCheckpoint(FW, "t1") in ack(state, 0.3, resent)
    assert not state.tasks


def test_a_kill_under_way_is_finished_after_recovery() -> None:
    state = new_state()
    killing = status("t1", mensa_pb2.TASK_KILLING, b"u3")
    commands = state.handle(Recovered(RecoveredAgent(AGENT, [RecoveredTask(
        checkpoint_of("t1", container_id="c1", pid=42), [], killing)])), 0.0)
    assert [type(c).__name__ for c in commands] == [
        "RecoverContainer", "CheckpointKill", "KillContainer"]


def test_update_log_replay_keeps_unacknowledged_updates_in_order_and_ignores_a_torn_end() -> None:
    from mensa.agent.checkpoint_records import ack_record

    a, b, c = (status("t1", s, u) for s, u in (
        (mensa_pb2.TASK_STARTING, b"a"), (mensa_pb2.TASK_RUNNING, b"b"),
        (mensa_pb2.TASK_FINISHED, b"c")))
    log = update_record(a) + update_record(b) + ack_record(b"a") + update_record(c)
    pending, latest, torn = replay_updates(log)
    assert [s.uuid for s in pending] == [b"b", b"c"] and latest == c and not torn
    pending, latest, torn = replay_updates(log[:-3])
    assert [s.uuid for s in pending] == [b"b"] and latest == b and torn


# -- following the leader ----------------------------------------------------------------------


def leader(endpoint: str = "tcp://10.0.0.2:5050") -> mensa_pb2.MasterInfo:
    return mensa_pb2.MasterInfo(id="m2", zmq_endpoint=endpoint)


def test_first_leader_registers_at_once_a_new_leader_after_a_jittered_delay() -> None:
    state = new_state(registration_backoff=2.0)
    state.handle(LeaderChanged(leader("tcp://10.0.0.1:5050"), jitter=0.9), 0.0)
    assert len(registrations(state.handle(Tick(), 0.0))) == 1
    master(state, 0.1, agent_registered=registered_reply())
    state.handle(LeaderChanged(leader(), jitter=0.25), 1.0)  # waits 0.25 * 2.0 s
    assert not state.registered
    assert registrations(state.handle(Tick(), 1.4)) == []
    assert registrations(state.handle(MasterReconnected(), 1.45)) == []  # not even on connect
    (again,) = registrations(state.handle(Tick(), 1.5))
    assert again.agent_info.id.value == AGENT


def test_no_leader_means_no_registration_and_tasks_and_updates_are_kept() -> None:
    state = new_state()
    register(state)
    run_task(state, 1.0)
    state.handle(LeaderChanged(None), 2.0)
    assert registrations(state.handle(Tick(), 10.0)) == []
    assert updates(state.handle(Tick(), 11.0)) == []
    assert (FW, "t1") in state.tasks and len(state.updates) == 1
    state.handle(LeaderChanged(leader(), jitter=0.0), 12.0)
    assert len(registrations(state.handle(Tick(), 12.0))) == 1
    assert len(updates(master(state, 12.1, agent_registered=registered_reply()))) == 1


def test_not_leader_with_a_leader_asks_to_switch_without_it_just_unregisters() -> None:
    state = new_state()
    register(state)
    error = internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, message="not leading")
    error.leader.CopyFrom(leader())
    assert master(state, 1.0, error=error) == [SwitchMaster(leader())]
    assert not state.registered
    register(state, 2.0)
    bare = internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, message="in doubt")
    assert master(state, 3.0, error=bare) == []
    assert not state.registered


def test_one_task_failing_to_recover_fails_it_and_the_others_are_still_recovered() -> None:
    state = new_state()
    running = [status(t, mensa_pb2.TASK_RUNNING, b"u" + t.encode()) for t in ("t1", "t2")]
    real_launch_spec = state._launch_spec

    def broken_for_t1(record, agent_id, container_id=None):  # type: ignore[no-untyped-def]
        if record.task_id == "t1":
            raise RuntimeError("a bug")
        return real_launch_spec(record, agent_id, container_id)

    state._launch_spec = broken_for_t1  # type: ignore[method-assign]
    commands = state.handle(Recovered(RecoveredAgent(AGENT, [
        RecoveredTask(checkpoint_of(t, container_id="c" + t, pid=42), [], r)
        for t, r in zip(("t1", "t2"), running, strict=True)])), 0.0)
    assert [c.task_id for c in commands if isinstance(c, RecoverContainer)] == ["t2"]
    failed = state.tasks[(FW, "t1")]
    assert failed.state == mensa_pb2.TASK_FAILED and not failed.container_running
    assert failed.latest_status is not None
    assert failed.latest_status.reason == mensa_pb2.TaskStatus.REASON_AGENT_RESTARTED
    assert "a bug" in failed.latest_status.message
    sent = updates(register(state, 0.1))
    assert [(u.status.task_id.value, u.status.state) for u in sent] == [
        ("t1", mensa_pb2.TASK_FAILED)]
    assert RemoveCheckpoint(FW, "t1") in ack(state, 0.2, sent[0])


def test_not_leader_answers_never_push_the_next_registration_past_about_a_second() -> None:
    state = new_state(registration_backoff=0.5, registration_backoff_max=5.0)
    state.handle(LeaderChanged(leader("tcp://10.0.0.1:5050"), jitter=0.3), 0.0)
    bare = internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, message="taking over")
    sent: list[float] = []
    for step in range(101):  # ten seconds of ticks; every attempt is answered NOT_LEADER
        now = step / 10
        if registrations(state.handle(Tick(), now)):
            sent.append(now)
            master(state, now, error=bare)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(sent)]
    assert len(sent) >= 9 and max(gaps) <= 0.5 * 1.3 + 0.1, gaps


def test_a_kill_is_checkpointed_before_it_is_carried_out() -> None:
    from mensa.agent.events import CheckpointKill

    state = new_state()
    register(state)
    run_task(state, 1.0)
    kill = internal_pb2.KillTask()
    kill.framework_id.value, kill.task_id.value = FW, "t1"
    kill.kill_policy.grace_period.nanoseconds = 7 * 10**9
    commands = list(state.handle(MasterMessage(internal_pb2.Envelope(kill_task=kill)), 2.0, 1000.0))
    kinds = [type(c).__name__ for c in commands]
    assert CheckpointKill(FW, "t1", 7.0, 1000.0) in commands
    assert kinds.index("CheckpointKill") < kinds.index("KillContainer")


def test_a_recorded_kill_is_resumed_with_what_is_left_of_its_grace() -> None:
    state = new_state()
    running = status("t1", mensa_pb2.TASK_RUNNING, b"u1")  # not KILLING: no capability
    commands = state.handle(Recovered(RecoveredAgent(AGENT, [RecoveredTask(
        checkpoint_of("t1", container_id="c1", pid=42), [], running,
        kill=(10.0, 1000.0))])), 0.0, 1004.0)
    kills = [c for c in commands if isinstance(c, KillContainer)]
    assert kills == [KillContainer(FW, "t1", 6.0)]


def test_the_kill_record_round_trips_through_the_log() -> None:
    from mensa.agent.checkpoint_records import kill_record, last_kill

    log = update_record(status("t1", mensa_pb2.TASK_RUNNING, b"a")) + kill_record(3.0, 50.0)
    assert last_kill(log) == (3.0, 50.0) and last_kill(log[:-2]) is None
    pending, _latest, torn = replay_updates(log)
    assert [s.uuid for s in pending] == [b"a"] and not torn
