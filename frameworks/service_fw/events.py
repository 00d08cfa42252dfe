"""Marathon's event stream documents, built from engine facts (pure).

Each builder returns an ``Emit`` whose ``doc`` has Marathon's ``eventType`` and ``timestamp``
and exactly the fields Marathon sends for that event, so that clients which build typed objects
from them (the ``marathon`` Python client, go-marathon, marathon-lb, which reads status updates'
``taskStatus``, ``appId``, ``host`` and ``ports``) read every one:

    status_update_event            slaveId taskId taskStatus message appId host ports version
                                   ipAddresses [{ipAddress, protocol}]
    health_status_changed_event    appId taskId instanceId version alive
    unhealthy_instance_kill_event  appId taskId instanceId version reason host slaveId
    deployment_info                plan currentStep {actions}
    deployment_step_success        plan currentStep (also deployment_step_failure)
    deployment_success             id plan (also deployment_failed)
    app_terminated_event           appId

A ``plan`` is Marathon's deployment plan: ``{id, version, original, target, steps}`` where
``original`` and ``target`` are root groups (``{id: "/", apps, groups, pods, dependencies,
version}``, apps nested in their groups as Marathon nests them) holding the apps the deployment
affects before and after it, and ``steps`` are ``[{actions: [{action, app}]}]``. Mensa keeps no
group versions: the target's is the deployment's version, the original's is null.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

from mensa.frameworks.service_fw.app_reading import app_json
from mensa.frameworks.service_fw.apps import AppSpec
from mensa.frameworks.service_fw.commands import Emit
from mensa.frameworks.service_fw.deployments import Action, Deployment
from mensa.frameworks.service_fw.instances import Instance


def iso(t: float) -> str:
    """``t`` (seconds since the epoch) as Marathon writes times: ``2026-11-22T10:00:00.123Z``."""
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """The inverse of ``iso``; raises ValueError."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@functools.lru_cache(maxsize=4096)
def ip_addresses(host: str) -> tuple[tuple[str, str], ...]:
    """A task's ``ipAddresses`` as (address, ``IPv4``/``IPv6``) pairs: its agent's address when
    the agent's host name is one (Mensa has no IP-per-task networking), else none."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ()
    return ((str(address), f"IPv{address.version}"),)


def _event(event_type: str, now: float, **fields: Any) -> Emit:
    return Emit(event_type, {"eventType": event_type, "timestamp": iso(now), **fields})


def status_update(inst: Instance, now: float) -> Emit:
    return _event("status_update_event", now, slaveId=inst.agent_id, taskId=inst.task_id,
                  taskStatus=inst.state, message=inst.message, appId=inst.app_id, host=inst.hostname,
                  ports=list(inst.host_ports), version=inst.version,
                  ipAddresses=[{"ipAddress": a, "protocol": p} for a, p in ip_addresses(inst.hostname)])


def health_changed(inst: Instance, now: float) -> Emit:
    return _event("health_status_changed_event", now, appId=inst.app_id, taskId=inst.task_id,
                  instanceId=inst.task_id, version=inst.version, alive=bool(inst.healthy))


def unhealthy_killed(inst: Instance, now: float) -> Emit:
    return _event("unhealthy_instance_kill_event", now, appId=inst.app_id, taskId=inst.task_id,
                  instanceId=inst.task_id, version=inst.version, reason=inst.message,
                  host=inst.hostname, slaveId=inst.agent_id)


# -- deployments -----------------------------------------------------------------------------------


def _step_json(actions: Iterable[Action]) -> dict[str, Any]:
    return {"actions": [a.to_json() for a in actions]}


def _new_group(group_id: str, version: str | None) -> dict[str, Any]:
    return {"id": group_id, "apps": [], "groups": [], "pods": [], "dependencies": [], "version": version}


def group_json(specs: Iterable[AppSpec], version: str | None) -> dict[str, Any]:
    """The root group holding ``specs``, each app (``app_json``) in the group its id names
    (``/shop/web`` in ``/shop``, itself in ``/``), apps and groups in id order."""
    root = _new_group("/", version)
    groups = {"/": root}

    def group_of(path: str) -> dict[str, Any]:
        group = groups.get(path)
        if group is None:
            group = groups[path] = _new_group(path, version)
            group_of(path.rsplit("/", 1)[0] or "/")["groups"].append(group)
        return group

    for spec in sorted(specs, key=lambda s: s.id):
        group_of(spec.id.rsplit("/", 1)[0] or "/")["apps"].append(app_json(spec))
    return root


def plan_json(dep: Deployment) -> dict[str, Any]:
    """The deployment as Marathon's event ``plan`` (see the module docstring)."""
    return {
        "id": dep.id,
        "version": dep.version,
        "original": group_json([s for s in dep.original.values() if s is not None], None),
        "target": group_json([s for s in dep.target.values() if s is not None], dep.version),
        "steps": [_step_json(step) for step in dep.steps],
    }


def deployment(kind: str, dep: Deployment, now: float) -> Emit:
    """``deployment_info`` (a deployment started), ``deployment_success``, ``deployment_failed``
    (cancelled), or ``deployment_step_success`` / ``deployment_step_failure`` (``currentStep`` is
    the step that started, succeeded or failed)."""
    plan = plan_json(dep)
    if kind in ("deployment_info", "deployment_step_success", "deployment_step_failure"):
        step = dep.steps[min(dep.current_step, len(dep.steps) - 1)] if dep.steps else []
        return _event(kind, now, plan=plan, currentStep=_step_json(step))
    return _event(kind, now, id=dep.id, plan=plan)


def app_terminated(app_id: str, now: float) -> Emit:
    return _event("app_terminated_event", now, appId=app_id)
