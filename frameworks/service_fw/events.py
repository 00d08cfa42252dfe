"""Marathon's event stream documents, built from engine facts (pure).

Each builder returns an ``Emit`` whose ``doc`` has Marathon's ``eventType`` and ``timestamp``
fields and the fields Marathon clients read (marathon-lb, for one, reads status updates'
``taskStatus``, ``appId``, ``host`` and ``ports``).
"""

from __future__ import annotations

import datetime
from typing import Any

from mensa.frameworks.service_fw.commands import Emit
from mensa.frameworks.service_fw.deployments import Deployment
from mensa.frameworks.service_fw.instances import Instance


def iso(t: float) -> str:
    """``t`` (seconds since the epoch) as Marathon writes times: ``2026-11-22T10:00:00.123Z``."""
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    """The inverse of ``iso``; raises ValueError."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _event(event_type: str, now: float, **fields: Any) -> Emit:
    return Emit(event_type, {"eventType": event_type, "timestamp": iso(now), **fields})


def status_update(inst: Instance, now: float) -> Emit:
    return _event("status_update_event", now, slaveId=inst.agent_id, agentId=inst.agent_id,
                  taskId=inst.task_id, taskStatus=inst.state, message=inst.message,
                  appId=inst.app_id, host=inst.hostname, ports=list(inst.host_ports),
                  version=inst.version,
                  ipAddresses=[])


def health_changed(inst: Instance, now: float) -> Emit:
    return _event("health_status_changed_event", now, appId=inst.app_id, taskId=inst.task_id,
                  instanceId=inst.task_id, version=inst.version, alive=bool(inst.healthy))


def unhealthy_killed(inst: Instance, now: float) -> Emit:
    return _event("unhealthy_instance_kill_event", now, appId=inst.app_id, taskId=inst.task_id,
                  instanceId=inst.task_id, version=inst.version, reason=inst.message,
                  host=inst.hostname, slaveId=inst.agent_id)


def deployment(kind: str, dep: Deployment, now: float) -> Emit:
    """``deployment_info`` (a deployment started), ``deployment_success``, ``deployment_failed``
    (cancelled), or ``deployment_step_success`` / ``deployment_step_failure``."""
    plan = dep.to_json()
    if kind in ("deployment_info", "deployment_step_success", "deployment_step_failure"):
        step = dep.steps[min(dep.current_step, len(dep.steps) - 1)] if dep.steps else []
        return _event(kind, now, plan=plan, currentStep={"actions": [a.to_json() for a in step]})
    return _event(kind, now, id=dep.id, plan=plan)


def app_terminated(app_id: str, now: float) -> Emit:
    return _event("app_terminated_event", now, appId=app_id)
