"""What ``mensa app`` and ``mensa deployments`` show, as pure functions of the service framework's
Marathon-shaped documents: instance counts, progress lines, tables of apps, tasks and
deployments, one app in full, error messages, and the decision when watching a change is over.

Nothing here reads the network or the clock: ``Watch.observe`` takes what the last poll of
``GET /v2/deployments`` and ``GET /v2/apps/ID`` answered, and ``now`` (any monotonic clock)::

    watch = Watch([Target("/shop/web", deployment_id, version)], started=now, timeout=600)
    verdict = watch.observe(deployments, {"/shop/web": app_or_None}, now)
    print(*verdict.lines, sep="\\n")       # only what changed since the last poll
    if verdict.done: exit(verdict.code)     # 0: deployed (and healthy); 1: verdict.reason
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mensa.deploy.rest_client import ApiError, CliError
from mensa.deploy.views import fmt_mb, fmt_number, short_state, table

# Fields of a GET /v2/apps answer that describe the app's state, not its definition.
RUNTIME_FIELDS = frozenset({
    "tasks", "tasksRunning", "tasksStaged", "tasksHealthy", "tasksUnhealthy", "deployments",
    "lastTaskFailure", "taskStats", "readinessCheckResults", "versionInfo", "version",
})


def resolve_id(raw: str, base: str = "/") -> str:
    """An app id as an absolute path: ``web`` under ``/shop`` is ``/shop/web``; ``..`` climbs."""
    parts: list[str] = [] if raw.startswith("/") else [p for p in base.split("/") if p]
    for part in raw.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def parent_of(app_id: str) -> str:
    return app_id.rsplit("/", 1)[0] or "/"


def order_for_deploy(apps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The apps of a file, ids made absolute, each after the apps of the same file it depends
    on (Marathon resolves ``dependencies`` against the app's parent group); otherwise in file
    order. A cycle keeps file order: the API refuses it with the reason."""
    todo = [{**app, "id": resolve_id(str(app["id"]))} for app in apps]
    in_file = {app["id"] for app in todo}
    needs = {app["id"]: {resolve_id(str(d), parent_of(app["id"])) for d in app.get("dependencies") or []}
             & in_file for app in todo}
    done: list[dict[str, Any]] = []
    placed: set[str] = set()
    while todo:
        ready = next((a for a in todo if needs[a["id"]] <= placed), todo[0])
        todo.remove(ready)
        done.append(ready)
        placed.add(ready["id"])
    return done


# -- counts and progress ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Counts:
    """An app's instances: ``wanted`` (its ``instances``) and its tasks by state."""

    wanted: int
    staged: int = 0
    running: int = 0
    healthy: int = 0
    unhealthy: int = 0
    has_checks: bool = False

    @property
    def reached(self) -> bool:
        """As many running as wanted, and healthy too when the app has health checks."""
        return self.running >= self.wanted and (not self.has_checks or self.healthy >= self.wanted)

    def summary(self) -> str:
        """``2/3 running, 1/3 healthy`` (healthy only with health checks; staged when some are)."""
        text = f"{self.running}/{self.wanted} running"
        if self.has_checks:
            text += f", {self.healthy}/{self.wanted} healthy"
        if self.staged:
            text += f", {self.staged} staged"
        return text


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def counts(app: dict[str, Any]) -> Counts:
    """An app document's counts: Marathon's ``tasksRunning``/``tasksHealthy``/... when given
    (``embed=apps.counts``), else counted from its ``tasks``."""
    has_checks = bool(app.get("healthChecks"))
    wanted = _int(app.get("instances"))
    if "tasksRunning" in app or "tasks" not in app:
        return Counts(wanted, _int(app.get("tasksStaged")), _int(app.get("tasksRunning")),
                      _int(app.get("tasksHealthy")), _int(app.get("tasksUnhealthy")), has_checks)
    staged = running = healthy = unhealthy = 0
    for task in app.get("tasks") or []:
        state = str(task.get("state", ""))
        if state in ("TASK_STAGING", "TASK_STARTING"):
            staged += 1
        elif state == "TASK_RUNNING":
            running += 1
            health = task_health(task, has_checks)
            healthy += health == "healthy"
            unhealthy += health == "unhealthy"
    return Counts(wanted, staged, running, healthy, unhealthy, has_checks)


def task_health(task: dict[str, Any], has_checks: bool) -> str:
    """``healthy``, ``unhealthy``, ``unknown`` (no verdict yet) or ``-`` (the app has no checks),
    from Marathon's ``healthCheckResults`` (every check alive: healthy)."""
    if not has_checks:
        return "-"
    results = task.get("healthCheckResults") or []
    if not results:
        flag = task.get("healthy")
        return "unknown" if not isinstance(flag, bool) else ("healthy" if flag else "unhealthy")
    return "healthy" if all(r.get("alive") for r in results) else "unhealthy"


def short_id(deployment_id: str) -> str:
    """A deployment id cut for progress lines: ``1f2e4a5b...``."""
    return deployment_id if len(deployment_id) <= 11 else deployment_id[:8] + "..."


def step_text(deployment: dict[str, Any], app_id: str | None = None) -> str:
    """``step 1/2: RestartApplication`` (this app's current action), or the step's actions
    with their apps (``ScaleApplication /db``) when it does nothing to ``app_id`` yet."""
    step = f"step {_int(deployment.get('currentStep'))}/{_int(deployment.get('totalSteps'))}"
    actions = deployment.get("currentActions") or []
    mine = [str(a.get("action", "")) for a in actions if a.get("app") == app_id]
    text = ", ".join(mine) or ", ".join(f"{a.get('action', '')} {a.get('app', '')}" for a in actions)
    return f"{step}: {text}" if text else step


def failure_text(failure: dict[str, Any]) -> str:
    """Marathon's ``lastTaskFailure`` in one line."""
    host = f" on {failure['host']}" if failure.get("host") else ""
    message = f": {failure['message']}" if failure.get("message") else ""
    return (f"{failure.get('state', 'failed')}{host} at {when(failure.get('timestamp'))}{message} "
            f"(task {failure.get('taskId', '?')}, version {failure.get('version', '?')})")


def when(value: Any) -> str:
    """An ISO 8601 time as ``2024-01-02 02:00:05`` (``-`` when missing)."""
    return str(value or "-").replace("T", " ")[:19]


# -- tables ------------------------------------------------------------------------------------------

def apps_table(apps: list[dict[str, Any]]) -> str:
    """``mensa app list``: one line per app, by id."""
    rows = []
    for app in sorted(apps, key=lambda a: str(a.get("id", ""))):
        count = counts(app)
        deployments = ",".join(short_id(str(d.get("id", ""))) for d in app.get("deployments") or []) or "-"
        rows.append([app.get("id", ""), count.running, count.healthy if count.has_checks else "-",
                     count.wanted, fmt_number(float(app.get("cpus", 0) or 0)),
                     fmt_mb(float(app.get("mem", 0) or 0)), when(app.get("version")), deployments])
    return table(["ID", "RUNNING", "HEALTHY", "WANTED", "CPUS", "MEM", "VERSION", "DEPLOYMENTS"], rows,
                 right=(1, 2, 3, 4, 5))


def tasks_table(tasks: list[dict[str, Any]], has_checks: bool) -> str:
    """``mensa app tasks``: one line per task, oldest first."""
    rows = []
    for task in sorted(tasks, key=lambda t: (str(t.get("stagedAt", "")), str(t.get("id", "")))):
        ports = ",".join(str(p) for p in task.get("ports") or []) or "-"
        rows.append([task.get("id", ""), task.get("host", "") or "-", ports,
                     short_state(str(task.get("state", "") or "?")), task_health(task, has_checks),
                     when(task.get("startedAt")), when(task.get("version"))])
    return table(["TASK", "HOST", "PORTS", "STATE", "HEALTH", "STARTED", "VERSION"], rows)


def deployments_table(deployments: list[dict[str, Any]]) -> str:
    """``mensa deployments``: one line per deployment under way, oldest first."""
    rows = []
    for dep in sorted(deployments, key=lambda d: (str(d.get("version", "")), str(d.get("id", "")))):
        actions = ", ".join(f"{a.get('action', '')} {a.get('app', '')}"
                            for a in dep.get("currentActions") or [])
        rows.append([dep.get("id", ""), ",".join(dep.get("affectedApps") or []) or "-",
                     f"{_int(dep.get('currentStep'))}/{_int(dep.get('totalSteps'))}", actions or "-",
                     when(dep.get("version"))])
    return table(["ID", "APPS", "STEP", "ACTIONS", "VERSION"], rows)


def definition(app: dict[str, Any]) -> dict[str, Any]:
    """The app's definition without its state: what ``mensa app deploy`` takes back."""
    return {k: v for k, v in app.items() if k not in RUNTIME_FIELDS}


def _command(app: dict[str, Any]) -> str:
    docker = ((app.get("container") or {}).get("docker") or {}).get("image")
    command = app.get("cmd") or " ".join(str(a) for a in app.get("args") or [])
    parts = [f"image {docker}"] if docker else []
    if command:
        parts.append(command)
    return "; ".join(parts) or "-"


def app_text(app: dict[str, Any], deployments: list[dict[str, Any]]) -> str:
    """``mensa app show``: the app's state, its deployments under way (``deployments`` may hold
    others: only those affecting the app are shown), last task failure, tasks, and definition."""
    app_id = str(app.get("id", ""))
    count = counts(app)
    lines = [f"App {app_id}   version {when(app.get('version'))}",
             f"  instances    {count.summary()}",
             f"  command      {_command(app)}",
             f"  resources    {fmt_number(float(app.get('cpus', 0) or 0))} cpus, "
             f"{fmt_mb(float(app.get('mem', 0) or 0))} mem, {fmt_mb(float(app.get('disk', 0) or 0))} disk"]
    mine = [d for d in deployments if app_id in (d.get("affectedApps") or [])]
    lines.append("Deployments:" if mine else "Deployments: none")
    lines += [f"  {d.get('id', '')} {step_text(d, app_id)}" for d in mine]
    failure = app.get("lastTaskFailure")
    lines.append(f"Last task failure: {failure_text(failure) if failure else 'none'}")
    tasks = app.get("tasks") or []
    lines.append("Tasks:" if tasks else "Tasks: none")
    if tasks:
        lines += ["  " + line for line in tasks_table(tasks, count.has_checks).splitlines()]
    lines.append("Definition:")
    lines += ["  " + line for line in json.dumps(definition(app), indent=2, sort_keys=True).splitlines()]
    return "\n".join(lines)


def error_text(error: CliError) -> str:
    """An error for the user: the API's message, then each ``path: reason`` of its details on a
    line of its own, and what to do about a deployment in the way (409)."""
    if not isinstance(error, ApiError):
        return str(error)
    lines = [f"{error.method} {error.path}: {error.status} {error.message}"]
    lines += [f"  {where or '/'}: {', '.join(errors)}" for where, errors in error.details]
    body = error.body if isinstance(error.body, dict) else {}
    locked = [str(d.get("id", "")) for d in body.get("deployments") or [] if isinstance(d, dict)]
    if error.status == 409 and locked:
        lines.append(f"  in the way: deployment {', '.join(locked)}; wait for it (mensa deployments) "
                     "or give --force to replace it")
    return "\n".join(lines)


# -- watching a change ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Target:
    """An app being changed by ``deployment_id`` (None: the answer named none) to ``version``
    (None: unknown)."""

    app_id: str
    deployment_id: str | None
    version: str | None = None


@dataclass(slots=True)
class Verdict:
    """What one poll says: ``lines`` to print; when ``done``, the exit ``code`` and ``reason``."""

    lines: list[str] = field(default_factory=list)
    done: bool = False
    code: int = 0
    reason: str = ""


@dataclass(slots=True)
class Watch:
    """Follows changes until every target's deployment is gone from ``/v2/deployments`` and
    its app has reached its instances (healthy ones when it has health checks). Fails when an
    app disappears, when a deployment ends with the app at another version than it was
    deploying (cancelled, rolled back, or replaced by a forced change), or after ``timeout``
    seconds. Prints a line per app when its counts or step change, and each new task failure."""

    targets: list[Target]
    started: float
    timeout: float
    shown: dict[str, str] = field(default_factory=dict)
    failures_seen: dict[str, str] = field(default_factory=dict)

    def expired(self, now: float) -> Verdict | None:
        """A failing verdict once the timeout has passed, else None."""
        if now - self.started < self.timeout:
            return None
        where = "; ".join(f"{t.app_id}: {self.shown.get(t.app_id, 'no answer yet')}" for t in self.targets)
        return Verdict(done=True, code=1, reason=f"gave up after {fmt_number(self.timeout)}s "
                       f"(the deployment goes on; mensa deployments shows it): {where}")

    def observe(self, deployments: list[dict[str, Any]], apps: dict[str, dict[str, Any] | None],
                now: float) -> Verdict:
        """Judges one poll: ``apps`` maps each target's app id to its document, or None when
        the API answered 404."""
        verdict = Verdict()
        by_id = {str(d.get("id")): d for d in deployments}
        finished: list[str] = []
        for target in self.targets:
            app = apps.get(target.app_id)
            if app is None:
                return Verdict(verdict.lines, True, 1, f"{target.app_id} no longer exists "
                               "(removed while it was being deployed)")
            self._new_failure(target, app, verdict)
            count = counts(app)
            deployment = by_id.get(target.deployment_id or "")
            phase = "" if deployment is None else (
                f" (deployment {short_id(str(target.deployment_id))} {step_text(deployment, target.app_id)})")
            status = count.summary() + phase
            if self.shown.get(target.app_id) != status:
                self.shown[target.app_id] = status
                verdict.lines.append(f"{target.app_id}: {status}")
            if deployment is not None:
                continue
            version = app.get("version")
            if target.deployment_id and target.version and version and version != target.version:
                return Verdict(verdict.lines, True, 1, f"deployment {target.deployment_id} ended without "
                               f"{target.app_id} reaching version {target.version} (cancelled, rolled back "
                               f"or replaced); it is at version {version}: {count.summary()}")
            if count.reached:
                finished.append(f"{target.app_id} {count.summary()}")
        if len(finished) == len(self.targets):
            return Verdict(verdict.lines, True, 0, "done: " + "; ".join(finished))
        late = self.expired(now)
        if late is not None:
            late.lines = verdict.lines
            return late
        return verdict

    def _new_failure(self, target: Target, app: dict[str, Any], verdict: Verdict) -> None:
        """Adds a line for a task failure newer than the change (or than the first poll, when
        the change's version is unknown)."""
        failure = app.get("lastTaskFailure")
        if not isinstance(failure, dict):
            self.failures_seen.setdefault(target.app_id, "")
            return
        key = f"{failure.get('taskId')}@{failure.get('timestamp')}"
        first = target.app_id not in self.failures_seen
        if self.failures_seen.get(target.app_id) == key:
            return
        self.failures_seen[target.app_id] = key
        stamp = str(failure.get("timestamp") or "")
        fresh = stamp >= target.version if target.version and stamp else not first
        if fresh:
            verdict.lines.append(f"{target.app_id}: task failed: {failure_text(failure)}")
