"""The master's /state document, in the shape of Mesos's /master/state (pure).

Scripts written for Mesos read ``state["slaves"]``, ``task["slave_id"]`` and friends, so those
keys are present; Mensa's own names (``agents``, ``agent_id``) sit beside them and are preferred.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from mensa.master.records import AgentRecord, FrameworkRecord, TaskRecord
from mensa.master.state import MasterState
from mensa.proto import mensa_pb2
from mensa.proto.attributes import attributes_json
from mensa.proto.resources import Resources

# The task states /state-summary counts per agent and framework (Mesos's keys).
SUMMARY_STATES = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED",
                  "TASK_KILLED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_UNREACHABLE")


def _status(status: mensa_pb2.TaskStatus) -> dict[str, Any]:
    out: dict[str, Any] = {
        "state": mensa_pb2.TaskState.Name(status.state),
        "timestamp": status.timestamp,
    }
    if status.message:
        out["message"] = status.message
    if status.HasField("reason"):
        out["reason"] = mensa_pb2.TaskStatus.Reason.Name(status.reason)
    if status.HasField("healthy"):
        out["healthy"] = status.healthy
    return out


def task_json(task: TaskRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": task.task_id,
        "name": task.info.name or task.task_id,
        "framework_id": task.framework_id,
        "executor_id": "",
        "agent_id": task.agent_id,
        "slave_id": task.agent_id,
        "state": mensa_pb2.TaskState.Name(task.state),
        "resources": task.resources.to_json(),
        "statuses": [_status(s) for s in task.statuses],
    }
    if task.info.HasField("labels"):
        out["labels"] = [{"key": lb.key, "value": lb.value} for lb in task.info.labels.labels]
    if task.info.HasField("container"):
        out["container"] = json_format.MessageToDict(task.info.container, preserving_proto_field_name=True)
    return out


def framework_json(state: MasterState, framework: FrameworkRecord, active: bool,
                   now: float | None = None) -> dict[str, Any]:
    used = Resources.empty()
    for task in framework.tasks.values():
        if not task.released:
            used = used + task.resources
    offers = state.offers.for_framework(framework.framework_id)
    offered = Resources.empty()
    for offer in offers:
        offered = offered + offer.resources
    info = framework.info
    return {
        "id": framework.framework_id,
        "name": info.name,
        "user": info.user,
        "hostname": info.hostname,
        "webui_url": info.webui_url,
        "principal": info.principal,
        "role": info.role or "*",
        "roles": framework.roles,
        "failover_timeout": info.failover_timeout,
        "checkpoint": info.checkpoint,
        "capabilities": [mensa_pb2.FrameworkInfo.Capability.Type.Name(c.type) for c in info.capabilities],
        "active": active and framework.connected,
        "connected": framework.connected,
        "recovered": framework.recovered,
        "registered_time": framework.registered_at,
        "reregistered_time": framework.reregistered_at,
        "unregistered_time": framework.disconnected_at,
        "resources": (used + offered).to_json(),
        "used_resources": used.to_json(),
        "offered_resources": offered.to_json(),
        **_allocation_json(state, framework, active, now),
        "tasks": [task_json(t) for t in framework.tasks.values()],
        "completed_tasks": [task_json(t) for t in framework.completed],
        "offers": [
            {"id": o.offer_id, "framework_id": o.framework_id, "agent_id": o.agent_id,
             "slave_id": o.agent_id, "resources": o.resources.to_json()}
            for o in offers
        ],
        "executors": [],
    }


def agent_json(state: MasterState, agent: AgentRecord) -> dict[str, Any]:
    used = Resources.empty()
    for framework_id, task_id in agent.tasks:
        task = state.frameworks[framework_id].tasks.get(task_id)
        if task is not None and not task.released:
            used = used + task.resources
    offered = state.offers.offered_on(agent.agent_id)
    return {
        "id": agent.agent_id,
        "pid": f"agent@{agent.ip or agent.hostname}:{agent.http_port}",
        "hostname": agent.hostname,
        "ip": agent.ip,
        "port": agent.http_port,
        "attributes": attributes_json(agent.info.attributes),
        "resources": agent.total.to_json(),
        "used_resources": used.to_json(),
        "offered_resources": offered.to_json(),
        "unreserved_resources": agent.total.unreserved().to_json(),
        "reserved_resources": {},
        "registered_time": agent.registered_at,
        "reregistered_time": agent.reregistered_at,
        "last_seen": agent.last_seen,
        "active": True,
        "version": agent.version,
        "tasks": len(agent.tasks),
    }


def _allocation_json(state: MasterState, framework: FrameworkRecord, active: bool,
                     now: float | None) -> dict[str, Any]:
    """How the allocator sees a framework: shares per role, suppression, filters, and why it
    is offered nothing right now (empty when nothing stops it)."""
    if now is None or not active or not state.allocator.has_framework(framework.framework_id):
        return {}
    summary = state.allocator.framework_summary(framework.framework_id, now)
    return {
        "allocation": {
            "roles": list(summary.roles),
            "allocated": {role: r.to_json() for role, r in summary.allocated.items()},
            "dominant_shares": dict(summary.shares),
            "suppressed_roles": list(summary.suppressed),
            "active_filters": summary.filters,
            "outstanding_offers": len(state.offers.for_framework(framework.framework_id)),
            "why_no_offers": state.allocator.explain(framework.framework_id, now),
        },
    }


def roles_json(state: MasterState) -> list[dict[str, Any]]:
    """Every role with frameworks, weights, quota or allocations (Mesos's /roles, extended)."""
    out = []
    for role in state.allocator.roles_summary():
        entry: dict[str, Any] = {
            "name": role.role,
            "weight": role.weight,
            "resources": role.allocated.to_json(),
            "allocated": role.allocated.to_json(),
            "dominant_share": role.share,
            "frameworks": list(role.frameworks),
        }
        if role.quota is not None:
            entry["quota"] = role.quota.to_json()
        out.append(entry)
    return out


def state_json(state: MasterState, *, started_at: float, elected_at: float | None,
               now: float | None = None) -> dict[str, Any]:
    """Returns the whole /state document."""
    info = state.config.master_info
    leader = f"master@{info.address.ip}:{info.address.port}"
    agents = [agent_json(state, a) for a in state.agents.values()]
    return {
        "version": info.version,
        "id": info.id,
        "pid": leader,
        "hostname": info.hostname,
        "start_time": started_at,
        "elected_time": elected_at,
        "leader": leader,
        "leader_info": json_format.MessageToDict(info, preserving_proto_field_name=True),
        "activated_agents": len(agents),
        "activated_slaves": len(agents),
        "deactivated_agents": 0,
        "deactivated_slaves": 0,
        "agents": agents,
        "slaves": agents,
        "frameworks": [framework_json(state, f, True, now) for f in state.frameworks.values()],
        "completed_frameworks": [framework_json(state, f, False)
                                 for f in state.completed_frameworks.values()],
        "roles": roles_json(state),
        "reservations": {agent_id: reserved.to_json() for agent_id, reserved in state.reservations.items()},
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    }


def _task_counts() -> dict[str, int]:
    return dict.fromkeys(SUMMARY_STATES, 0)


def state_summary_json(state: MasterState, *, cluster: str = "") -> dict[str, Any]:
    """Returns /state-summary: every agent and framework with its resources and its task counts
    by state (live tasks and the completed ones the master remembers), no task listed.

    Dashboards poll it, so it costs one pass over the tasks and no JSON per task.
    """
    agent_counts = {agent_id: _task_counts() for agent_id in state.agents}
    agent_frameworks: dict[str, set[str]] = {agent_id: set() for agent_id in state.agents}
    agent_used = {agent_id: Resources.empty() for agent_id in state.agents}
    frameworks = []
    for framework in state.frameworks.values():
        counts = _task_counts()
        agent_ids: set[str] = set()
        used = Resources.empty()
        for tasks in (framework.tasks.values(), framework.completed):
            for task in tasks:
                name = mensa_pb2.TaskState.Name(task.state)
                if name in counts:
                    counts[name] += 1
                    if task.agent_id in agent_counts:
                        agent_counts[task.agent_id][name] += 1
                if task.agent_id in agent_frameworks and not task.released:
                    agent_frameworks[task.agent_id].add(framework.framework_id)
                    agent_ids.add(task.agent_id)
                    agent_used[task.agent_id] = agent_used[task.agent_id] + task.resources
                    used = used + task.resources
        offered = Resources.empty()
        for offer in state.offers.for_framework(framework.framework_id):
            offered = offered + offer.resources
        info = framework.info
        frameworks.append({
            "id": framework.framework_id,
            "name": info.name,
            "pid": "",
            "hostname": info.hostname,
            "webui_url": info.webui_url,
            "user": info.user,
            "role": info.role or "*",
            "roles": framework.roles,
            "capabilities": [mensa_pb2.FrameworkInfo.Capability.Type.Name(c.type)
                             for c in info.capabilities],
            "active": framework.connected,
            "connected": framework.connected,
            "recovered": framework.recovered,
            "used_resources": used.to_json(),
            "offered_resources": offered.to_json(),
            **counts,
            "agent_ids": sorted(agent_ids),
            "slave_ids": sorted(agent_ids),
        })
    agents = []
    for agent in state.agents.values():
        reserved = agent.total.reserved()
        agents.append({
            "id": agent.agent_id,
            "pid": f"agent@{agent.ip or agent.hostname}:{agent.http_port}",
            "hostname": agent.hostname,
            "resources": agent.total.to_json(),
            "used_resources": agent_used[agent.agent_id].to_json(),
            "offered_resources": state.offers.offered_on(agent.agent_id).to_json(),
            "reserved_resources": {role: reserved.filter_roles((role,)).to_json()
                                   for role in sorted(reserved.roles())},
            "unreserved_resources": agent.total.unreserved().to_json(),
            "attributes": attributes_json(agent.info.attributes),
            "active": True,
            "version": agent.version,
            **agent_counts[agent.agent_id],
            "framework_ids": sorted(agent_frameworks[agent.agent_id]),
        })
    return {
        "hostname": state.config.master_info.hostname,
        "cluster": cluster,
        "agents": agents,
        "slaves": agents,
        "frameworks": frameworks,
    }
