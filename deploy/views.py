"""Turning a master's /state document into the records and tables the operator CLI prints (pure).

Every function takes the /state dict (Mesos key names with Mensa's beside them, see
master/http/state_json.py) and, where ages matter, ``now`` (seconds since the epoch); none reads
the clock or the network. Records are dataclasses whose ``to_json()`` is what ``--json`` prints
(full values: MB, epoch seconds, full state names); ``*_table`` render them in human units::

    index = StateIndex.build(state)
    rows = select_tasks(index, TaskFilter(states=parse_states("RUNNING")))
    print(tasks_table(rows, now=time.time()))

A /state of 1,000 agents and 10,000 tasks is indexed once (``StateIndex``): every join is a dict
look-up, every table one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

from mensa.proto import mensa_pb2
from mensa.proto.states import TERMINAL_STATES

TASK_STATES: tuple[str, ...] = tuple(mensa_pb2.TaskState.keys())
TERMINAL_STATE_NAMES = frozenset(mensa_pb2.TaskState.Name(s) for s in TERMINAL_STATES)

# ---------------------------------------------------------------------------------------------
# Units


def fmt_number(value: float) -> str:
    """Returns a count or CPU figure with at most two decimals and no trailing zeros: 2.5, 4, 0.33."""
    rounded = round(float(value), 2)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


_MB_UNITS = (("PiB", 1024.0 ** 3), ("TiB", 1024.0 ** 2), ("GiB", 1024.0))


def fmt_mb(mb: float) -> str:
    """Returns a size given in MB (Mesos's unit for mem and disk) in binary units: 512 MiB, 1.2 GiB
    (and nothing as plain 0)."""
    if mb == 0:
        return "0"
    for unit, factor in _MB_UNITS:
        if abs(mb) >= factor:
            return f"{mb / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{fmt_number(mb)} MiB"


def fmt_percent(used: float, total: float) -> str:
    """Returns ``used`` as a whole percentage of ``total`` ("-" when there is no total)."""
    return f"{100.0 * used / total:.0f}%" if total > 0 else "-"


def fmt_share(share: float | None) -> str:
    """Returns a dominant share (0..1) as a percentage with one decimal ("-" when unknown)."""
    return "-" if share is None else f"{100.0 * share:.1f}%"


def fmt_used(used: float, total: float, unit: str = "") -> str:
    """Returns ``used/total pct``: "2.5/4 62%" for cpus, "1.2 GiB/4 GiB 30%" for ``unit="mb"``."""
    fmt = fmt_mb if unit == "mb" else fmt_number
    return f"{fmt(used)}/{fmt(total)} {fmt_percent(used, total)}"


def fmt_age(timestamp: float | None, now: float) -> str:
    """Returns how long ago ``timestamp`` was: "12s ago", "3m ago", "5h ago", "2d ago" ("-" when
    unknown). A timestamp in the future (another machine's clock) reads "0s ago"."""
    if not timestamp:
        return "-"
    seconds = max(0.0, now - timestamp)
    for limit, unit, size in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds // 86400)}d ago"


def fmt_bool(value: bool | None, yes: str = "yes", no: str = "no") -> str:
    return "-" if value is None else (yes if value else no)


def fmt_attributes(attributes: dict[str, Any]) -> str:
    """Returns attributes the way ``--attributes`` takes them: ``rack:a;zone:z1``."""
    return ";".join(f"{k}:{fmt_number(v) if isinstance(v, int | float) else v}"
                    for k, v in sorted(attributes.items()))


def short_state(state: str) -> str:
    """Returns a task state without its ``TASK_`` prefix, for narrow tables."""
    return state.removeprefix("TASK_")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> str:
    """Formats rows as a text table: a header line, then one line per row, columns aligned
    (left, or right for the column indexes in ``right``), trailing blanks removed."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = set(right)
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in align else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def scalar(resources: dict[str, Any] | None, name: str) -> float:
    """Returns a scalar resource from a /state resources object (0 when absent or not a number)."""
    value = (resources or {}).get(name, 0)
    return float(value) if isinstance(value, int | float) else 0.0


# ---------------------------------------------------------------------------------------------
# Records


class _Record:
    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """Returns the record as ``--json`` prints it (every field, full values)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(slots=True, frozen=True)
class AgentRow(_Record):
    """One agent: its resources (cpus, and mem/disk in MB) used and total, and its live tasks."""

    id: str
    hostname: str
    address: str
    cpus_used: float
    cpus_total: float
    mem_used: float
    mem_total: float
    disk_used: float
    disk_total: float
    tasks: int
    attributes: dict[str, Any]
    active: bool
    registered_time: float | None

    @property
    def usage(self) -> float:
        """The larger of its cpus and mem fractions in use (0..1): how full the agent is."""
        return max(_fraction(self.cpus_used, self.cpus_total), _fraction(self.mem_used, self.mem_total))


@dataclass(slots=True, frozen=True)
class FrameworkRow(_Record):
    """One framework: its roles, live task count, resources used and dominant share."""

    id: str
    name: str
    roles: list[str]
    active: bool
    connected: bool
    tasks: int
    cpus_used: float
    mem_used: float
    disk_used: float
    dominant_share: float | None
    dominant_shares: dict[str, float]
    registered_time: float | None


@dataclass(slots=True, frozen=True)
class TaskRow(_Record):
    """One task with its framework's name and its agent's hostname joined in."""

    id: str
    name: str
    framework_id: str
    framework_name: str
    agent_id: str
    agent_hostname: str
    state: str
    healthy: bool | None
    cpus: float
    mem: float
    last_status_time: float | None


def _fraction(used: float, total: float) -> float:
    return used / total if total > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Index and rows


@dataclass(slots=True)
class StateIndex:
    """A /state document indexed once: agents and frameworks (live and completed) by id, cluster
    totals, and each agent's count of live tasks."""

    state: dict[str, Any]
    agents: dict[str, dict[str, Any]]
    frameworks: dict[str, dict[str, Any]]
    completed_framework_ids: frozenset[str]
    totals: dict[str, float]
    tasks_per_agent: dict[str, int]

    @classmethod
    def build(cls, state: dict[str, Any]) -> StateIndex:
        agents = {a.get("id", ""): a for a in state.get("agents", state.get("slaves")) or []}
        live = state.get("frameworks") or []
        completed = state.get("completed_frameworks") or []
        frameworks = {f.get("id", ""): f for f in completed}
        frameworks.update((f.get("id", ""), f) for f in live)
        totals = {name: sum(scalar(a.get("resources"), name) for a in agents.values())
                  for name in ("cpus", "mem", "disk", "gpus")}
        per_agent: dict[str, int] = {}
        for fw in live:
            for task in fw.get("tasks") or []:
                agent_id = task_agent_id(task)
                per_agent[agent_id] = per_agent.get(agent_id, 0) + 1
        return cls(state, agents, frameworks, frozenset(f.get("id", "") for f in completed)
                   - {f.get("id", "") for f in live}, totals, per_agent)

    def tasks(self, completed: bool = False) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Yields ``(task, framework)`` for live frameworks' live tasks; with ``completed``, also
        their completed tasks and every task of completed frameworks."""
        for fid, fw in self.frameworks.items():
            if fid in self.completed_framework_ids and not completed:
                continue
            for task in fw.get("tasks") or []:
                yield task, fw
            if completed:
                for task in fw.get("completed_tasks") or []:
                    yield task, fw


def task_agent_id(task: dict[str, Any]) -> str:
    return str(task.get("agent_id") or task.get("slave_id") or "")


def agent_address(agent: dict[str, Any]) -> str:
    """Returns ``IP:PORT`` of an agent's HTTP server (from ``ip``/``port``, else from its pid)."""
    if agent.get("ip") and agent.get("port"):
        return f"{agent['ip']}:{agent['port']}"
    return str(agent.get("pid", "")).rpartition("@")[2]


def agent_rows(index: StateIndex) -> list[AgentRow]:
    """Returns every agent, sorted by hostname then id."""
    rows = []
    for agent_id, a in index.agents.items():
        total, used = a.get("resources"), a.get("used_resources")
        rows.append(AgentRow(
            id=agent_id, hostname=str(a.get("hostname", "")), address=agent_address(a),
            cpus_used=scalar(used, "cpus"), cpus_total=scalar(total, "cpus"),
            mem_used=scalar(used, "mem"), mem_total=scalar(total, "mem"),
            disk_used=scalar(used, "disk"), disk_total=scalar(total, "disk"),
            tasks=index.tasks_per_agent.get(agent_id, 0), attributes=dict(a.get("attributes") or {}),
            active=bool(a.get("active", True)), registered_time=a.get("registered_time")))
    rows.sort(key=lambda r: (r.hostname, r.id))
    return rows


def dominant_share(fw: dict[str, Any], totals: dict[str, float]) -> tuple[float | None, dict[str, float]]:
    """Returns a framework's dominant share and its shares per role: the allocator's figures
    (``allocation.dominant_shares``) when /state has them, else its used resources' largest
    fraction of the cluster's totals (one share, under its first role); None without totals."""
    shares = (fw.get("allocation") or {}).get("dominant_shares")
    if shares:
        per_role = {str(role): float(share) for role, share in shares.items()}
        return max(per_role.values()), per_role
    used = fw.get("used_resources")
    fractions = [scalar(used, name) / total for name, total in totals.items() if total > 0]
    if not fractions:
        return None, {}
    share = max(fractions)
    return share, {_roles(fw)[0] if _roles(fw) else "*": share}


def _roles(fw: dict[str, Any]) -> list[str]:
    roles = fw.get("roles") or ([fw["role"]] if fw.get("role") else [])
    return [str(r) for r in roles]


def framework_rows(index: StateIndex, completed: bool = False) -> list[FrameworkRow]:
    """Returns the live frameworks (and completed ones with ``completed``), by name then id."""
    rows = []
    for fid, fw in index.frameworks.items():
        done = fid in index.completed_framework_ids
        if done and not completed:
            continue
        used = fw.get("used_resources")
        share, shares = dominant_share(fw, index.totals)
        rows.append(FrameworkRow(
            id=fid, name=str(fw.get("name", "")), roles=_roles(fw),
            active=bool(fw.get("active")) and not done,
            connected=bool(fw.get("connected", fw.get("active"))) and not done,
            tasks=len(fw.get("tasks") or []), cpus_used=scalar(used, "cpus"), mem_used=scalar(used, "mem"),
            disk_used=scalar(used, "disk"), dominant_share=share, dominant_shares=shares,
            registered_time=fw.get("registered_time")))
    rows.sort(key=lambda r: (r.name, r.id))
    return rows


def task_row(task: dict[str, Any], fw: dict[str, Any], index: StateIndex) -> TaskRow:
    """Returns one task joined with its framework's name and its agent's hostname."""
    statuses = task.get("statuses") or []
    last = statuses[-1] if statuses else {}
    healthy = last.get("healthy")
    agent_id = task_agent_id(task)
    agent = index.agents.get(agent_id)
    resources = task.get("resources")
    return TaskRow(
        id=str(task.get("id", "")), name=str(task.get("name") or task.get("id", "")),
        framework_id=str(task.get("framework_id") or fw.get("id", "")),
        framework_name=str(fw.get("name", "")),
        agent_id=agent_id, agent_hostname=str(agent.get("hostname", "")) if agent else "",
        state=str(task.get("state", "")), healthy=healthy if isinstance(healthy, bool) else None,
        cpus=scalar(resources, "cpus"), mem=scalar(resources, "mem"),
        last_status_time=last.get("timestamp"))


# ---------------------------------------------------------------------------------------------
# Task filters


@dataclass(slots=True, frozen=True)
class TaskFilter:
    """Which tasks ``mensa tasks`` lists: states (full names; empty: any), a framework (id or name),
    an agent (id or hostname), and whether completed tasks count."""

    states: frozenset[str] = frozenset()
    framework: str | None = None
    agent: str | None = None
    completed: bool = False


def parse_states(text: str) -> frozenset[str]:
    """Parses ``RUNNING,TASK_FAILED,staging`` into full state names; raises ValueError naming an
    unknown one."""
    out = set()
    for raw in text.split(","):
        name = raw.strip().upper()
        if not name:
            continue
        full = name if name.startswith("TASK_") else f"TASK_{name}"
        if full not in TASK_STATES:
            known = ", ".join(short_state(s) for s in TASK_STATES)
            raise ValueError(f"unknown task state {raw.strip()!r} (one of {known})")
        out.add(full)
    return frozenset(out)


def select_tasks(index: StateIndex, flt: TaskFilter) -> list[TaskRow]:
    """Returns the tasks ``flt`` selects, sorted by framework name, framework id and task id.
    Completed tasks count when asked for, or when a wanted state is terminal. Raises ValueError
    when no framework or agent matches the filter's (a typo should not look like "no tasks")."""
    framework_ids: set[str] | None = None
    if flt.framework is not None:
        framework_ids = {fid for fid, fw in index.frameworks.items()
                         if flt.framework in (fid, fw.get("name"))}
        if not framework_ids:
            raise ValueError(f"no framework has the id or name {flt.framework!r}")
    agent_ids: set[str] | None = None
    if flt.agent is not None:
        agent_ids = {aid for aid, a in index.agents.items() if flt.agent in (aid, a.get("hostname"))}
        # Tasks of an agent that has since gone still name its id.
        if not agent_ids and not any(task_agent_id(t) == flt.agent for t, _ in index.tasks(True)):
            raise ValueError(f"no agent has the id or hostname {flt.agent!r}")
        agent_ids.add(flt.agent)
    completed = flt.completed or bool(flt.states & TERMINAL_STATE_NAMES)
    rows = []
    for task, fw in index.tasks(completed):
        if framework_ids is not None and fw.get("id") not in framework_ids:
            continue
        if agent_ids is not None and task_agent_id(task) not in agent_ids:
            continue
        if flt.states and task.get("state") not in flt.states:
            continue
        rows.append(task_row(task, fw, index))
    rows.sort(key=lambda r: (r.framework_name, r.framework_id, r.id))
    return rows


# ---------------------------------------------------------------------------------------------
# Tables


def agents_table(rows: Sequence[AgentRow], now: float) -> str:
    return table(
        ["ID", "HOSTNAME", "ADDRESS", "CPUS", "MEM", "DISK", "TASKS", "ATTRIBUTES", "REGISTERED"],
        ([r.id, r.hostname, r.address, fmt_used(r.cpus_used, r.cpus_total),
          fmt_used(r.mem_used, r.mem_total, "mb"), fmt_used(r.disk_used, r.disk_total, "mb"), r.tasks,
          fmt_attributes(r.attributes), fmt_age(r.registered_time, now)] for r in rows),
        right=(6,))


def frameworks_table(rows: Sequence[FrameworkRow], totals: dict[str, float]) -> str:
    """Cpus and mem show what each framework uses and its percentage of the cluster's total."""
    return table(
        ["ID", "NAME", "ROLES", "ACTIVE", "TASKS", "CPUS", "MEM", "SHARE"],
        ([r.id, r.name, ",".join(r.roles), fmt_bool(r.active), r.tasks,
          f"{fmt_number(r.cpus_used)} {fmt_percent(r.cpus_used, totals.get('cpus', 0))}",
          f"{fmt_mb(r.mem_used)} {fmt_percent(r.mem_used, totals.get('mem', 0))}",
          fmt_share(r.dominant_share)] for r in rows),
        right=(4, 7))


def tasks_table(rows: Sequence[TaskRow], now: float) -> str:
    return table(
        ["ID", "NAME", "FRAMEWORK", "AGENT", "STATE", "HEALTH", "CPUS", "MEM", "UPDATED"],
        ([r.id, r.name, r.framework_name, r.agent_hostname or r.agent_id, short_state(r.state),
          fmt_bool(r.healthy, "healthy", "unhealthy"), fmt_number(r.cpus), fmt_mb(r.mem),
          fmt_age(r.last_status_time, now)] for r in rows),
        right=(6, 7))


# ---------------------------------------------------------------------------------------------
# ``mensa state``: the whole document in three tables


def _res(r: dict[str, Any]) -> str:
    return f"cpus={r.get('cpus', 0):g} mem={r.get('mem', 0):g} disk={r.get('disk', 0):g}"


def render_state(state: dict[str, Any], completed: bool = False) -> str:
    """Returns ``mensa state``'s report: the master, then its agents, frameworks and tasks."""
    version = state.get("version", "?")
    out = [f"master {state.get('id', '?')} at {state.get('leader', '?')} (version {version})", ""]
    agents = state.get("agents", state.get("slaves")) or []
    out.append(f"AGENTS ({len(agents)})")
    out.append(table(["ID", "HOSTNAME", "TOTAL", "USED", "TASKS"], [
        [a["id"], a["hostname"], _res(a.get("resources") or {}), _res(a.get("used_resources") or {}),
         a.get("tasks", 0)]
        for a in agents
    ]))
    frameworks = state.get("frameworks") or []
    out += ["", f"FRAMEWORKS ({len(frameworks)})"]
    out.append(table(["ID", "NAME", "CONNECTED", "ROLES", "USED", "TASKS"], [
        [f["id"], f["name"], f.get("connected"), ",".join(f.get("roles") or []),
         _res(f.get("used_resources") or {}), len(f.get("tasks") or [])]
        for f in frameworks
    ]))
    rows = []
    for f in frameworks:
        tasks = (f.get("tasks") or []) + ((f.get("completed_tasks") or []) if completed else [])
        rows += [[t["id"], t.get("name", t["id"]), f["name"], t["state"], task_agent_id(t)] for t in tasks]
    out += ["", f"TASKS ({len(rows)})", table(["ID", "NAME", "FRAMEWORK", "STATE", "AGENT"], rows)]
    return "\n".join(out)
