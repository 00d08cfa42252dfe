"""The master's /metrics/snapshot document: flat Mesos metric names and values (pure).

A leading master reports (Mesos's names; ``slaves`` twins of the ``agents`` ones for Mesos tools):

* ``master/elected`` (1), ``master/uptime_secs``;
* ``master/agents_active|connected|disconnected|inactive|unreachable|recovering``,
  ``master/agent_removals``;
* ``master/frameworks_active|inactive|connected|disconnected``;
* ``master/tasks_staging|starting|running|killing``: live tasks now; ``master/tasks_finished|
  failed|killed|lost|error|dropped|unreachable|gone``: tasks that reached that state since
  election (counters: the master keeps only a bounded number of completed tasks);
* ``master/cpus_total|used|percent`` (``percent`` is the fraction used, 0..1, as in Mesos),
  the same for ``mem`` (MB) and ``disk`` (MB);
* ``master/outstanding_offers``, ``master/offers_sent|accepted|declined|rescinded``,
  ``master/tasks_launched``, ``master/status_updates``, ``master/invalid_messages``,
  ``master/messages_*`` (scheduler calls and agent messages received, by Mesos's message names);
* ``allocator/mesos/allocation_runs`` and the timers ``allocator/mesos/allocation_run_ms``,
  ``master/offer_to_accept_ms``, ``master/launch_to_running_ms`` (latest value, ``/count``,
  ``/min``, ``/max``, ``/p50`` ... ``/p9999`` over the recent window; see ``master/metrics.py``);
* ``allocator/mesos/resources/<name>/total|offered_or_allocated`` and
  ``allocator/mesos/roles/<role>/shares/dominant``.

A master that does not lead knows no state: it reports ``master/elected`` 0 and its uptime only.
"""

from __future__ import annotations

from mensa.master.metrics import timer_json
from mensa.master.state import MasterState
from mensa.proto import mensa_pb2

LIVE_STATES = ("staging", "starting", "running", "killing")
COMPLETED_STATES = ("finished", "failed", "killed", "lost", "error", "dropped", "unreachable", "gone")
SCALARS = ("cpus", "mem", "disk")
# Mensa's message kinds (master.metrics.message_kind) -> Mesos's master/messages_* names.
MESOS_MESSAGES = {
    "call:SUBSCRIBE": "register_framework",
    "call:TEARDOWN": "unregister_framework",
    "call:ACCEPT": "launch_tasks",
    "call:DECLINE": "decline_offers",
    "call:REVIVE": "revive_offers",
    "call:SUPPRESS": "suppress_offers",
    "call:KILL": "kill_task",
    "call:ACKNOWLEDGE": "status_update_acknowledgement",
    "call:RECONCILE": "reconcile_tasks",
    "call:MESSAGE": "framework_to_executor",
    "call:REQUEST": "resource_request",
    "register_agent": "register_slave",
    "status_update": "status_update",
}


def standby_metrics_json(*, now: float, started_at: float) -> dict[str, float]:
    """Returns what a master that does not lead can say: not elected, and its uptime."""
    return {"master/elected": 0, "master/uptime_secs": max(0.0, now - started_at)}


def metrics_json(state: MasterState, *, now: float, started_at: float) -> dict[str, float]:
    """Returns the leading master's /metrics/snapshot (see the module docstring), keys sorted.

    Costs one pass over live tasks and agents (no JSON per task), so it may be polled often.
    """
    c = state.counters
    m = state.metrics
    out: dict[str, float] = {"master/elected": 1, "master/uptime_secs": max(0.0, now - started_at)}

    agents = len(state.agents)
    connected_frameworks = sum(1 for f in state.frameworks.values() if f.connected)
    for noun in ("agents", "slaves"):
        out[f"master/{noun}_active"] = agents
        out[f"master/{noun}_connected"] = agents
        out[f"master/{noun}_disconnected"] = 0
        out[f"master/{noun}_inactive"] = 0
        out[f"master/{noun}_unreachable"] = len(state.unreachable_agents)
        out[f"master/{noun}_recovering"] = len(state.recovering_agents)
    out["master/agent_removals"] = out["master/slave_removals"] = c.agents_removed
    out["master/frameworks_active"] = connected_frameworks
    out["master/frameworks_inactive"] = len(state.frameworks) - connected_frameworks
    out["master/frameworks_connected"] = connected_frameworks
    out["master/frameworks_disconnected"] = len(state.frameworks) - connected_frameworks

    live = dict.fromkeys(LIVE_STATES, 0)
    by_state: dict[str, int] = {}  # every state held by a task in `tasks`, the older names
    used = dict.fromkeys(SCALARS, 0.0)
    live_count = 0
    for framework in state.frameworks.values():
        live_count += len(framework.tasks)
        for task in framework.tasks.values():
            name = mensa_pb2.TaskState.Name(task.state).lower()
            by_state[name] = by_state.get(name, 0) + 1
            short = name.removeprefix("task_")
            if short in live:
                live[short] += 1
            if not task.released:
                for scalar, value in task.resources.scalar_totals().items():
                    if scalar in used:
                        used[scalar] += value
    for short, count in live.items():
        out[f"master/tasks_{short}"] = count
    for short in COMPLETED_STATES:
        out[f"master/tasks_{short}"] = m.tasks_completed.get(short, 0)
    out["master/tasks_live"] = live_count
    for name, count in by_state.items():
        out[f"master/{name}"] = count  # master/task_running, ...: the names earlier versions used

    total = dict.fromkeys(SCALARS, 0.0)
    for agent in state.agents.values():
        for scalar, value in agent.total.scalar_totals().items():
            if scalar in total:
                total[scalar] += value
    offered = dict.fromkeys(SCALARS, 0.0)
    for offer in state.offers:
        for scalar, value in offer.resources.scalar_totals().items():
            if scalar in offered:
                offered[scalar] += value
    for scalar in SCALARS:
        out[f"master/{scalar}_total"] = total[scalar]
        out[f"master/{scalar}_used"] = used[scalar]
        out[f"master/{scalar}_percent"] = used[scalar] / total[scalar] if total[scalar] else 0.0
        out[f"allocator/mesos/resources/{scalar}/total"] = total[scalar]
        out[f"allocator/mesos/resources/{scalar}/offered_or_allocated"] = used[scalar] + offered[scalar]

    out["master/outstanding_offers"] = len(state.offers)
    out["master/offers_sent"] = c.offers_sent
    out["master/offers_accepted"] = c.offers_accepted
    out["master/offers_declined"] = c.offers_declined
    out["master/offers_rescinded"] = c.offers_rescinded
    out["master/tasks_launched"] = c.tasks_launched
    out["master/tasks_invalid"] = c.tasks_invalid
    out["master/status_updates"] = out["master/valid_status_updates"] = c.status_updates
    out["master/invalid_messages"] = c.invalid_messages
    for kind, mesos_name in MESOS_MESSAGES.items():
        out[f"master/messages_{mesos_name}"] = m.messages.get(kind, 0)

    out["allocator/mesos/allocation_runs"] = m.allocation.count
    out.update(timer_json("allocator/mesos/allocation_run_ms", m.allocation))
    out.update(timer_json("master/offer_to_accept_ms", m.offer_to_accept))
    out.update(timer_json("master/launch_to_running_ms", m.launch_to_running))
    for role in state.allocator.roles_summary():
        out[f"allocator/mesos/roles/{role.role}/shares/dominant"] = role.share
    return dict(sorted(out.items()))
