"""Allocator: hierarchical roles, weights, quota, reservations, visibility; scenarios."""

from __future__ import annotations

import math
import random

import pytest

from mensa.master.allocator import Allocation, Allocator, Quota
from mensa.proto.resources import Resources

R = Resources.parse
BOX = "cpus:4;mem:4096"


def make(agents: int = 0, total: str = BOX, **kwargs: object) -> Allocator:
    alloc = Allocator(rng=random.Random(3), **kwargs)  # type: ignore[arg-type]
    for i in range(agents):
        alloc.add_agent(f"a{i}", R(total))
    return alloc


def held(alloc: Allocator, framework_id: str) -> float:
    return alloc.framework_allocated(framework_id).scalar("cpus")


# -- roles and reservations ----------------------------------------------------------------------

def test_reservations_reach_their_role_and_sub_roles_only() -> None:
    alloc = make()
    alloc.add_agent("r", R("cpus(eng):2;mem(eng):2048"))
    for framework_id, role in (("star", "*"), ("ops", "ops"), ("ml", "eng/ml")):
        alloc.add_framework(framework_id, roles=(role,))
    [offer] = alloc.allocate(now=0.0)
    # eng/ml gets eng's reservation, offered with it (and under its own role).
    assert offer == Allocation("ml", "r", "eng/ml", R("cpus(eng):2;mem(eng):2048"))
    alloc.recover("r", "ml", offer.resources, refuse_seconds=None, now=0.0)
    alloc.suppress("ml")
    assert alloc.allocate(now=1.0) == []


def test_static_and_unreserved_on_one_agent_go_to_different_roles() -> None:
    alloc = make()
    alloc.add_agent("a", R("cpus(ml):2;mem(ml):2048;cpus:4;mem:4096"))
    alloc.add_framework("web", roles=("web",))
    alloc.add_framework("ml", roles=("ml",))
    offers = {o.framework_id: o for o in alloc.allocate(now=0.0)}
    # Both shares are 0: "ml" sorts first and gets everything it may use.
    assert offers["ml"].resources == R("cpus(ml):2;mem(ml):2048;cpus:4;mem:4096")
    assert "web" not in offers
    assert alloc.reservations("a") == R("cpus(ml):2;mem(ml):2048")


def test_hierarchical_shares_count_sub_roles() -> None:
    # 10 agents of cpus:4. eng/a and eng/b share eng's half with ops.
    alloc = make(agents=10)
    for framework_id, role in (("fa", "eng/a"), ("fb", "eng/b"), ("fo", "ops")):
        alloc.add_framework(framework_id, roles=(role,))
    alloc.allocate(now=0.0)
    # Level by level: eng and ops get 5 agents each; eng's 5 split between eng/a and eng/b.
    assert held(alloc, "fo") == 20
    assert sorted([held(alloc, "fa"), held(alloc, "fb")]) == [8, 12]
    summary = {s.role: s for s in alloc.roles_summary()}
    assert summary["eng"].allocated.scalar("cpus") == 20
    assert summary["eng"].share == pytest.approx(0.5)
    assert summary["eng/a"].frameworks == ("fa",)


def test_a_role_with_frameworks_and_sub_roles_competes_as_its_own_child() -> None:
    alloc = make(agents=8)
    alloc.add_framework("own", roles=("eng",))
    alloc.add_framework("sub", roles=("eng/ml",))
    alloc.add_framework("ops", roles=("ops",))
    alloc.allocate(now=0.0)
    assert held(alloc, "ops") == 16
    assert held(alloc, "own") == 8 and held(alloc, "sub") == 8


def test_weights_scale_role_shares() -> None:
    alloc = make(agents=12)
    alloc.set_weight("big", 3.0)
    alloc.add_framework("b", roles=("big",))
    alloc.add_framework("s", roles=("small",))
    alloc.allocate(now=0.0)
    assert (held(alloc, "b"), held(alloc, "s")) == (36, 12)
    assert alloc.weights() == {"big": 3.0}
    assert alloc.weight("small") == 1.0


@pytest.mark.parametrize("weight", [0, -1.0, math.nan, math.inf, "2", True, None])
def test_bad_weights_are_refused_and_change_nothing(weight: object) -> None:
    alloc = make()
    alloc.set_weight("eng", 2.0)
    with pytest.raises(ValueError, match="weight"):
        alloc.set_weight("eng", weight)  # type: ignore[arg-type]
    assert alloc.weights() == {"eng": 2.0}


@pytest.mark.parametrize("role", ["", "*", "/eng", "eng/", "eng//ml", ".", "..", "eng/..",
                                  "-eng", "e ng", "e\tng", "a*b", "x" * 1025])
def test_bad_roles_are_refused_everywhere(role: str) -> None:
    alloc = make(agents=1)
    with pytest.raises(ValueError, match="role"):
        alloc.set_weight(role, 2.0)
    with pytest.raises(ValueError, match="role"):
        alloc.set_quota(role, R("cpus:1"))
    with pytest.raises(ValueError, match="role"):
        alloc.reserve("a0", R("cpus:1"), role)
    if role != "*":
        with pytest.raises(ValueError, match="role"):
            alloc.add_framework("f", roles=(role,))
        assert not alloc.has_framework("f")
    assert alloc.weights() == {} and alloc.quotas() == {}
    assert alloc.reservations("a0").is_empty()


def test_update_framework_moves_offers_to_the_new_roles_and_keeps_old_allocations() -> None:
    alloc = make()
    alloc.add_agent("ml", R("cpus(ml):4;mem(ml):4096"))
    alloc.add_agent("web", R("cpus(web):4;mem(web):4096"))
    alloc.add_framework("f", roles=("ml",))
    [first] = alloc.allocate(now=0.0)
    assert first.role == "ml"
    alloc.update_framework("f", ["web"])
    [second] = alloc.allocate(now=0.0)
    assert (second.agent_id, second.role) == ("web", "web")
    # What it holds under ml stays booked to it until recovered, then nobody gets it.
    assert alloc.framework_summary("f", 0.0).allocated["ml"] == first.resources
    alloc.recover("ml", "f", first.resources, refuse_seconds=None, now=0.0)
    assert alloc.allocate(now=0.0) == []
    assert "ml" not in alloc.framework_summary("f", 0.0).allocated
    with pytest.raises(ValueError):
        alloc.update_framework("f", ["../x"])
    assert alloc.framework_summary("f", 0.0).roles == ("web",)


# -- quota ---------------------------------------------------------------------------------------

def test_unmet_guarantee_holds_headroom_against_others() -> None:
    alloc = make(agents=4)  # cpus:16
    alloc.set_quota("q", R("cpus:8;mem:8192"))
    alloc.add_framework("other", roles=("other",))
    alloc.allocate(now=0.0)
    # Only what is left above q's unmet guarantee may go to others.
    assert held(alloc, "other") == 8
    assert any("guarantee" in line for line in alloc.explain("other", 0.0))
    alloc.add_framework("qf", roles=("q",))
    alloc.allocate(now=1.0)
    assert held(alloc, "qf") == 8


def test_guarantee_is_allocated_before_fair_shares() -> None:
    # q is far above its fair share but owed a guarantee: it is served first, up to it.
    alloc = make(agents=4)
    alloc.add_framework("qf", roles=("q",))
    alloc.add_framework("other", roles=("other",))
    alloc.add_agent("held", R(BOX), {"qf": R(BOX)})
    alloc.set_quota("q", R("cpus:8"))
    offers = alloc.allocate(now=0.0)
    q_offers = [o for o in offers if o.framework_id == "qf"]
    # One agent more (cpus:4) meets the guarantee; q takes it in stage 1 though its share is
    # higher than other's; the rest goes by fair share.
    assert sum(o.resources.scalar("cpus") for o in q_offers) >= 4
    assert held(alloc, "qf") >= 8


def test_limit_is_never_exceeded_and_offers_are_cut_to_it() -> None:
    alloc = make(agents=3)
    alloc.set_quota("capped", Resources.empty(), R("cpus:6"))
    alloc.add_framework("c", roles=("capped",))
    alloc.allocate(now=0.0)
    assert held(alloc, "c") == 6
    assert any("quota limit" in line for line in alloc.explain("c", 0.0))
    # Sub-roles count towards their parent's limit.
    alloc.add_framework("sub", roles=("capped/x",))
    alloc.allocate(now=1.0)
    assert held(alloc, "sub") == 0


@pytest.mark.parametrize(("guarantee", "limit", "match"), [
    ("cpus:4", "cpus:2", "below the guarantee"),
    ("ports:[1-2]", None, "scalars only"),
    ("cpus(ml):1", None, "unreserved"),
    ("cpus:1", "disks:{a}", "scalars only"),
])
def test_bad_quota_is_refused_and_changes_nothing(guarantee: str, limit: str | None, match: str) -> None:
    alloc = make()
    alloc.set_quota("q", R("cpus:1"))
    with pytest.raises(ValueError, match=match):
        alloc.set_quota("q", R(guarantee), None if limit is None else R(limit))
    assert alloc.quotas() == {"q": Quota(R("cpus:1"), None)}


def test_quota_above_the_cluster_is_allowed_and_removable() -> None:
    alloc = make(agents=1)
    alloc.set_quota("q", R("cpus:100"), R("cpus:200"))
    assert alloc.quotas()["q"] == Quota(R("cpus:100"), R("cpus:200"))
    alloc.remove_quota("q")
    assert alloc.quotas() == {}
    with pytest.raises(ValueError, match="no quota"):
        alloc.remove_quota("q")


# -- reservations --------------------------------------------------------------------------------

def test_operator_reserve_and_unreserve_round_trip() -> None:
    alloc = make(agents=1)
    reserved = alloc.reserve("a0", R("cpus:2;mem:1024"), "ml")
    assert reserved == R("cpus(ml):2;mem(ml):1024")
    assert alloc.reservations("a0") == reserved
    assert alloc.total("a0") == R("cpus:2;mem:3072;cpus(ml):2;mem(ml):1024")
    alloc.add_framework("star")
    [offer] = alloc.allocate(now=0.0)
    assert offer.resources == R("cpus:2;mem:3072")
    alloc.recover("a0", "star", offer.resources, refuse_seconds=None, now=0.0)
    assert alloc.unreserve("a0", reserved) == R("cpus:2;mem:1024")
    assert alloc.total("a0") == R(BOX)
    assert alloc.free("a0") == R(BOX)


def test_reserve_and_unreserve_errors_change_nothing() -> None:
    alloc = make()
    alloc.add_agent("a0", R("cpus:4;mem:4096;cpus(ml):1"))
    alloc.add_framework("f")
    before = (alloc.total("a0"), alloc.free("a0"))
    with pytest.raises(ValueError, match="not free"):
        alloc.reserve("a0", R("cpus:5"), "ml")
    with pytest.raises(ValueError, match="only unreserved"):
        alloc.reserve("a0", R("cpus(ml):1"), "ops")
    with pytest.raises(ValueError, match="unknown agent"):
        alloc.reserve("nope", R("cpus:1"), "ml")
    with pytest.raises(ValueError, match="nothing"):
        alloc.reserve("a0", Resources.empty(), "ml")
    with pytest.raises(ValueError, match="not dynamically reserved"):
        alloc.unreserve("a0", R("cpus(ml):1"))  # static
    with pytest.raises(ValueError, match="only reserved"):
        alloc.unreserve("a0", R("cpus:1"))
    with pytest.raises(ValueError, match="not allocated to framework"):
        alloc.reserve("a0", R("cpus:1"), "ml", framework_id="f")
    assert (alloc.total("a0"), alloc.free("a0")) == before


def test_reserve_out_of_an_offer_keeps_it_allocated_then_only_the_role_gets_it() -> None:
    alloc = make(agents=1)
    alloc.add_framework("ml", roles=("ml",))
    [offer] = alloc.allocate(now=0.0)
    reserved = alloc.reserve("a0", R("cpus:1;mem:512"), "ml", framework_id="ml")
    assert alloc.allocated("a0") == {"ml": R("cpus:3;mem:3584;cpus(ml):1;mem(ml):512")}
    assert alloc.free("a0").is_empty()
    with pytest.raises(ValueError, match="not allocated"):
        alloc.reserve("a0", R("cpus:1"), "web", framework_id="ml")  # ml is not under web
    alloc.recover("a0", "ml", alloc.allocated("a0")["ml"], refuse_seconds=None, now=0.0)
    alloc.add_framework("other", roles=("other",))
    alloc.suppress("ml")
    [rest] = alloc.allocate(now=1.0)
    assert (rest.framework_id, rest.resources) == ("other", R("cpus:3;mem:3584"))
    alloc.revive("ml")
    [mine] = alloc.allocate(now=2.0)
    assert (mine.framework_id, mine.resources) == ("ml", reserved)
    # Unreserve out of the allocation: still allocated to ml, now unreserved.
    alloc.unreserve("a0", reserved, framework_id="ml")
    assert alloc.allocated("a0")["ml"] == R("cpus:1;mem:512")
    assert alloc.reservations("a0").is_empty()
    assert offer.resources == R(BOX)


# -- offer lifecycle -----------------------------------------------------------------------------

def test_a_decliner_with_long_filters_does_not_starve_others() -> None:
    alloc = make(agents=5)
    alloc.add_framework("decliner")
    for _ in range(3):
        for o in alloc.allocate(now=0.0):
            alloc.recover(o.agent_id, o.framework_id, o.resources, refuse_seconds=1e9, now=0.0)
    assert alloc.filters("decliner") == 5
    alloc.add_framework("worker")
    offers = alloc.allocate(now=1.0)
    assert {o.framework_id for o in offers} == {"worker"} and len(offers) == 5
    reasons = alloc.explain("decliner", 1.0)
    assert reasons and ("filtered" in reasons[0] or "nothing free" in reasons[0])


def test_suppressed_role_gets_nothing_until_revived() -> None:
    alloc = make(agents=2)
    alloc.add_framework("f", roles=("a", "b"))
    alloc.suppress("f", ["a"])
    offers = alloc.allocate(now=0.0, agent_ids=["a0"])
    assert [o.role for o in offers] == ["b"]
    assert alloc.explain("f", 0.0) == []
    alloc.suppress("f", ["b"])
    assert alloc.allocate(now=0.0) == []
    assert "suppressed" in alloc.explain("f", 0.0)[0]
    assert alloc.framework_summary("f", 0.0).suppressed == ("a", "b")
    alloc.revive("f", ["a"])
    [offer] = alloc.allocate(now=0.0)
    assert offer.role == "a"


def test_min_allocatable_quantities() -> None:
    alloc = make(min_allocatable=[R("cpus:1;mem:512"), R("gpus:1")])
    alloc.add_agent("small", R("cpus:2;mem:256"))
    alloc.add_agent("gpu", R("gpus:1;cpus:0.1"))
    alloc.add_agent("big", R("cpus:1;mem:512"))
    alloc.add_framework("f")
    assert sorted(o.agent_id for o in alloc.allocate(now=0.0)) == ["big", "gpu"]
    with pytest.raises(ValueError):
        Allocator(min_allocatable=[R("ports:[1-2]")])


def test_explain_and_summaries() -> None:
    alloc = make(agents=1)
    assert alloc.explain("ghost", 0.0) == ["framework ghost is not subscribed"]
    alloc.add_framework("f", roles=("eng",), active=False)
    assert "inactive" in alloc.explain("f", 0.0)[0]
    alloc.activate_framework("f")
    assert alloc.explain("f", 0.0) == []
    [offer] = alloc.allocate(now=0.0)
    summary = alloc.framework_summary("f", 0.0)
    assert summary.allocated == {"eng": offer.resources}
    assert summary.shares == {"eng": pytest.approx(1.0)}
    assert summary.active and summary.filters == 0
    assert "nothing free" in alloc.explain("f", 0.0)[0]
    with pytest.raises(ValueError, match="unknown framework"):
        alloc.framework_summary("ghost", 0.0)
    alloc.set_weight("idle", 2.0)
    roles = [s.role for s in alloc.roles_summary()]
    assert roles == ["eng", "idle"]


def test_reservations_count_toward_quota_like_mesos() -> None:
    # Consumption = allocated + unallocated reservations (Mesos 1.9+).
    alloc = Allocator(rng=random.Random(3))
    alloc.add_agent("a1", Resources.parse("cpus:4;mem:4096;cpus(ml):2"))
    alloc.set_quota("ml", Resources.parse("cpus:2"), Resources.parse("cpus:3"))
    alloc.add_framework("f-ml", ["ml"])
    [offer] = alloc.allocate(now=0.0)
    # Its 2 reserved cpus already meet the guarantee and count toward the limit: at most one
    # unreserved cpu joins them.
    assert offer.resources.filter_roles(["ml"]).scalar("cpus") == 2
    assert offer.resources.unreserved().scalar("cpus") == 1


def test_unallocated_reservations_meet_a_guarantee_without_unreserved_resources() -> None:
    alloc = Allocator(rng=random.Random(3))
    alloc.add_agent("a1", Resources.parse("cpus:4;mem:4096;cpus(ml):2;mem(ml):512"))
    alloc.set_quota("ml", Resources.parse("cpus:2"))
    alloc.add_framework("f-other", ["*"])
    [offer] = alloc.allocate(now=0.0)
    # ml's guarantee is met by its reservations, so nothing unreserved is held back for it.
    assert offer.framework_id == "f-other" and offer.resources.scalar("cpus") == 4


def test_a_limit_of_zero_keeps_a_resource_from_a_role() -> None:
    alloc = Allocator(rng=random.Random(3))
    alloc.add_agent("a1", Resources.parse("cpus:4;mem:4096;gpus:2"))
    alloc.set_quota("ml", Resources.empty(), None, zero_limits=["gpus"])
    alloc.add_framework("f-ml", ["ml"])
    [offer] = alloc.allocate(now=0.0)
    assert offer.resources.scalar("gpus") == 0 and offer.resources.scalar("cpus") == 4
    assert alloc.quotas()["ml"].to_json() == {"guarantee": {}, "limit": {"gpus": 0.0}}
    with pytest.raises(ValueError, match="limit of 0"):
        alloc.set_quota("ml", Resources.parse("gpus:1"), None, zero_limits=["gpus"])


def test_quota_must_nest_like_mesos() -> None:
    alloc = Allocator(rng=random.Random(3))
    alloc.add_agent("a1", Resources.parse("cpus:8;mem:8192"))
    alloc.set_quota("eng", Resources.parse("cpus:4"), Resources.parse("cpus:6"))
    alloc.set_quota("eng/ml", Resources.parse("cpus:3"), Resources.parse("cpus:5"))
    with pytest.raises(ValueError, match="add up to more"):
        alloc.set_quota("eng/web", Resources.parse("cpus:2"))  # 3 + 2 > 4
    with pytest.raises(ValueError, match="must not exceed"):
        alloc.set_quota("eng/web", Resources.parse("cpus:1"), Resources.parse("cpus:7"))
    with pytest.raises(ValueError, match="add up to more"):
        alloc.set_quota("eng", Resources.parse("cpus:2"), Resources.parse("cpus:6"))  # below eng/ml's 3
    alloc.set_quota("eng/web", Resources.parse("cpus:1"), Resources.parse("cpus:2"))
    assert set(alloc.quotas()) == {"eng", "eng/ml", "eng/web"}
    # The headroom held back is eng's unmet guarantee (4), not 4 + 3 + 1.
    alloc.add_framework("f-other", ["*"])
    [offer] = alloc.allocate(now=0.0)
    assert offer.framework_id == "f-other" and offer.resources.scalar("cpus") == 4
