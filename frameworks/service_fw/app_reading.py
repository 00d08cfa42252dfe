"""Marathon app definitions: read into an ``AppSpec`` with every problem by path, and rendered back (pure).

``parse_app(doc, app_id=...)`` reads a Marathon app document (``POST``/``PUT /v2/apps``) and
raises ``SpecError`` listing every problem at once, each with a JSON pointer into the document
(``/healthChecks/0/portIndex``); ``SpecError.to_json()`` is Marathon's 422 body. ``app_json``
renders a spec back with every field, defaults included, as Marathon's GET does, and
``parse_app(app_json(spec)) == spec``. ``merge_app`` is Marathon's partial update,
``resolve_id``/``id_problem`` read and check app ids (from bodies and URLs alike), and
``dependency_cycle`` finds a cycle among apps' dependencies.

Usage::

    spec = parse_app({"id": "web", "cmd": "python3 -m http.server $PORT0", "instances": 2},
                     app_id="/web")   # the id in the URL, if any, must agree
    app_json(spec)["portDefinitions"]  # [{"port": 0, "protocol": "tcp", "labels": {}}]

Choices where Marathon leaves room (or differs between versions):

- **Unknown fields are ignored**, at every level: Marathon clients send fields of other Marathon
  versions and of features Mensa lacks (``ignored_fields`` lists the top-level ones, to log).
  A *known* field of the wrong type or out of range is always an error. Fields Marathon's GET
  adds (``version``, ``versionInfo``, ``tasksRunning``, ``tasks``, ``deployments``,
  ``lastTaskFailure``, ...) are accepted and ignored so a client can PUT back what it got; fields
  of features Mensa lacks (``uris``, ``fetch``, ``storeUrls``, ``secrets``, ``readinessChecks``,
  ``residency``, ``ipAddress``, ``executor``, ``container.volumes``) are accepted only empty
  (as Marathon renders them for an app that does not use them), never silently dropped.
- **Ports**: as in Marathon 1.x, an app that gives neither ``portDefinitions`` nor ``ports``
  gets one port (``[{"port": 0}]``, so ``$PORT0`` always exists); a BRIDGE container that gives
  no port mappings gets one (container port 0); NONE networking gets none. ``ports`` and
  ``portDefinitions`` may both be given only if they name the same ports; rendering gives
  ``portDefinitions`` only (and network and port mappings only under ``container.docker``), so
  an edited GET never holds two versions of the same thing.
- **Ids** are Marathon paths: absolute (a relative id is taken from the root), '/'-separated
  segments of lowercase letters, digits, '-' and '.', each dot-separated part starting and ending
  with a letter or digit (Marathon's rule, ``SEGMENT_RE``; so never '_'), at most 200 characters.
  ``.``/``..`` segments are resolved (``..`` above the root stays at the root, as in Marathon).
  A dependency starting with ``.`` or ``..`` is resolved against the app's id as Marathon's
  ``/v2/apps`` does (``../db`` from ``/shop/web`` is ``/shop/db``); one starting with a name is
  a sibling in the app's group (``db`` is ``/shop/db``, as Marathon's group API reads it).
  Duplicates are dropped (Marathon keeps a set); an app may not depend on itself.
- **Resources**: cpus > 0 (default 1) and mem > 0 MB (default 128), as the batch framework
  (Marathon's schema allows 0, but a task needs something to run on); disk >= 0; gpus a whole
  number >= 0; cpus and gpus at most 1e6, mem and disk at most 1e12 MB; instances 0..10,000;
  backoffFactor from 1 to 1,000; the rendered app at most 64 KiB.
- **Times in seconds are whole numbers** (``30``, or ``30.0``), from 0 to 1e9, as Marathon's
  schema has them (integers) and as clients read them (go-marathon reads health check times into
  ints): health checks' ``gracePeriodSeconds``, ``intervalSeconds`` and ``timeoutSeconds`` (both
  at least 1), ``delaySeconds``; ``backoffSeconds``, ``maxLaunchDelaySeconds``,
  ``taskKillGracePeriodSeconds``, and ``unreachableStrategy``'s two times. ``backoffFactor`` and
  the upgrade strategy's capacities are numbers, as in Marathon.
- ``unreachableStrategy: "disabled"`` is read as both times ``UNREACHABLE_NEVER`` and rendered
  back as ``"disabled"``. ``args: []`` counts as no args. ``killSelection`` also accepts
  Marathon's ``YoungestFirst``/``OldestFirst``. Constraint operators are upper-cased.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mensa.frameworks.reading import Problems, SpecError, is_text, read_string, read_string_map
from mensa.frameworks.service_fw import app_parts as parts
from mensa.frameworks.service_fw import app_ports as ports
from mensa.frameworks.service_fw.apps import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_CPUS,
    DEFAULT_MAX_LAUNCH_DELAY,
    DEFAULT_MEM,
    KILL_SELECTIONS,
    AppSpec,
    PortDefinition,
)

__all__ = ["MAX_ID", "MAX_INSTANCES", "MAX_SPEC_BYTES", "SpecError", "app_json", "dependency_cycle",
           "id_problem", "ignored_fields", "merge_app", "parse_app", "resolve_dependency", "resolve_id",
           "spec_bytes"]

SEGMENT_RE = re.compile(
    r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
MAX_ID = 200
MAX_INSTANCES = 10_000
MAX_SPEC_BYTES = 64 * 1024
MAX_CPUS = 1e6
MAX_GPUS = 1_000_000
MAX_MB = 1e12
MAX_BACKOFF_FACTOR = 1000.0

_FIELDS = ("id", "cmd", "args", "user", "env", "instances", "cpus", "mem", "disk", "gpus", "container",
           "networks", "portDefinitions", "ports", "requirePorts", "constraints", "healthChecks",
           "upgradeStrategy", "unreachableStrategy", "backoffSeconds", "backoffFactor",
           "maxLaunchDelaySeconds", "killSelection", "taskKillGracePeriodSeconds", "dependencies",
           "labels", "role", "acceptedResourceRoles")
# Fields Marathon's GET adds: accepted (when of this JSON type) and ignored.
_STATUS_FIELDS: dict[str, type] = {
    "version": str, "versionInfo": dict, "tasksStaged": int, "tasksRunning": int, "tasksHealthy": int,
    "tasksUnhealthy": int, "deployments": list, "tasks": list, "lastTaskFailure": dict, "taskStats": dict,
    "readinessCheckResults": list,
}
# Fields of features Mensa lacks: accepted only empty (or null), as Marathon renders them unused.
_EMPTY_FIELDS: dict[str, tuple[type, str]] = {
    "uris": (list, "fetching URIs is not supported"),
    "fetch": (list, "fetching URIs is not supported"),
    "storeUrls": (list, "store URLs are not supported"),
    "secrets": (dict, "secrets are not supported"),
    "readinessChecks": (list, "readiness checks are not supported"),
    "residency": (dict, "resident tasks are not supported"),
    "ipAddress": (dict, "IP-per-task networking is not supported"),
    "executor": (str, "custom executors are not supported"),
}
_KILL_SELECTIONS = {"YOUNGEST_FIRST": "YOUNGEST_FIRST", "OLDEST_FIRST": "OLDEST_FIRST",
                    "YoungestFirst": "YOUNGEST_FIRST", "OldestFirst": "OLDEST_FIRST"}


# -- ids -------------------------------------------------------------------------------------------


def resolve_id(raw: str, base: str = "/") -> str:
    """Returns ``raw`` as an absolute id: relative ids are taken from the group ``base``; empty,
    ``.`` and ``..`` segments are resolved (``..`` above the root stays at the root).
    ``resolve_id("web", "/shop") == "/shop/web"``; ``resolve_id("/a//b/../c/") == "/a/c"``."""
    parts_: list[str] = [] if raw.startswith("/") else [p for p in base.split("/") if p]
    for segment in raw.split("/"):
        if segment == "..":
            if parts_:
                parts_.pop()
        elif segment not in ("", "."):
            parts_.append(segment)
    return "/" + "/".join(parts_)


def resolve_dependency(raw: str, app_id: str) -> str:
    """Returns the absolute id a dependency of app ``app_id`` names (see the module docstring):
    ``../db`` and ``db`` from ``/shop/web`` are both ``/shop/db``; ``./db`` is ``/shop/web/db``."""
    first = raw.split("/", 1)[0]
    if raw.startswith("/") or first in (".", ".."):
        return resolve_id(raw, app_id)
    return resolve_id(raw, app_id.rsplit("/", 1)[0] or "/")


def id_problem(app_id: Any) -> str | None:
    """Returns why ``app_id`` (as given in a body or a URL, relative or absolute) is not a valid
    app id once resolved, or None."""
    if not isinstance(app_id, str) or not app_id.strip("/ "):
        return "must be a non-empty path such as /shop/web"
    resolved = resolve_id(app_id)
    if resolved == "/":
        return f"{app_id!r} names the root group, not an app"
    if len(resolved) > MAX_ID:
        return f"must be at most {MAX_ID} characters long (it is {len(resolved)})"
    for segment in resolved[1:].split("/"):
        if not SEGMENT_RE.match(segment):
            return (f"segment {segment!r} is not valid: each '/'-separated part is lowercase letters, "
                    "digits, '-' and '.', starting and ending with a letter or digit (no '_')")
    return None


def _read_id(doc: dict[str, Any], app_id: str | None, errors: Problems) -> str:
    """The app's id, resolved ("/" after a problem): the document's, or the URL's, or both if they
    agree."""
    given = doc.get("id")
    if given is None and app_id is None:
        errors.add("/id", "is required")
        return "/"
    if given is not None and (reason := id_problem(given)):
        errors.add("/id", reason)
        return "/"
    if app_id is not None and (reason := id_problem(app_id)):
        errors.add("/id", f"the id in the URL {reason}")
        return "/"
    if given is not None and app_id is not None and resolve_id(given) != resolve_id(app_id):
        errors.add("/id", f"is {resolve_id(given)} but the URL names {resolve_id(app_id)}: "
                   "they must agree (or leave id out)")
    return resolve_id(str(given if given is not None else app_id))


# -- reading ---------------------------------------------------------------------------------------


def ignored_fields(doc: Any) -> list[str]:
    """The top-level keys of an app document that ``parse_app`` ignores (neither a field it
    reads nor one Marathon's GET adds), sorted: for a log line or a warning."""
    if not isinstance(doc, dict):
        return []
    return sorted(k for k in doc if k not in _FIELDS and k not in _STATUS_FIELDS and k not in _EMPTY_FIELDS)


def _check_extras(doc: dict[str, Any], errors: Problems) -> None:
    for key, kind in _STATUS_FIELDS.items():
        value = doc.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            errors.add(f"/{key}", f"must be {_KIND_NAMES[kind]} (or be left out)")
    for key, (kind, reason) in _EMPTY_FIELDS.items():
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            errors.add(f"/{key}", f"must be {_KIND_NAMES[kind]}")
        elif value and not (key == "executor" and value == "//cmd"):
            errors.add(f"/{key}", f"{reason} (give it empty or leave it out)")


_KIND_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "a JSON object"}


def _read_args(doc: dict[str, Any], errors: Problems) -> tuple[str, ...] | None:
    raw = doc.get("args")
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list) or not all(is_text(a) for a in raw):
        errors.add("/args", "must be a list of strings")
        return None
    if not raw[0]:
        errors.add("/args/0", "must not be empty (it is the program to run)")
        return None
    return tuple(raw)


def _role_problem(role: Any) -> str | None:
    """Mesos's role names: ``*``, or '/'-separated parts, none empty, ``.``, ``..``, starting with
    '-', or holding '*', whitespace or control characters."""
    if not isinstance(role, str):
        return "must be a string"
    if role == "*":
        return None
    if not role or len(role) > 1024 or any(
            p in ("", ".", "..") or p.startswith("-") or "*" in p
            or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in p) for p in role.split("/")):
        return f"{role!r} is not a valid role name"
    return None


def _read_roles(doc: dict[str, Any], errors: Problems) -> tuple[str | None, tuple[str, ...] | None]:
    role = doc.get("role")
    if role is not None and (reason := _role_problem(role)):
        errors.add("/role", reason)
        role = None
    accepted: tuple[str, ...] | None = None
    raw = doc.get("acceptedResourceRoles")
    if raw is not None:
        if not isinstance(raw, list):
            errors.add("/acceptedResourceRoles", "must be a list of role names")
        else:
            for i, item in enumerate(raw):
                if reason := _role_problem(item):
                    errors.add(f"/acceptedResourceRoles/{i}", reason)
            # [] would accept no offer at all: read as "no restriction", as Marathon does.
            accepted = tuple(dict.fromkeys(raw)) if raw and all(isinstance(r, str) for r in raw) else None
    return role, accepted


def _read_dependencies(doc: dict[str, Any], app_id: str, errors: Problems) -> tuple[str, ...]:
    out: list[str] = []
    for i, raw in enumerate(parts.read_list(doc, "dependencies", "", errors)):
        at = f"/dependencies/{i}"
        if not isinstance(raw, str):
            errors.add(at, "must be an app id (a string)")
            continue
        dep = resolve_dependency(raw, app_id)
        if reason := id_problem(dep):
            errors.add(at, f"{raw!r} resolves to {dep!r}, which {reason}")
        elif dep == app_id:
            errors.add(at, f"{app_id} cannot depend on itself")
        elif dep not in out:
            out.append(dep)
    return tuple(out)


def parse_app(doc: Any, *, app_id: str | None = None) -> AppSpec:
    """Returns the app a Marathon app document describes; raises ``SpecError`` listing every
    problem with its JSON pointer. ``app_id`` is the id the URL names (``PUT /v2/apps/{id}``):
    the document's ``id`` may be left out, and must agree if given. Whether dependencies exist
    and form no cycle is the engine's to check (``dependency_cycle``)."""
    errors = Problems()
    if not isinstance(doc, dict):
        raise SpecError("Object is not valid", [("", "must be a JSON object (an app definition)")])
    _check_extras(doc, errors)
    the_id = _read_id(doc, app_id, errors)
    cmd = read_string(doc, "cmd", "", errors, nonempty=True)
    args = _read_args(doc, errors)
    docker, network = ports.read_container(doc, errors)
    before = len(errors.details)
    definitions = ports.read_port_definitions(doc, errors)
    if definitions is None:
        definitions = (PortDefinition(),) if network == "HOST" else ()
    elif definitions and network == "BRIDGE":
        errors.add("/portDefinitions", "BRIDGE networking takes its ports from the container's port "
                   "mappings: give portDefinitions empty")
    # portIndex is checked against the port count only when the ports were read without a problem.
    ports_ok = len(errors.details) == before \
        and not any(p.startswith(("/container", "/networks")) for p, _ in errors.details)
    port_count = len(docker.port_mappings) if docker is not None and network == "BRIDGE" else len(definitions)
    if cmd is not None and args is not None:
        errors.add("/args", "give cmd or args, not both")
    if cmd is None and args is None and doc.get("container") is None \
            and doc.get("cmd") is None and doc.get("args") in (None, []):
        errors.add("", "needs cmd, args or a Docker image (container.docker.image)")
    role, accepted = _read_roles(doc, errors)
    kill_selection = doc.get("killSelection")
    if kill_selection is None:
        kill_selection = "YOUNGEST_FIRST"
    elif not isinstance(kill_selection, str) or kill_selection not in _KILL_SELECTIONS:
        errors.add("/killSelection", f"must be one of {', '.join(KILL_SELECTIONS)}")
        kill_selection = "YOUNGEST_FIRST"
    grace = None
    if doc.get("taskKillGracePeriodSeconds") is not None:
        grace = parts.read_seconds(doc, "taskKillGracePeriodSeconds", "", errors, 0.0)
    spec = AppSpec(
        id=the_id, cmd=cmd, args=args,
        user=read_string(doc, "user", "", errors, nonempty=True),
        env=read_string_map(doc.get("env"), "/env", errors, "env"),
        instances=parts.read_int(doc, "instances", "", errors, 1, minimum=0, maximum=MAX_INSTANCES),
        cpus=parts.read_float(doc, "cpus", "", errors, DEFAULT_CPUS, minimum=0, strict=True,
                              maximum=MAX_CPUS),
        mem=parts.read_float(doc, "mem", "", errors, DEFAULT_MEM, minimum=0, strict=True, maximum=MAX_MB),
        disk=parts.read_float(doc, "disk", "", errors, 0.0, minimum=0, maximum=MAX_MB),
        gpus=float(parts.read_int(doc, "gpus", "", errors, 0, minimum=0, maximum=MAX_GPUS)),
        container=docker,
        port_definitions=definitions,
        require_ports=parts.read_bool(doc, "requirePorts", "", errors),
        constraints=parts.read_constraints(doc, errors),
        health_checks=parts.read_health_checks(doc, errors, port_count if ports_ok else None),
        upgrade_strategy=parts.read_upgrade_strategy(doc, errors),
        unreachable_strategy=parts.read_unreachable_strategy(doc, errors),
        backoff_seconds=parts.read_seconds(doc, "backoffSeconds", "", errors, DEFAULT_BACKOFF_SECONDS),
        backoff_factor=parts.read_float(doc, "backoffFactor", "", errors, DEFAULT_BACKOFF_FACTOR, minimum=1,
                                        maximum=MAX_BACKOFF_FACTOR),
        max_launch_delay_seconds=parts.read_seconds(doc, "maxLaunchDelaySeconds", "", errors,
                                                    DEFAULT_MAX_LAUNCH_DELAY),
        kill_selection=_KILL_SELECTIONS[kill_selection],
        task_kill_grace_period_seconds=grace,
        dependencies=_read_dependencies(doc, the_id, errors),
        labels=read_string_map(doc.get("labels"), "/labels", errors, "labels"),
        role=role,
        accepted_resource_roles=accepted,
    )
    errors.raise_if_any()
    size = spec_bytes(spec)
    if size > MAX_SPEC_BYTES:
        errors.add("", f"the app takes {size} bytes as JSON, over the {MAX_SPEC_BYTES} an app may take")
        errors.raise_if_any()
    return spec


def spec_bytes(spec: AppSpec) -> int:
    """The bytes ``app_json(spec)`` takes as compact UTF-8 JSON (as the store encodes it)."""
    return len(json.dumps(app_json(spec), separators=(",", ":"), sort_keys=True, allow_nan=False,
                          ensure_ascii=False).encode())


# -- rendering and updates -------------------------------------------------------------------------


def app_json(spec: AppSpec) -> dict[str, Any]:
    """Returns the app's definition in Marathon's JSON shape, every field written out (defaults
    too, and the empty fields of features Mensa lacks, as Marathon's GET shows them). The
    status fields (``version``, ``tasksRunning``, ...) are the API's to add."""
    return {
        "id": spec.id,
        "cmd": spec.cmd,
        "args": list(spec.args or ()),
        "user": spec.user,
        "env": dict(spec.env),
        "instances": spec.instances,
        "cpus": parts.num(spec.cpus),
        "mem": parts.num(spec.mem),
        "disk": parts.num(spec.disk),
        "gpus": parts.num(spec.gpus),
        "executor": "",
        "constraints": [c.to_json() for c in spec.constraints],
        "fetch": [],
        "storeUrls": [],
        "backoffSeconds": parts.num(spec.backoff_seconds),
        "backoffFactor": parts.num(spec.backoff_factor),
        "maxLaunchDelaySeconds": parts.num(spec.max_launch_delay_seconds),
        "container": ports.container_json(spec.container),
        "healthChecks": [parts.health_check_json(c) for c in spec.health_checks],
        "readinessChecks": [],
        "dependencies": list(spec.dependencies),
        "upgradeStrategy": {"minimumHealthCapacity": parts.num(spec.upgrade_strategy.minimum_health_capacity),
                            "maximumOverCapacity": parts.num(spec.upgrade_strategy.maximum_over_capacity)},
        "unreachableStrategy": parts.unreachable_json(spec.unreachable_strategy),
        "killSelection": spec.kill_selection,
        "labels": dict(spec.labels),
        "acceptedResourceRoles": None if spec.accepted_resource_roles is None
        else list(spec.accepted_resource_roles),
        "portDefinitions": [ports.port_definition_json(p) for p in spec.port_definitions],
        "requirePorts": spec.require_ports,
        "taskKillGracePeriodSeconds": None if spec.task_kill_grace_period_seconds is None
        else parts.num(spec.task_kill_grace_period_seconds),
        "role": spec.role,
        "secrets": {},
    }


# Fields that say the same thing two ways: a patch giving one drops the other from the current app.
_ALTERNATIVES = (("cmd", "args"), ("args", "cmd"), ("ports", "portDefinitions"), ("portDefinitions", "ports"))


def merge_app(current: dict[str, Any], patch: Any) -> Any:
    """Marathon's partial update (``PUT /v2/apps/{id}``, ``partialUpdate`` defaults to true):
    returns ``current`` (an app document, e.g. ``app_json`` of the current spec) with each
    top-level key of ``patch`` replacing its own. A null in the patch leaves the field as it
    is (Marathon reads null as "not given"); a patch that gives ``cmd`` drops the current
    ``args`` and vice versa, and likewise ``ports``/``portDefinitions``. A ``patch`` that is not an
    object is returned as is, for ``parse_app`` to refuse."""
    if not isinstance(patch, dict):
        return patch
    out = dict(current)
    for key, value in patch.items():
        if value is not None:
            out[key] = value
    for given, other in _ALTERNATIVES:
        value = patch.get(given)
        # "args": [] means no args (it keeps cmd); "ports": [] means no ports (it drops portDefinitions).
        if value is not None and not (given == "args" and value == []) and patch.get(other) is None:
            out.pop(other, None)
    return out


def dependency_cycle(specs: Mapping[str, AppSpec]) -> list[str] | None:
    """Returns a cycle among the apps' dependencies as the path of ids that closes it
    (``["/a", "/b", "/a"]``; ``["/a", "/a"]`` for an app that depends on itself), or None.
    Dependencies on ids not in ``specs`` are ignored. Deterministic: apps and dependencies are
    visited in sorted order."""
    done: set[str] = set()
    for root in sorted(specs):
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(sorted(specs[root].dependencies))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if dep in on_path:
                return [*path[path.index(dep):], dep]
            if dep in done or dep not in specs:
                continue
            path.append(dep)
            on_path.add(dep)
            stack.append(iter(sorted(specs[dep].dependencies)))
    return None
