"""What the allocator shows the operator: per-role and per-framework summaries, and why a
framework is offered nothing. Pure; read-only over an ``Allocator``'s books.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mensa.proto.resources import MILLI, UNRESERVED, Resources

from .quota import Quota, room
from .roles import is_subrole, lineage

if TYPE_CHECKING:
    from .allocator import Allocator


@dataclass(frozen=True, slots=True)
class RoleSummary:
    """One role: its weight, quota, what it and its sub-roles hold, their weighted dominant
    share at the role's level, and the frameworks subscribed to it."""

    role: str
    weight: float
    quota: Quota | None
    allocated: Resources
    share: float
    frameworks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FrameworkSummary:
    """One framework: its roles, what it holds and its share per role, its suppressed roles,
    its live filters (count) and whether it is active."""

    roles: tuple[str, ...]
    allocated: dict[str, Resources]
    shares: dict[str, float]
    suppressed: tuple[str, ...]
    filters: int
    active: bool


def roles_summary(alloc: Allocator) -> list[RoleSummary]:
    """Returns every role with frameworks, a weight, a quota or allocations, and their
    parents, by name."""
    subscribed: dict[str, list[str]] = {}
    for framework_id, fw in alloc._frameworks.items():
        for role in fw.roles:
            subscribed.setdefault(role, []).append(framework_id)
    names = set(subscribed) | set(alloc._weights) | set(alloc._quotas) | set(alloc._tree.roles())
    names = {ancestor for role in names for ancestor in lineage(role)}  # parents show too
    out = []
    for role in sorted(names):
        held = Resources.empty()
        for resources in alloc._tree.allocation(role).values():
            held = held + resources
        out.append(RoleSummary(
            role=role, weight=alloc.weight(role), quota=alloc._quotas.get(role),
            allocated=held, share=alloc._tree.share(role),
            frameworks=tuple(sorted(subscribed.get(role, ())))))
    return out


def framework_summary(alloc: Allocator, framework_id: str, now: float) -> FrameworkSummary:
    """Returns a framework's summary; ValueError for an unknown framework."""
    fw = alloc._frameworks.get(framework_id)
    if fw is None:
        raise ValueError(f"unknown framework {framework_id!r}")
    allocated: dict[str, Resources] = {}
    shares: dict[str, float] = {}
    for role in sorted(fw.tracked):
        sorter = alloc._framework_sorters[role]
        held = Resources.empty()
        for resources in sorter.allocation(framework_id).values():
            held = held + resources
        if not held.is_empty() or role in fw.roles:
            allocated[role] = held
            shares[role] = sorter.share(framework_id)
    return FrameworkSummary(
        roles=fw.roles, allocated=allocated, shares=shares,
        suppressed=tuple(r for r in fw.roles if r in fw.suppressed),
        filters=alloc.filters(framework_id, now), active=fw.active)


def explain(alloc: Allocator, framework_id: str, now: float) -> list[str]:
    """Returns why a framework receives no offers right now, one reason a line; empty when
    nothing stops it (it is then offered resources at the next pass that has some for it)."""
    fw = alloc._frameworks.get(framework_id)
    if fw is None:
        return [f"framework {framework_id} is not subscribed"]
    if not fw.active:
        return [f"framework {framework_id} is inactive (disconnected or not yet re-subscribed)"]
    if not fw.roles:
        return [f"framework {framework_id} has no roles"]
    reasons: list[str] = []
    open_roles = [r for r in fw.roles if r not in fw.suppressed]
    if not open_roles:
        return [f"suppressed in every role ({', '.join(fw.roles)}): no offers until it revives"]
    if len(open_roles) < len(fw.roles):
        reasons.append("suppressed in " + ", ".join(r for r in fw.roles if r in fw.suppressed))
    blocked_everywhere = True
    for role in open_roles:
        blocked = _role_blocked(alloc, framework_id, role, now, reasons)
        blocked_everywhere = blocked_everywhere and blocked
    return reasons if blocked_everywhere else []


def _role_blocked(alloc: Allocator, framework_id: str, role: str, now: float,
                  reasons: list[str]) -> bool:
    """True when nothing could be offered to the framework under ``role`` now; says why."""
    fw = alloc._frameworks[framework_id]
    limited = []
    for q_role in lineage(role):
        quota = alloc._quotas.get(q_role)
        left = room(quota, alloc._tree.consumed(q_role)) if quota is not None else None
        if left is not None and any(v == 0 for v in left.values()):
            limited.append(f"role {q_role} is at its quota limit for "
                           + ", ".join(sorted(n for n, v in left.items() if v == 0)))
    candidates = 0
    filtered = 0
    for agent_id, agent in alloc._agents.items():
        offerable = alloc._offerable(agent, role)
        if not alloc._allocatable(offerable):
            continue
        candidates += 1
        filters = fw.filters.get(agent_id, ())
        if any(f.expires_at > now and f.resources.contains(offerable) for f in filters):
            filtered += 1
    if candidates == 0:
        reasons.append(f"role {role}: nothing free reaches the minimum allocatable "
                       "on any agent it may use")
        reasons.extend(limited)
        return True
    if filtered == candidates:
        reasons.append(f"role {role}: filtered (declined with refuse_seconds) on all "
                       f"{filtered} agents with free resources for it")
        return True
    if limited:
        reasons.extend(f"role {role}: {line}" for line in limited)
        return True
    held_back = _held_back(alloc, role)
    if held_back:
        reasons.append(f"role {role}: others' unmet quota guarantees hold back what is free "
                       f"({held_back})")
        return True
    if filtered:
        reasons.append(f"role {role}: filtered on {filtered} of {candidates} agents")
    return False


def _held_back(alloc: Allocator, role: str) -> str:
    """Returns the names whose free unreserved amount is all needed by others' unmet
    guarantees ('' when none)."""
    if not alloc._quotas:
        return ""
    available: dict[str, int] = {}
    for agent in alloc._agents.values():
        for name, milli in agent.free.unreserved().quantities().items():
            available[name] = available.get(name, 0) + milli
    required: dict[str, int] = {}
    for q_role in alloc._quotas:
        if is_subrole(role, q_role) or q_role == UNRESERVED:
            continue
        for name, milli in alloc._unmet(q_role, alloc._start_pass()).items():
            required[name] = required.get(name, 0) + milli
    names = sorted(n for n, need in required.items() if available.get(n, 0) <= need)
    return ", ".join(f"{n} {required[n] / MILLI:g} owed" for n in names)
