"""The agent's /metrics/snapshot figures, with Mesos's agent names (pure).

Most figures are read off ``AgentState`` when asked. Finished tasks are the exception: the agent
keeps only the last 1000, so ``AgentMetrics`` counts them by final state as they reach
``state.completed`` (the shell calls ``observe_completed`` after every event; the count is
exact however many tasks complete between scrapes).

Names: ``slave/uptime_secs``, ``slave/registered`` (1 or 0), ``slave/tasks_staging|starting|
running|killing`` (live tasks now), ``slave/tasks_finished|failed|killed|lost|error|dropped|gone``
(since the agent started, counting terminal tasks still waiting for their acknowledgement),
``slave/cpus_total|used|percent`` and the same for ``mem`` and ``disk`` (MB; ``percent`` is the
fraction used, 0..1, as in Mesos), ``slave/executors_running`` and ``slave/containers_running``
(one container per task), ``slave/frameworks_active``, ``slave/status_updates_pending`` (updates
not yet acknowledged) and ``slave/status_updates_retrying`` (tasks whose oldest update was sent
more than once).

Usage::

    metrics = AgentMetrics(started_at=time.time())
    metrics.observe_completed(state.completed)          # after each event
    agent_metrics_json(state, metrics, now=time.time())
"""

from __future__ import annotations

from collections.abc import Iterable, Reversible
from dataclasses import dataclass, field

from mensa.agent.state import AgentState
from mensa.agent.tasks import TaskRecord
from mensa.proto import mensa_pb2

LIVE_STATES = ("staging", "starting", "running", "killing")
COMPLETED_STATES = ("finished", "failed", "killed", "lost", "error", "dropped", "gone")
SCALARS = ("cpus", "mem", "disk")


def short_state(state: mensa_pb2.TaskState) -> str:
    """``TASK_RUNNING`` -> ``running``."""
    return mensa_pb2.TaskState.Name(state).lower().removeprefix("task_")


def scalar_totals(resources: Iterable[mensa_pb2.Resource]) -> dict[str, float]:
    """Sums the scalar resources by name (all roles), without validating them."""
    out: dict[str, float] = {}
    for resource in resources:
        if resource.type == mensa_pb2.Value.SCALAR:
            out[resource.name] = out.get(resource.name, 0.0) + resource.scalar.value
    return out


@dataclass(slots=True)
class AgentMetrics:
    """What the agent counts since it started; see the module docstring."""

    started_at: float
    # Completed tasks by final state (``finished``, ``failed``, ...).
    tasks_completed: dict[str, int] = field(default_factory=dict)
    _newest: TaskRecord | None = None

    def observe_completed(self, completed: Reversible[TaskRecord]) -> None:
        """Counts the tasks appended to ``completed`` (oldest first) since the last call.

        The newest record seen last time marks where to stop; when it has been pushed out of
        the bounded list, everything in it is new."""
        newest: TaskRecord | None = None
        for record in reversed(completed):
            if newest is None:
                newest = record
            if record is self._newest:
                break
            key = short_state(record.state)
            self.tasks_completed[key] = self.tasks_completed.get(key, 0) + 1
        if newest is not None:
            self._newest = newest


def agent_metrics_json(state: AgentState, metrics: AgentMetrics, *, now: float) -> dict[str, float]:
    """Returns the agent's /metrics/snapshot (see the module docstring), keys sorted."""
    out: dict[str, float] = {
        "slave/uptime_secs": max(0.0, now - metrics.started_at),
        "slave/registered": 1 if state.registered else 0,
    }
    live = dict.fromkeys(LIVE_STATES, 0)
    completed = {name: metrics.tasks_completed.get(name, 0) for name in COMPLETED_STATES}
    used = dict.fromkeys(SCALARS, 0.0)
    containers = 0
    frameworks: set[str] = set()
    for record in state.tasks.values():
        name = short_state(record.state)
        if record.container_running:
            containers += 1
        if record.terminal:
            if name in completed:
                completed[name] += 1
            continue
        frameworks.add(record.framework_id)
        if name in live:
            live[name] += 1
        for scalar, value in scalar_totals(record.task_info.resources).items():
            if scalar in used:
                used[scalar] += value
    for name, count in (*live.items(), *completed.items()):
        out[f"slave/tasks_{name}"] = count
    total = scalar_totals(state.config.resources)
    for scalar in SCALARS:
        have = total.get(scalar, 0.0)
        out[f"slave/{scalar}_total"] = have
        out[f"slave/{scalar}_used"] = used[scalar]
        out[f"slave/{scalar}_percent"] = used[scalar] / have if have else 0.0
    out["slave/executors_running"] = out["slave/containers_running"] = containers
    out["slave/frameworks_active"] = len(frameworks)
    pending = state.updates.pending()
    out["slave/status_updates_pending"] = len(pending)
    out["slave/status_updates_retrying"] = sum(1 for p in pending if p.attempts > 1)
    return dict(sorted(out.items()))
