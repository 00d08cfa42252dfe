"""Allocator: decides which framework is offered each agent's free resources. Pure.

The allocator keeps the books of every agent (its total, and what is allocated to which
framework: offered or used by a task; the rest is free) and of every framework (its roles,
whether it is active or suppressed, its refusal filters). ``allocate(now)`` walks the agents
and hands each one's free resources to the framework with the lowest weighted dominant share
that wants them (DRF, see ``sorter.py``). The master turns the returned ``Allocation``s into
offers, and calls ``recover`` when an offer is declined, rescinded or a task ends.

It does no I/O, never reads the clock (``now`` is passed in) and draws randomness only from the
injected ``random.Random``.

Structure (as Mesos's hierarchical allocator): a sorter of roles, and per role a sorter of its
frameworks. Every resource is allocated under the role it carries, so a framework is offered
unreserved (``"*"``) resources only when it is subscribed to ``"*"``, and resources reserved for
``ml`` only under ``ml``. Hierarchical roles, role weights, quota and dynamic reservations
are not built yet; they plug into the role level.

Usage::

    alloc = Allocator(rng=random.Random(7))
    alloc.add_agent("a1", Resources.parse("cpus:4;mem:4096"))
    alloc.add_framework("f1")
    [offer] = alloc.allocate(now=0.0)             # f1 gets all of a1: cpus:4;mem:4096
    alloc.recover("a1", "f1", offer.resources, refuse_seconds=5.0, now=1.0)  # declined
    assert alloc.allocate(now=2.0) == []           # filtered until t=6
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from mensa.proto.resources import UNRESERVED, Resources

from .sorter import DRFSorter

log = structlog.get_logger(__name__)

# Refusal filters last at most this long (Mesos caps refuse_seconds the same way).
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Allocation:
    """``resources`` on ``agent_id``, allocated to ``framework_id`` under ``role``."""

    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass(slots=True)
class _Filter:
    resources: Resources  # refused: offers contained in these are not made
    expires_at: float


@dataclass(slots=True)
class _Agent:
    total: Resources
    free: Resources
    allocated: dict[str, Resources] = field(default_factory=dict)  # framework id -> resources


@dataclass(slots=True)
class _Framework:
    roles: tuple[str, ...]
    active: bool
    suppressed: set[str] = field(default_factory=set)
    filters: dict[str, list[_Filter]] = field(default_factory=dict)  # agent id -> filters
    tracked: set[str] = field(default_factory=set)  # roles whose sorter holds this framework


class Allocator:
    """The books of agents and frameworks, and the DRF decision over them.

    Adding an agent or framework that already exists raises ValueError (the caller removes it
    first). Every other call naming an unknown agent or framework logs a warning and does
    nothing, so late or duplicate events are harmless.
    """

    def __init__(
        self,
        *,
        min_allocatable_cpus: float = 0.01,
        min_allocatable_mem: float = 32.0,
        rng: random.Random | None = None,
    ) -> None:
        for name, value in (("min_allocatable_cpus", min_allocatable_cpus),
                            ("min_allocatable_mem", min_allocatable_mem)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative finite number, got {value}")
        self._min_cpus = min_allocatable_cpus
        self._min_mem = min_allocatable_mem
        self._rng = rng
        self._passes = 0  # rotates the agent order when there is no rng
        self._agents: dict[str, _Agent] = {}
        self._frameworks: dict[str, _Framework] = {}
        # Agents on which each framework id (added or not yet) holds resources.
        self._framework_agents: dict[str, set[str]] = {}
        # Frameworks holding filters on each agent, so removing an agent scans no frameworks.
        self._agent_filters: dict[str, set[str]] = {}
        self._role_sorter = DRFSorter()  # clients: roles
        self._framework_sorters: dict[str, DRFSorter] = {}  # role -> clients: framework ids

    # -- agents -------------------------------------------------------------------------------

    def add_agent(
        self, agent_id: str, total: Resources, allocated: Mapping[str, Resources] | None = None
    ) -> None:
        """Adds an agent; ``allocated`` maps framework ids to what is already in use there.

        Allocations to frameworks not added yet are booked now and counted in DRF when the
        framework is added. What does not fit in ``total`` is dropped with a warning.
        """
        if agent_id in self._agents:
            raise ValueError(f"agent {agent_id!r} already exists")
        agent = _Agent(total=total, free=total)
        self._agents[agent_id] = agent
        self._role_sorter.add_total(total)
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
        for framework_id, resources in agent.allocated.items():
            self._unindex(framework_id, agent_id)
            if framework_id in self._frameworks:
                self._uncount(framework_id, agent_id, resources)
        self._role_sorter.remove_total(agent.total)
        for sorter in self._framework_sorters.values():
            sorter.remove_total(agent.total)
        for framework_id in self._agent_filters.pop(agent_id, ()):
            self._frameworks[framework_id].filters.pop(agent_id, None)

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    # -- frameworks ---------------------------------------------------------------------------

    def add_framework(
        self, framework_id: str, roles: Sequence[str] = (UNRESERVED,), active: bool = True
    ) -> None:
        """Adds a framework subscribed to ``roles``; what agents already book for it counts."""
        if framework_id in self._frameworks:
            raise ValueError(f"framework {framework_id!r} already exists")
        if isinstance(roles, str):
            raise TypeError(f"roles must be a sequence of role names, got the string {roles!r}")
        fw = _Framework(roles=tuple(dict.fromkeys(roles)), active=active)
        self._frameworks[framework_id] = fw
        for role in fw.roles:
            self._track(framework_id, fw, role)
        for agent_id in self._framework_agents.get(framework_id, ()):
            self._count(framework_id, agent_id, self._agents[agent_id].allocated[framework_id])

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
        for role in fw.tracked:
            sorter = self._framework_sorters[role]
            for agent_id, resources in sorter.allocation(framework_id).items():
                self._role_sorter.unallocated(role, agent_id, resources)
            sorter.remove(framework_id)
            if len(sorter) == 0:
                del self._framework_sorters[role]
                self._role_sorter.remove(role)
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

    # -- the decision -------------------------------------------------------------------------

    def recover(self, agent_id: str, framework_id: str, resources: Resources,
                refuse_seconds: float | None, now: float) -> None:
        """Frees ``resources`` allocated (offered or used) to a framework on an agent.

        When ``refuse_seconds`` is positive, the framework is not offered resources on that
        agent that the freed resources contain until ``now + refuse_seconds`` (at most
        MAX_REFUSE_SECONDS; infinity is capped, NaN or not positive means no filter). Once
        more is free there than was refused, the filter no longer blocks. What is not
        allocated to the framework there is ignored, with a warning.
        """
        agent = self._agents.get(agent_id)
        if agent is None:
            log.warning("recovered_on_unknown_agent", agent_id=agent_id,
                        framework_id=framework_id, resources=str(resources))
            return
        held = agent.allocated.get(framework_id, Resources.empty())
        freed = _intersection(held, resources)
        if freed != resources:
            log.warning("recovered_resources_clipped", agent_id=agent_id,
                        framework_id=framework_id, requested=str(resources),
                        allocated=str(held), recovered=str(freed))
        if freed.is_empty():
            return
        self._release(framework_id, agent_id, agent, freed)
        seconds = _refuse_seconds(refuse_seconds)
        fw = self._frameworks.get(framework_id)
        if seconds is not None and fw is not None:
            fw.filters.setdefault(agent_id, []).append(_Filter(freed, now + seconds))
            self._agent_filters.setdefault(agent_id, set()).add(framework_id)

    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Allocation]:
        """Returns this pass's allocations, at most one per agent and role, already booked.

        Visits the agents (all, or ``agent_ids``) in an order that changes from pass to pass.
        For each, for each role in DRF order, offers all the agent's free resources of that
        role, when they reach the minimum allocatable (cpus or mem), to the first framework in
        the role's DRF order that is active, not suppressed and not filtered for them. Each
        allocation is booked before the next agent, so that one goes to whoever is lowest now.
        """
        if agent_ids is None:
            order = list(self._agents)
        else:
            order = [a for a in dict.fromkeys(agent_ids) if a in self._agents]
        self._arrange(order)
        out: list[Allocation] = []
        if not self._framework_sorters:
            return out
        for agent_id in order:
            agent = self._agents[agent_id]
            if agent.free.is_empty():
                continue
            for role in self._role_sorter.sort():
                offerable = _of_role(agent.free, role)
                if not self._allocatable(offerable):
                    continue
                # Lazy: the sorter is changed only by _grant, right before the loop ends.
                for framework_id in self._framework_sorters[role].iter_sorted():
                    if self._filtered(framework_id, agent_id, offerable, now):
                        continue
                    self._grant(framework_id, agent_id, agent, offerable, role)
                    out.append(Allocation(framework_id, agent_id, role, offerable))
                    break
        return out

    # -- queries ------------------------------------------------------------------------------

    def free(self, agent_id: str) -> Resources:
        """Returns what is free on an agent (empty for an unknown agent)."""
        agent = self._agents.get(agent_id)
        return agent.free if agent is not None else Resources.empty()

    def total(self, agent_id: str) -> Resources:
        """Returns an agent's total (empty for an unknown agent)."""
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
        """Moves ``resources`` (free on the agent; all of ``role`` when given, which the
        framework is tracked under) to the framework's allocation there."""
        agent.free = agent.free - resources
        agent.allocated[framework_id] = (
            agent.allocated.get(framework_id, Resources.empty()) + resources
        )
        self._framework_agents.setdefault(framework_id, set()).add(agent_id)
        if role is not None:
            self._framework_sorters[role].allocated(framework_id, agent_id, resources)
            self._role_sorter.allocated(role, agent_id, resources)
        elif framework_id in self._frameworks:
            self._count(framework_id, agent_id, resources)

    def _release(self, framework_id: str, agent_id: str, agent: _Agent, resources: Resources) -> None:
        """Moves ``resources`` (allocated to the framework there) back to the agent's free."""
        left = agent.allocated[framework_id] - resources
        if left.is_empty():
            del agent.allocated[framework_id]
            self._unindex(framework_id, agent_id)
        else:
            agent.allocated[framework_id] = left
        agent.free = agent.free + resources
        if framework_id in self._frameworks:
            self._uncount(framework_id, agent_id, resources)

    def _unindex(self, framework_id: str, agent_id: str) -> None:
        agents = self._framework_agents.get(framework_id)
        if agents is not None:
            agents.discard(agent_id)
            if not agents:
                del self._framework_agents[framework_id]

    def _count(self, framework_id: str, agent_id: str, resources: Resources) -> None:
        """Records an added framework's allocation in the sorters, under each resource's role."""
        fw = self._frameworks[framework_id]
        for role in resources.roles():
            part = _of_role(resources, role)
            self._track(framework_id, fw, role)
            self._framework_sorters[role].allocated(framework_id, agent_id, part)
            self._role_sorter.allocated(role, agent_id, part)

    def _uncount(self, framework_id: str, agent_id: str, resources: Resources) -> None:
        for role in resources.roles():
            part = _of_role(resources, role)
            self._framework_sorters[role].unallocated(framework_id, agent_id, part)
            self._role_sorter.unallocated(role, agent_id, part)

    def _track(self, framework_id: str, fw: _Framework, role: str) -> None:
        """Makes sure ``role`` has a sorter and the framework is a client of it."""
        sorter = self._framework_sorters.get(role)
        if sorter is None:
            sorter = DRFSorter(total=self._role_sorter.totals())
            self._framework_sorters[role] = sorter
            self._role_sorter.add(role)
        if framework_id not in sorter:
            sorter.add(framework_id, active=_eligible(fw, role))
            fw.tracked.add(role)

    def _sync(self, framework_id: str, fw: _Framework) -> None:
        """Makes the framework active in exactly the role sorters where it may be offered."""
        for role in fw.tracked:
            sorter = self._framework_sorters[role]
            if _eligible(fw, role):
                sorter.activate(framework_id)
            else:
                sorter.deactivate(framework_id)

    # -- internals: the decision ---------------------------------------------------------------

    def _arrange(self, order: list[str]) -> None:
        """Reorders the agents of a pass: shuffled with the rng, else rotated each pass."""
        if self._rng is not None:
            self._rng.shuffle(order)
        elif order:
            start = self._passes % len(order)
            order[:] = order[start:] + order[:start]
        self._passes += 1

    def _allocatable(self, resources: Resources) -> bool:
        if resources.is_empty():
            return False
        return (resources.scalar("cpus") >= self._min_cpus
                or resources.scalar("mem") >= self._min_mem)

    def _filtered(self, framework_id: str, agent_id: str, offerable: Resources, now: float) -> bool:
        """True when a live filter blocks ``offerable``; drops the expired ones it meets."""
        fw = self._frameworks[framework_id]
        filters = fw.filters.get(agent_id)
        if not filters:
            return False
        live = [f for f in filters if f.expires_at > now]
        if len(live) != len(filters):
            if live:
                fw.filters[agent_id] = live
            else:
                del fw.filters[agent_id]
                self._drop_filter_index(agent_id, framework_id)
        return any(f.resources.contains(offerable) for f in live)

    def _clear_filters(self, framework_id: str, fw: _Framework) -> None:
        for agent_id in fw.filters:
            self._drop_filter_index(agent_id, framework_id)
        fw.filters.clear()

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

    @staticmethod
    def _own_roles(framework_id: str, fw: _Framework, roles: Sequence[str] | None) -> set[str]:
        if roles is None:
            return set(fw.roles)
        own = {r for r in roles if r in fw.roles}
        if len(own) != len(set(roles)):
            log.warning("unsubscribed_roles_ignored", framework_id=framework_id,
                        roles=sorted(set(roles) - own))
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


def _refuse_seconds(value: float | None) -> float | None:
    """Returns how long a filter lasts, or None for no filter."""
    if value is None or math.isnan(value) or value <= 0:
        return None
    return min(value, MAX_REFUSE_SECONDS)
