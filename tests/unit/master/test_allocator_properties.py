"""Allocator properties (hypothesis): offers never overlap or exceed what is free, quota limits
hold, reservations reach only their roles, DRF converges and weights scale shares."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mensa.master.allocator import Allocator, is_subrole
from mensa.proto.resources import Resources

R = Resources.parse
ROLES = ["*", "eng", "eng/ml", "eng/web", "ops"]
AGENT_IDS = st.sampled_from([f"a{i}" for i in range(4)])
FRAMEWORK_IDS = st.sampled_from([f"f{i}" for i in range(4)])
ROLE_SETS = st.lists(st.sampled_from(ROLES), min_size=1, max_size=2, unique=True)
QUOTA_ROLES = st.sampled_from(["eng", "eng/ml", "ops"])


@st.composite
def totals(draw: st.DrawFn) -> Resources:
    """An agent: unreserved cpus/mem, maybe a static reservation for eng or eng/ml."""
    parts = [f"cpus:{draw(st.integers(1, 8))}", f"mem:{draw(st.integers(1, 8)) * 512}",
             "ports:[1-10]"]
    role = draw(st.sampled_from([None, "eng", "eng/ml", "ops"]))
    if role is not None:
        parts.append(f"cpus({role}):{draw(st.integers(1, 4))}")
    return R(";".join(parts))


def consumed(alloc: Allocator, role: str, agents: list[str]) -> float:
    """cpus counted against ``role``'s quota, as Mesos 1.9+ counts them: what it and its
    sub-roles hold, plus the free cpus reserved for them."""
    held = next((s.allocated.scalar("cpus") for s in alloc.roles_summary() if s.role == role), 0.0)
    for agent_id in agents:
        free = alloc.free(agent_id)
        for reserved_role in free.roles() - {"*"}:
            if is_subrole(reserved_role, role):
                held += free.filter_roles([reserved_role]).scalar("cpus")
    return held


class RolesMachine(RuleBasedStateMachine):
    """Random agents, frameworks in hierarchical roles, quota, reservations, declines."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = Allocator(rng=random.Random(0), min_allocatable_cpus=1)
        self.now = 0.0
        self.roles: dict[str, list[str]] = {}

    @initialize(agents=st.lists(totals(), min_size=1, max_size=4),
                frameworks=st.lists(ROLE_SETS, min_size=1, max_size=4))
    def start(self, agents: list[Resources], frameworks: list[list[str]]) -> None:
        for i, total in enumerate(agents):
            self.alloc.add_agent(f"a{i}", total)
        for i, roles in enumerate(frameworks):
            self.alloc.add_framework(f"f{i}", roles)
            self.roles[f"f{i}"] = roles

    @rule(agent_id=AGENT_IDS, total=totals())
    def add_or_remove_agent(self, agent_id: str, total: Resources) -> None:
        if self.alloc.has_agent(agent_id):
            self.alloc.remove_agent(agent_id)
        else:
            self.alloc.add_agent(agent_id, total)

    @rule(framework_id=FRAMEWORK_IDS, roles=ROLE_SETS)
    def subscribe(self, framework_id: str, roles: list[str]) -> None:
        if framework_id in self.roles:
            self.alloc.update_framework(framework_id, roles)
        else:
            self.alloc.add_framework(framework_id, roles)
        self.roles[framework_id] = roles

    @rule(framework_id=FRAMEWORK_IDS)
    def remove_framework(self, framework_id: str) -> None:
        self.alloc.remove_framework(framework_id)
        self.roles.pop(framework_id, None)

    @rule(role=QUOTA_ROLES, guarantee=st.integers(0, 12), extra=st.none() | st.integers(0, 8))
    def set_quota(self, role: str, guarantee: int, extra: int | None) -> None:
        # A zero limit cannot be written as Resources (zeros drop out): limits start at 1.
        limit = None if extra is None else Resources.scalars(cpus=max(1, guarantee + extra))
        before = self.alloc.quotas()
        try:
            self.alloc.set_quota(role, Resources.scalars(cpus=guarantee), limit)
        except ValueError:  # quota that does not nest: refused, nothing changed
            assert self.alloc.quotas() == before

    @rule(role=st.sampled_from(ROLES[1:]), weight=st.sampled_from([0.5, 1.0, 3.0]))
    def set_weight(self, role: str, weight: float) -> None:
        self.alloc.set_weight(role, weight)

    @rule(agent_id=AGENT_IDS, role=st.sampled_from(ROLES[1:]), cpus=st.integers(1, 3),
          undo=st.booleans())
    def reserve(self, agent_id: str, role: str, cpus: int, undo: bool) -> None:
        if not self.alloc.has_agent(agent_id):
            return
        before = (self.alloc.total(agent_id), self.alloc.free(agent_id))
        try:
            if undo:
                self.alloc.unreserve(agent_id, Resources.scalars(role, cpus=cpus))
            else:
                self.alloc.reserve(agent_id, Resources.scalars(cpus=cpus), role)
        except ValueError:
            assert (self.alloc.total(agent_id), self.alloc.free(agent_id)) == before

    @rule(advance=st.integers(0, 10), refuse=st.sampled_from([None, 5.0, 1e9]),
          decline=st.booleans())
    def allocate(self, advance: int, refuse: float | None, decline: bool) -> None:
        self.now += advance
        agents = [f"a{i}" for i in range(4) if self.alloc.has_agent(f"a{i}")]
        free = {a: self.alloc.free(a) for a in agents}
        limits = {role: q.limit for role, q in self.alloc.quotas().items() if q.limit is not None}
        before = {role: consumed(self.alloc, role, agents) for role in limits}
        offers = self.alloc.allocate(self.now)
        for o in offers:
            # Never offered twice, never more than is free.
            assert free[o.agent_id].contains(o.resources), (o, free[o.agent_id])
            free[o.agent_id] = free[o.agent_id] - o.resources
            assert o.role in self.roles[o.framework_id]
            # Reserved resources only reach their role or its sub-roles.
            for reserved_for in o.resources.roles() - {"*"}:
                assert is_subrole(o.role, reserved_for), (o.role, reserved_for)
        for role, limit in limits.items():
            assert consumed(self.alloc, role, agents) <= max(limit.scalar("cpus"), before[role]) + 1e-9
        if decline:
            for o in offers:
                self.alloc.recover(o.agent_id, o.framework_id, o.resources, refuse, self.now)

    @invariant()
    def books_are_whole(self) -> None:
        for agent_id in (f"a{i}" for i in range(4)):
            if not self.alloc.has_agent(agent_id):
                continue
            remaining = self.alloc.total(agent_id)
            for part in [self.alloc.free(agent_id), *self.alloc.allocated(agent_id).values()]:
                assert remaining.contains(part)
                remaining = remaining - part
            assert remaining.is_empty()
        for framework_id in self.roles:
            summary = self.alloc.framework_summary(framework_id, self.now)
            booked = Resources.empty()
            for part in summary.allocated.values():
                booked = booked + part
            assert booked == self.alloc.framework_allocated(framework_id)


TestRolesMachine = RolesMachine.TestCase
TestRolesMachine.settings = settings(max_examples=120, stateful_step_count=25, deadline=None)


@settings(max_examples=40, deadline=None)
@given(agents=st.integers(4, 60), frameworks=st.integers(2, 8), seed=st.integers(0, 1000))
def test_equal_frameworks_converge_to_within_one_task(agents: int, frameworks: int, seed: int) -> None:
    # Each agent is one task's worth (cpus:1 of the pool); everyone wants more than it gets.
    alloc = Allocator(rng=random.Random(seed))
    for i in range(agents):
        alloc.add_agent(f"a{i}", R("cpus:1;mem:1024"))
    for i in range(frameworks):
        alloc.add_framework(f"f{i}")
    alloc.allocate(now=0.0)
    shares = [alloc.share(f"f{i}") for i in range(frameworks)]
    assert max(shares) - min(shares) <= 1 / agents + 1e-9


@settings(max_examples=40, deadline=None)
@given(weights=st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0]), min_size=2, max_size=4),
       agents=st.integers(20, 80), seed=st.integers(0, 1000))
def test_weights_scale_shares_proportionally(weights: list[float], agents: int, seed: int) -> None:
    alloc = Allocator(rng=random.Random(seed))
    for i in range(agents):
        alloc.add_agent(f"a{i}", R("cpus:1;mem:1024"))
    for i, weight in enumerate(weights):
        alloc.set_weight(f"r{i}", weight)
        alloc.add_framework(f"f{i}", [f"r{i}"])
    alloc.allocate(now=0.0)
    # Weighted shares are equal to within one agent's share (divided by the smallest weight).
    weighted = [alloc.framework_allocated(f"f{i}").scalar("cpus") / agents / w
                for i, w in enumerate(weights)]
    assert max(weighted) - min(weighted) <= 1 / agents / min(weights) + 1e-9
    total = sum(weights)
    for i, w in enumerate(weights):
        assert alloc.framework_allocated(f"f{i}").scalar("cpus") == pytest.approx(
            agents * w / total, abs=len(weights))
