"""Bad input against a live master: each gets a clear error, and the master keeps serving."""

from __future__ import annotations

import pytest
from mensa_cluster import Cluster

from mensa.proto import internal_pb2, scheduler_pb2
from mensa.proto.transport import encode

Call = scheduler_pb2.Call
Event = scheduler_pb2.Event


def subscribe(cluster: Cluster, name: str = "probe") -> scheduler_pb2.Event:
    sock = cluster.dealer()
    call = Call(type=Call.SUBSCRIBE)
    call.subscribe.framework_info.name = name
    call.subscribe.framework_info.user = "root"
    reply = cluster.request(sock, internal_pb2.Envelope(call=call))
    assert reply.WhichOneof("message") == "event", reply
    return reply.event


@pytest.fixture
def master(cluster: Cluster) -> Cluster:
    cluster.start_master("--max-message-bytes", "65536")
    return cluster


@pytest.mark.parametrize("payload, expected", [
    (b"\xff\xff\xff\xff", "malformed message"),
    (b"\x0a\x05ab", "malformed message"),                     # truncated
    (b"\xf8\x07\x00", "unknown message type"),                # only an unknown field (127)
    (b"", "empty message"),
    (b"x" * 70000, "exceeds the limit of 65536 bytes"),
])
def test_undecodable_frames_get_an_error_and_the_master_keeps_serving(
        master: Cluster, payload: bytes, expected: str) -> None:
    sock = master.dealer()
    reply = master.ask(sock, payload)
    assert reply.WhichOneof("message") == "error"
    assert expected in reply.error.message
    assert subscribe(master).type == Event.SUBSCRIBED


def test_oversized_message_is_answered_too_large(master: Cluster) -> None:
    reply = master.ask(master.dealer(), b"x" * 70000)
    assert reply.error.code == internal_pb2.Error.TOO_LARGE


def test_multi_frame_message_is_refused(master: Cluster) -> None:
    reply = master.ask(master.dealer(), [b"a", b"b"])
    assert "one frame" in reply.error.message


def test_messages_a_master_does_not_take_are_refused(master: Cluster) -> None:
    reply = master.request(master.dealer(), internal_pb2.Envelope(run_task=internal_pb2.RunTask()))
    assert "does not take run_task" in reply.error.message
    assert subscribe(master).type == Event.SUBSCRIBED


def test_call_from_a_framework_that_never_subscribed(master: Cluster) -> None:
    call = Call(type=Call.ACCEPT)
    call.framework_id.value = "nobody"
    call.accept.offer_ids.add(value="x")
    reply = master.request(master.dealer(), internal_pb2.Envelope(call=call))
    assert reply.error.code == internal_pb2.Error.NOT_SUBSCRIBED
    assert subscribe(master).type == Event.SUBSCRIBED


def test_status_update_from_an_unregistered_agent(master: Cluster) -> None:
    update = internal_pb2.StatusUpdate()
    update.framework_id.value = "f"
    update.status.task_id.value = "t"
    update.status.uuid = b"u"
    reply = master.request(master.dealer(), internal_pb2.Envelope(status_update=update))
    assert reply.error.code == internal_pb2.Error.NOT_REGISTERED


def test_subscribe_with_an_invalid_framework_info(master: Cluster) -> None:
    call = Call(type=Call.SUBSCRIBE)
    call.subscribe.framework_info.user = "root"  # no name
    reply = master.request(master.dealer(), internal_pb2.Envelope(call=call))
    assert "name must not be empty" in reply.error.message
    assert subscribe(master, "after").type == Event.SUBSCRIBED
    assert master.state()["frameworks"][0]["name"] == "after"


def test_master_info_over_zeromq_points_at_the_http_port(master: Cluster) -> None:
    reply = master.request(master.dealer(), internal_pb2.Envelope(
        master_info_request=internal_pb2.MasterInfoRequest()))
    info = reply.master_info_response.master_info
    assert master.http.endswith(f":{info.address.port}")
    assert info.zmq_endpoint.endswith(master.master_endpoint.split(":")[1])
    assert encode(reply)  # round-trips
