"""The allocator's books: agents, frameworks, who holds what under which role. Pure.

``Books`` is the bookkeeping half of ``Allocator`` (the decision is in ``allocator.py``): every
agent's total and free resources and what each framework holds there; every framework's roles,
activity, suppressed roles and refusal filters; a ``DRFSorter`` of frameworks per role and the
``RoleTree`` of roles, kept in step with every change so that a pass never re-sorts.

Invariants: on every agent, free + every framework's allocation == total, with no unit in two
places; an added framework's allocation on an agent is the sum of its allocations there in the
sorters of the roles it is tracked under (its roles, and dropped roles it still holds things in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from mensa.proto.resources import MILLI, UNRESERVED, Resources

from .roles import RoleTree, is_subrole, role_error
from .sorter import DRFSorter

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Filter:
    resources: Resources  # refused: offers contained in these are not made
    expires_at: float


@dataclass(slots=True)
class _Agent:
    total: Resources
    free: Resources
    static: Resources  # the static reservations in total (they cannot be unreserved)
    reserved_roles: frozenset[str]  # roles with reservations in total
    allocated: dict[str, Resources] = field(default_factory=dict)  # framework id -> resources


@dataclass(slots=True)
class _Framework:
    roles: tuple[str, ...]
    active: bool
    suppressed: set[str] = field(default_factory=set)
    filters: dict[str, list[_Filter]] = field(default_factory=dict)  # agent id -> filters
    tracked: set[str] = field(default_factory=set)  # roles whose sorter holds this framework


class Books:
    """Agents, frameworks and their allocations, with the sorters that order them."""

    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}
        self._frameworks: dict[str, _Framework] = {}
        # Agents on which each framework id (added or not yet) holds resources.
        self._framework_agents: dict[str, set[str]] = {}
        # Frameworks holding filters on each agent, so removing an agent scans no frameworks.
        self._agent_filters: dict[str, set[str]] = {}
        self._tree = RoleTree()  # clients: roles
        self._framework_sorters: dict[str, DRFSorter] = {}  # role -> clients: framework ids
        self._weights: dict[str, float] = {}
        # Bumped whenever a framework may have become offerable (activated, revived, filters
        # cleared, roles or quota changed): it invalidates the "all filtered" memo.
        self._epoch = 0
        # agent id -> role -> (offer, epoch, until): every framework of the role was filtered
        # for that offer on that agent at that epoch, until that time.
        self._blocked: dict[str, dict[str, tuple[Resources, int, float]]] = {}

    # -- agents -------------------------------------------------------------------------------

    def add_agent(
        self, agent_id: str, total: Resources, allocated: Mapping[str, Resources] | None = None
    ) -> None:
        """Adds an agent; ``total`` may hold static reservations (``cpus(ml):2``);
        ``allocated`` maps framework ids to what is already in use there.

        Allocations to frameworks not added yet are booked now and counted in DRF when the
        framework is added. What does not fit in ``total`` is dropped with a warning.
        """
        if agent_id in self._agents:
            raise ValueError(f"agent {agent_id!r} already exists")
        agent = _Agent(total=total, free=total, static=total.reserved(),
                       reserved_roles=frozenset(total.roles() - {UNRESERVED}))
        self._agents[agent_id] = agent
        self._tree.add_total(total)
        for sorter in self._framework_sorters.values():
            sorter.add_total(total)
        for framework_id, resources in (allocated or {}).items():
            fits = _intersection(agent.free, resources)
            if fits != resources:
                log.warning("agent_allocation_clipped", agent_id=agent_id,
                            framework_id=framework_id, requested=str(resources),
                            booked=str(fits))
            if not fits.is_empty():
                self._grant(framework_id, agent_id, agent, fits)

    def remove_agent(self, agent_id: str) -> None:
        """Removes an agent: its allocations leave the frameworks' books and the pool."""
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            log.warning("unknown_agent_ignored", agent_id=agent_id, action="remove")
            return
        for framework_id in agent.allocated:
            self._unindex(framework_id, agent_id)
            fw = self._frameworks.get(framework_id)
            for role in fw.tracked if fw is not None else ():
                sorter = self._framework_sorters[role]
                held = sorter.allocation_on(framework_id, agent_id)
                if not held.is_empty():
                    sorter.unallocated(framework_id, agent_id, held)
                    self._tree.unallocated(role, agent_id, held)
        self._tree.remove_total(agent.total)
        for sorter in self._framework_sorters.values():
            sorter.remove_total(agent.total)
        for framework_id in self._agent_filters.pop(agent_id, ()):
            self._frameworks[framework_id].filters.pop(agent_id, None)
        self._blocked.pop(agent_id, None)

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    # -- frameworks ---------------------------------------------------------------------------

    def add_framework(
        self, framework_id: str, roles: Sequence[str] = (UNRESERVED,), active: bool = True
    ) -> None:
        """Adds a framework subscribed to ``roles``; what agents already book for it counts.

        ValueError for a duplicate id or an invalid role (``*`` is valid: unreserved only).
        """
        if framework_id in self._frameworks:
            raise ValueError(f"framework {framework_id!r} already exists")
        own = _check_roles(roles)
        fw = _Framework(roles=own, active=active)
        self._frameworks[framework_id] = fw
        for role in fw.roles:
            self._track(framework_id, fw, role)
        for agent_id in self._framework_agents.get(framework_id, ()):
            self._count(framework_id, agent_id, self._agents[agent_id].allocated[framework_id])

    def update_framework(self, framework_id: str, roles: Sequence[str]) -> None:
        """Changes a framework's roles (re-subscription). What it holds under a dropped role
        stays booked there (not offered more) until recovered. ValueError for a bad role."""
        own = _check_roles(roles)
        fw = self._framework(framework_id, "update")
        if fw is None:
            return
        fw.roles = own
        fw.suppressed &= set(own)
        for role in own:
            self._track(framework_id, fw, role)
        self._sync(framework_id, fw)
        for role in sorted(fw.tracked - set(own)):
            if not self._framework_sorters[role].allocation(framework_id):
                self._untrack(framework_id, fw, role)
        log.info("framework_roles_updated", framework_id=framework_id, roles=list(own))

    def remove_framework(self, framework_id: str) -> None:
        """Removes a framework; everything allocated to it on every agent becomes free.

        Also frees what agents booked for a framework id that was never added.
        """
        fw = self._frameworks.pop(framework_id, None)
        for agent_id in self._framework_agents.pop(framework_id, ()):
            agent = self._agents[agent_id]
            agent.free = agent.free + agent.allocated.pop(framework_id)
        if fw is None:
            return
        for role in sorted(fw.tracked):
            self._untrack(framework_id, fw, role)
        for agent_id in fw.filters:
            self._drop_filter_index(agent_id, framework_id)

    def has_framework(self, framework_id: str) -> bool:
        return framework_id in self._frameworks

    def activate_framework(self, framework_id: str) -> None:
        """Makes a framework eligible for offers again."""
        fw = self._framework(framework_id, "activate")
        if fw is not None:
            fw.active = True
            self._sync(framework_id, fw)

    def deactivate_framework(self, framework_id: str) -> None:
        """Stops offers to a framework; its allocations stay. Clears its filters (as Mesos)."""
        fw = self._framework(framework_id, "deactivate")
        if fw is not None:
            fw.active = False
            self._sync(framework_id, fw)
            self._clear_filters(framework_id, fw)

    def suppress(self, framework_id: str, roles: Sequence[str] | None = None) -> None:
        """Stops offers to a framework in ``roles`` (all its roles when None) until revived."""
        fw = self._framework(framework_id, "suppress")
        if fw is not None:
            fw.suppressed |= self._own_roles(framework_id, fw, roles)
            self._sync(framework_id, fw)

    def revive(self, framework_id: str, roles: Sequence[str] | None = None) -> None:
        """Unsuppresses ``roles`` (all when None) and removes all the framework's filters."""
        fw = self._framework(framework_id, "revive")
        if fw is not None:
            fw.suppressed -= self._own_roles(framework_id, fw, roles)
            self._sync(framework_id, fw)
            self._clear_filters(framework_id, fw)

    # -- queries ------------------------------------------------------------------------------

    def free(self, agent_id: str) -> Resources:
        """Returns what is free on an agent (empty for an unknown agent)."""
        agent = self._agents.get(agent_id)
        return agent.free if agent is not None else Resources.empty()

    def total(self, agent_id: str) -> Resources:
        """Returns an agent's total, reservations included (empty for an unknown agent)."""
        agent = self._agents.get(agent_id)
        return agent.total if agent is not None else Resources.empty()

    def allocated(self, agent_id: str) -> dict[str, Resources]:
        """Returns what is allocated on an agent, per framework id (a copy)."""
        agent = self._agents.get(agent_id)
        return dict(agent.allocated) if agent is not None else {}

    def framework_allocated(self, framework_id: str) -> Resources:
        """Returns everything allocated to a framework, on every agent."""
        total = Resources.empty()
        for agent_id in self._framework_agents.get(framework_id, ()):
            total = total + self._agents[agent_id].allocated[framework_id]
        return total

    def share(self, framework_id: str, role: str = UNRESERVED) -> float:
        """Returns a framework's weighted dominant share within ``role`` (0 when not there)."""
        sorter = self._framework_sorters.get(role)
        if sorter is None or framework_id not in sorter:
            return 0.0
        return sorter.share(framework_id)

    def is_suppressed(self, framework_id: str, role: str | None = None) -> bool:
        """True when the framework is suppressed in ``role`` (in all its roles when None)."""
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return False
        if role is not None:
            return role in fw.suppressed
        return bool(fw.roles) and all(r in fw.suppressed for r in fw.roles)

    def filters(self, framework_id: str, now: float | None = None) -> int:
        """Returns how many refusal filters a framework holds (only unexpired ones at ``now``)."""
        fw = self._frameworks.get(framework_id)
        if fw is None:
            return 0
        return sum(1 for fs in fw.filters.values() for f in fs if now is None or f.expires_at > now)

    # -- internals: the books ------------------------------------------------------------------

    def _grant(self, framework_id: str, agent_id: str, agent: _Agent, resources: Resources,
               role: str | None = None) -> None:
        """Moves ``resources`` (free on the agent) to the framework's allocation there, under
        ``role`` (which the framework is tracked under) or, when None, the role ``_count``
        books them under."""
        agent.free = agent.free - resources
        held = agent.allocated.get(framework_id)
        agent.allocated[framework_id] = resources if held is None else held + resources
        agents = self._framework_agents.get(framework_id)
        if agents is None:
            self._framework_agents[framework_id] = {agent_id}
        else:
            agents.add(agent_id)
        if role is not None:
            self._framework_sorters[role].allocated(framework_id, agent_id, resources)
            self._tree.allocated(role, agent_id, resources)
        elif framework_id in self._frameworks:
            self._count(framework_id, agent_id, resources)

    def _release(self, framework_id: str, agent_id: str, agent: _Agent, resources: Resources,
                 role: str | None = None) -> None:
        """Moves ``resources`` (allocated to the framework there) back to the agent's free;
        they come off ``role`` first when given."""
        left = agent.allocated[framework_id] - resources
        if left.is_empty():
            del agent.allocated[framework_id]
            self._unindex(framework_id, agent_id)
        else:
            agent.allocated[framework_id] = left
        agent.free = agent.free + resources
        fw = self._frameworks.get(framework_id)
        if fw is not None:
            self._uncount(framework_id, fw, agent_id, resources, role)

    def _count(self, framework_id: str, agent_id: str, resources: Resources) -> None:
        """Books an added framework's allocation whose role is not known: unreserved resources
        under its first role, reserved ones under its first role at or below the reservation's
        role (else under the reservation's role itself)."""
        fw = self._frameworks[framework_id]
        parts: dict[str, Resources] = {}
        for res_role in resources.roles():
            part = _of_role(resources, res_role)
            if res_role == UNRESERVED:
                target = fw.roles[0] if fw.roles else UNRESERVED
            else:
                target = next((r for r in fw.roles if is_subrole(r, res_role)), res_role)
            parts[target] = parts.get(target, Resources.empty()) + part
        for target, part in parts.items():
            self._track(framework_id, fw, target)
            self._framework_sorters[target].allocated(framework_id, agent_id, part)
            self._tree.allocated(target, agent_id, part)

    def _uncount(self, framework_id: str, fw: _Framework, agent_id: str, resources: Resources,
                 role: str | None) -> None:
        if len(fw.tracked) == 1:
            [only] = fw.tracked
            self._framework_sorters[only].unallocated(framework_id, agent_id, resources)
            self._tree.unallocated(only, agent_id, resources)
            return
        order = [role] if role in fw.tracked else []
        order += sorted(fw.tracked - set(fw.roles)) + [r for r in fw.roles if r in fw.tracked]
        remaining = resources
        for r in dict.fromkeys(order):
            sorter = self._framework_sorters[r]
            part = _intersection(sorter.allocation_on(framework_id, agent_id), remaining)
            if not part.is_empty():
                sorter.unallocated(framework_id, agent_id, part)
                self._tree.unallocated(r, agent_id, part)
                remaining = remaining - part
                if r not in fw.roles and not sorter.allocation(framework_id):
                    self._untrack(framework_id, fw, r)
            if remaining.is_empty():
                return

    def _track(self, framework_id: str, fw: _Framework, role: str) -> None:
        """Makes sure ``role`` has a sorter and the framework is a client of it."""
        sorter = self._framework_sorters.get(role)
        if sorter is None:
            sorter = DRFSorter(total=self._tree.totals())
            self._framework_sorters[role] = sorter
            self._tree.add(role)
        if framework_id not in sorter:
            sorter.add(framework_id, active=_eligible(fw, role))
            fw.tracked.add(role)
            self._touch(role)

    def _untrack(self, framework_id: str, fw: _Framework, role: str) -> None:
        """Takes the framework (and what it holds under ``role``) out of the role's sorter."""
        sorter = self._framework_sorters[role]
        for agent_id, resources in sorter.allocation(framework_id).items():
            self._tree.unallocated(role, agent_id, resources)
        sorter.remove(framework_id)
        fw.tracked.discard(role)
        if len(sorter) == 0:
            del self._framework_sorters[role]
            self._tree.remove(role)
        else:
            self._touch(role)

    def _touch(self, role: str) -> None:
        """Marks the role active in the tree exactly while it has an eligible framework."""
        self._tree.set_active(role, self._framework_sorters[role].active_count() > 0)
        self._epoch += 1

    def _sync(self, framework_id: str, fw: _Framework) -> None:
        """Makes the framework active in exactly the role sorters where it may be offered."""
        for role in fw.tracked:
            sorter = self._framework_sorters[role]
            if _eligible(fw, role):
                sorter.activate(framework_id)
            else:
                sorter.deactivate(framework_id)
            self._touch(role)

    def _unindex(self, framework_id: str, agent_id: str) -> None:
        agents = self._framework_agents.get(framework_id)
        if agents is not None:
            agents.discard(agent_id)
            if not agents:
                del self._framework_agents[framework_id]

    def _clear_filters(self, framework_id: str, fw: _Framework) -> None:
        for agent_id in fw.filters:
            self._drop_filter_index(agent_id, framework_id)
        fw.filters.clear()
        self._epoch += 1

    def _drop_filter_index(self, agent_id: str, framework_id: str) -> None:
        holders = self._agent_filters.get(agent_id)
        if holders is not None:
            holders.discard(framework_id)
            if not holders:
                del self._agent_filters[agent_id]

    def _framework(self, framework_id: str, action: str) -> _Framework | None:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            log.warning("unknown_framework_ignored", framework_id=framework_id, action=action)
        return fw

    def _cluster_quantities(self) -> dict[str, int]:
        return {name: round(value * MILLI) for name, value in self._tree.totals().items()}

    @staticmethod
    def _own_roles(framework_id: str, fw: _Framework, roles: Sequence[str] | None) -> set[str]:
        if roles is None:
            return set(fw.roles)
        own = {r for r in roles if r in fw.roles}
        if len(own) != len(set(roles)):
            log.warning("unsubscribed_roles_ignored", framework_id=framework_id,
                        roles=sorted(set(roles) - own))
        return own


def _check_roles(roles: Sequence[str]) -> tuple[str, ...]:
    if isinstance(roles, str):
        raise TypeError(f"roles must be a sequence of role names, got the string {roles!r}")
    own = tuple(dict.fromkeys(roles))
    for role in own:
        error = role_error(role, allow_star=True)
        if error is not None:
            raise ValueError(error)
    return own


def _eligible(fw: _Framework, role: str) -> bool:
    return fw.active and role in fw.roles and role not in fw.suppressed


def _of_role(resources: Resources, role: str) -> Resources:
    """Returns the part of ``resources`` that carries ``role``."""
    roles = resources.roles()
    if roles == {role}:
        return resources
    if role not in roles:
        return Resources.empty()
    return resources.filter_roles((role,))


def _intersection(a: Resources, b: Resources) -> Resources:
    """Returns what ``a`` and ``b`` have in common (scalars: the minimum)."""
    return a - (a - b)
