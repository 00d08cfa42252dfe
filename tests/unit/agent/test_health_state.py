"""AgentState with health checks: probes on ticks, health updates, kill after N failures."""

from __future__ import annotations

from collections.abc import Iterable

from test_agent_state import FW, registered_harness, updates

from mensa.agent.health import HealthCheckResult, RunHealthCheck
from mensa.agent.state import ContainerExited, ContainerStarted, KillContainer, Tick
from mensa.proto import mensa_pb2

TS = mensa_pb2.TaskStatus
HC = mensa_pb2.HealthCheck
KILLING = mensa_pb2.FrameworkInfo.Capability(type=mensa_pb2.FrameworkInfo.Capability.TASK_KILLING_STATE)


def tcp_check(**policy: float) -> mensa_pb2.HealthCheck:
    defaults: dict[str, float] = {
        "delay_seconds": 1.0,
        "interval_seconds": 1.0,
        "timeout_seconds": 0.5,
        "grace_period_seconds": 0.0,
        "consecutive_failures": 2,
    }
    defaults.update(policy)
    return HC(type=HC.TCP, tcp=HC.TCPCheckInfo(port=8080), **defaults)  # type: ignore[arg-type]


def probes(commands: Iterable[object]) -> list[RunHealthCheck]:
    return [c for c in commands if isinstance(c, RunHealthCheck)]


def running_with_check(capable: bool = False, **policy: float):  # type: ignore[no-untyped-def]
    h = registered_harness()
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = FW
    if capable:
        framework.capabilities.append(KILLING)
    (starting,) = updates(h.run_task(1.0, framework=framework, health_check=tcp_check(**policy)))
    h.ack(1.0, starting)
    (running,) = updates(h.handle(ContainerStarted(FW, "t1", pid=1), 2.0))
    h.ack(2.0, running)
    return h


def result(h, now: float, healthy: bool, message: str = "refused"):  # type: ignore[no-untyped-def]
    return h.handle(HealthCheckResult(FW, "t1", healthy, message), now)


def test_checks_start_after_delay_and_health_changes_are_reliable_updates() -> None:
    h = running_with_check()
    assert probes(h.handle(Tick(), 2.9)) == []
    (probe,) = probes(h.handle(Tick(), 3.0))
    assert (probe.framework_id, probe.task_id, probe.probe.kind, probe.probe.port) == (FW, "t1", "TCP", 8080)
    assert probes(h.handle(Tick(), 3.5)) == []  # One in flight.

    (healthy,) = updates(result(h, 3.1, True))
    assert healthy.status.state == mensa_pb2.TASK_RUNNING
    assert healthy.status.HasField("healthy") and healthy.status.healthy
    assert healthy.status.reason == TS.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
    assert h.state.task_health(FW, "t1") is True
    assert h.state.tasks[(FW, "t1")].latest_status.healthy  # type: ignore[union-attr]
    # Not acknowledged: retried like any update, same uuid.
    commands = h.handle(Tick(), 5.0)
    (again,) = updates(commands)
    assert again.status.uuid == healthy.status.uuid
    h.ack(5.0, again)

    # The next check is due an interval after the result; unchanged health: no update.
    assert probes(commands)
    assert updates(result(h, 5.0, True)) == []
    assert probes(h.handle(Tick(), 6.0))
    (unhealthy,) = updates(result(h, 6.0, False, "connection refused"))
    assert not unhealthy.status.healthy and unhealthy.status.message == "connection refused"
    assert h.state.task_health(FW, "t1") is False


def test_consecutive_failures_kill_the_task_with_its_policy_and_say_why() -> None:
    h = running_with_check(capable=True)
    kp = mensa_pb2.KillPolicy()
    kp.grace_period.nanoseconds = 2_500_000_000
    h.state.tasks[(FW, "t1")].task_info.kill_policy.CopyFrom(kp)
    assert probes(h.handle(Tick(), 3.0))
    (unhealthy,) = updates(result(h, 3.0, False, "refused 1"))
    h.ack(3.0, unhealthy)
    assert probes(h.handle(Tick(), 4.0))
    commands = result(h, 4.0, False, "refused 2")
    (kill,) = [c for c in commands if isinstance(c, KillContainer)]
    assert kill.grace_seconds == 2.5
    (killing,) = updates(commands)
    why = "task killed after 2 consecutive failed health checks: refused 2"
    assert killing.status.state == mensa_pb2.TASK_KILLING and killing.status.message == why
    assert killing.status.HasField("healthy") and not killing.status.healthy
    h.ack(4.0, killing)
    # No more checks while it dies; a late result is ignored.
    assert probes(h.handle(Tick(), 10.0)) == []
    assert result(h, 10.0, False) == []

    (killed,) = updates(h.handle(ContainerExited(FW, "t1", signal=15, killed_by_us=True), 11.0))
    assert killed.status.state == mensa_pb2.TASK_KILLED
    assert killed.status.message == why and not killed.status.healthy
    h.ack(11.0, killed)
    assert not h.state.tasks and not h.state.health


def test_kill_without_killing_capability_goes_straight_to_killed() -> None:
    h = running_with_check(consecutive_failures=1)
    assert probes(h.handle(Tick(), 3.0))
    commands = result(h, 3.0, False)
    assert [u.status.healthy for u in updates(commands)] == [False]  # The health change only.
    assert [c.grace_seconds for c in commands if isinstance(c, KillContainer)] == [3.0]


def test_grace_period_counts_from_running() -> None:
    h = running_with_check(delay_seconds=0.0, grace_period_seconds=5.0, consecutive_failures=1)
    for now in (2.0, 3.0, 4.0, 5.0, 6.0):
        assert probes(h.handle(Tick(), now))
        assert result(h, now, False) == []  # Ignored within the grace period.
    assert probes(h.handle(Tick(), 7.0))
    assert [c for c in result(h, 7.0, False) if isinstance(c, KillContainer)]


def test_task_that_ends_stops_its_checks_and_killed_by_master_is_not_health_message() -> None:
    h = running_with_check()
    assert probes(h.handle(Tick(), 3.0))
    (killed_msg,) = [c for c in h.kill(3.0) if isinstance(c, KillContainer)]
    assert killed_msg
    assert result(h, 3.1, False) == []
    (killed,) = updates(h.handle(ContainerExited(FW, "t1", signal=15, killed_by_us=True), 4.0))
    assert killed.status.message == "Command terminated with signal SIGTERM"
    assert not killed.status.HasField("healthy")


def test_no_checks_before_running_or_for_tasks_without_a_check() -> None:
    h = registered_harness()
    h.run_task(1.0, task_id="plain")
    h.handle(ContainerStarted(FW, "plain", pid=2), 1.0)
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = FW
    h.run_task(1.0, task_id="t1", framework=framework, health_check=tcp_check(delay_seconds=0))
    assert probes(h.handle(Tick(), 50.0)) == []  # t1 never reached RUNNING.
    assert h.state.task_health(FW, "plain") is None


def test_invalid_health_check_is_task_error() -> None:
    h = registered_harness()
    bad = HC(type=HC.HTTP, http=HC.HTTPCheckInfo(path="/health"))
    (error,) = updates(h.run_task(1.0, health_check=bad))
    assert error.status.state == mensa_pb2.TASK_ERROR
    assert error.status.reason == TS.REASON_TASK_INVALID
    assert "health check needs a port" in error.status.message
    assert not h.state.health
