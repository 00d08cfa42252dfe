"""Allocator: who is offered what, filters, suppression, and the books staying whole."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mensa.master.allocator import MAX_REFUSE_SECONDS, Allocation, Allocator
from mensa.proto.resources import Resources

R = Resources.parse
AGENT = "cpus:4;mem:4096;ports:[31000-31999]"


def make(*, agents: int = 0, frameworks: tuple[str, ...] = (), **kwargs: float) -> Allocator:
    alloc = Allocator(rng=random.Random(1), **kwargs)
    for i in range(agents):
        alloc.add_agent(f"a{i}", R(AGENT))
    for framework_id in frameworks:
        alloc.add_framework(framework_id)
    return alloc


def by_agent(allocations: list[Allocation]) -> dict[str, Allocation]:
    return {a.agent_id: a for a in allocations}


def test_everything_free_is_offered_to_one_framework_per_agent() -> None:
    alloc = make(agents=1, frameworks=("f1",))
    [offer] = alloc.allocate(now=0.0)
    assert offer == Allocation("f1", "a0", "*", R(AGENT))
    assert alloc.free("a0").is_empty()
    assert alloc.allocated("a0") == {"f1": R(AGENT)}
    assert alloc.framework_allocated("f1") == R(AGENT)
    # Nothing is left to offer.
    assert alloc.allocate(now=1.0) == []


def test_partially_used_agent_offers_its_remainder() -> None:
    alloc = make(frameworks=("f1",))
    alloc.add_agent("a0", R(AGENT), {"f1": R("cpus:1;mem:1024;ports:[31000-31009]")})
    [offer] = alloc.allocate(now=0.0)
    assert offer.resources == R("cpus:3;mem:3072;ports:[31010-31999]")


def test_one_allocation_per_agent_per_pass() -> None:
    alloc = make(agents=3, frameworks=("f1", "f2", "f3", "f4"))
    offers = alloc.allocate(now=0.0)
    assert sorted(o.agent_id for o in offers) == ["a0", "a1", "a2"]
    # Three agents, four frameworks: three different frameworks got one agent each.
    assert len({o.framework_id for o in offers}) == 3


def test_offers_go_to_the_lowest_share() -> None:
    # Pool: a0 + a1 + a2 = cpus:12;mem:12288. f1 already runs cpus:2;mem:512 on a0.
    alloc = make(frameworks=("f1", "f2"))
    alloc.add_agent("a0", R("cpus:4;mem:4096"), {"f1": R("cpus:2;mem:512")})
    alloc.add_agent("a1", R("cpus:4;mem:4096"))
    alloc.add_agent("a2", R("cpus:4;mem:4096"))
    # f1: cpus 2/12 = .17; f2: 0 -> f2 is first.
    [first] = alloc.allocate(now=0.0, agent_ids=["a1"])
    assert first.framework_id == "f2"
    # f1: .17; f2: cpus 4/12 = .33 -> f1 is first.
    [second] = alloc.allocate(now=0.0, agent_ids=["a2"])
    assert second.framework_id == "f1"
    # f1: cpus 6/12 = .5; f2: .33 -> the rest of a0 goes to f2.
    [third] = alloc.allocate(now=0.0, agent_ids=["a0"])
    assert third == Allocation("f2", "a0", "*", R("cpus:2;mem:3584"))


def test_within_one_pass_each_agent_goes_to_whoever_is_lowest_now() -> None:
    alloc = make(agents=4, frameworks=("f1", "f2"))
    offers = alloc.allocate(now=0.0)
    # Equal agents alternate between the two frameworks: 2 each.
    counts = {f: sum(o.framework_id == f for o in offers) for f in ("f1", "f2")}
    assert counts == {"f1": 2, "f2": 2}
    assert alloc.share("f1") == pytest.approx(0.5)


def test_agents_are_visited_in_a_changing_order() -> None:
    firsts = set()
    for seed in range(20):
        alloc = Allocator(rng=random.Random(seed))
        for i in range(4):
            alloc.add_agent(f"a{i}", R(AGENT))
        alloc.add_framework("f1")
        firsts.add(alloc.allocate(now=0.0)[0].agent_id)
    assert len(firsts) > 1
    # Without an rng the start rotates from pass to pass.
    alloc = Allocator()
    for i in range(3):
        alloc.add_agent(f"a{i}", R(AGENT))
    alloc.add_framework("f1")
    seen = []
    for now in range(4):
        offers = alloc.allocate(now=float(now))
        seen.append([o.agent_id for o in offers])
        for o in offers:
            alloc.recover(o.agent_id, o.framework_id, o.resources, None, float(now))
    assert seen == [["a0", "a1", "a2"], ["a1", "a2", "a0"], ["a2", "a0", "a1"], ["a0", "a1", "a2"]]


def test_minimum_allocatable() -> None:
    alloc = make(frameworks=("f1",))
    alloc.add_agent("tiny", R("cpus:0.005;mem:16;disk:100"))
    alloc.add_agent("mem_only", R("cpus:0.005;mem:32"))
    alloc.add_agent("cpu_only", R("cpus:0.01;mem:1"))
    alloc.add_agent("ports_only", R("ports:[1-10]"))
    offers = by_agent(alloc.allocate(now=0.0))
    assert set(offers) == {"mem_only", "cpu_only"}
    assert alloc.free("tiny") == R("cpus:0.005;mem:16;disk:100")


def test_suppress_stops_offers_and_revive_restores_them() -> None:
    alloc = make(agents=1, frameworks=("f1", "f2"))
    alloc.suppress("f1")
    alloc.suppress("f2")
    assert alloc.is_suppressed("f1")
    assert alloc.allocate(now=0.0) == []
    alloc.revive("f2")
    assert not alloc.is_suppressed("f2")
    [offer] = alloc.allocate(now=0.0)
    assert offer.framework_id == "f2"


def test_deactivated_frameworks_get_nothing_and_keep_their_allocations() -> None:
    alloc = make(agents=2, frameworks=("f1", "f2"))
    alloc.allocate(now=0.0, agent_ids=["a0"])
    holder = next(iter(alloc.allocated("a0")))
    other = "f2" if holder == "f1" else "f1"
    alloc.deactivate_framework(other)
    alloc.deactivate_framework(holder)
    assert alloc.allocate(now=0.0) == []
    assert alloc.allocated("a0") == {holder: R(AGENT)}
    alloc.activate_framework(other)
    [offer] = alloc.allocate(now=0.0)
    assert (offer.framework_id, offer.agent_id) == (other, "a1")


def test_filter_blocks_until_it_expires() -> None:
    alloc = make(agents=1, frameworks=("f1",))
    [offer] = alloc.allocate(now=0.0)
    alloc.recover("a0", "f1", offer.resources, refuse_seconds=5.0, now=10.0)
    assert alloc.filters("f1") == 1
    assert alloc.free("a0") == R(AGENT)
    assert alloc.allocate(now=14.9) == []
    [again] = alloc.allocate(now=15.0)
    assert again.framework_id == "f1"
    # The expired filter was dropped when met.
    assert alloc.filters("f1") == 0


def test_filter_is_per_agent_and_other_frameworks_still_get_offers() -> None:
    alloc = make(agents=2, frameworks=("f1",))
    offers = by_agent(alloc.allocate(now=0.0))
    alloc.recover("a0", "f1", offers["a0"].resources, refuse_seconds=60.0, now=0.0)
    alloc.add_framework("f2")
    [offer] = alloc.allocate(now=1.0)
    assert (offer.framework_id, offer.agent_id) == ("f2", "a0")


def test_filter_stops_blocking_when_more_becomes_free_than_was_refused() -> None:
    alloc = make(frameworks=("f1",))
    alloc.add_agent("a0", R("cpus:4;mem:4096"), {"f1": R("cpus:3;mem:3072")})
    [offer] = alloc.allocate(now=0.0)
    assert offer.resources == R("cpus:1;mem:1024")
    alloc.recover("a0", "f1", offer.resources, refuse_seconds=60.0, now=0.0)
    assert alloc.allocate(now=1.0) == []
    # A task ends: cpus:2;mem:2048 free now, more than the cpus:1;mem:1024 refused.
    alloc.recover("a0", "f1", R("cpus:1;mem:1024"), refuse_seconds=None, now=2.0)
    [bigger] = alloc.allocate(now=2.0)
    assert bigger.resources == R("cpus:2;mem:2048")


def test_revive_clears_filters() -> None:
    alloc = make(agents=1, frameworks=("f1",))
    [offer] = alloc.allocate(now=0.0)
    alloc.recover("a0", "f1", offer.resources, refuse_seconds=3600.0, now=0.0)
    assert alloc.allocate(now=1.0) == []
    alloc.revive("f1")
    assert alloc.filters("f1") == 0
    assert [o.framework_id for o in alloc.allocate(now=1.0)] == ["f1"]


@pytest.mark.parametrize(
    ("seconds", "filtered_at", "count"),
    [
        (None, None, 0),
        (0.0, None, 0),
        (-5.0, None, 0),
        (math.nan, None, 0),
        (math.inf, MAX_REFUSE_SECONDS - 1, 1),
        (1e12, MAX_REFUSE_SECONDS - 1, 1),
    ],
)
def test_refuse_seconds_edge_values(
    seconds: float | None, filtered_at: float | None, count: int
) -> None:
    alloc = make(agents=1, frameworks=("f1",))
    [offer] = alloc.allocate(now=0.0)
    alloc.recover("a0", "f1", offer.resources, refuse_seconds=seconds, now=0.0)
    assert alloc.filters("f1") == count
    if filtered_at is not None:
        assert alloc.allocate(now=filtered_at) == []
        assert len(alloc.allocate(now=MAX_REFUSE_SECONDS)) == 1
    else:
        assert len(alloc.allocate(now=0.0)) == 1


def test_filters_count_only_live_ones_at_now() -> None:
    alloc = make(agents=2, frameworks=("f1",))
    offers = by_agent(alloc.allocate(now=0.0))
    alloc.recover("a0", "f1", offers["a0"].resources, refuse_seconds=5.0, now=0.0)
    alloc.recover("a1", "f1", offers["a1"].resources, refuse_seconds=50.0, now=0.0)
    assert alloc.filters("f1") == 2
    assert alloc.filters("f1", now=10.0) == 1


def test_deactivation_clears_filters() -> None:
    alloc = make(agents=1, frameworks=("f1",))
    [offer] = alloc.allocate(now=0.0)
    alloc.recover("a0", "f1", offer.resources, refuse_seconds=60.0, now=0.0)
    alloc.deactivate_framework("f1")
    alloc.activate_framework("f1")
    assert alloc.filters("f1") == 0
    assert len(alloc.allocate(now=1.0)) == 1


def test_recover_clips_to_what_is_allocated() -> None:
    alloc = make(agents=1, frameworks=("f1", "f2"))
    alloc.allocate(now=0.0)
    holder = next(iter(alloc.allocated("a0")))
    other = "f2" if holder == "f1" else "f1"
    # The other framework holds nothing there: nothing moves.
    alloc.recover("a0", other, R("cpus:1"), refuse_seconds=None, now=0.0)
    assert alloc.free("a0").is_empty()
    # More than is held, and ports that are not: only what is held is freed.
    alloc.recover("a0", holder, R("cpus:1;ports:[31000-31000]"), refuse_seconds=None, now=0.0)
    alloc.recover("a0", holder, R("cpus:10;ports:[30000-31000]"), refuse_seconds=None, now=0.0)
    assert alloc.free("a0") == R("cpus:4;ports:[31000-31000]")
    assert alloc.allocated("a0") == {holder: R("mem:4096;ports:[31001-31999]")}
    # Unknown agents are ignored.
    alloc.recover("nope", holder, R("cpus:1"), refuse_seconds=5.0, now=0.0)
    assert alloc.filters(holder) == 0


def test_remove_framework_frees_everything_it_held() -> None:
    alloc = make(agents=3, frameworks=("f1",))
    alloc.allocate(now=0.0)
    assert alloc.framework_allocated("f1") == R(AGENT) + R(AGENT) + R(AGENT)
    alloc.remove_framework("f1")
    assert not alloc.has_framework("f1")
    assert all(alloc.free(f"a{i}") == R(AGENT) for i in range(3))
    assert alloc.framework_allocated("f1").is_empty()
    alloc.add_framework("f2")
    assert len(alloc.allocate(now=0.0)) == 3


def test_remove_agent_drops_its_allocations_from_the_books_and_the_pool() -> None:
    # Pool: a0 + a1 = cpus:8. f1 holds a0 (share .5), f2 holds a1 (share .5).
    alloc = make(frameworks=("f1", "f2"))
    alloc.add_agent("a0", R("cpus:4;mem:4096"), {"f1": R("cpus:4;mem:4096")})
    alloc.add_agent("a1", R("cpus:4;mem:4096"), {"f2": R("cpus:2;mem:2048")})
    alloc.recover("a1", "f2", R("cpus:1"), refuse_seconds=60.0, now=0.0)
    alloc.remove_agent("a1")
    assert not alloc.has_agent("a1")
    assert alloc.framework_allocated("f2").is_empty()
    # Pool: cpus:4;mem:4096. f1: 1.0; f2: 0.
    assert alloc.share("f1") == pytest.approx(1.0)
    assert alloc.share("f2") == 0.0
    assert alloc.filters("f2") == 0
    # The same id may come back, without the old filters.
    alloc.add_agent("a1", R("cpus:4;mem:4096"))
    [offer] = alloc.allocate(now=1.0)
    assert (offer.framework_id, offer.agent_id) == ("f2", "a1")
    # Pool: cpus:8;mem:8192. f1: .5; f2: .5.
    assert alloc.share("f1") == pytest.approx(0.5)


def test_allocations_of_frameworks_not_yet_added_count_when_added() -> None:
    alloc = make()
    alloc.add_agent("a0", R("cpus:4;mem:4096"), {"ghost": R("cpus:2;mem:1024")})
    alloc.add_agent("a1", R("cpus:4;mem:4096"))
    assert alloc.free("a0") == R("cpus:2;mem:3072")
    alloc.add_framework("f1")
    alloc.add_framework("ghost")
    # Pool cpus:8;mem:8192. ghost: cpus 2/8 = .25; f1: 0 -> a1 goes to f1.
    assert alloc.share("ghost") == pytest.approx(0.25)
    [offer] = alloc.allocate(now=0.0, agent_ids=["a1"])
    assert offer.framework_id == "f1"


def test_removing_a_framework_never_added_frees_its_resources() -> None:
    alloc = make()
    alloc.add_agent("a0", R("cpus:4;mem:4096"), {"gone": R("cpus:4;mem:4096")})
    alloc.remove_framework("gone")
    assert alloc.free("a0") == R("cpus:4;mem:4096")


def test_agent_allocations_that_do_not_fit_are_clipped() -> None:
    alloc = make()
    alloc.add_agent("a0", R("cpus:4;mem:4096"), {"f1": R("cpus:3"), "f2": R("cpus:3;gpus:1")})
    assert alloc.allocated("a0") == {"f1": R("cpus:3"), "f2": R("cpus:1")}
    assert alloc.free("a0") == R("mem:4096")


def test_unreserved_resources_go_to_every_role_reserved_ones_only_to_theirs() -> None:
    alloc = make()
    alloc.add_agent("a0", R("cpus:4;mem:4096"))
    alloc.add_agent("a1", R("cpus(ml):2;mem(ml):2048"))
    alloc.add_framework("star", roles=("*",))
    assert alloc.allocate(now=0.0, agent_ids=["a1"]) == []  # ml's reservation: not for "*"
    alloc.add_framework("ml_only", roles=("ml",))
    [offer] = alloc.allocate(now=0.0, agent_ids=["a1"])
    assert offer == Allocation("ml_only", "a1", "ml", R("cpus(ml):2;mem(ml):2048"))
    # Unreserved a0 goes to the lowest share: star holds nothing, ml_only holds a1.
    [offer] = alloc.allocate(now=0.0, agent_ids=["a0"])
    assert (offer.framework_id, offer.role) == ("star", "*")


def test_duplicates_and_unknown_ids() -> None:
    alloc = make(agents=1, frameworks=("f1",))
    with pytest.raises(ValueError, match="already exists"):
        alloc.add_agent("a0", R(AGENT))
    with pytest.raises(ValueError, match="already exists"):
        alloc.add_framework("f1")
    # Unknown ids are logged and ignored.
    alloc.remove_agent("nope")
    alloc.remove_framework("nope")
    alloc.suppress("nope")
    alloc.revive("nope")
    alloc.activate_framework("nope")
    alloc.deactivate_framework("nope")
    assert alloc.allocate(now=0.0, agent_ids=["nope", "a0", "a0"]) == [
        Allocation("f1", "a0", "*", R(AGENT))
    ]
    assert alloc.free("nope").is_empty()
    assert alloc.total("a0") == R(AGENT)
    assert not alloc.is_suppressed("nope")
    assert alloc.filters("nope") == 0


# -- property: the books stay whole -------------------------------------------------------------

AGENT_IDS = st.sampled_from([f"a{i}" for i in range(5)])
FRAMEWORK_IDS = st.sampled_from([f"f{i}" for i in range(4)])
ROLE_SETS = st.sampled_from([("*",), ("*",), ("ml",), ("*", "ml"), ()])
HALVES = st.integers(min_value=0, max_value=16).map(lambda n: n / 2)


@st.composite
def resources(draw: st.DrawFn) -> Resources:
    """Small bags with unreserved and ``ml`` scalars and a few ports."""
    begin = draw(st.integers(min_value=1, max_value=40))
    end = begin + draw(st.integers(min_value=0, max_value=10))
    ml = draw(HALVES)
    parts = [f"cpus:{draw(HALVES)}", f"mem:{draw(HALVES) * 256}", f"ports:[{begin}-{end}]"]
    if ml:
        parts.append(f"cpus(ml):{ml}")
    return R(";".join(parts))


class AllocatorMachine(RuleBasedStateMachine):
    """Random add/remove of agents and frameworks, allocate, recover, suppress, revive."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = Allocator(rng=random.Random(0), min_allocatable_cpus=0.5)
        self.now = 0.0
        self.roles: dict[str, tuple[str, ...]] = {}
        self.active: dict[str, bool] = {}
        self.suppressed: dict[str, set[str]] = {}

    @initialize(totals=st.lists(resources(), min_size=1, max_size=3),
                roles=st.lists(ROLE_SETS, min_size=1, max_size=3))
    def start(self, totals: list[Resources], roles: list[tuple[str, ...]]) -> None:
        for i, total in enumerate(totals):
            self.add_agent(f"a{i}", total, [])
        for i, framework_roles in enumerate(roles):
            self.add_framework(f"f{i}", framework_roles, True)

    @rule(agent_id=AGENT_IDS, total=resources(),
          pre=st.lists(st.tuples(FRAMEWORK_IDS, resources()), max_size=3))
    def add_agent(self, agent_id: str, total: Resources, pre: list[tuple[str, Resources]]) -> None:
        if self.alloc.has_agent(agent_id):
            with pytest.raises(ValueError):
                self.alloc.add_agent(agent_id, total)
            return
        self.alloc.add_agent(agent_id, total, dict(pre))

    @rule(agent_id=AGENT_IDS)
    def remove_agent(self, agent_id: str) -> None:
        self.alloc.remove_agent(agent_id)
        assert not self.alloc.has_agent(agent_id)

    @rule(framework_id=FRAMEWORK_IDS, roles=ROLE_SETS, active=st.booleans())
    def add_framework(self, framework_id: str, roles: tuple[str, ...], active: bool) -> None:
        if framework_id in self.roles:
            return
        self.alloc.add_framework(framework_id, roles, active)
        self.roles[framework_id] = roles
        self.active[framework_id] = active
        self.suppressed[framework_id] = set()

    @rule(framework_id=FRAMEWORK_IDS)
    def remove_framework(self, framework_id: str) -> None:
        self.alloc.remove_framework(framework_id)
        self.roles.pop(framework_id, None)
        assert self.alloc.framework_allocated(framework_id).is_empty()

    @rule(framework_id=FRAMEWORK_IDS, active=st.booleans())
    def set_active(self, framework_id: str, active: bool) -> None:
        if active:
            self.alloc.activate_framework(framework_id)
        else:
            self.alloc.deactivate_framework(framework_id)
        if framework_id in self.roles:
            self.active[framework_id] = active

    @rule(framework_id=FRAMEWORK_IDS, suppress=st.booleans(), role=st.sampled_from([None, "*"]))
    def suppress_or_revive(self, framework_id: str, suppress: bool, role: str | None) -> None:
        roles = None if role is None else [role]
        if suppress:
            self.alloc.suppress(framework_id, roles)
        else:
            self.alloc.revive(framework_id, roles)
        if framework_id in self.roles:
            own = set(self.roles[framework_id]) if role is None else {role} & set(
                self.roles[framework_id])
            if suppress:
                self.suppressed[framework_id] |= own
            else:
                self.suppressed[framework_id] -= own
        self.allocate(0.0, None)  # as the master does after either call

    @rule(advance=st.floats(min_value=0, max_value=30),
          some=st.none() | st.lists(AGENT_IDS, max_size=4))
    def allocate(self, advance: float, some: list[str] | None) -> None:
        self.now += advance
        before = {a: self.alloc.free(a) for a in (f"a{i}" for i in range(5))}
        offers = self.alloc.allocate(self.now, some)
        per_agent_role = [(o.agent_id, o.role) for o in offers]
        assert len(per_agent_role) == len(set(per_agent_role))
        for o in offers:
            assert some is None or o.agent_id in some
            assert before[o.agent_id].contains(o.resources)
            assert o.resources.roles() <= {"*", o.role}
            assert o.framework_id in self.roles
            assert self.active[o.framework_id]
            assert o.role in self.roles[o.framework_id]
            assert o.role not in self.suppressed[o.framework_id]

    @rule(agent_id=AGENT_IDS, framework_id=FRAMEWORK_IDS, holder=st.booleans(),
          how=st.sampled_from(["all", "half", "other"]), other=resources(),
          refuse=st.none() | st.sampled_from([0.0, -1.0, 5.0, math.inf, math.nan]))
    def recover(self, agent_id: str, framework_id: str, holder: bool, how: str,
                other: Resources, refuse: float | None) -> None:
        allocated = self.alloc.allocated(agent_id)
        if holder and allocated:  # mostly free what is really held, so offers keep flowing
            framework_id = sorted(allocated)[int(framework_id[1:]) % len(allocated)]
        held = allocated.get(framework_id, Resources.empty())
        if how == "all":
            what = held
        elif how == "half":
            what = Resources.scalars(cpus=held.scalar("cpus") / 2, mem=held.scalar("mem") / 2)
        else:
            what = other
        self.alloc.recover(agent_id, framework_id, what, refuse, self.now)

    @invariant()
    def every_unit_is_in_exactly_one_place(self) -> None:
        for agent_id in (f"a{i}" for i in range(5)):
            if not self.alloc.has_agent(agent_id):
                continue
            allocated = self.alloc.allocated(agent_id)
            assert all(not part.is_empty() for part in allocated.values())
            remaining = self.alloc.total(agent_id)
            for part in [self.alloc.free(agent_id), *allocated.values()]:
                assert remaining.contains(part), (agent_id, remaining, part)
                remaining = remaining - part
            assert remaining.is_empty(), (agent_id, remaining)

    @invariant()
    def framework_books_and_shares_agree(self) -> None:
        agents = [f"a{i}" for i in range(5) if self.alloc.has_agent(f"a{i}")]
        pool: dict[str, float] = {}
        for a in agents:
            for name, value in self.alloc.total(a).scalar_totals().items():
                pool[name] = pool.get(name, 0.0) + value
        for framework_id in (f"f{i}" for i in range(4)):
            held = Resources.empty()
            for a in agents:
                held = held + self.alloc.allocated(a).get(framework_id, Resources.empty())
            assert self.alloc.framework_allocated(framework_id) == held
            if framework_id not in self.roles:
                continue
            summary = self.alloc.framework_summary(framework_id, self.now)
            booked = Resources.empty()
            for role, mine in summary.allocated.items():
                booked = booked + mine
                # Reserved resources are only ever booked under their own role.
                assert mine.roles() <= {"*", role}
                expected = max([v / pool[n] for n, v in mine.scalar_totals().items()
                                if pool.get(n, 0) > 0], default=0.0)
                assert self.alloc.share(framework_id, role) == pytest.approx(expected)
            assert booked == held


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
