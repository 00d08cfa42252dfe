"""Marathon constraint operators on hostname and agent attributes, one placement at a time."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from mensa.frameworks.placement import OfferView
from mensa.frameworks.service_fw.apps import Constraint
from mensa.frameworks.service_fw.constraints import Located, Placement, Tally, constraint_problem
from mensa.frameworks.service_fw.instances import Instance
from mensa.proto.resources import Resources


def agent(hostname: str, **attributes: str) -> OfferView:
    return OfferView(f"id-{hostname}", hostname, tuple(attributes.items()),
                     Resources.parse("cpus:4;mem:4096"), None)


def at(hostname: str, **attributes: str) -> Placement:
    return Placement(hostname, tuple(attributes.items()))


def ok(constraint: Constraint, view: OfferView, placed: Sequence[Located]) -> bool:
    return constraint_problem([constraint], view, placed) is None


def test_no_constraints_accept_anything() -> None:
    assert constraint_problem([], agent("h1"), [at("h1")]) is None


def test_unique_hostname_refuses_a_host_already_used() -> None:
    c = Constraint("hostname", "UNIQUE")
    assert ok(c, agent("h1"), [])
    assert ok(c, agent("h2"), [at("h1")])
    reason = constraint_problem([c], agent("h1"), [at("h1")])
    assert reason is not None
    assert "hostname UNIQUE" in reason and "'h1'" in reason


def test_unique_attribute_and_agents_without_it() -> None:
    c = Constraint("rack", "UNIQUE")
    assert not ok(c, agent("h2", rack="r1"), [at("h1", rack="r1")])
    assert ok(c, agent("h2", rack="r2"), [at("h1", rack="r1")])
    reason = constraint_problem([c], agent("h3"), [])
    assert reason is not None and "no attribute 'rack'" in reason


def test_cluster_with_a_value() -> None:
    c = Constraint("rack", "CLUSTER", "r1")
    assert ok(c, agent("h1", rack="r1"), [])
    assert not ok(c, agent("h1", rack="r2"), [])
    assert not ok(c, agent("h1"), [])
    assert ok(Constraint("hostname", "CLUSTER", "h9"), agent("h9"), [at("h9")])


def test_cluster_without_a_value_follows_the_first_instance() -> None:
    c = Constraint("rack", "CLUSTER")
    assert ok(c, agent("h1", rack="r2"), [])  # the first goes anywhere with the attribute
    assert not ok(c, agent("h1"), [])
    placed = [at("h1", rack="r2"), at("h2", rack="r2")]
    assert ok(c, agent("h3", rack="r2"), placed)
    assert not ok(c, agent("h3", rack="r1"), placed)
    assert not ok(Constraint("hostname", "CLUSTER"), agent("h2"), [at("h1")])


def test_like_and_unlike_match_the_whole_value() -> None:
    like = Constraint("rack", "LIKE", "r[12]")
    assert ok(like, agent("h", rack="r1"), [])
    assert not ok(like, agent("h", rack="r12"), [])  # a full match, not a search
    assert not ok(like, agent("h", rack="r3"), [])
    assert not ok(like, agent("h"), [])
    unlike = Constraint("rack", "UNLIKE", "r[12]")
    assert not ok(unlike, agent("h", rack="r1"), [])
    assert ok(unlike, agent("h", rack="r12"), [])
    assert ok(unlike, agent("h"), [])  # an agent without the attribute is accepted
    assert ok(Constraint("hostname", "LIKE", "web-.*"), agent("web-3"), [])


def test_is_compares_numbers_as_numbers() -> None:
    c = Constraint("cores", "IS", "8")
    assert ok(c, agent("h", cores="8"), [])
    assert ok(Constraint("cores", "IS", "8.0"), agent("h", cores="8"), [])
    assert not ok(c, agent("h", cores="16"), [])
    assert not ok(c, agent("h"), [])
    assert ok(Constraint("zone", "IS", "a"), agent("h", zone="a"), [])
    assert not ok(Constraint("zone", "IS", "a"), agent("h", zone="A"), [])


def test_max_per_limits_instances_per_value() -> None:
    c = Constraint("rack", "MAX_PER", "2")
    assert ok(c, agent("h3", rack="r1"), [at("h1", rack="r1")])
    placed = [at("h1", rack="r1"), at("h2", rack="r1")]
    reason = constraint_problem([c], agent("h3", rack="r1"), placed)
    assert reason is not None and "at most 2" in reason
    assert ok(c, agent("h3", rack="r2"), placed)


def test_group_by_accepts_new_values_and_the_least_used() -> None:
    c = Constraint("rack", "GROUP_BY")
    assert ok(c, agent("h", rack="r1"), [])
    placed = [at("a", rack="r1"), at("b", rack="r1"), at("c", rack="r2")]
    assert not ok(c, agent("h", rack="r1"), placed)  # r1 has 2, r2 has 1
    assert ok(c, agent("h", rack="r2"), placed)
    assert ok(c, agent("h", rack="r3"), placed)  # not seen yet
    even = [at("a", rack="r1"), at("b", rack="r2")]
    assert ok(c, agent("h", rack="r1"), even)


def test_group_by_with_a_count_sends_the_first_n_to_distinct_values() -> None:
    c = Constraint("rack", "GROUP_BY", "3")
    two = [at("a", rack="r1"), at("b", rack="r2")]
    reason = constraint_problem([c], agent("h", rack="r1"), two)
    assert reason is not None and "2 of 3" in reason
    assert ok(c, agent("h", rack="r3"), two)
    three = [*two, at("c", rack="r3")]
    assert ok(c, agent("h", rack="r1"), three)


def test_group_by_spreads_a_stream_of_offers_evenly() -> None:
    """Offers arrive rack after rack, r1 twice as often; 9 instances end 3/3/3."""
    c = [Constraint("rack", "GROUP_BY", "3")]
    offers = [agent(f"h{i}", rack=r) for i, r in enumerate(["r1", "r1", "r2", "r1", "r3"] * 6)]
    placed: list[Placement] = []
    for view in offers:
        if len(placed) == 9:
            break
        if constraint_problem(c, view, placed) is None:
            placed.append(Placement(view.hostname, view.attributes))
    counts: dict[str, int] = {}
    for p in placed:
        counts[dict(p.attributes)["rack"]] = counts.get(dict(p.attributes)["rack"], 0) + 1
    assert counts == {"r1": 3, "r2": 3, "r3": 3}


def test_every_constraint_must_hold_and_the_reason_names_the_failing_one() -> None:
    cs = [Constraint("rack", "LIKE", "r.*"), Constraint("hostname", "UNIQUE")]
    assert constraint_problem(cs, agent("h1", rack="r1"), []) is None
    reason = constraint_problem(cs, agent("h1", rack="r1"), [at("h1", rack="r1")])
    assert reason is not None and reason.startswith("constraint [hostname UNIQUE]")


def test_instances_serve_as_placements() -> None:
    inst = Instance(task_id="a.1", app_id="/a", version="v", hostname="h1", attributes=(("rack", "r1"),))
    assert not ok(Constraint("rack", "UNIQUE"), agent("h2", rack="r1"), [inst])


@pytest.mark.parametrize("op,value", [("UNIQUE", None), ("MAX_PER", "1"), ("GROUP_BY", None)])
def test_tally_counts_instances_added_on_the_way(op: str, value: str | None) -> None:
    tally = Tally([Constraint("hostname", op, value)], [])
    view = agent("h1")
    assert tally.problem(view) is None
    tally.add(view)
    if op == "GROUP_BY":
        assert tally.problem(view) is None  # the only value in use is the least used
        tally.add(agent("h2"))
        tally.add(agent("h2"))
        assert tally.problem(agent("h2")) is not None
        assert tally.problem(view) is None
    else:
        assert tally.problem(view) is not None
        assert tally.problem(agent("h2")) is None
