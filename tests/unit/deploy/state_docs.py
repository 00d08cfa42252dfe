"""Hand-built /state documents in the shape master/http/state_json.py produces, for the CLI's
pure view tests."""

from __future__ import annotations

from typing import Any

NOW = 1_700_000_000.0


def res(cpus: float = 0, mem: float = 0, disk: float = 0, **more: float | str) -> dict[str, Any]:
    return {"cpus": float(cpus), "mem": float(mem), "disk": float(disk), "gpus": 0.0, **more}


def agent(agent_id: str, hostname: str, total: dict[str, Any], used: dict[str, Any] | None = None,
          offered: dict[str, Any] | None = None, *, attributes: dict[str, Any] | None = None,
          registered: float = NOW - 600, port: int = 5052) -> dict[str, Any]:
    return {
        "id": agent_id, "pid": f"agent@127.0.0.1:{port}", "hostname": hostname, "ip": "127.0.0.1",
        "port": port, "attributes": attributes or {}, "resources": total,
        "used_resources": used or res(), "offered_resources": offered or res(),
        "unreserved_resources": total, "reserved_resources": {}, "registered_time": registered,
        "reregistered_time": None, "active": True, "version": "0.1.0", "tasks": 0,
    }


def task(task_id: str, framework_id: str, agent_id: str, state: str = "TASK_RUNNING", *,
         cpus: float = 0.5, mem: float = 128, updated: float = NOW - 30,
         healthy: bool | None = None, name: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"state": state, "timestamp": updated}
    if healthy is not None:
        status["healthy"] = healthy
    return {
        "id": task_id, "name": name or task_id, "framework_id": framework_id, "executor_id": "",
        "agent_id": agent_id, "slave_id": agent_id, "state": state, "resources": res(cpus, mem),
        "statuses": [{"state": "TASK_STAGING", "timestamp": updated - 5}, status],
    }


def framework(framework_id: str, name: str, tasks: list[dict[str, Any]] | None = None,
              completed: list[dict[str, Any]] | None = None, *, roles: list[str] | None = None,
              shares: dict[str, float] | None = None, active: bool = True) -> dict[str, Any]:
    live = tasks or []
    used = res(sum(t["resources"]["cpus"] for t in live), sum(t["resources"]["mem"] for t in live))
    out: dict[str, Any] = {
        "id": framework_id, "name": name, "user": "root", "hostname": "", "webui_url": "",
        "principal": "", "role": (roles or ["*"])[0], "roles": roles or ["*"], "failover_timeout": 0.0,
        "checkpoint": False, "capabilities": [], "active": active, "connected": active,
        "recovered": False, "registered_time": NOW - 300, "reregistered_time": None,
        "unregistered_time": None, "resources": used, "used_resources": used,
        "offered_resources": res(), "tasks": live, "completed_tasks": completed or [], "offers": [],
        "executors": [],
    }
    if shares is not None:
        out["allocation"] = {"roles": list(shares), "allocated": {}, "dominant_shares": shares,
                             "suppressed_roles": [], "active_filters": [], "outstanding_offers": 0,
                             "why_no_offers": []}
    return out


def state(agents: list[dict[str, Any]], frameworks: list[dict[str, Any]],
          completed_frameworks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "version": "0.1.0", "id": "master-1", "pid": "master@127.0.0.1:5050", "hostname": "m1",
        "start_time": NOW - 3600, "elected_time": NOW - 3600, "leader": "master@127.0.0.1:5050",
        "activated_agents": len(agents), "agents": agents, "slaves": agents,
        "frameworks": frameworks, "completed_frameworks": completed_frameworks or [], "roles": [],
        "reservations": {}, "orphan_tasks": [], "unregistered_frameworks": [],
    }


def small_cluster() -> dict[str, Any]:
    """Two agents, two frameworks (web with shares from the allocator, batch without), live and
    completed tasks."""
    web_tasks = [
        task("web-1", "fw-web", "a1", cpus=1, mem=512, healthy=True, updated=NOW - 90),
        task("web-2", "fw-web", "a2", "TASK_STAGING", cpus=1, mem=512, updated=NOW - 5),
    ]
    batch_tasks = [task("job-1", "fw-batch", "a1", cpus=2, mem=1536, healthy=False, updated=NOW - 7200)]
    batch_done = [task("job-0", "fw-batch", "a2", "TASK_FAILED", updated=NOW - 20),
                  task("job-00", "fw-batch", "a1", "TASK_FINISHED", updated=NOW - 4000)]
    agents = [
        agent("a2", "node-b", res(4, 4096, 10240), res(1, 512), attributes={"rack": "b"}, port=5053,
              registered=NOW - 2 * 86400),
        agent("a1", "node-a", res(4, 4096, 10240), res(3, 2048), res(0.5, 256),
              attributes={"rack": "a", "gen": 3.0}),
    ]
    frameworks = [framework("fw-web", "web", web_tasks, roles=["web"], shares={"web": 0.4}),
                  framework("fw-batch", "batch", batch_tasks, batch_done, roles=["batch", "etl"])]
    old = framework("fw-old", "old", [], [task("old-1", "fw-old", "a-gone", "TASK_KILLED", updated=NOW - 50)],
                    active=False)
    return state(agents, frameworks, [old])
