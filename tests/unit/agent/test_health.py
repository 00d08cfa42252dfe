"""HealthChecker scheduling and verdicts, and HealthCheck validation (pure, no sleeps)."""

from __future__ import annotations

import pytest

from mensa.agent.health import (
    HealthChecker,
    HealthPolicy,
    InvalidHealthCheck,
    Probe,
    Verdict,
    health_checker,
)
from mensa.proto import mensa_pb2

HC = mensa_pb2.HealthCheck


def checker(**policy: float) -> HealthChecker:
    return HealthChecker(HealthPolicy(**policy), Probe("TCP", 1.0, port=80))  # type: ignore[arg-type]


def run_check(c: HealthChecker, now: float, healthy: bool, message: str = "boom") -> Verdict:
    assert c.due(now)
    c.check_started(now)
    assert not c.due(now)  # One at a time.
    return c.result(healthy, message, now)


def test_first_check_after_delay_then_every_interval_after_each_result() -> None:
    c = checker(delay=15, interval=10, grace_period=0)
    assert not c.due(100.0)  # Not started: the task is not RUNNING yet.
    c.start(100.0)
    c.start(105.0)  # Only the first start counts.
    assert not c.due(114.9)
    assert c.due(115.0)
    c.check_started(115.0)
    assert not c.due(200.0)  # In flight: nothing else starts.
    assert c.result(True, "", 116.0) == Verdict(report=True)
    assert not c.due(125.9)
    assert c.due(126.0)  # Interval counted from the result.


def test_health_reported_only_when_it_changes() -> None:
    c = checker(delay=0, interval=1, grace_period=0, consecutive_failures=5)
    c.start(0.0)
    reports = [run_check(c, float(t), h).report for t, h in enumerate([True, True, False, False, True, True])]
    assert reports == [True, None, False, None, True, None]
    assert c.healthy is True


def test_failures_within_grace_period_are_ignored_until_first_success() -> None:
    c = checker(delay=0, interval=1, grace_period=10, consecutive_failures=2)
    c.start(0.0)
    for t in range(5):
        assert run_check(c, float(t), False) == Verdict(ignored=True)
    assert c.consecutive_failures == 0 and c.healthy is None
    assert run_check(c, 5.0, True).report is True
    # After a success the grace period no longer shields failures.
    assert run_check(c, 6.0, False).report is False
    assert run_check(c, 7.0, False).kill


def test_failures_after_grace_period_count_even_without_success() -> None:
    c = checker(delay=0, interval=1, grace_period=2, consecutive_failures=3)
    c.start(0.0)
    assert run_check(c, 1.0, False).ignored
    assert run_check(c, 2.0, False) == Verdict(report=False)
    assert run_check(c, 3.0, False) == Verdict()
    verdict = run_check(c, 4.0, False, "connection refused")
    assert verdict.kill and verdict.report is None
    assert verdict.kill_message == (
        "task killed after 3 consecutive failed health checks: connection refused"
    )
    # Killing: no more checks, late results ignored.
    assert not c.due(100.0)
    assert c.result(False, "late", 100.0).ignored


def test_success_resets_the_consecutive_failure_count() -> None:
    c = checker(delay=0, interval=1, grace_period=0, consecutive_failures=2)
    c.start(0.0)
    results = [False, True, False, True, False]
    verdicts = [run_check(c, float(t), h) for t, h in enumerate(results)]
    assert not any(v.kill for v in verdicts)
    assert run_check(c, 5.0, False).kill


def test_first_result_a_failure_reports_unhealthy_and_can_kill_at_once() -> None:
    c = checker(delay=0, interval=1, grace_period=0, consecutive_failures=1)
    c.start(0.0)
    verdict = run_check(c, 0.0, False, "status 500")
    assert verdict.report is False and verdict.kill


def test_zero_consecutive_failures_never_kills() -> None:
    c = checker(delay=0, interval=1, grace_period=0, consecutive_failures=0)
    c.start(0.0)
    verdicts = [run_check(c, float(t), False) for t in range(20)]
    assert not any(v.kill for v in verdicts) and c.healthy is False


def test_stopped_checker_never_starts_and_unrequested_results_are_ignored() -> None:
    c = checker(delay=0)
    assert c.result(True, "", 0.0).ignored  # Nobody asked.
    c.stop()
    c.start(0.0)
    assert not c.due(10.0)


# -- validation ---------------------------------------------------------------------------------


def build(check: mensa_pb2.HealthCheck) -> HealthChecker:
    return health_checker(check, env={"PATH": "/bin", "A": "task"}, sandbox="/sb", user="nobody")


def test_defaults_follow_mesos() -> None:
    c = build(HC(type=HC.TCP, tcp=HC.TCPCheckInfo(port=8080)))
    assert c.policy == HealthPolicy(
        delay=15.0, interval=10.0, timeout=20.0, consecutive_failures=3, grace_period=10.0
    )
    assert c.probe == Probe("TCP", 20.0, port=8080)


def test_http_check_defaults_and_statuses() -> None:
    c = build(HC(type=HC.HTTP, http=HC.HTTPCheckInfo(port=80, path="health"), timeout_seconds=2))
    assert (c.probe.kind, c.probe.scheme, c.probe.path, c.probe.timeout) == ("HTTP", "http", "/health", 2.0)
    c = build(HC(http=HC.HTTPCheckInfo(port=443, scheme="https", statuses=[204])))  # No type.
    assert (c.probe.scheme, c.probe.statuses, c.probe.path) == ("https", (204,), "/")


def test_command_check_runs_with_task_environment_in_sandbox() -> None:
    command = mensa_pb2.CommandInfo(value="test -f ready")
    var = command.environment.variables.add()
    var.name, var.value = "A", "check"
    c = build(HC(type=HC.COMMAND, command=command))
    p = c.probe
    assert p.argv == ("/bin/sh", "-c", "test -f ready") and p.executable == "/bin/sh"
    assert p.env == {"PATH": "/bin", "A": "check"} and p.cwd == "/sb" and p.user == "nobody"


@pytest.mark.parametrize(
    ("check", "error"),
    [
        (HC(type=HC.HTTP), "HTTP health check has no 'http' field"),
        (HC(type=HC.HTTP, http=HC.HTTPCheckInfo(path="/")), "needs a port"),
        (HC(type=HC.TCP, tcp=HC.TCPCheckInfo(port=70000)), "needs a port"),
        (HC(type=HC.HTTP, http=HC.HTTPCheckInfo(port=1, scheme="ftp")), "scheme 'ftp'"),
        (HC(type=HC.HTTP, http=HC.HTTPCheckInfo(port=1, statuses=[42])), "[42]"),
        (HC(type=HC.COMMAND, command=mensa_pb2.CommandInfo()), "command has no value"),
        (HC(), "needs a type"),
        (HC(tcp=HC.TCPCheckInfo(port=1), http=HC.HTTPCheckInfo(port=1)), "needs a type"),
        (HC(type=HC.TCP, tcp=HC.TCPCheckInfo(port=1), interval_seconds=0), "> 0"),
        (HC(type=HC.TCP, tcp=HC.TCPCheckInfo(port=1), delay_seconds=-1), "delay_seconds"),
        (HC(type=HC.TCP, tcp=HC.TCPCheckInfo(port=1), timeout_seconds=float("nan")), "timeout"),
    ],
)
def test_invalid_checks_are_refused_with_a_reason(check: mensa_pb2.HealthCheck, error: str) -> None:
    with pytest.raises(InvalidHealthCheck, match=None) as exc:
        build(check)
    assert error in str(exc.value)
