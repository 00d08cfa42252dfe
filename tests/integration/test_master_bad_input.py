"""Bad input against a live master: each gets a clear error, and the master keeps serving."""

from __future__ import annotations

import time

import pytest
from mensa_cluster import Cluster

from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2
from mensa.proto.resources import Resources
from mensa.proto.transport import decode, encode

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


# -- ACCEPTs that go wrong, spoken in raw protocol against a live master with a real agent --------


class RawFramework:
    """A framework speaking the wire protocol directly (no SDK), to send what the SDK never would."""

    def __init__(self, cluster: Cluster, name: str, partition_aware: bool = False) -> None:
        self.cluster = cluster
        self.sock = cluster.dealer()
        self.backlog: list[scheduler_pb2.Event] = []
        call = Call(type=Call.SUBSCRIBE)
        info = call.subscribe.framework_info
        info.name, info.user = name, "root"
        if partition_aware:
            info.capabilities.add(type=mensa_pb2.FrameworkInfo.Capability.PARTITION_AWARE)
        self.sock.send(encode(internal_pb2.Envelope(call=call)))
        self.framework_id = self.next_event(Event.SUBSCRIBED).subscribed.framework_id.value

    def receive(self, timeout: float = 10.0) -> internal_pb2.Envelope:
        """The next message; HEARTBEATs are answered (or the master would disconnect us)."""
        while True:
            assert self.sock.poll(int(max(timeout, 0.01) * 1000)), "nothing from the master"
            env = decode(self.sock.recv())
            if env.HasField("event") and env.event.type == Event.HEARTBEAT:
                self.sock.send(encode(internal_pb2.Envelope(pong=internal_pb2.Pong())))
                continue
            return env

    def next_event(self, kind: int, timeout: float = 10.0) -> scheduler_pb2.Event:
        """The oldest unread event of ``kind``; events of other kinds wait for their turn."""
        for event in self.backlog:
            if event.type == kind:
                self.backlog.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            env = self.receive(deadline - time.monotonic())
            if env.HasField("event"):
                if env.event.type == kind:
                    return env.event
                self.backlog.append(env.event)
        raise AssertionError(f"no {Event.Type.Name(kind)} event")

    def next_error(self) -> internal_pb2.Error:
        while True:
            env = self.receive()
            if env.HasField("error"):
                return env.error

    def call(self, call: scheduler_pb2.Call) -> None:
        call.framework_id.value = self.framework_id
        self.sock.send(encode(internal_pb2.Envelope(call=call)))

    def accept(self, offer_ids: list[str], *tasks: mensa_pb2.TaskInfo) -> None:
        call = Call(type=Call.ACCEPT)
        for offer_id in offer_ids:
            call.accept.offer_ids.add(value=offer_id)
        call.accept.operations.add(type=mensa_pb2.Offer.Operation.LAUNCH).launch.task_infos.extend(tasks)
        call.accept.filters.refuse_seconds = 0
        self.call(call)

    def update(self, task_id: str) -> mensa_pb2.TaskStatus:
        while True:
            status = self.next_event(Event.UPDATE).update.status
            if status.task_id.value == task_id:
                return status

    def offers(self) -> list[mensa_pb2.Offer]:
        return list(self.next_event(Event.OFFERS).offers.offers)


def raw_task(task_id: str, resources: str = "cpus:0.1;mem:16", command: str = "true") -> mensa_pb2.TaskInfo:
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    info.resources.extend(Resources.parse(resources).to_proto())
    info.command.value = command
    return info


def test_bad_accepts_against_a_live_master(cluster: Cluster) -> None:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:512;disk:100;ports:[31000-31004]")
    cluster.start_agent("agent2", "cpus:2;mem:512;disk:100;ports:[32000-32004]")
    cluster.wait_agents(2)
    fw = RawFramework(cluster, "raw", partition_aware=True)
    offers = fw.offers()
    while len(offers) < 2:
        offers += fw.offers()
    a, b = offers[0].id.value, offers[1].id.value

    fw.accept(["made-up"], raw_task("t-unknown"))
    status = fw.update("t-unknown")
    assert status.state == mensa_pb2.TASK_DROPPED
    assert status.reason == mensa_pb2.TaskStatus.REASON_INVALID_OFFERS
    assert "unknown" in status.message

    fw.accept([a, b], raw_task("t-mixed"))
    assert "more than one agent" in fw.update("t-mixed").message
    fw.accept([a], raw_task("t-used"))
    assert "was already used" in fw.update("t-used").message

    offer = fw.offers()[0]
    nan = raw_task("t-nan")
    nan.resources[0].scalar.value = float("nan")
    neg = raw_task("t-neg")
    neg.resources[0].scalar.value = -1
    fw.accept([offer.id.value],
              raw_task("t-big", "cpus:3;mem:16"), nan, neg, raw_task("t-empty", command=""),
              raw_task("../t-escape"), raw_task("t-dup"), raw_task("t-dup"),
              raw_task("t-port", "cpus:0.1;mem:16;ports:[40000-40000]"))
    expected = {
        "t-big": "but the offers have", "t-nan": "must be finite", "t-neg": "must not be negative",
        "t-empty": "command is empty", "../t-escape": "sandbox", "t-port": "but the offers have",
    }
    seen: dict[str, mensa_pb2.TaskStatus] = {}
    while len(seen) < len(expected) + 2:  # + the duplicate's error and its twin's STARTING
        status = fw.next_event(Event.UPDATE).update.status
        seen.setdefault(status.task_id.value + ("" if status.state == mensa_pb2.TASK_ERROR else "+"),
                        status)
    for task_id, reason in expected.items():
        assert seen[task_id].state == mensa_pb2.TASK_ERROR, task_id
        assert reason in seen[task_id].message, (task_id, seen[task_id].message)
    assert "already used by a live task" in seen["t-dup"].message
    assert "t-dup+" in seen  # the first t-dup launched

    # The master still serves: a second framework gets offers and runs a task.
    other = RawFramework(cluster, "next")
    other_offer = other.offers()[0]
    other.accept([other_offer.id.value], raw_task("fine"))
    assert other.update("fine").state == mensa_pb2.TASK_STARTING


def test_status_update_for_an_unknown_task_from_a_registered_agent(master: Cluster) -> None:
    sock = master.dealer()
    register = internal_pb2.RegisterAgent()
    register.agent_info.hostname = "fake"
    register.agent_info.resources.extend(Resources.parse("cpus:1;mem:64").to_proto())
    reply = master.request(sock, internal_pb2.Envelope(register_agent=register))
    assert reply.WhichOneof("message") == "agent_registered"
    update = internal_pb2.StatusUpdate()
    update.framework_id.value = "nobody"
    update.status.task_id.value = "ghost"
    update.status.state = mensa_pb2.TASK_RUNNING
    update.status.uuid = b"u"
    reply = master.request(sock, internal_pb2.Envelope(status_update=update))
    while reply.WhichOneof("message") == "ping":
        reply = decode(sock.recv())
    assert reply.error.code == internal_pb2.Error.UNKNOWN_TASK
    assert "ghost" in reply.error.message
    assert subscribe(master).type == Event.SUBSCRIBED
