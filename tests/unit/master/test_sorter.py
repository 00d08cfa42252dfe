"""DRFSorter: the order of clients after allocations, with the shares written beside them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mensa.master.allocator import DRFSorter
from mensa.proto.resources import Resources

R = Resources.parse


def sorter_with(total: str, *clients: str) -> DRFSorter:
    sorter = DRFSorter()
    sorter.add_total(R(total))
    for client in clients:
        sorter.add(client)
    return sorter


def test_new_clients_sort_by_id() -> None:
    sorter = sorter_with("cpus:10;mem:100", "b", "a", "c")
    # All shares 0, all sums 0: the id decides.
    assert sorter.sort() == ["a", "b", "c"]


def test_drf_order_after_allocations() -> None:
    # Total cpus:10;mem:100.
    sorter = sorter_with("cpus:10;mem:100", "a", "b")

    sorter.allocated("a", "agent1", R("cpus:5;mem:5"))
    # a: cpus 5/10 = .5, mem 5/100 = .05 -> share .5; b: 0.
    assert sorter.share("a") == pytest.approx(0.5)
    assert sorter.sort() == ["b", "a"]

    sorter.allocated("b", "agent2", R("cpus:1;mem:60"))
    # b: cpus .1, mem .6 -> share .6; a: .5.
    assert sorter.share("b") == pytest.approx(0.6)
    assert sorter.sort() == ["a", "b"]

    sorter.add("c")
    sorter.allocated("c", "agent1", R("cpus:1;mem:10"))
    # c: cpus .1, mem .1 -> share .1; a: .5; b: .6.
    assert sorter.sort() == ["c", "a", "b"]

    sorter.unallocated("b", "agent2", R("mem:50"))
    # b: cpus 1/10 = .1, mem 10/100 = .1 -> share .1, ties with c (.1).
    # Sums: b 1+10 = 11, c 1+10 = 11: tie again, the id decides.
    assert sorter.sort() == ["b", "c", "a"]


def test_equal_shares_go_to_smaller_allocation_then_id() -> None:
    sorter = sorter_with("cpus:10;mem:100", "x", "y", "z", "w")
    sorter.allocated("x", "agent1", R("cpus:5;mem:50"))
    # x: share .5 (both), sum 55.
    sorter.allocated("y", "agent1", R("cpus:5;mem:5"))
    # y: share .5 (cpus), sum 10.
    sorter.allocated("z", "agent1", R("cpus:1;mem:50"))
    # z: share .5 (mem), sum 51.
    sorter.allocated("w", "agent2", R("cpus:1;mem:50"))
    # w: share .5 (mem), sum 51: ties with z, the id decides.
    assert [sorter.share(c) for c in "xyzw"] == pytest.approx([0.5] * 4)
    assert sorter.sort() == ["y", "w", "z", "x"]


def test_weights_divide_the_share() -> None:
    sorter = sorter_with("cpus:10;mem:100")
    sorter.add("heavy", weight=2.0)
    sorter.add("light")
    sorter.allocated("heavy", "agent1", R("cpus:6"))
    sorter.allocated("light", "agent1", R("cpus:4"))
    # heavy: .6 / 2 = .3; light: .4 / 1 = .4.
    assert sorter.share("heavy") == pytest.approx(0.3)
    assert sorter.sort() == ["heavy", "light"]

    sorter.update_weight("heavy", 1.0)
    # heavy: .6; light: .4.
    assert sorter.sort() == ["light", "heavy"]


@pytest.mark.parametrize("weight", [0.0, -1.0, math.nan, math.inf])
def test_bad_weights_are_refused(weight: float) -> None:
    sorter = DRFSorter()
    with pytest.raises(ValueError, match="weight"):
        sorter.add("a", weight=weight)


def test_deactivated_clients_leave_the_order_but_keep_allocations() -> None:
    sorter = sorter_with("cpus:10;mem:100", "a", "b")
    sorter.allocated("a", "agent1", R("cpus:2"))
    # a: .2; b: 0.
    sorter.deactivate("b")
    assert sorter.sort() == ["a"]
    sorter.allocated("b", "agent1", R("cpus:5"))
    # b: .5, counted even while inactive.
    assert sorter.share("b") == pytest.approx(0.5)
    sorter.activate("b")
    assert sorter.sort() == ["a", "b"]
    sorter.activate("b")  # idempotent
    assert sorter.sort() == ["a", "b"]


def test_added_inactive_and_removed() -> None:
    sorter = sorter_with("cpus:10", "a")
    sorter.add("b", active=False)
    assert sorter.sort() == ["a"]
    assert not sorter.is_active("b")
    sorter.remove("a")
    assert "a" not in sorter
    assert sorter.sort() == []
    with pytest.raises(ValueError, match="already exists"):
        sorter.add("b")
    with pytest.raises(KeyError):
        sorter.allocated("a", "agent1", R("cpus:1"))


def test_total_changes_recompute_every_share() -> None:
    sorter = sorter_with("cpus:10;mem:100", "a", "b")
    sorter.allocated("a", "agent1", R("cpus:5"))
    sorter.allocated("b", "agent1", R("mem:40"))
    # a: .5; b: .4.
    assert sorter.sort() == ["b", "a"]

    sorter.add_total(R("cpus:10"))
    # Total cpus:20;mem:100. a: 5/20 = .25; b: .4.
    assert sorter.share("a") == pytest.approx(0.25)
    assert sorter.sort() == ["a", "b"]

    sorter.remove_total(R("cpus:10;mem:50"))
    # Total cpus:10;mem:50. a: .5; b: 40/50 = .8.
    assert sorter.sort() == ["a", "b"]
    assert sorter.share("b") == pytest.approx(0.8)
    assert sorter.totals() == {"cpus": 10.0, "mem": 50.0}


def test_names_without_total_and_ranges_are_ignored() -> None:
    sorter = sorter_with("cpus:10;mem:100;ports:[1-100]", "a", "b")
    sorter.allocated("a", "agent1", R("gpus:1;ports:[1-100]"))
    # a: gpus has no total, ports are ranges -> share 0.
    assert sorter.share("a") == 0.0
    sorter.allocated("b", "agent1", R("cpus:0.5"))
    # b: .05.
    assert sorter.sort() == ["a", "b"]


def test_roles_of_resources_are_summed() -> None:
    sorter = sorter_with("cpus:8;cpus(ml):2", "a")
    sorter.allocated("a", "agent1", R("cpus:1;cpus(ml):1"))
    # a: cpus 2/10 = .2.
    assert sorter.share("a") == pytest.approx(0.2)


def test_allocation_per_agent_and_unallocating_more_than_held() -> None:
    sorter = sorter_with("cpus:10;mem:100;ports:[1-10]", "a")
    sorter.allocated("a", "agent1", R("cpus:1;ports:[1-5]"))
    sorter.allocated("a", "agent1", R("cpus:1"))
    sorter.allocated("a", "agent2", R("mem:10"))
    assert sorter.allocation("a") == {"agent1": R("cpus:2;ports:[1-5]"), "agent2": R("mem:10")}
    assert sorter.allocation_on("a", "agent3").is_empty()

    sorter.unallocated("a", "agent1", R("cpus:5;ports:[1-3]"))  # only cpus:2 was there
    assert sorter.allocation("a") == {"agent1": R("ports:[4-5]"), "agent2": R("mem:10")}
    # a: cpus 0, mem .1 -> share .1 (cpus did not go negative).
    assert sorter.share("a") == pytest.approx(0.1)
    sorter.unallocated("a", "agent9", R("cpus:1"))  # nothing there: no change
    assert sorter.share("a") == pytest.approx(0.1)


def test_scalars_do_not_drift() -> None:
    sorter = sorter_with("cpus:1", "a", "b")
    for _ in range(1000):
        sorter.allocated("a", "agent1", R("cpus:0.1"))
        sorter.unallocated("a", "agent1", R("cpus:0.1"))
    # a: exactly 0 again, so it ties with b on share and sum and sorts by id.
    assert sorter.share("a") == 0.0
    assert sorter.sort() == ["a", "b"]


def test_sorter_starts_from_a_given_total() -> None:
    sorter = DRFSorter(total={"cpus": 4.0})
    sorter.add("a")
    sorter.allocated("a", "agent1", R("cpus:1"))
    assert sorter.share("a") == pytest.approx(0.25)


# -- property: the cached order is the order computed from scratch -----------------------------

CLIENTS = st.sampled_from(["a", "b", "c", "d"])
BAGS = st.builds(
    lambda c, m: Resources.scalars(cpus=c, mem=m),
    st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=64),
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("allocated"), CLIENTS, st.sampled_from(["s1", "s2"]), BAGS),
        st.tuples(st.just("unallocated"), CLIENTS, st.sampled_from(["s1", "s2"]), BAGS),
        st.tuples(st.just("add_total"), BAGS),
        st.tuples(st.just("remove_total"), BAGS),
        st.tuples(st.just("toggle"), CLIENTS),
        st.tuples(st.just("weight"), CLIENTS, st.sampled_from([0.5, 1.0, 3.0])),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_incremental_order_matches_a_fresh_computation(ops: list[tuple]) -> None:
    sorter = sorter_with("cpus:16;mem:128", "a", "b", "c", "d")
    weights = dict.fromkeys("abcd", 1.0)
    for op, *args in ops:
        if op == "toggle":
            (sorter.deactivate if sorter.is_active(args[0]) else sorter.activate)(args[0])
        elif op == "weight":
            sorter.update_weight(args[0], args[1])
            weights[args[0]] = args[1]
        else:
            getattr(sorter, op)(*args)
        total = sorter.totals()
        keys = []
        for client in sorter.clients():
            held = Resources.empty()
            for part in sorter.allocation(client).values():
                held = held + part
            scalars = held.scalar_totals()
            dominant = max(
                [v / total[n] for n, v in scalars.items() if total.get(n, 0) > 0], default=0.0
            )
            share = sorter.share(client)
            assert share == pytest.approx(dominant / weights[client])
            if sorter.is_active(client):
                keys.append((share, round(sum(scalars.values()) * 1000), client))
        assert sorter.sort() == [k[2] for k in sorted(keys)]
        assert list(sorter.iter_sorted()) == sorter.sort()
