"""zk:// URIs, the leader znodes' JSON, and the election rule (pure: no ZooKeeper)."""

from __future__ import annotations

import json

import pytest

from mensa.proto import mensa_pb2
from mensa.proto.transport import Endpoint
from mensa.proto.zk import (
    MASTER_PREFIX,
    Leader,
    ZkUri,
    ZkUriError,
    elect,
    is_zk_uri,
    leader_child,
    master_info_json,
    parse_master_info,
    parse_zk_uri,
    sequence_of,
)


def info(master_id: str, zmq_port: int = 5050, http_port: int = 5051) -> mensa_pb2.MasterInfo:
    result = mensa_pb2.MasterInfo(id=master_id, zmq_endpoint=f"tcp://127.0.0.1:{zmq_port}")
    result.address.ip = "127.0.0.1"
    result.address.hostname = "localhost"
    result.address.port = http_port
    return result


def child(seq: int, width: int = 10) -> str:
    return f"{MASTER_PREFIX}{seq:0{width}d}"


# -- URIs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, hosts, path", [
    ("zk://127.0.0.1:2181/mensa", "127.0.0.1:2181", "/mensa"),
    ("zk://h1:1,h2:2,h3:3/mensa", "h1:1,h2:2,h3:3", "/mensa"),
    ("  zk://h1:2181/a/b/  ", "h1:2181", "/a/b"),
    ("zk://h1:02181/mensa", "h1:2181", "/mensa"),
    ("zk://[::1]:2181/mensa", "[::1]:2181", "/mensa"),
])
def test_good_uris_parse(text: str, hosts: str, path: str) -> None:
    uri = parse_zk_uri(text)
    assert (uri.hosts, uri.path, uri.auth) == (hosts, path, None)
    assert str(uri) == f"zk://{hosts}{path}"


def test_credentials_are_split_off_the_hosts() -> None:
    uri = parse_zk_uri("zk://jo:s3cr@t@h1:1,h2:2/mensa")
    assert uri == ZkUri("h1:1,h2:2", "/mensa", "jo:s3cr@t")
    assert "s3cr" not in str(uri)  # str() never shows the password


@pytest.mark.parametrize("text, reason", [
    ("http://h:1/mensa", "not a zk:// URI"),
    ("h:1/mensa", "not a zk:// URI"),
    ("zk://h:2181", "needs a path"),
    ("zk://h:2181/", "needs a path"),
    ("zk://h:2181//", "needs a path"),
    ("zk:///mensa", "names no ZooKeeper server"),
    ("zk://", "names no ZooKeeper server"),
    ("zk://h/mensa", "must be HOST:PORT"),
    ("zk://:2181/mensa", "must be HOST:PORT"),
    ("zk://h1:1,,h2:2/mensa", "must be HOST:PORT"),
    ("zk://h1:1,/mensa", "must be HOST:PORT"),
    ("zk://h:0/mensa", "bad port"),
    ("zk://h:65536/mensa", "bad port"),
    ("zk://h:-1/mensa", "bad port"),
    ("zk://h:port/mensa", "bad port"),
    ("zk://h:/mensa", "bad port"),
    ("zk://h:\u00b2/mensa", "bad port"),  # a superscript two: isdigit() but not int()-able
    ("zk://h:\u0663/mensa", "bad port"),  # an Arabic-Indic three
    ("zk://jo@h:1/mensa", "USER:PASSWORD"),
    ("zk://:pw@h:1/mensa", "USER:PASSWORD"),
    ("zk://h:1/a//b", "empty or relative part"),
    ("zk://h:1/a/../b", "empty or relative part"),
    ("zk://h:1/./a", "empty or relative part"),
])
def test_malformed_uris_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ZkUriError, match=reason):
        parse_zk_uri(text)


def test_zk_uri_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_zk_uri("zk://nowhere")


def test_is_zk_uri() -> None:
    assert is_zk_uri(" zk://h:1/m")
    assert not is_zk_uri("127.0.0.1:5050")
    assert not is_zk_uri("tcp://h:1")


def test_child_paths() -> None:
    uri = parse_zk_uri("zk://h:1/a/b")
    assert uri.child("json.info_0000000001") == "/a/b/json.info_0000000001"


# -- znode names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, seq", [
    ("json.info_0000000007", 7),
    ("json.info_12", 12),
    ("json.info_", None),
    ("json.info_x1", None),
    ("json.info_-1", None),
    ("json.info_\u00b2", None),
    ("info_0000000001", None),
    ("log_replicas", None),
    ("registry", None),
])
def test_sequence_of(name: str, seq: int | None) -> None:
    assert sequence_of(name) == seq


def test_leader_child_orders_by_number_not_by_string() -> None:
    assert leader_child(["json.info_10", "json.info_9", "registry"]) == "json.info_9"
    assert leader_child(["registry", "json.info_"]) is None
    assert leader_child([]) is None


# -- MasterInfo JSON -----------------------------------------------------------------------------


def test_master_info_round_trips_with_mesos_field_names() -> None:
    data = master_info_json(info("m1", 6000, 6001))
    obj = json.loads(data)
    assert obj["address"] == {"ip": "127.0.0.1", "hostname": "localhost", "port": 6001}
    assert obj["zmq_endpoint"] == "tcp://127.0.0.1:6000"
    assert parse_master_info(data) == info("m1", 6000, 6001)


def test_a_mesos_masters_json_with_unknown_fields_parses() -> None:
    data = json.dumps({"id": "m", "address": {"ip": "10.0.0.1", "port": 5050},
                       "version": "1.11.0", "domain": {"fault_domain": {}}, "capabilities": [1]}).encode()
    parsed = parse_master_info(data)
    assert (parsed.id, parsed.address.ip, parsed.address.port) == ("m", "10.0.0.1", 5050)


@pytest.mark.parametrize("data, reason", [
    (None, "empty"),
    (b"", "empty"),
    (b"not json", "does not hold JSON"),
    (b"\xff\xfe\xfd", "does not hold JSON"),
    (b"[1, 2]", "not an object"),
    (b'"text"', "not an object"),
    (b'{"address": "here"}', "MasterInfo"),
    (b'{"address": {"port": "http"}}', "not a MasterInfo"),
    (b'{"id": "m"}', "names no host"),
    (b"[" * 50_000, "does not hold JSON"),  # nesting deep enough to exhaust the recursion limit
    (b" " * (64 * 1024 + 1), "more than a MasterInfo"),
])
def test_garbage_is_refused_with_a_reason(data: bytes | None, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_master_info(data)


def test_leader_from_info() -> None:
    leader = Leader.from_info(info("m1", 6000, 6001))
    assert leader.master_id == "m1"
    assert (leader.zmq, leader.http) == (Endpoint("127.0.0.1", 6000), "127.0.0.1:6001")


def test_leader_needs_a_zmq_endpoint() -> None:
    no_zmq = info("m1")
    no_zmq.ClearField("zmq_endpoint")
    with pytest.raises(ValueError, match="zmq_endpoint"):
        Leader.from_info(no_zmq)


# -- election ------------------------------------------------------------------------------------


def test_lowest_sequence_leads() -> None:
    nodes: dict[str, bytes | None] = {child(3): master_info_json(info("c")),
                                      child(1): master_info_json(info("a")),
                                      child(2): master_info_json(info("b"))}
    election = elect(nodes)
    assert election.leader_child == child(1)
    assert election.leader is not None and election.leader.id == "a"
    assert election.invalid == ()


def test_order_is_by_sequence_not_by_string_when_widths_differ() -> None:
    # As strings, "json.info_10" < "json.info_9"; as sequences 9 < 10.
    nodes: dict[str, bytes | None] = {"json.info_10": master_info_json(info("ten")),
                                      "json.info_9": master_info_json(info("nine"))}
    election = elect(nodes)
    assert election.leader_child == "json.info_9"
    assert election.leader is not None and election.leader.id == "nine"


def test_garbage_is_skipped_and_reported() -> None:
    nodes: dict[str, bytes | None] = {child(1): b"garbage", child(2): b"{}",
                                      child(3): master_info_json(info("good"))}
    election = elect(nodes)
    assert election.leader_child == child(3)
    assert election.leader is not None and election.leader.id == "good"
    assert [name for name, _ in election.invalid] == [child(1), child(2)]
    assert "JSON" in election.invalid[0][1]


def test_vanished_children_are_skipped_silently() -> None:
    nodes: dict[str, bytes | None] = {child(1): None, child(2): master_info_json(info("b"))}
    election = elect(nodes)
    assert election.leader_child == child(2)
    assert election.invalid == ()


def test_non_contender_children_are_ignored() -> None:
    good = master_info_json(info("real"))
    nodes: dict[str, bytes | None] = {"registry": good, "log_replicas": good, "json.info_": good,
                                      "json.info_\u00b2": good, "info_0000000000": good,
                                      child(5): good}
    election = elect(nodes)
    assert election.leader_child == child(5)
    assert election.invalid == ()


@pytest.mark.parametrize("nodes", [
    {},
    {"registry": b"x"},
    {child(1): None},
    {child(1): b"garbage", child(2): None},
])
def test_no_valid_contender_means_no_leader(nodes: dict[str, bytes | None]) -> None:
    election = elect(nodes)
    assert (election.leader_child, election.leader) == (None, None)
