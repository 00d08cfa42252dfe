"""Health checks, Mesos HealthCheck semantics: what to probe, when, and what results mean (pure).

A task's ``TaskInfo.health_check`` becomes a ``HealthChecker`` at launch (``health_checker``
validates it and raises ``InvalidHealthCheck``; the agent then refuses the task with TASK_ERROR,
REASON_TASK_INVALID). The checker decides when a probe is due and interprets each result; the
agent's state machine turns its verdicts into status updates and kills, and the shell
(``health_probes.run_probe``) does the probing.

Timing, all in the agent's monotonic seconds (``now`` is passed in, the clock is never read):
  * ``start(now)`` when the task is RUNNING; the first check is due ``delay_seconds`` later
    (default 15), and each next one ``interval_seconds`` (10) after the previous result.
  * One check at a time: ``check_started`` marks it in flight, ``result`` ends it. A probe that
    exceeds ``timeout_seconds`` (20) is reported by the shell as a failure.
  * Failures before the first success, within ``grace_period_seconds`` (10) of ``start``, are
    ignored (not counted, not reported).
  * The health state is reported only when it changes (first result, healthy <-> unhealthy).
  * After ``consecutive_failures`` (3) failures in a row the verdict says kill; 0 means never
    kill (the task is only reported unhealthy). Once killing, the checker stops.

Usage::

    checker = health_checker(task_info.health_check, env=spec.env, sandbox=spec.sandbox)
    checker.start(now=10.0)
    if checker.due(now=25.0):
        checker.check_started(now=25.0)   # run checker.probe, later:
    verdict = checker.result(healthy=False, message="connection refused", now=25.1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from mensa.agent.sandbox import InvalidTask, command_line
from mensa.proto import mensa_pb2

HealthCheck = mensa_pb2.HealthCheck
SCHEMES = ("http", "https")


class InvalidHealthCheck(InvalidTask):
    """A task's health check cannot be run as given; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One kind of check, as the shell runs it.

    ``kind`` is "COMMAND", "HTTP" or "TCP". HTTP: GET ``scheme://127.0.0.1:port/path``, healthy
    on a status in ``statuses`` when given, else 200-399. TCP: a connection to 127.0.0.1:port
    succeeds. COMMAND: ``argv`` (``executable`` run) with ``env``, cwd ``cwd``, as ``user``,
    exits 0. Any probe lasting more than ``timeout`` seconds is a failure.
    """

    kind: str
    timeout: float
    port: int = 0
    path: str = "/"
    scheme: str = "http"
    statuses: tuple[int, ...] = ()
    executable: str = ""
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, compare=False)
    cwd: str = ""
    user: str | None = None

    def describe(self) -> str:
        """Returns a short human description, e.g. ``HTTP GET http://127.0.0.1:80/``."""
        if self.kind == "HTTP":
            return f"HTTP GET {self.scheme}://127.0.0.1:{self.port}{self.path}"
        if self.kind == "TCP":
            return f"TCP connect 127.0.0.1:{self.port}"
        return f"COMMAND {' '.join(self.argv)}"


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """When checks run and how many failures kill the task (seconds; see module docstring)."""

    delay: float = 15.0
    interval: float = 10.0
    timeout: float = 20.0
    consecutive_failures: int = 3
    grace_period: float = 10.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one result means: ``report`` a new health state (None: unchanged), ``kill`` the
    task (``kill_message`` says why), or ``ignored`` (a failure within the grace period, or a
    result nobody waited for)."""

    report: bool | None = None
    kill: bool = False
    ignored: bool = False
    kill_message: str = ""


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    """Event: a probe of the task's health check ended (``healthy`` or not, and why not)."""

    framework_id: str
    task_id: str
    healthy: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class RunHealthCheck:
    """Command: run ``probe`` for the task and report a HealthCheckResult (once)."""

    framework_id: str
    task_id: str
    probe: Probe


@dataclass(slots=True)
class HealthChecker:
    """One task's health-check schedule and verdicts; see the module docstring."""

    policy: HealthPolicy
    probe: Probe
    started_at: float | None = None
    next_due: float | None = None
    in_flight: bool = False
    stopped: bool = False
    healthy: bool | None = None  # The last reported health state (None: not yet known).
    succeeded: bool = False
    consecutive_failures: int = 0
    last_error: str = ""
    kill_message: str = ""  # Set once the checker asked for the task to be killed.

    def start(self, now: float) -> None:
        """The task is RUNNING: the first check is due after the delay (only the first call
        counts)."""
        if self.started_at is None and not self.stopped:
            self.started_at = now
            self.next_due = now + self.policy.delay

    def stop(self) -> None:
        """No more checks (the task is being killed or has ended); late results are ignored."""
        self.stopped = True
        self.next_due = None

    def due(self, now: float) -> bool:
        """True when a check should start at ``now``."""
        return (
            not self.stopped
            and not self.in_flight
            and self.next_due is not None
            and now >= self.next_due
        )

    def check_started(self, now: float) -> None:
        """A probe is now running; no other starts until its result."""
        self.in_flight = True

    def result(self, healthy: bool, message: str, now: float) -> Verdict:
        """Interprets one probe's result at ``now`` and schedules the next check."""
        if self.stopped or not self.in_flight:
            return Verdict(ignored=True)
        self.in_flight = False
        self.next_due = now + self.policy.interval
        if healthy:
            self.succeeded = True
            self.consecutive_failures = 0
            return self._report(True)
        self.last_error = message or "health check failed"
        started = self.started_at if self.started_at is not None else now
        if not self.succeeded and now - started < self.policy.grace_period:
            return Verdict(ignored=True)
        self.consecutive_failures += 1
        limit = self.policy.consecutive_failures
        if limit > 0 and self.consecutive_failures >= limit:
            self.kill_message = (
                f"task killed after {self.consecutive_failures} consecutive failed health "
                f"checks: {self.last_error}"
            )
            verdict = self._report(False)
            self.stop()
            return Verdict(report=verdict.report, kill=True, kill_message=self.kill_message)
        return self._report(False)

    def _report(self, healthy: bool) -> Verdict:
        if self.healthy is healthy:
            return Verdict()
        self.healthy = healthy
        return Verdict(report=healthy)


def health_checker(
    check: mensa_pb2.HealthCheck,
    *,
    env: Mapping[str, str],
    sandbox: str,
    user: str | None = None,
) -> HealthChecker:
    """Returns the checker for a task's HealthCheck; raises InvalidHealthCheck when it is wrong.

    ``env`` is the task's environment (a COMMAND check runs with it, plus the check command's
    own variables), ``sandbox`` its working directory. A check without ``type`` is taken as the
    one kind whose field (command, http, tcp) is set.
    """
    policy = _policy(check)
    kind = _kind(check)
    if kind == "COMMAND":
        probe = _command_probe(check.command, policy.timeout, env, sandbox, user)
    elif kind == "HTTP":
        http = check.http
        scheme = http.scheme or "http"
        if scheme not in SCHEMES:
            raise InvalidHealthCheck(f"health check scheme {scheme!r} is not http or https")
        path = http.path or "/"
        if not path.startswith("/"):
            path = "/" + path
        if any(c in path for c in "\r\n\0 "):
            raise InvalidHealthCheck("health check path contains whitespace or NUL")
        bad = [s for s in http.statuses if not 100 <= s <= 599]
        if bad:
            raise InvalidHealthCheck(f"health check statuses {bad} are not HTTP statuses")
        probe = Probe(
            "HTTP",
            policy.timeout,
            port=_port(http.port, http.HasField("port")),
            path=path,
            scheme=scheme,
            statuses=tuple(http.statuses),
        )
    else:
        probe = Probe("TCP", policy.timeout, port=_port(check.tcp.port, check.tcp.HasField("port")))
    return HealthChecker(policy, probe)


def _policy(check: mensa_pb2.HealthCheck) -> HealthPolicy:
    policy = HealthPolicy(
        delay=check.delay_seconds,
        interval=check.interval_seconds,
        timeout=check.timeout_seconds,
        consecutive_failures=check.consecutive_failures,
        grace_period=check.grace_period_seconds,
    )
    for name in ("delay", "interval", "timeout", "grace_period"):
        value = getattr(policy, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidHealthCheck(f"health check {name}_seconds must be >= 0, got {value}")
    if policy.interval <= 0 or policy.timeout <= 0:
        raise InvalidHealthCheck("health check interval_seconds and timeout_seconds must be > 0")
    return policy


def _kind(check: mensa_pb2.HealthCheck) -> str:
    if check.type in (HealthCheck.COMMAND, HealthCheck.HTTP, HealthCheck.TCP):
        kind = HealthCheck.Type.Name(check.type)
        if not check.HasField(kind.lower()):
            raise InvalidHealthCheck(f"{kind} health check has no '{kind.lower()}' field")
        return kind
    if check.type != HealthCheck.UNKNOWN:
        raise InvalidHealthCheck(f"unknown health check type {check.type}")
    present = [name for name in ("command", "http", "tcp") if check.HasField(name)]
    if len(present) != 1:
        raise InvalidHealthCheck("health check needs a type: COMMAND, HTTP or TCP")
    return present[0].upper()


def _port(port: int, present: bool) -> int:
    if not present or not 1 <= port <= 65535:
        raise InvalidHealthCheck(f"health check needs a port in 1-65535, got {port or 'none'}")
    return port


def _command_probe(
    command: mensa_pb2.CommandInfo,
    timeout: float,
    env: Mapping[str, str],
    sandbox: str,
    user: str | None,
) -> Probe:
    if not command.value:
        raise InvalidHealthCheck("health check command has no value")
    try:
        executable, argv = command_line(command)
    except InvalidTask as exc:
        raise InvalidHealthCheck(f"health check command: {exc}") from None
    check_env = dict(env)
    for var in command.environment.variables:
        if not var.name or "=" in var.name or "\0" in var.name or "\0" in var.value:
            raise InvalidHealthCheck(f"invalid health check environment variable {var.name!r}")
        check_env[var.name] = var.value
    return Probe(
        "COMMAND",
        timeout,
        executable=executable,
        argv=argv,
        env=check_env,
        cwd=sandbox,
        user=command.user or user,
    )
