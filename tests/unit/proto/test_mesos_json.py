"""Mesos-style JSON for protobuf messages, and the scheduler API's media-type rules."""

from __future__ import annotations

import json

import pytest

from mensa.master.http.scheduler_api import JSON, PROTOBUF, record, response_type
from mensa.proto import mensa_pb2, mesos_json, scheduler_pb2


def offer() -> mensa_pb2.Offer:
    o = mensa_pb2.Offer(hostname="h")
    o.id.value = "o-1"
    o.agent_id.value = "a-1"
    cpus = o.resources.add(name="cpus", type=mensa_pb2.Value.SCALAR)
    cpus.scalar.value = 1.5
    ports = o.resources.add(name="ports", type=mensa_pb2.Value.RANGES)
    ports.ranges.range.add(begin=31000, end=31009)
    return o


def test_64_bit_integers_are_numbers_and_enums_are_names() -> None:
    doc = mesos_json.to_dict(offer())
    assert doc["resources"][1]["ranges"]["range"] == [{"begin": 31000, "end": 31009}]
    assert doc["resources"][0] == {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.5}}
    assert "framework_id" not in doc  # only set fields
    assert json.loads(mesos_json.to_json(offer())) == doc


def test_bytes_are_base64_and_round_trip() -> None:
    status = mensa_pb2.TaskStatus(state=mensa_pb2.TASK_RUNNING, uuid=b"\x00\xffuuid", healthy=False)
    status.task_id.value = "t"
    doc = mesos_json.to_dict(status)
    assert doc["uuid"] == "AP91dWlk" and doc["healthy"] is False and doc["state"] == "TASK_RUNNING"
    assert mesos_json.parse(mesos_json.to_json(status), mensa_pb2.TaskStatus()) == status
    assert mesos_json.parse(doc, mensa_pb2.TaskStatus()) == status


def test_unknown_fields_and_enum_names_are_ignored() -> None:
    body = {"type": "SUBSCRIBE", "future_field": {"x": 1},
            "subscribe": {"framework_info": {"user": "u", "name": "n", "capabilities": [
                {"type": "GPU_RESOURCES"}, {"type": "SOMETHING_NEWER"}]}}}
    call = mesos_json.parse(json.dumps(body), scheduler_pb2.Call())
    assert call.type == scheduler_pb2.Call.SUBSCRIBE
    caps = [c.type for c in call.subscribe.framework_info.capabilities]
    assert caps[0] == mensa_pb2.FrameworkInfo.Capability.GPU_RESOURCES


@pytest.mark.parametrize(("body", "says"), [
    (b"{oops", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1]", "not an object"),
    (b"7", "not an object"),
    (b'{"framework_id": 7}', "not a valid Call"),
    (b'{"accept": {"offer_ids": "x"}}', "not a valid Call"),
    (b'{"type": {"nested": true}}', "not a valid Call"),
])
def test_malformed_bodies_say_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        mesos_json.parse(body, scheduler_pb2.Call())


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    body = '{"subscribe": ' * 2000 + "{}" + "}" * 2000
    with pytest.raises(ValueError):
        mesos_json.parse(body, scheduler_pb2.Call())


def test_accept_header_chooses_the_stream_encoding() -> None:
    assert response_type(None) == JSON
    assert response_type("application/json") == JSON
    assert response_type("application/x-protobuf") == PROTOBUF
    assert response_type("text/html, application/x-protobuf;q=0.9") == PROTOBUF
    assert response_type("*/*") == JSON
    assert response_type("text/html") is None
    assert response_type("application/json;q=0, application/x-protobuf") == PROTOBUF
    assert response_type("application/json; q=0") is None


def test_flags_hide_credentials_in_uris() -> None:
    from mensa.master.http.server import redact

    assert redact("zk://admin:s3cret@zk1:2181,zk2:2181/mensa") == "zk://admin:***@zk1:2181,zk2:2181/mensa"
    assert redact("zk://zk1:2181/mensa") == "zk://zk1:2181/mensa"


def test_recordio_frames_are_length_newline_bytes() -> None:
    assert record(b'{"type":"HEARTBEAT"}') == b'20\n{"type":"HEARTBEAT"}'
    assert record(b"") == b"0\n"
