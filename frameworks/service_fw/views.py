"""The service framework's REST answers as Marathon's JSON: apps, tasks and the launch queue (pure).

``AppViews`` renders apps (``GET /v2/apps``, ``/v2/apps/{id}``) and tasks as JSON *text*: an
app's definition (``app_json`` plus ``version`` and ``versionInfo``) is encoded once per version
and kept, a task's JSON is kept until a field it shows changes, and a request only joins them
with the counts, deployments and lastTaskFailure it asks for: listing 1,000 apps with 10,000
tasks is one pass over the instances without encoding them again (about 20 ms). Embeds are
Marathon's (``resolve_embeds``): ``tasks`` (which brings ``deployments``, as in Marathon),
``counts``, ``deployments``, ``lastTaskFailure``, ``failures`` (all three), ``readiness``
(always an empty ``readinessCheckResults``: Mensa has no readiness checks); ``taskStats`` and
unknown names are ignored, as Marathon ignores them.

Every object holds only fields Marathon defines: the official ``marathon`` Python client builds
its models with ``cls(**fields)`` and fails on any other (so no ``agentId`` beside ``slaveId``).

``task_json`` is one entry of ``/v2/tasks``; ``queue_json`` one entry of ``/v2/queue``;
``parse_label_selector`` reads Marathon's ``label`` query (``select_apps`` applies it with the
``id`` and ``cmd`` filters).

Usage::

    views = AppViews()
    text = views.apps_text(engine.app_records(), engine, resolve_embeds(["apps.tasks"]) | LIST_EMBEDS)
    matches = parse_label_selector("tier==web, env in (prod, qa), canary")  # raises ValueError
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mensa.frameworks.service_fw.app_reading import app_json
from mensa.frameworks.service_fw.apps import AppSpec
from mensa.frameworks.service_fw.events import ip_addresses, iso
from mensa.frameworks.service_fw.instances import Instance
from mensa.frameworks.service_fw.matching import REASONS

if TYPE_CHECKING:
    from mensa.frameworks.service_fw.engine import AppRecord, QueueEntry, ServiceEngine

__all__ = ["COUNTS", "DEPLOYMENTS", "LAST_TASK_FAILURE", "LIST_EMBEDS", "READINESS", "SHOW_EMBEDS", "TASKS",
           "AppViews", "counts", "parse_label_selector", "queue_json",
           "resolve_embeds", "select_apps", "service_ports", "task_json", "task_text"]

TASKS = "tasks"
COUNTS = "counts"
DEPLOYMENTS = "deployments"
LAST_TASK_FAILURE = "lastTaskFailure"
READINESS = "readiness"
LIST_EMBEDS = frozenset({COUNTS, DEPLOYMENTS})  # what GET /v2/apps always embeds
SHOW_EMBEDS = frozenset({COUNTS, DEPLOYMENTS, TASKS, LAST_TASK_FAILURE})  # GET /v2/apps/{id}
_EMBED_PREFIXES = ("group.apps.", "apps.", "app.")
_EMBED_MEANS = {
    TASKS: (TASKS, DEPLOYMENTS),
    "failures": (TASKS, LAST_TASK_FAILURE, DEPLOYMENTS),
    DEPLOYMENTS: (DEPLOYMENTS,),
    LAST_TASK_FAILURE: (LAST_TASK_FAILURE,),
    COUNTS: (COUNTS,),
    "count": (COUNTS,),
    READINESS: (READINESS,),
}
STAGED_STATES = frozenset({"TASK_STAGING", "TASK_STARTING"})


def resolve_embeds(values: Iterable[str]) -> frozenset[str]:
    """The embeds that ``embed`` query values (repeated, or comma-separated) ask for, with or
    without Marathon's prefixes (``apps.``, ``app.``, ``group.apps.``); unknown ones are ignored."""
    out: set[str] = set()
    for value in values:
        for item in value.split(","):
            name = item.strip()
            for prefix in _EMBED_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    break
            out.update(_EMBED_MEANS.get(name, ()))
    return frozenset(out)


# -- tasks -----------------------------------------------------------------------------------------


def service_ports(spec: AppSpec | None) -> list[int]:
    """The app's service ports, in port order (0 where none was given)."""
    if spec is None:
        return []
    if spec.container is not None and spec.container.network == "BRIDGE":
        return [m.service_port for m in spec.container.port_mappings]
    return [p.port for p in spec.port_definitions]


_iso = functools.lru_cache(maxsize=16384)(iso)  # tasks launched together share their times
_quote = json.encoder.encode_basestring_ascii  # a JSON string literal, as json.dumps writes it


def _health(inst: Instance, has_checks: bool) -> list[dict[str, Any]]:
    if not has_checks or inst.healthy is None:
        return []
    return [{"alive": inst.healthy, "consecutiveFailures": 0 if inst.healthy else 1,
             "firstSuccess": None, "lastSuccess": None, "lastFailure": None,
             "lastFailureCause": None if inst.healthy else (inst.message or None),
             "taskId": inst.task_id, "instanceId": inst.task_id}]


def task_json(inst: Instance, ports: list[int], has_checks: bool) -> dict[str, Any]:
    """One task in Marathon's ``/v2/tasks`` shape. ``ports`` are its app's service ports.
    ``healthCheckResults`` holds the agent's latest verdict when the app has health checks and
    one came (Mensa keeps only the verdict: the times of the last success and failure are null);
    ``ipAddresses`` is the agent's address when its host name is one."""
    return {
        "id": inst.task_id,
        "appId": inst.app_id,
        "host": inst.hostname,
        "ports": list(inst.host_ports),
        "servicePorts": ports,
        "slaveId": inst.agent_id,
        "stagedAt": _iso(inst.staged_at) if inst.staged_at else None,
        "startedAt": _iso(inst.started_at) if inst.started_at is not None else None,
        "version": inst.version,
        "state": inst.state,
        "healthCheckResults": _health(inst, has_checks),
        "ipAddresses": [{"ipAddress": a, "protocol": p} for a, p in ip_addresses(inst.hostname)],
        "localVolumes": [],
    }


def task_text(inst: Instance, ports: list[int], has_checks: bool) -> str:
    """``task_json`` encoded as JSON text, written out by hand (a few times faster than
    ``json.dumps`` of the dict, which matters for 10,000 tasks)."""
    addresses = ip_addresses(inst.hostname)
    health = "[]"
    if has_checks and inst.healthy is not None:
        task = _quote(inst.task_id)
        cause = "null" if inst.healthy or not inst.message else _quote(inst.message)
        health = "".join((
            '[{"alive":', "true" if inst.healthy else "false",
            ',"consecutiveFailures":', "0" if inst.healthy else "1",
            ',"firstSuccess":null,"lastSuccess":null,"lastFailure":null,"lastFailureCause":', cause,
            ',"taskId":', task, ',"instanceId":', task, "}]"))
    return "".join((
        '{"id":', _quote(inst.task_id), ',"appId":', _quote(inst.app_id), ',"host":', _quote(inst.hostname),
        ',"ports":[', ",".join([str(int(p)) for p in inst.host_ports]),
        '],"servicePorts":[', ",".join([str(int(p)) for p in ports]),
        '],"slaveId":', _quote(inst.agent_id),
        ',"stagedAt":', _quote(_iso(inst.staged_at)) if inst.staged_at else "null",
        ',"startedAt":', "null" if inst.started_at is None else _quote(_iso(inst.started_at)),
        ',"version":', _quote(inst.version), ',"state":', _quote(inst.state),
        ',"healthCheckResults":', health,
        ',"ipAddresses":[', ",".join(['{"ipAddress":' + _quote(a) + ',"protocol":' + _quote(p) + "}"
                                      for a, p in addresses]),
        '],"localVolumes":[]}'))


def counts(instances: Iterable[Instance], has_checks: bool) -> tuple[int, int, int, int]:
    """Marathon's (tasksStaged, tasksRunning, tasksHealthy, tasksUnhealthy). As in Marathon, an
    app without health checks has no healthy or unhealthy tasks."""
    staged = running = healthy = unhealthy = 0
    for inst in instances:
        state = inst.state
        if state == "TASK_RUNNING":
            running += 1
        elif state in STAGED_STATES:
            staged += 1
        if has_checks and inst.healthy is not None:
            if inst.healthy:
                healthy += 1
            else:
                unhealthy += 1
    return staged, running, healthy, unhealthy


# -- apps ------------------------------------------------------------------------------------------


class AppViews:
    """Renders apps and tasks as Marathon's JSON text (see the module docstring). Keeps each
    app's encoded definition for as long as its spec object and version stay the same, and each
    task's encoded JSON for as long as the fields it shows stay the same."""

    def __init__(self) -> None:
        self._definitions: dict[str, tuple[AppSpec, str, str]] = {}
        self._tasks: dict[str, tuple[tuple[Any, ...], str]] = {}

    def kept(self) -> tuple[int, int]:
        """How many app definitions and tasks are kept encoded."""
        return len(self._definitions), len(self._tasks)

    def task_text(self, inst: Instance, ports: list[int], has_checks: bool) -> str:
        """``task_json`` as JSON text (kept while the fields it shows stay the same)."""
        key = (inst.state, inst.healthy, inst.started_at, inst.staged_at, inst.host_ports, inst.version,
               inst.hostname, inst.agent_id, inst.message, inst.app_id, has_checks, *ports)
        cached = self._tasks.get(inst.task_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        text = task_text(inst, ports, has_checks)
        self._tasks[inst.task_id] = (key, text)
        return text

    def tasks_list_text(self, instances: Iterable[Instance], ports: list[int], has_checks: bool) -> str:
        """A JSON list of the tasks of one app."""
        return "[" + ",".join([self.task_text(i, ports, has_checks) for i in instances]) + "]"

    def tasks_text(self, instances: Iterable[Instance], engine: ServiceEngine, key: str = "tasks") -> str:
        """``{"tasks": [...]}`` as JSON text, for instances of any apps."""
        per_app: dict[str, tuple[list[int], bool]] = {}
        texts: list[str] = []
        for inst in instances:
            known = per_app.get(inst.app_id)
            if known is None:
                record = engine.apps.get(inst.app_id)
                known = per_app[inst.app_id] = (service_ports(record.spec if record else None),
                                                 engine.has_health_checks(inst.app_id))
            texts.append(self.task_text(inst, known[0], known[1]))
        self._prune(engine)
        return "{" + json.dumps(key) + ":[" + ",".join(texts) + "]}"

    def _prune(self, engine: ServiceEngine) -> None:
        """Forgets what was kept for apps and tasks that are gone."""
        if len(self._definitions) > 2 * len(engine.apps) + 64:
            self._definitions = {a: v for a, v in self._definitions.items() if a in engine.apps}
        if len(self._tasks) > 2 * len(engine.instances) + 1024:
            self._tasks = {t: v for t, v in self._tasks.items() if t in engine.instances}

    def definition_text(self, record: AppRecord) -> str:
        """The app's definition with ``version`` and ``versionInfo``, as JSON text *without* its
        closing brace (status fields are appended to it)."""
        cached = self._definitions.get(record.app_id)
        if cached is not None and cached[0] is record.spec and cached[1] == record.version:
            return cached[2]
        doc = app_json(record.spec)
        doc["version"] = record.version
        doc["versionInfo"] = {"lastScalingAt": record.last_scaling_at,
                              "lastConfigChangeAt": record.last_config_change_at}
        text = json.dumps(doc)[:-1]
        self._definitions[record.app_id] = (record.spec, record.version, text)
        return text

    def app_text(self, record: AppRecord, engine: ServiceEngine, embeds: frozenset[str],
                 deployment_ids: list[str] | None = None) -> str:
        """One app as JSON text with the status fields ``embeds`` ask for. ``deployment_ids``
        overrides the deployments the engine names (a POST answers with its own)."""
        app_id = record.app_id
        parts = [self.definition_text(record)]
        if embeds & {COUNTS, TASKS}:
            instances = engine.instances_of(app_id)
            has_checks = bool(record.spec.health_checks)
            if COUNTS in embeds:
                staged, running, healthy, unhealthy = counts(instances, has_checks)
                parts.append(f',"tasksStaged":{staged},"tasksRunning":{running},'
                             f'"tasksHealthy":{healthy},"tasksUnhealthy":{unhealthy}')
            if TASKS in embeds:
                parts.append(',"tasks":')
                parts.append(self.tasks_list_text(instances, service_ports(record.spec), has_checks))
        if DEPLOYMENTS in embeds:
            ids = (deployment_ids if deployment_ids is not None
                   else [d.id for d in engine.deployments_of(app_id)])
            parts.append(',"deployments":[' + ",".join(['{"id":' + _quote(d) + "}" for d in ids]) + "]")
        if LAST_TASK_FAILURE in embeds:
            failure = engine.last_failure(app_id)
            if failure is not None:
                parts.append(',"lastTaskFailure":')
                parts.append(json.dumps(failure))
        if READINESS in embeds:
            parts.append(',"readinessCheckResults":[]')
        parts.append("}")
        return "".join(parts)

    def apps_text(self, records: Iterable[AppRecord], engine: ServiceEngine, embeds: frozenset[str],
                  key: str = "apps") -> str:
        """``{"apps": [...]}`` (or another ``key``) as JSON text."""
        text = "{" + json.dumps(key) + ":[" + ",".join(
            [self.app_text(r, engine, embeds) for r in records]) + "]}"
        self._prune(engine)
        return text


# -- selecting apps --------------------------------------------------------------------------------

# Unescaped characters of a selector term: Marathon allows only letters and digits (anything
# else escaped with a backslash); the characters of usual label keys and values are let through
# too, as none of them is an operator.
_TERM = re.compile(r"(?:\\.|[A-Za-z0-9_.\-/:@])+")
_ESCAPE = re.compile(r"\\(.)")
_SPACE = re.compile(r"\s*")
_SET_OP = re.compile(r"(notin|in)(?=[\s(])")

Labels = Mapping[str, str]


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def literal(self, token: str) -> bool:
        self.skip()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def term(self) -> str:
        self.skip()
        match = _TERM.match(self.text, self.pos)
        if match is None:
            raise ValueError(f"a label name or value is expected at position {self.pos}: "
                             f"{self.text[self.pos:self.pos + 20]!r}")
        self.pos = match.end()
        return _ESCAPE.sub(r"\1", match.group(0))

    def set_op(self) -> str | None:
        self.skip()
        match = _SET_OP.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group(1)


def _selector(reader: _Reader) -> Callable[[Labels], bool]:
    key = reader.term()
    if reader.literal("=="):
        value = reader.term()
        return lambda labels: labels.get(key) == value
    if reader.literal("!="):
        value = reader.term()
        return lambda labels: key in labels and labels[key] != value
    op = reader.set_op()
    if op is not None:
        if not reader.literal("("):
            raise ValueError(f"'(' is expected after {op} at position {reader.pos}")
        values = {reader.term()}
        while reader.literal(","):
            values.add(reader.term())
        if not reader.literal(")"):
            raise ValueError(f"')' or ',' is expected at position {reader.pos}")
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: key in labels and labels[key] not in values
    return lambda labels: key in labels


def parse_label_selector(text: str) -> Callable[[Labels], bool]:
    """Reads Marathon's label selector: comma-separated selectors that must all hold, each
    ``key`` (the label exists), ``key==value``, ``key!=value``, ``key in (v1, v2)`` or
    ``key notin (v1, v2)``; ``!=`` and ``notin`` also need the label to exist, as in Marathon.
    Other characters than letters, digits and ``_.-/:@`` are escaped with a backslash. An empty
    selector matches every app. Raises ValueError saying what is wrong."""
    reader = _Reader(text)
    selectors: list[Callable[[Labels], bool]] = []
    if not reader.at_end():
        selectors.append(_selector(reader))
        while not reader.at_end():
            if not reader.literal(","):
                raise ValueError(f"',' is expected at position {reader.pos}: "
                                 f"{text[reader.pos:reader.pos + 20]!r}")
            selectors.append(_selector(reader))
    return lambda labels: all(s(labels) for s in selectors)


def select_apps(records: Iterable[AppRecord], *, id_part: str | None = None, cmd_part: str | None = None,
                label: Callable[[Labels], bool] | None = None) -> list[AppRecord]:
    """The apps whose id and cmd contain ``id_part`` and ``cmd_part`` (ignoring case; an app
    without a cmd has none) and whose labels match ``label``."""
    id_low = id_part.lower() if id_part else None
    cmd_low = cmd_part.lower() if cmd_part else None
    out: list[AppRecord] = []
    for record in records:
        spec = record.spec
        if id_low is not None and id_low not in spec.id.lower():
            continue
        if cmd_low is not None and (spec.cmd is None or cmd_low not in spec.cmd.lower()):
            continue
        if label is not None and not label(dict(spec.labels)):
            continue
        out.append(record)
    return out


# -- the launch queue ------------------------------------------------------------------------------


def _reject_summary(entry: QueueEntry) -> list[dict[str, Any]]:
    """Marathon's funnel: each reason in check order, with the offers that reached that check
    (``processed``) and those it declined (``declined``)."""
    left = entry.offers_processed
    out: list[dict[str, Any]] = []
    for reason in REASONS:
        declined = entry.rejections.get(reason, 0)
        out.append({"reason": reason, "declined": declined, "processed": max(0, left)})
        left -= declined
    return out


def queue_json(entry: QueueEntry, now: float, *, last_unused_offers: bool = False) -> dict[str, Any]:
    """One entry of ``/v2/queue``, with Marathon's fields only (clients build typed objects from
    it and refuse unknown fields): how many instances wait, the launch backoff (``delay``:
    ``overdue`` once it is over), what offers it was refused for (``processedOffersSummary``), the
    app, and with ``last_unused_offers`` the latest offers it could not use. Mensa's sentence
    saying in words why it waits is ``processedOffersSummary.message`` (clients keep that object
    as it comes)."""
    left = 0.0 if entry.delay_until is None else max(0.0, entry.delay_until - now)
    app = app_json(entry.spec)
    reject = _reject_summary(entry)
    doc: dict[str, Any] = {
        "count": entry.count,
        "delay": {"timeLeftSeconds": math.ceil(left), "overdue": entry.overdue or left <= 0},
        "since": iso(entry.since),
        "processedOffersSummary": {
            "processedOffersCount": entry.offers_processed,
            "unusedOffersCount": entry.unused_offers,
            "lastUnusedOfferAt": None if entry.last_unused_at is None else iso(entry.last_unused_at),
            "lastUsedOfferAt": None if entry.last_used_at is None else iso(entry.last_used_at),
            "rejectSummaryLastOffers": reject,
            "rejectSummaryLaunchAttempt": reject,
            "message": entry.message,
        },
        "app": app,
    }
    if last_unused_offers:
        doc["lastUnusedOffers"] = [
            {"offer": {"id": o.get("offerId"), "agentId": o.get("agentId"), "hostname": o.get("hostname")},
             "timestamp": iso(o["timestamp"]) if isinstance(o.get("timestamp"), (int, float)) else None,
             "reason": list(o.get("reasons", [])), "message": o.get("message", "")}
            for o in entry.recent]
    return doc
