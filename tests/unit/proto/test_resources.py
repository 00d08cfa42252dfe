"""Resources: parsing, arithmetic (scalars, ranges, sets, roles), fitting, protobuf round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError, Resources, format_ranges

R = Resources.parse


def test_parse_scalars_ranges_sets_and_roles() -> None:
    r = R("cpus:4;mem:4096;ports:[31000-31005, 31010-31010];zones:{a,b};cpus(ml):2")
    assert r.scalar("cpus") == 6
    assert r.scalar("mem") == 4096
    assert r.ranges("ports") == ((31000, 31005), (31010, 31010))
    assert r.range_count("ports") == 7
    assert r.roles() == {"*", "ml"}
    assert r.unreserved().scalar("cpus") == 4
    assert str(R(str(r))) == str(r)


@pytest.mark.parametrize("text, message", [
    ("cpus", "expected NAME"),
    ("cpus:abc", "not a number"),
    ("cpus:-1", "must not be negative"),
    ("cpus:nan", "must be finite"),
    ("mem:inf", "must be finite"),
    ("ports:[5-3]", "ends before it begins"),
    ("ports:[1-2", "unterminated range"),
    ("ports:[a-b]", "bad range"),
    ("cp us:1", "bad name"),
    ("cpus(/x):1", "not a valid role"),
])
def test_parse_rejects_malformed_input(text: str, message: str) -> None:
    with pytest.raises(ResourceError, match=message.replace("(", r"\(")):
        R(text)


def test_fixed_point_scalars_never_drift() -> None:
    total = R("cpus:0")
    for _ in range(10):
        total = total + R("cpus:0.1")
    assert total.scalar("cpus") == 1.0
    assert (R("cpus:0.3") - R("cpus:0.1") - R("cpus:0.2")).is_empty()


def test_range_subtraction_splits_and_contains() -> None:
    total = R("ports:[1000-1009]")
    left = total - R("ports:[1003-1004, 1009-1009]")
    assert left.ranges("ports") == ((1000, 1002), (1005, 1008))
    assert left.contains(R("ports:[1005-1008]"))
    assert not left.contains(R("ports:[1002-1003]"))
    assert left + R("ports:[1003-1004, 1009-1009]") == total
    assert format_ranges(left.ranges("ports")) == "[1000-1002, 1005-1008]"


def test_contains_is_per_role() -> None:
    offer = R("cpus:2;cpus(ml):2")
    assert offer.contains(R("cpus(ml):2"))
    assert not offer.contains(R("cpus(ml):3"))
    assert not offer.contains(R("cpus:3"))


def test_proto_round_trip_keeps_roles_and_sets_allocation_role() -> None:
    r = R("cpus:1.5;mem(ml):128;ports:[1-3];zones:{a}")
    protos = r.to_proto(allocation_role="*")
    assert all(p.allocation_info.role == "*" for p in protos)
    mem = next(p for p in protos if p.name == "mem")
    assert mem.reservations[0].role == "ml"
    assert Resources.from_proto(protos) == r


@pytest.mark.parametrize("value", [-0.5, math.nan, math.inf])
def test_from_proto_rejects_bad_scalars(value: float) -> None:
    bad = mensa_pb2.Resource(name="cpus", type=mensa_pb2.Value.SCALAR)
    bad.scalar.value = value
    with pytest.raises(ResourceError):
        Resources.from_proto([bad])


def test_from_proto_rejects_a_scalar_without_value_and_bad_ranges() -> None:
    with pytest.raises(ResourceError, match="without a scalar"):
        Resources.from_proto([mensa_pb2.Resource(name="cpus", type=mensa_pb2.Value.SCALAR)])
    bad = mensa_pb2.Resource(name="ports", type=mensa_pb2.Value.RANGES)
    bad.ranges.range.add(begin=9, end=3)
    with pytest.raises(ResourceError, match="ends before"):
        Resources.from_proto([bad])
    with pytest.raises(ResourceError, match="empty"):
        Resources.from_proto([mensa_pb2.Resource(name="", type=mensa_pb2.Value.SCALAR)])


def test_to_json_is_the_mesos_state_shape() -> None:
    assert R("cpus:1;cpus(ml):1;ports:[5-6]").to_json() == {
        "cpus": 2.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0, "ports": "[5-6]"}


bags = st.builds(
    lambda c, m, ports: Resources.scalars(cpus=c, mem=m) + R(
        "ports:[" + ",".join(f"{p}-{p + w}" for p, w in ports) + "]" if ports else ""),
    st.integers(0, 4000).map(lambda n: n / 1000),
    st.integers(0, 1 << 20),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 5)), max_size=5),
)


@given(bags, bags)
def test_arithmetic_laws(a: Resources, b: Resources) -> None:
    assert (a + b).contains(a) and (a + b).contains(b)
    assert ((a + b) - b).contains(a - b)
    if a.contains(b):
        assert (a - b) + b == a
    assert (a - a).is_empty()
    assert Resources.from_proto(a.to_proto()) == a
