"""Batch job specs in Metronome's JSON: parsed, validated and rendered back (pure).

``parse_job(doc)`` turns a Metronome job document into a ``JobSpec`` and ``parse_schedule(doc)``
a schedule into a ``ScheduleSpec``; both check everything at once and raise ``SpecError`` with
one (JSON-pointer path, reason) pair per problem, which ``SpecError.to_json()`` renders in
Metronome's error shape. ``job_json`` and ``schedule_json`` render specs back (they round-trip:
``parse_job(job_json(spec)) == spec``).

A job document (Metronome's field names; Mensa adds ``parallelism``, ``completions`` and
``dependencies``)::

    {"id": "nightly.report", "description": "...", "labels": {"team": "data"},
     "parallelism": 2, "completions": 10, "dependencies": [{"id": "nightly.extract"}],
     "run": {"cmd": "make report", "cpus": 0.5, "mem": 256, "disk": 0,
             "docker": {"image": "busybox"}, "env": {"MODE": "full"},
             "placement": {"constraints": [{"attribute": "rack", "operator": "LIKE", "value": "r[12]"}]},
             "maxLaunchDelay": 3600, "taskKillGracePeriodSeconds": 5,
             "restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 600}},
     "schedules": [{"id": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris"}]}

Rules: ids follow Metronome (dot-separated segments of lowercase letters, digits and inner
'-', each at most 63 characters; at most 100 characters in all so run records and task ids
stay small); a run
has ``cmd`` (a shell command) or ``args`` (an argv), or only a ``docker.image`` (its default
command); cpus > 0 (default 1), mem > 0 MB (default 128), disk >= 0 (default 0), gpus >= 0 (cpus and gpus at
most 1e6, mem and disk at most 1e12 MB; times in seconds at most 1e9);
parallelism and completions are integers from 1 to 1,000 (default 1); the job as JSON (without
its schedules) takes at most 32 KiB; restart.policy is NEVER
(default) or ON_FAILURE; placement operators are IS (alias EQ: equal), LIKE and UNLIKE (regular
expressions matching the whole value); environment values are strings (secrets are not
supported). Unknown fields are errors, as in Metronome's schema; ``artifacts``, ``volumes``,
``secrets`` and ``networks`` are accepted only empty.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mensa.frameworks.batch_fw.cron import CronSchedule
from mensa.frameworks.reading import (
    Problems,
    SpecError,
    is_text,
    read_count,
    read_number,
    read_object,
    read_string,
    read_string_map,
)

__all__ = ["Constraint", "DockerSpec", "JobSpec", "RestartSpec", "RunSpec", "ScheduleSpec", "SpecError",
           "id_error", "job_json", "parse_job", "parse_schedule", "run_spec_json", "schedule_json",
           "spec_bytes"]

ID_RE = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
MAX_SEGMENT = 63
# Bounds that keep a run's record within the store's record limit (900 KB; see runs.py): a run
# record key "<job>.<run id (19 digits)>" stays well within the store's 200 bytes, a task id
# "<job>.<run>.<index>.<attempt>" short, and a run has at most MAX_TASKS slots and a spec of at most
# MAX_SPEC_BYTES (as the store encodes JSON).
MAX_ID = 100
MAX_TASKS = 1000
MAX_SPEC_BYTES = 32 * 1024
# Upper bounds, so that resources fit a TaskInfo and derived times (now + seconds, nanoseconds of
# a grace period) stay representable.
MAX_CPUS = 1e6
MAX_GPUS = 1e6
MAX_MB = 1e12
MAX_SECONDS = 1e9

POLICIES = ("NEVER", "ON_FAILURE")
CONCURRENCY_POLICIES = ("ALLOW", "FORBID")
# Placement operators (Marathon/Metronome): IS and its alias EQ compare the whole value; LIKE
# and UNLIKE match it against a regular expression (re.fullmatch). UNLIKE also accepts an agent
# that lacks the attribute.
OPERATORS = ("IS", "EQ", "LIKE", "UNLIKE")

DEFAULT_CPUS = 1.0
DEFAULT_MEM = 128.0
DEFAULT_MAX_LAUNCH_DELAY = 3600.0
DEFAULT_STARTING_DEADLINE = 900.0

_ONLY_EMPTY = ("artifacts", "volumes", "secrets", "networks")
_JOB_FIELDS = ("id", "description", "labels", "run", "parallelism", "completions", "dependencies",
               "schedules")
_RUN_FIELDS = ("cmd", "args", "cpus", "mem", "disk", "gpus", "docker", "env", "placement",
               "maxLaunchDelay", "taskKillGracePeriodSeconds", "restart", "user", *_ONLY_EMPTY)
_SCHEDULE_FIELDS = ("id", "cron", "timezone", "startingDeadlineSeconds", "concurrencyPolicy", "enabled")


@dataclass(frozen=True, slots=True)
class Constraint:
    """A placement constraint: ``attribute`` ("hostname" or an agent attribute) ``operator``
    (IS, EQ, LIKE, UNLIKE) ``value``."""

    attribute: str
    operator: str
    value: str

    def __str__(self) -> str:
        return f"{self.attribute} {self.operator} {self.value}"


@dataclass(frozen=True, slots=True)
class RestartSpec:
    """What happens when a task fails: NEVER (the run fails) or ON_FAILURE (retried with backoff
    while ``active_deadline_seconds``, counted from the run's start, allows; None: no deadline)."""

    policy: str = "NEVER"
    active_deadline_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class DockerSpec:
    """The container image a run's tasks run in."""

    image: str
    force_pull_image: bool = False


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What each task of a run runs and needs (Metronome's ``run`` object)."""

    cmd: str | None = None
    args: tuple[str, ...] | None = None
    cpus: float = DEFAULT_CPUS
    mem: float = DEFAULT_MEM
    disk: float = 0.0
    gpus: float = 0.0
    docker: DockerSpec | None = None
    env: tuple[tuple[str, str], ...] = ()
    constraints: tuple[Constraint, ...] = ()
    max_launch_delay: float = DEFAULT_MAX_LAUNCH_DELAY  # seconds until a run must be running, or it fails
    task_kill_grace_period_seconds: float | None = None
    restart: RestartSpec = field(default_factory=RestartSpec)
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A cron schedule of a job (Metronome's schedule object)."""

    id: str
    cron: str
    timezone: str = "UTC"
    starting_deadline_seconds: float = DEFAULT_STARTING_DEADLINE
    concurrency_policy: str = "ALLOW"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job. ``schedules`` is None when the document did not mention them (an update keeps the
    job's schedules then); ``dependencies`` are the ids of the parent jobs."""

    id: str
    run: RunSpec
    description: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    parallelism: int = 1
    completions: int = 1
    dependencies: tuple[str, ...] = ()
    schedules: tuple[ScheduleSpec, ...] | None = None


# -- parsing ---------------------------------------------------------------------------------------


def id_error(value: Any) -> str | None:
    """Returns why ``value`` is not a valid job or schedule id (Metronome's rule), or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_ID:
        return f"must be at most {MAX_ID} characters long"
    if not ID_RE.match(value):
        return ("must be dot-separated segments of lowercase letters, digits and '-' "
                "(not at a segment's start or end)")
    if any(len(segment) > MAX_SEGMENT for segment in value.split(".")):
        return f"each dot-separated segment must be at most {MAX_SEGMENT} characters long"
    return None


def _restart(value: Any, errors: Problems) -> RestartSpec:
    path = "/run/restart"
    if value is None:
        return RestartSpec()
    doc = read_object(value, path, errors, ("policy", "activeDeadlineSeconds"))
    if doc is None:
        return RestartSpec()
    policy = doc.get("policy", "NEVER")
    if policy not in POLICIES:
        errors.add(f"{path}/policy", f"must be one of {', '.join(POLICIES)}")
        policy = "NEVER"
    deadline = read_number(doc, "activeDeadlineSeconds", path, errors, None, minimum=0, strict=True,
                           maximum=MAX_SECONDS)
    return RestartSpec(policy, deadline)


def _constraints(value: Any, errors: Problems) -> tuple[Constraint, ...]:
    path = "/run/placement"
    if value is None:
        return ()
    doc = read_object(value, path, errors, ("constraints",))
    if doc is None:
        return ()
    items = doc.get("constraints") or []
    if not isinstance(items, list):
        errors.add(f"{path}/constraints", "must be a list")
        return ()
    out: list[Constraint] = []
    for i, item in enumerate(items):
        at = f"{path}/constraints/{i}"
        c = read_object(item, at, errors, ("attribute", "operator", "value"))
        if c is None:
            continue
        attribute = read_string(c, "attribute", at, errors, required=True)
        operator = read_string(c, "operator", at, errors, required=True)
        value_ = read_string(c, "value", at, errors, required=True)
        if operator is not None and operator.upper() not in OPERATORS:
            errors.add(f"{at}/operator", f"must be one of {', '.join(OPERATORS)}")
            continue
        if operator is not None and value_ is not None and operator.upper() in ("LIKE", "UNLIKE"):
            try:
                re.compile(value_)
            except (re.error, OverflowError, RecursionError) as exc:
                errors.add(f"{at}/value", f"is not a valid regular expression: {exc}")
                continue
        if attribute is not None and operator is not None and value_ is not None:
            out.append(Constraint(attribute, operator.upper(), value_))
    return tuple(out)


def _docker(value: Any, errors: Problems) -> DockerSpec | None:
    path = "/run/docker"
    if value is None:
        return None
    doc = read_object(value, path, errors, ("image", "forcePullImage", "privileged", "parameters"))
    if doc is None:
        return None
    if doc.get("privileged"):
        errors.add(f"{path}/privileged", "privileged containers are not supported")
    if doc.get("parameters"):
        errors.add(f"{path}/parameters", "docker parameters are not supported")
    image = read_string(doc, "image", path, errors, required=True)
    force = doc.get("forcePullImage", False)
    if not isinstance(force, bool):
        errors.add(f"{path}/forcePullImage", "must be a boolean")
        force = False
    return DockerSpec(image, force) if image else None


def _run(value: Any, errors: Problems) -> RunSpec:
    path = "/run"
    if value is None:
        errors.add(path, "is required")
        return RunSpec()
    doc = read_object(value, path, errors, _RUN_FIELDS)
    if doc is None:
        return RunSpec()
    for key in _ONLY_EMPTY:
        if doc.get(key):
            errors.add(f"{path}/{key}", f"{key} are not supported")
    cmd = read_string(doc, "cmd", path, errors, nonempty=True)
    args: tuple[str, ...] | None = None
    raw_args = doc.get("args")
    if raw_args is not None:
        if (not isinstance(raw_args, list) or not raw_args
                or not all(is_text(a) for a in raw_args)):
            errors.add(f"{path}/args", "must be a non-empty list of strings")
        elif not raw_args[0]:
            errors.add(f"{path}/args/0", "must not be empty (it is the program to run)")
        else:
            args = tuple(raw_args)
    docker = _docker(doc.get("docker"), errors)
    if cmd is not None and args is not None:
        errors.add(path, "give cmd or args, not both")
    elif cmd is None and args is None and docker is None and "docker" not in doc \
            and "cmd" not in doc and "args" not in doc:
        errors.add(path, "needs cmd, args or docker.image")
    cpus = read_number(doc, "cpus", path, errors, DEFAULT_CPUS, minimum=0, strict=True, maximum=MAX_CPUS)
    mem = read_number(doc, "mem", path, errors, DEFAULT_MEM, minimum=0, strict=True, maximum=MAX_MB)
    disk = read_number(doc, "disk", path, errors, 0.0, minimum=0, strict=False, maximum=MAX_MB)
    gpus = read_number(doc, "gpus", path, errors, 0.0, minimum=0, strict=False, maximum=MAX_GPUS)
    delay = read_number(doc, "maxLaunchDelay", path, errors, DEFAULT_MAX_LAUNCH_DELAY, minimum=0, strict=True,
                        maximum=MAX_SECONDS)
    grace = read_number(doc, "taskKillGracePeriodSeconds", path, errors, None, minimum=0, strict=False,
                        maximum=MAX_SECONDS)
    user = read_string(doc, "user", path, errors, nonempty=True)
    return RunSpec(
        cmd=cmd, args=args, cpus=cpus or DEFAULT_CPUS, mem=mem or DEFAULT_MEM, disk=disk or 0.0,
        gpus=gpus or 0.0, docker=docker, env=read_string_map(doc.get("env"), f"{path}/env", errors, "env"),
        constraints=_constraints(doc.get("placement"), errors),
        max_launch_delay=delay or DEFAULT_MAX_LAUNCH_DELAY, task_kill_grace_period_seconds=grace,
        restart=_restart(doc.get("restart"), errors), user=user,
    )


def _schedule(doc: Any, path: str, errors: Problems) -> ScheduleSpec | None:
    obj = read_object(doc, path, errors, _SCHEDULE_FIELDS)
    if obj is None:
        return None
    before = len(errors.details)
    sid = obj.get("id")
    reason = id_error(sid)
    if reason:
        errors.add(f"{path}/id", reason)
    cron = read_string(obj, "cron", path, errors, required=True)
    timezone = obj.get("timezone", "UTC")
    if not isinstance(timezone, str):
        errors.add(f"{path}/timezone", "must be a string")
        timezone = None
    if cron is not None and timezone is not None:
        try:
            CronSchedule.parse(cron, timezone)
        except ValueError as exc:
            which = "timezone" if "timezone" in str(exc) else "cron"
            errors.add(f"{path}/{which}", str(exc))
    deadline = read_number(obj, "startingDeadlineSeconds", path, errors, DEFAULT_STARTING_DEADLINE,
                           minimum=0, strict=True, maximum=MAX_SECONDS)
    policy = obj.get("concurrencyPolicy", "ALLOW")
    if policy not in CONCURRENCY_POLICIES:
        errors.add(f"{path}/concurrencyPolicy", f"must be one of {', '.join(CONCURRENCY_POLICIES)}")
    enabled = obj.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.add(f"{path}/enabled", "must be a boolean")
    if len(errors.details) > before or cron is None or timezone is None:
        return None
    return ScheduleSpec(str(sid), " ".join(cron.split()), timezone,
                        deadline or DEFAULT_STARTING_DEADLINE, str(policy), bool(enabled))


def parse_schedule(doc: Any) -> ScheduleSpec:
    """Returns the schedule a Metronome schedule document describes; raises SpecError."""
    errors = Problems()
    spec = _schedule(doc, "", errors)
    errors.raise_if_any()
    assert spec is not None
    return spec


def parse_job(doc: Any) -> JobSpec:
    """Returns the job a Metronome job document describes; raises SpecError listing every
    problem with its path. Dependencies on unknown jobs and cycles are the engine's to refuse."""
    errors = Problems()
    obj = read_object(doc, "", errors, _JOB_FIELDS)
    if obj is None:
        errors.raise_if_any()
        raise AssertionError("unreachable")
    job_id = obj.get("id")
    reason = id_error(job_id)
    if reason:
        errors.add("/id", reason)
    description = read_string(obj, "description", "", errors) or ""
    labels = read_string_map(obj.get("labels"), "/labels", errors, "labels")
    run = _run(obj.get("run"), errors)
    parallelism = read_count(obj, "parallelism", errors, MAX_TASKS)
    completions = read_count(obj, "completions", errors, MAX_TASKS)
    dependencies: list[str] = []
    raw_deps = obj.get("dependencies") or []
    if not isinstance(raw_deps, list):
        errors.add("/dependencies", "must be a list of {\"id\": JOB}")
        raw_deps = []
    for i, dep in enumerate(raw_deps):
        item = read_object(dep, f"/dependencies/{i}", errors, ("id",))
        if item is None:
            continue
        reason = id_error(item.get("id"))
        if reason:
            errors.add(f"/dependencies/{i}/id", reason)
        elif item["id"] in dependencies:
            errors.add(f"/dependencies/{i}/id", f"{item['id']!r} is listed twice")
        else:
            dependencies.append(item["id"])
    schedules: tuple[ScheduleSpec, ...] | None = None
    if "schedules" in obj:
        raw = obj.get("schedules") or []
        if not isinstance(raw, list):
            errors.add("/schedules", "must be a list")
            raw = []
        parsed: list[ScheduleSpec] = []
        for i, item in enumerate(raw):
            spec = _schedule(item, f"/schedules/{i}", errors)
            if spec is not None and any(s.id == spec.id for s in parsed):
                errors.add(f"/schedules/{i}/id", f"schedule id {spec.id!r} is used twice")
            elif spec is not None:
                parsed.append(spec)
        schedules = tuple(parsed)
    errors.raise_if_any()
    job = JobSpec(id=str(job_id), run=run, description=description, labels=labels,
                  parallelism=parallelism, completions=completions,
                  dependencies=tuple(dependencies), schedules=schedules)
    size = spec_bytes(job)
    if size > MAX_SPEC_BYTES:
        errors.add("", f"the job takes {size} bytes as JSON (without its schedules), over the "
                   f"{MAX_SPEC_BYTES} a job may take (every run's record holds it)")
        errors.raise_if_any()
    return job


def spec_bytes(spec: JobSpec) -> int:
    """The bytes a run's record spends on the job's spec (``job_json`` without the schedules,
    encoded as the store encodes records: compact UTF-8 JSON)."""
    doc = job_json(spec)
    doc.pop("schedules", None)
    return len(json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False,
                          ensure_ascii=False).encode())


# -- rendering -------------------------------------------------------------------------------------


def schedule_json(spec: ScheduleSpec) -> dict[str, Any]:
    """Returns the schedule in Metronome's JSON shape."""
    return {
        "id": spec.id,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "startingDeadlineSeconds": spec.starting_deadline_seconds,
        "concurrencyPolicy": spec.concurrency_policy,
        "enabled": spec.enabled,
    }


def run_spec_json(run: RunSpec) -> dict[str, Any]:
    """Returns a run spec in Metronome's JSON shape (defaults written out)."""
    out: dict[str, Any] = {}
    if run.cmd is not None:
        out["cmd"] = run.cmd
    if run.args is not None:
        out["args"] = list(run.args)
    out.update(cpus=run.cpus, mem=run.mem, disk=run.disk)
    if run.gpus:
        out["gpus"] = run.gpus
    if run.docker is not None:
        out["docker"] = {"image": run.docker.image, "forcePullImage": run.docker.force_pull_image}
    out["env"] = dict(run.env)
    out["placement"] = {"constraints": [
        {"attribute": c.attribute, "operator": c.operator, "value": c.value} for c in run.constraints]}
    out["maxLaunchDelay"] = run.max_launch_delay
    if run.task_kill_grace_period_seconds is not None:
        out["taskKillGracePeriodSeconds"] = run.task_kill_grace_period_seconds
    restart: dict[str, Any] = {"policy": run.restart.policy}
    if run.restart.active_deadline_seconds is not None:
        restart["activeDeadlineSeconds"] = run.restart.active_deadline_seconds
    out["restart"] = restart
    if run.user is not None:
        out["user"] = run.user
    return out


def job_json(spec: JobSpec) -> dict[str, Any]:
    """Returns the job in Metronome's JSON shape (with ``schedules`` when the spec has them)."""
    out: dict[str, Any] = {
        "id": spec.id,
        "description": spec.description,
        "labels": dict(spec.labels),
        "run": run_spec_json(spec.run),
        "parallelism": spec.parallelism,
        "completions": spec.completions,
        "dependencies": [{"id": d} for d in spec.dependencies],
    }
    if spec.schedules is not None:
        out["schedules"] = [schedule_json(s) for s in spec.schedules]
    return out
