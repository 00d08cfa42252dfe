"""What ``mensa top`` shows: a /state document summed up, and one screenful of text (pure).

``summarize(state)`` reduces /state to the figures on screen (cluster totals and usage per
resource, tasks per state, the frameworks with the largest dominant shares, the fullest agents,
the tasks that changed state last); ``render_frame`` lays a summary out as lines, fitted to a
terminal's width and height when given, with the last error (the master went away) on top::

    lines = render_frame(summarize(state), now=time.time(), interval=2.0, width=120, height=40)

Selections use ``heapq.nlargest`` over rows built once: a 1,000-agent, 10,000-task /state is a
few passes, never a join inside a loop.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any

from mensa.deploy.views import (
    TASK_STATES,
    AgentRow,
    FrameworkRow,
    StateIndex,
    TaskRow,
    agent_rows,
    fmt_age,
    fmt_bool,
    fmt_mb,
    fmt_number,
    fmt_share,
    fmt_used,
    framework_rows,
    scalar,
    short_state,
    table,
    task_row,
)

RESOURCES = ("cpus", "mem", "disk", "gpus")


@dataclass(slots=True, frozen=True)
class ResourceUsage:
    """One resource across the cluster: used by tasks, offered to frameworks, and total
    (cpus as counts, mem/disk in MB)."""

    name: str
    used: float
    offered: float
    total: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "used": self.used, "offered": self.offered, "total": self.total}


@dataclass(slots=True)
class TopSummary:
    """The figures one ``mensa top`` frame shows."""

    master_id: str
    leader: str
    agents: int
    frameworks: int
    resources: list[ResourceUsage]
    task_counts: dict[str, int]
    top_frameworks: list[FrameworkRow] = field(default_factory=list)
    top_agents: list[AgentRow] = field(default_factory=list)
    recent_tasks: list[TaskRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Returns the summary as ``mensa top --json`` prints it (one object per frame)."""
        return {
            "master_id": self.master_id, "leader": self.leader, "agents": self.agents,
            "frameworks": self.frameworks, "resources": [r.to_json() for r in self.resources],
            "task_counts": dict(self.task_counts),
            "top_frameworks": [r.to_json() for r in self.top_frameworks],
            "top_agents": [r.to_json() for r in self.top_agents],
            "recent_tasks": [r.to_json() for r in self.recent_tasks],
        }


def summarize(state: dict[str, Any], top: int = 5, recent: int = 50) -> TopSummary:
    """Returns the summary of a /state document: the ``top`` frameworks by dominant share and
    agents by usage, and the ``recent`` tasks (live or completed) whose last status is newest."""
    index = StateIndex.build(state)
    agents = agent_rows(index)
    resources = []
    for name in RESOURCES:
        total = index.totals.get(name, 0.0)
        if name == "gpus" and total <= 0:
            continue
        used = sum(scalar(a.get("used_resources"), name) for a in index.agents.values())
        offered = sum(scalar(a.get("offered_resources"), name) for a in index.agents.values())
        resources.append(ResourceUsage(name, used, offered, total))
    counts: dict[str, int] = {}
    for task, _ in index.tasks(completed=True):
        name = str(task.get("state", "TASK_UNKNOWN"))
        counts[name] = counts.get(name, 0) + 1
    order = {s: i for i, s in enumerate(TASK_STATES)}
    counts = dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    frameworks = framework_rows(index)
    newest = heapq.nlargest(recent, index.tasks(completed=True), key=lambda pair: _last_time(pair[0]))
    return TopSummary(
        master_id=str(state.get("id", "?")), leader=str(state.get("leader", "?")),
        agents=len(agents), frameworks=len(frameworks), resources=resources, task_counts=counts,
        top_frameworks=heapq.nlargest(top, frameworks, key=lambda r: (r.dominant_share or 0.0, r.cpus_used)),
        top_agents=heapq.nlargest(top, agents, key=lambda r: (r.usage, r.tasks)),
        recent_tasks=[task_row(task, fw, index) for task, fw in newest])


def _last_time(task: dict[str, Any]) -> float:
    statuses = task.get("statuses") or []
    value = statuses[-1].get("timestamp") if statuses else None
    return float(value) if isinstance(value, int | float) else 0.0


def bar(used: float, offered: float, total: float, width: int) -> str:
    """Returns ``[####++....]``: ``#`` for the used part of ``total``, ``+`` for the offered part."""
    if total <= 0:
        return "[" + " " * width + "]"
    n_used = min(width, round(width * used / total))
    n_offered = min(width - n_used, round(width * offered / total))
    return "[" + "#" * n_used + "+" * n_offered + "." * (width - n_used - n_offered) + "]"


def render_frame(summary: TopSummary | None, *, now: float, interval: float, error: str | None = None,
                 fetched_at: float | None = None, width: int | None = None,
                 height: int | None = None) -> list[str]:
    """Returns one frame's lines. With ``error`` (the last fetch failed) the frame says so on
    its second line and still shows the last summary that was read (from ``fetched_at``). With
    ``width``/``height`` (a terminal) lines are cut to the width and the recent-task list is cut
    to what fits."""
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    # What matters first: a narrow terminal cuts the line's end (the long master id).
    head = f"mensa top  {clock}  every {fmt_number(interval)}s"
    if summary is None:
        lines = [f"{head}  (no data yet)"]
    else:
        lines = [f"{head}  agents {summary.agents}  frameworks {summary.frameworks}  "
                 f"master {summary.master_id} at {summary.leader}"]
    if error is not None:
        since = f"; showing data from {fmt_age(fetched_at, now)}" if fetched_at else ""
        lines.append(f"! {error}{since}; retrying every {fmt_number(interval)}s")
    if summary is None:
        return _fit(lines, width, height)
    lines.append("")
    bar_width = 40 if width is None else max(10, min(60, width - 40))
    for r in summary.resources:
        unit = "" if r.name in ("cpus", "gpus") else "mb"
        offered = f"  offered {fmt_mb(r.offered) if unit else fmt_number(r.offered)}" if r.offered else ""
        lines.append(f"{r.name.upper():<5} {bar(r.used, r.offered, r.total, bar_width)}  "
                     f"{fmt_used(r.used, r.total, unit)}{offered}")
    total = sum(summary.task_counts.values())
    counts = "  ".join(f"{short_state(s)} {n}" for s, n in summary.task_counts.items())
    lines += ["", f"TASKS {total}" + (f"  {counts}" if counts else "")]
    lines += ["", "TOP FRAMEWORKS BY DOMINANT SHARE"]
    lines += table(["NAME", "ID", "ROLES", "TASKS", "CPUS", "MEM", "SHARE"],
                   ([f.name, f.id, ",".join(f.roles), f.tasks, fmt_number(f.cpus_used), fmt_mb(f.mem_used),
                     fmt_share(f.dominant_share)] for f in summary.top_frameworks),
                   right=(3, 4, 5, 6)).splitlines()
    lines += ["", "TOP AGENTS BY USAGE"]
    lines += table(["HOSTNAME", "ID", "CPUS", "MEM", "TASKS", "USAGE"],
                   ([a.hostname, a.id, fmt_used(a.cpus_used, a.cpus_total),
                     fmt_used(a.mem_used, a.mem_total, "mb"), a.tasks, f"{100 * a.usage:.0f}%"]
                    for a in summary.top_agents),
                   right=(4, 5)).splitlines()
    lines += ["", "RECENTLY CHANGED TASKS"]
    recent = summary.recent_tasks
    if height is not None:
        recent = recent[:max(1, height - len(lines) - 1)]
    lines += table(["UPDATED", "ID", "FRAMEWORK", "AGENT", "STATE", "HEALTH"],
                   ([fmt_age(t.last_status_time, now), t.id, t.framework_name, t.agent_hostname or t.agent_id,
                     short_state(t.state), fmt_bool(t.healthy, "healthy", "unhealthy")] for t in recent)
                   ).splitlines()
    return _fit(lines, width, height)


def _fit(lines: list[str], width: int | None, height: int | None) -> list[str]:
    if height is not None:
        lines = lines[:max(1, height)]
    if width is not None:
        lines = [line[:width] for line in lines]
    return lines
