"""Allocator: decides which framework is offered each agent's free resources. Pure.

The allocator keeps the books of every agent (its total, with its reservations, and what is
allocated to which framework under which role: offered or used by a task; the rest is free) and
of every framework (its roles, whether it is active or suppressed, its refusal filters).
``allocate(now)`` hands each agent's free resources out by hierarchical DRF (see ``roles.py``
and ``sorter.py``), in two stages like Mesos: first to roles whose quota guarantee is unmet, up
to that guarantee; then to every role by fair share, never beyond a role's quota limit and never
eating into the headroom unmet guarantees need. The master turns the returned ``Allocation``s
into offers, and calls ``recover`` when an offer is declined, rescinded or a task ends.

Unreserved (``*``) resources may be offered under any role; resources reserved for ``eng``
only under ``eng`` or its sub-roles (``eng/ml``). Offers carry the reservations they contain.

It does no I/O, never reads the clock (``now`` is passed in) and draws randomness only from the
injected ``random.Random``.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from mensa.proto.resources import UNRESERVED, Resources

from . import views
from .books import Books, _Agent, _Filter
from .quota import Quota, check_quota, clip, room, unmet
from .roles import check_role, lineage
from .sorter import _check_weight

log = structlog.get_logger(__name__)

# Refusal filters last at most this long (Mesos caps refuse_seconds the same way).
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Allocation:
    """``resources`` on ``agent_id``, allocated to ``framework_id`` under ``role``.

    ``resources`` keep their reservations (``cpus(ml):2``); unreserved ones may go to any role.
    """

    framework_id: str
    agent_id: str
    role: str
    resources: Resources


@dataclass(slots=True)
class _Pass:
    """Quota bookkeeping for one pass: unreserved free scalars cluster-wide, and reserved free
    scalars per role (thousandths)."""

    available: dict[str, int] = field(default_factory=dict)
    free_reserved: dict[str, dict[str, int]] = field(default_factory=dict)


class Allocator(Books):
    """The books of agents and frameworks, and the hierarchical DRF decision over them.

    Adding an agent or framework that already exists raises ValueError (the caller removes it
    first). Operator calls (weights, quota, reservations) raise ValueError with a clear message
    on bad input and leave the state unchanged. Every other call naming an unknown agent or
    framework logs a warning and does nothing, so late or duplicate events are harmless.
    """

    def __init__(
        self,
        *,
        min_allocatable: Sequence[Resources] | None = None,
        min_allocatable_cpus: float = 0.01,
        min_allocatable_mem: float = 32.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        if min_allocatable is None:
            for name, value in (("min_allocatable_cpus", min_allocatable_cpus),
                                ("min_allocatable_mem", min_allocatable_mem)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value) or value < 0:
                    raise ValueError(f"{name} must be a non-negative finite number, got {value}")
            min_allocatable = [Resources.scalars(cpus=min_allocatable_cpus),
                               Resources.scalars(mem=min_allocatable_mem)]
        minimums: list[dict[str, int]] = []
        for quantity in min_allocatable:
            if not isinstance(quantity, Resources) or not quantity.is_scalar_only():
                raise ValueError(f"min_allocatable quantities must be scalar Resources, got {quantity!r}")
            minimums.append(quantity.quantities())
        self._min = minimums
        self._rng = rng
        self._passes = 0  # rotates the agent order when there is no rng
        self._quotas: dict[str, Quota] = {}

    # -- weights and quota --------------------------------------------------------------------

    def set_weight(self, role: str, weight: float) -> None:
        """Sets a role's weight: a role of weight 2 is entitled to twice the share of one of 1."""
        check_role(role)
        try:
            value = _check_weight(weight)
        except TypeError as e:
            raise ValueError(str(e)) from None
        self._tree.set_weight(role, value)
        self._weights[role] = value
        log.info("role_weight_set", role=role, weight=value)

    def weights(self) -> dict[str, float]:
        """Returns the weights set explicitly, per role."""
        return dict(self._weights)

    def weight(self, role: str) -> float:
        """Returns a role's weight (1.0 unless set)."""
        return self._weights.get(role, 1.0)

    def set_quota(self, role: str, guarantee: Resources, limit: Resources | None = None,
                  zero_limits: Iterable[str] = ()) -> None:
        """Sets a role's quota (replacing any); ``zero_limits`` names resources limited to 0.
        A guarantee above the cluster is allowed, logged."""
        quota = check_quota(role, guarantee, limit, frozenset(zero_limits))
        self._check_nesting(role, quota)
        cluster = self._cluster_quantities()
        over = sorted(n for n, v in guarantee.quantities().items() if v > cluster.get(n, 0))
        if over:
            log.warning("quota_exceeds_cluster", role=role, guarantee=str(guarantee), names=over)
        self._quotas[role] = quota
        self._epoch += 1
        log.info("quota_set", role=role, guarantee=str(guarantee),
                 limit=None if limit is None else str(limit))

    def _check_nesting(self, role: str, quota: Quota) -> None:
        """Raises ValueError unless quota nests as in Mesos: the guarantees of a role's nearest
        quota'd descendants add up to no more than its own guarantee, and no limit is above the
        nearest quota'd ancestor's limit."""
        quotas = {**self._quotas, role: quota}
        parent = next((r for r in lineage(role)[1:] if r in quotas), None)
        for owner in ([parent] if parent is not None else []) + [role]:
            children = [r for r in quotas if r != owner and r.startswith(owner + "/")
                        and next(a for a in lineage(r)[1:] if a in quotas) == owner]
            total: dict[str, int] = {}
            for child in children:
                for name, milli in quotas[child].guarantee.quantities().items():
                    total[name] = total.get(name, 0) + milli
            have = quotas[owner].guarantee.quantities()
            over = sorted(n for n, v in total.items() if v > have.get(n, 0))
            if over:
                raise ValueError(f"quota for {role!r}: the guarantees below {owner!r} add up to more "
                                 f"than its own guarantee for {', '.join(over)}")
        if parent is not None:
            mine, theirs = room(quota, {}), room(quotas[parent], {})
            if theirs is not None:
                above = sorted(n for n, v in (mine or {}).items() if n in theirs and v > theirs[n])
                above += sorted(n for n in theirs if mine is None or n not in mine)
                if above:
                    raise ValueError(f"quota for {role!r}: its limit must not exceed {parent!r}'s "
                                     f"for {', '.join(sorted(set(above)))}")

    def remove_quota(self, role: str) -> None:
        """Removes a role's quota; ValueError when it has none."""
        check_role(role)
        if role not in self._quotas:
            raise ValueError(f"role {role!r} has no quota")
        del self._quotas[role]
        self._epoch += 1
        log.info("quota_removed", role=role)

    def quotas(self) -> dict[str, Quota]:
        """Returns every role's quota."""
        return dict(self._quotas)

    # -- reservations -------------------------------------------------------------------------

    def reserve(self, agent_id: str, resources: Resources, role: str,
                framework_id: str | None = None) -> Resources:
        """Reserves unreserved ``resources`` on an agent for ``role``; returns them reserved.

        With ``framework_id``, they come out of what the framework holds there (a RESERVE
        operation in an ACCEPT) under ``role`` or a sub-role of it, and stay allocated to it;
        without, out of the agent's free resources (the operator's /reserve). ValueError, state
        unchanged, when the role is bad, the resources are reserved already, or not there.
        """
        check_role(role)
        agent = self._known_agent(agent_id)
        if resources.is_empty():
            raise ValueError("nothing to reserve")
        if resources.roles() != {UNRESERVED}:
            raise ValueError(f"only unreserved resources can be reserved, got {resources}")
        converted = resources.with_role(role)
        self._convert(agent_id, agent, resources, converted, framework_id, role)
        log.info("resources_reserved", agent_id=agent_id, role=role, resources=str(converted),
                 framework_id=framework_id)
        return converted

    def unreserve(self, agent_id: str, resources: Resources,
                  framework_id: str | None = None) -> Resources:
        """Gives dynamically reserved ``resources`` back to ``*``; returns them unreserved.

        With ``framework_id``, out of what the framework holds there (they stay allocated to
        it); without, out of the agent's free resources. ValueError, state unchanged, when they
        are not dynamically reserved there (static reservations cannot be unreserved).
        """
        agent = self._known_agent(agent_id)
        if resources.is_empty():
            raise ValueError("nothing to unreserve")
        if UNRESERVED in resources.roles():
            raise ValueError(f"only reserved resources can be unreserved, got {resources}")
        dynamic = agent.total.reserved() - agent.static
        if not dynamic.contains(resources):
            raise ValueError(f"{resources} are not dynamically reserved on agent {agent_id!r} "
                             f"(dynamic reservations: {dynamic or 'none'})")
        converted = resources.with_role(UNRESERVED)
        self._convert(agent_id, agent, resources, converted, framework_id, None)
        log.info("resources_unreserved", agent_id=agent_id, resources=str(resources),
                 framework_id=framework_id)
        return converted

    def reservations(self, agent_id: str) -> Resources:
        """Returns the reserved part of an agent's total (empty for an unknown agent)."""
        agent = self._agents.get(agent_id)
        return agent.total.reserved() if agent is not None else Resources.empty()

    # -- the decision -------------------------------------------------------------------------

    def recover(self, agent_id: str, framework_id: str, resources: Resources,
                refuse_seconds: float | None, now: float, role: str | None = None) -> None:
        """Frees ``resources`` allocated (offered or used) to a framework on an agent.

        ``role``, when given, is the role they were allocated under (the offer's); else they
        are taken off the framework's roles in turn. When ``refuse_seconds`` is positive, the
        framework is not offered resources on that agent that the freed resources contain until
        ``now + refuse_seconds`` (at most MAX_REFUSE_SECONDS; infinity is capped, NaN or not
        positive means no filter). Once more is free there than was refused, the filter no
        longer blocks. What is not allocated to the framework there is ignored, with a warning.
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
        self._release(framework_id, agent_id, agent, freed, role)
        seconds = _refuse_seconds(refuse_seconds)
        fw = self._frameworks.get(framework_id)
        if seconds is not None and fw is not None:
            fw.filters.setdefault(agent_id, []).append(_Filter(freed, now + seconds))
            self._agent_filters.setdefault(agent_id, set()).add(framework_id)

    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Allocation]:
        """Returns this pass's allocations, at most one per agent, framework and role, booked.

        Visits the agents (all, or ``agent_ids``) in an order that changes from pass to pass,
        twice when a quota guarantee is unmet (stage 1: only roles owed a guarantee, up to it),
        else once (stage 2). For each agent, for each role in hierarchical DRF order, offers
        what the role may have there (unreserved and its own or its ancestors' reservations,
        cut to quota limits and headroom), when it reaches the minimum allocatable, to the
        first framework in the role's DRF order that is active, not suppressed and not filtered
        for it. Each allocation is booked before the next, so each goes to whoever is lowest now.
        """
        if agent_ids is None:
            order = list(self._agents)
        else:
            order = [a for a in dict.fromkeys(agent_ids) if a in self._agents]
        self._arrange(order)
        out: list[Allocation] = []
        if not self._tree.sorted_roles():
            return out
        ctx = self._start_pass() if self._quotas else None
        if ctx is not None and any(self._unmet(q, ctx) for q in self._quotas):
            for agent_id in order:
                self._allocate_agent(agent_id, now, out, ctx, guarantees=True)
            out = _merge(out)
            merged = len(out)
        else:
            merged = 0
        for agent_id in order:
            self._allocate_agent(agent_id, now, out, ctx, guarantees=False)
        if merged:
            out = _merge(out)
        return out

    # -- visibility ---------------------------------------------------------------------------

    def roles_summary(self) -> list[views.RoleSummary]:
        """Returns every role with frameworks, a weight, a quota or allocations, by name."""
        return views.roles_summary(self)

    def framework_summary(self, framework_id: str, now: float) -> views.FrameworkSummary:
        """Returns a framework's roles, allocations and shares per role, suppressed roles,
        live filters and whether it is active. ValueError for an unknown framework."""
        return views.framework_summary(self, framework_id, now)

    def explain(self, framework_id: str, now: float) -> list[str]:
        """Returns why a framework receives no offers right now (empty when nothing stops it)."""
        return views.explain(self, framework_id, now)

    # -- internals: the decision ---------------------------------------------------------------

    def _allocate_agent(self, agent_id: str, now: float, out: list[Allocation],
                        ctx: _Pass | None, *, guarantees: bool) -> None:
        agent = self._agents[agent_id]
        for role in self._tree.sorted_roles():
            if agent.free.is_empty():
                return
            offerable = self._offerable(agent, role)
            if offerable.is_empty():
                continue
            if ctx is not None:
                caps = self._caps(role, offerable, ctx, guarantees=guarantees)
                if caps is None:
                    continue
                if caps:
                    offerable = clip(offerable, caps)
            if not self._allocatable(offerable):
                continue
            framework_id = self._pick(role, agent_id, offerable, now)
            if framework_id is None:
                continue
            self._grant(framework_id, agent_id, agent, offerable, role)
            out.append(Allocation(framework_id, agent_id, role, offerable))
            if ctx is not None:
                for name, milli in offerable.unreserved().quantities().items():
                    ctx.available[name] = ctx.available.get(name, 0) - milli
                for reserved_role in offerable.roles() - {UNRESERVED}:
                    held = ctx.free_reserved.setdefault(reserved_role, {})
                    for name, milli in offerable.filter_roles((reserved_role,)).quantities().items():
                        held[name] = held.get(name, 0) - milli

    def _offerable(self, agent: _Agent, role: str) -> Resources:
        """Returns the part of the agent's free resources ``role`` may be offered."""
        free = agent.free
        if not agent.reserved_roles:
            return free
        keep = {UNRESERVED}
        keep.update(r for r in lineage(role) if r in agent.reserved_roles)
        return free if free.roles() <= keep else free.filter_roles(keep)

    def _caps(self, role: str, offerable: Resources, ctx: _Pass, *,
              guarantees: bool) -> dict[str, int] | None:
        """Returns per-name caps (thousandths) for an offer to ``role``: quota limits of the
        role and its ancestors, the headroom others' unmet guarantees need and, in stage 1,
        the role's unmet guarantee. None: the role gets nothing in this stage."""
        chain = [r for r in lineage(role) if r in self._quotas]
        caps: dict[str, int] = {}
        own: dict[str, int] = {}
        for r in chain:
            for name, milli in self._unmet(r, ctx).items():
                own[name] = max(own.get(name, 0), milli)
        if guarantees:
            if not own:
                return None
            for r in chain:
                for name in self._quotas[r].guarantee.quantities():
                    caps[name] = own.get(name, 0)
        # Reservations already count as consumed (Mesos 1.9+): offering them takes nothing from
        # a limit's room, so only the unreserved part of an offer is held to it.
        reserved_here = offerable.reserved().quantities()
        for r in chain:
            left = room(self._quotas[r], self._consumed(r, ctx))
            for name, milli in (left or {}).items():
                cap = milli + reserved_here.get(name, 0)
                caps[name] = min(caps.get(name, cap), cap)
        required: dict[str, int] = {}
        for r in self._quotas:
            if any(a in self._quotas for a in lineage(r)[1:]):
                continue  # a parent's guarantee covers its children's (checked when set)
            for name, milli in self._unmet(r, ctx).items():
                required[name] = required.get(name, 0) + milli
        if required:
            reserved = offerable.reserved().quantities()
            for name, need in required.items():
                allowance = ctx.available.get(name, 0) - need + own.get(name, 0)
                cap = max(0, allowance) + reserved.get(name, 0)
                caps[name] = min(caps.get(name, cap), cap)
        return caps

    def _consumed(self, role: str, ctx: _Pass | None) -> dict[str, int]:
        """What counts against ``role``'s quota (thousandths): what it and its sub-roles hold,
        plus, as in Mesos 1.9+, their reservations that are not allocated (with ``ctx``)."""
        consumed = self._tree.consumed(role)
        if ctx is None or not ctx.free_reserved:
            return consumed
        total = dict(consumed)
        prefix = role + "/"
        for reserved_role, held in ctx.free_reserved.items():
            if reserved_role == role or reserved_role.startswith(prefix):
                for name, milli in held.items():
                    total[name] = total.get(name, 0) + milli
        return total

    def _unmet(self, role: str, ctx: _Pass | None = None) -> dict[str, int]:
        return unmet(self._quotas[role], self._consumed(role, ctx))

    def _start_pass(self) -> _Pass:
        ctx = _Pass()
        for agent in self._agents.values():
            free = agent.free
            for name, milli in free.unreserved().quantities().items():
                ctx.available[name] = ctx.available.get(name, 0) + milli
            for reserved_role in agent.reserved_roles:
                part = free.filter_roles((reserved_role,))
                if part.is_empty():
                    continue
                held = ctx.free_reserved.setdefault(reserved_role, {})
                for name, milli in part.quantities().items():
                    held[name] = held.get(name, 0) + milli
        return ctx

    def _pick(self, role: str, agent_id: str, offerable: Resources, now: float) -> str | None:
        """Returns the first framework of ``role`` in DRF order not filtered for ``offerable``.

        Remembers when every framework was filtered, so that later passes skip the agent and
        role at once while nothing changed (same offer, no framework unblocked, no filter
        expired): a decline storm costs one scan per agent, not one per pass.
        """
        blocked = self._blocked.get(agent_id)
        entry = blocked.get(role) if blocked is not None else None
        if entry is not None:
            if entry[1] == self._epoch and now < entry[2] and entry[0] == offerable:
                return None
            del blocked[role]  # type: ignore[union-attr]
        until = math.inf
        for framework_id in self._framework_sorters[role].iter_sorted():
            expires = self._filtered(framework_id, agent_id, offerable, now)
            if expires is None:
                return framework_id
            until = min(until, expires)
        self._blocked.setdefault(agent_id, {})[role] = (offerable, self._epoch, until)
        return None

    def _arrange(self, order: list[str]) -> None:
        """Reorders the agents of a pass: shuffled with the rng, else rotated each pass."""
        if self._rng is not None:
            self._rng.shuffle(order)
        elif order:
            start = self._passes % len(order)
            order[:] = order[start:] + order[:start]
        self._passes += 1

    def _allocatable(self, resources: Resources) -> bool:
        """True when ``resources`` hold at least one of the minimum allocatable quantities."""
        if resources.is_empty():
            return False
        have = resources.quantities()
        return not self._min or any(
            all(have.get(name, 0) >= milli for name, milli in minimum.items())
            for minimum in self._min)

    def _filtered(self, framework_id: str, agent_id: str, offerable: Resources,
                  now: float) -> float | None:
        """Returns when the live filters blocking ``offerable`` expire (None: not blocked);
        drops the expired ones it meets."""
        fw = self._frameworks[framework_id]
        filters = fw.filters.get(agent_id)
        if not filters:
            return None
        blocked_until: float | None = None
        expired = False
        for f in filters:
            if f.expires_at <= now:
                expired = True
            elif f.resources.contains(offerable):
                blocked_until = max(blocked_until or f.expires_at, f.expires_at)
        if expired:
            live = [f for f in filters if f.expires_at > now]
            if live:
                fw.filters[agent_id] = live
            else:
                del fw.filters[agent_id]
                self._drop_filter_index(agent_id, framework_id)
        return blocked_until

    # -- internals: reservations --------------------------------------------------------------

    def _known_agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise ValueError(f"unknown agent {agent_id!r}")
        return agent

    def _convert(self, agent_id: str, agent: _Agent, before: Resources, after: Resources,
                 framework_id: str | None, reserve_role: str | None) -> None:
        """Replaces ``before`` by ``after`` (the same quantities, other roles) in the agent's
        total, and in its free resources or the framework's allocation there."""
        if framework_id is None:
            if not agent.free.contains(before):
                raise ValueError(f"{before} are not free on agent {agent_id!r} "
                                 f"(free: {agent.free or 'nothing'})")
            agent.free = agent.free - before + after
        else:
            fw = self._frameworks.get(framework_id)
            if fw is None:
                raise ValueError(f"unknown framework {framework_id!r}")
            role = next((r for r in sorted(fw.tracked)
                         if (reserve_role is None or r == reserve_role
                             or r.startswith(reserve_role + "/"))
                         and self._framework_sorters[r].allocation_on(framework_id, agent_id)
                         .contains(before)), None)
            if role is None:
                raise ValueError(
                    f"{before} are not allocated to framework {framework_id!r} on agent "
                    f"{agent_id!r}" + ("" if reserve_role is None else
                                       f" under role {reserve_role!r} or a sub-role"))
            sorter = self._framework_sorters[role]
            sorter.unallocated(framework_id, agent_id, before)
            sorter.allocated(framework_id, agent_id, after)
            self._tree.unallocated(role, agent_id, before)
            self._tree.allocated(role, agent_id, after)
            agent.allocated[framework_id] = agent.allocated[framework_id] - before + after
        agent.total = agent.total - before + after
        agent.reserved_roles = frozenset(agent.total.roles() - {UNRESERVED})
        self._epoch += 1


def _merge(allocations: list[Allocation]) -> list[Allocation]:
    """Joins allocations of the same framework, agent and role (stage 1 and stage 2)."""
    joined: dict[tuple[str, str, str], Resources] = {}
    for a in allocations:
        key = (a.framework_id, a.agent_id, a.role)
        joined[key] = joined.get(key, Resources.empty()) + a.resources
    if len(joined) == len(allocations):
        return allocations
    return [Allocation(f, a, r, res) for (f, a, r), res in joined.items()]


def _intersection(a: Resources, b: Resources) -> Resources:
    """Returns what ``a`` and ``b`` have in common (scalars: the minimum)."""
    return a - (a - b)


def _refuse_seconds(value: float | None) -> float | None:
    """Returns how long a filter lasts, or None for no filter (negative, NaN: none; huge: a
    year, as Mesos clamps)."""
    if value is None or math.isnan(value) or value <= 0:
        return None
    return min(value, MAX_REFUSE_SECONDS)

