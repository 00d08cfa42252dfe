"""The Mesos v1 scheduler HTTP API on a live master: the protobuf encoding, and bad input
answered with a 4xx and a reason (or the stream closed) while everything else carries on."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from mensa_cluster import Cluster, wait_until

from mensa.proto import mensa_pb2, scheduler_pb2

Call = scheduler_pb2.Call
Event = scheduler_pb2.Event
JSON = "application/json"
PROTOBUF = "application/x-protobuf"


def address(cluster: Cluster) -> tuple[str, int]:
    parts = urlsplit(cluster.http)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def post(cluster: Cluster, body: bytes, headers: dict[str, str], path: str = "/api/v1/scheduler",
         method: str = "POST") -> tuple[int, str]:
    conn = http.client.HTTPConnection(*address(cluster), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


class Subscription:
    """A SUBSCRIBE held open on a raw socket, its RecordIO stream read by hand."""

    def __init__(self, cluster: Cluster, name: str, *, protobuf: bool = False, rcvbuf: int = 0) -> None:
        self.protobuf = protobuf
        call = Call(type=Call.SUBSCRIBE)
        call.subscribe.framework_info.user = "root"
        call.subscribe.framework_info.name = name
        body = call.SerializeToString() if protobuf else json.dumps(
            {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": name}}}).encode()
        kind = PROTOBUF if protobuf else JSON
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(address(cluster))
        self.sock.sendall(b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nAccept: %s\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (kind.encode(), kind.encode(), len(body), body))
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self.stream_id = self.headers.get("mesos-stream-id", "")
        self.chunks = b""

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buffer += data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _more_chunk(self) -> None:
        size = int(self._until(b"\r\n"), 16)
        if size == 0:
            raise EOFError("stream ended")
        self.chunks += self._exactly(size)
        self._exactly(2)

    def event(self) -> Event:
        """The next event on the stream (RecordIO: a decimal length, a newline, the record)."""
        while b"\n" not in self.chunks:
            self._more_chunk()
        length, _, self.chunks = self.chunks.partition(b"\n")
        while len(self.chunks) < int(length):
            self._more_chunk()
        data, self.chunks = self.chunks[:int(length)], self.chunks[int(length):]
        event = Event()
        if self.protobuf:
            event.ParseFromString(data)
        else:
            from mensa.proto import mesos_json
            mesos_json.parse(data, event)
        return event

    def next_of(self, kind: int, timeout: float = 20.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.event()
            if event.type == kind:
                return event
        raise AssertionError(f"no {Event.Type.Name(kind)} event within {timeout:g}s")

    def call(self, cluster: Cluster, call: dict[str, Any]) -> tuple[int, str]:
        return post(cluster, json.dumps(call).encode(),
                    {"Content-Type": JSON, "Mesos-Stream-Id": self.stream_id})

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def live(cluster: Cluster) -> Cluster:
    cluster.start_master("--http-stream-buffer-bytes", "65536")
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]")
    cluster.wait_agents(1)
    return cluster


def test_protobuf_subscribe_offers_and_launch(live: Cluster) -> None:
    sub = Subscription(live, "proto-fw", protobuf=True)
    try:
        assert sub.status == 200 and sub.headers["content-type"] == PROTOBUF and sub.stream_id
        subscribed = sub.next_of(Event.SUBSCRIBED)
        framework_id = subscribed.subscribed.framework_id.value
        assert subscribed.subscribed.heartbeat_interval_seconds == 1.0
        offer = sub.next_of(Event.OFFERS).offers.offers[0]
        call = Call(type=Call.ACCEPT)
        call.framework_id.value = framework_id
        call.accept.offer_ids.add().value = offer.id.value
        op = call.accept.operations.add(type=mensa_pb2.Offer.Operation.LAUNCH)
        task = op.launch.task_infos.add(name="pb")
        task.task_id.value = "pb-task"
        task.agent_id.CopyFrom(offer.agent_id)
        task.command.value = "sleep 30"
        for name, value in (("cpus", 0.5), ("mem", 32.0)):
            task.resources.add(name=name, type=mensa_pb2.Value.SCALAR).scalar.value = value
        status, _ = post(live, call.SerializeToString(), {"Content-Type": PROTOBUF,
                                                          "Mesos-Stream-Id": sub.stream_id})
        assert status == 202
        states = []
        while not states or states[-1] != mensa_pb2.TASK_RUNNING:
            # Each update is acknowledged (protobuf, like the rest): the agent sends the next one
            # only after that.
            update = sub.next_of(Event.UPDATE).update.status
            assert update.task_id.value == "pb-task" and update.uuid
            states.append(update.state)
            ack = Call(type=Call.ACKNOWLEDGE)
            ack.framework_id.value = framework_id
            ack.acknowledge.agent_id.CopyFrom(update.agent_id)
            ack.acknowledge.task_id.CopyFrom(update.task_id)
            ack.acknowledge.uuid = update.uuid
            assert post(live, ack.SerializeToString(), {"Content-Type": PROTOBUF,
                                                        "Mesos-Stream-Id": sub.stream_id})[0] == 202
        assert states == [mensa_pb2.TASK_STARTING, mensa_pb2.TASK_RUNNING]
        assert sub.next_of(Event.HEARTBEAT).type == Event.HEARTBEAT
    finally:
        sub.close()
    # The stream was the framework's connection: closing it disconnects the framework.
    def connected() -> bool:
        return bool(next(f for f in live.state()["frameworks"] if f["id"] == framework_id)["connected"])
    wait_until(lambda: not connected(), what="framework disconnected")


def test_bad_requests_get_a_4xx_with_a_reason(live: Cluster) -> None:
    first = Subscription(live, "first")
    second = Subscription(live, "second")
    try:
        first_id = first.next_of(Event.SUBSCRIBED).subscribed.framework_id.value
        second_id = second.next_of(Event.SUBSCRIBED).subscribed.framework_id.value
        revive = {"type": "REVIVE", "framework_id": {"value": first_id}}
        cases: list[tuple[bytes, dict[str, str], int, str]] = [
            (json.dumps(revive).encode(), {"Content-Type": "text/plain"}, 415, "Content-Type"),
            (b"{not json", {"Content-Type": JSON}, 400, "not JSON"),
            (b"[1, 2]", {"Content-Type": JSON}, 400, "not an object"),
            (b'{"framework_id": 7}', {"Content-Type": JSON}, 400, "not a valid Call"),
            (b'{"type": "NO_SUCH_CALL"}', {"Content-Type": JSON}, 400, "'type'"),
            (b"\xff\xfe\x00garbage", {"Content-Type": PROTOBUF}, 400, "protobuf"),
            (json.dumps(revive).encode(), {"Content-Type": JSON}, 400, "Mesos-Stream-Id"),
            (json.dumps(revive).encode(), {"Content-Type": JSON, "Mesos-Stream-Id": "nope"}, 400,
             "stream ID"),
            # Another framework's stream: the call is refused, not run for either.
            (json.dumps(revive).encode(), {"Content-Type": JSON, "Mesos-Stream-Id": second.stream_id},
             403, first_id),
            (json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}})
             .encode(), {"Content-Type": JSON, "Mesos-Stream-Id": first.stream_id}, 400, "Subscribe calls"),
            (json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}})
             .encode(), {"Content-Type": JSON, "Accept": "text/html"}, 406, "Accept"),
            (json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "nameless"}}})
             .encode(), {"Content-Type": JSON}, 400, "name"),
        ]
        for body, headers, status, reason in cases:
            got, text = post(live, body, headers)
            assert (got, reason in text) == (status, True), (body, headers, got, text)
        assert post(live, b"", {}, method="GET")[0] == 405
        # Just over the 4 MiB message limit: read, and refused with a reason. Far over it: refused
        # before it is read (tornado answers 400 and closes while the client is still sending).
        over = b'{"type": "REVIVE", "x": "' + b"a" * (4 * 1024 * 1024) + b'"}'
        status, text = post(live, over, {"Content-Type": JSON, "Mesos-Stream-Id": first.stream_id})
        assert status == 413 and "limit" in text
        huge = b'{"type": "REVIVE", "x": "' + b"a" * (16 * 1024 * 1024) + b'"}'
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            assert post(live, huge, {"Content-Type": JSON, "Mesos-Stream-Id": first.stream_id})[0] == 400

        # SUBSCRIBE needs HTTP/1.1: the events come as a chunked stream.
        raw = socket.create_connection(address(live), timeout=10)
        body = json.dumps({"type": "SUBSCRIBE",
                           "subscribe": {"framework_info": {"user": "u", "name": "old"}}})
        raw.sendall(f"POST /api/v1/scheduler HTTP/1.0\r\nContent-Type: {JSON}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
        answer = raw.recv(65536).decode()
        raw.close()
        assert " 400 " in answer.split("\r\n")[0] and "needs HTTP/1.1" in answer, answer

        # Offers that are gone are a race, not a mistake: 202, as Mesos answers (pymesos would
        # die on a 4xx from inside its callback), and the tasks come back TASK_DROPPED/LOST.
        offer = first.next_of(Event.OFFERS).offers.offers[0]
        decline = {"type": "DECLINE", "framework_id": {"value": first_id},
                   "decline": {"offer_ids": [{"value": offer.id.value}]}}
        assert first.call(live, decline)[0] == 202
        assert first.call(live, decline)[0] == 202  # the same offer again: already declined
        accept = {"type": "ACCEPT", "framework_id": {"value": first_id}, "accept": {
            "offer_ids": [{"value": offer.id.value}], "operations": [{"type": "LAUNCH", "launch": {
                "task_infos": [{"name": "late", "task_id": {"value": "late"},
                                "agent_id": {"value": offer.agent_id.value},
                                "command": {"value": "true"}}]}}]}}
        assert first.call(live, accept)[0] == 202
        late = first.next_of(Event.UPDATE).update.status
        assert late.task_id.value == "late" and late.state == mensa_pb2.TASK_LOST
        assert late.reason == mensa_pb2.TaskStatus.REASON_INVALID_OFFERS
        # Offers named twice in one call are a mistake: 400.
        twice = {"type": "DECLINE", "framework_id": {"value": first_id},
                 "decline": {"offer_ids": [{"value": "x"}, {"value": "x"}]}}
        assert first.call(live, twice)[0] == 400

        # Nothing else was affected: both frameworks are subscribed and can still call.
        assert first.call(live, revive)[0] == 202
        assert second.call(live, {"type": "REVIVE", "framework_id": {"value": second_id}})[0] == 202
        frameworks = {f["id"]: f for f in live.state()["frameworks"]}
        assert frameworks[first_id]["connected"] and frameworks[second_id]["connected"]
    finally:
        first.close()
        second.close()


def test_a_scheduler_that_stops_reading_is_cut_off_not_buffered(live: Cluster) -> None:
    stalled = Subscription(live, "stalled", rcvbuf=4096)
    healthy = Subscription(live, "healthy")
    try:
        stalled_id = stalled.next_of(Event.SUBSCRIBED).subscribed.framework_id.value
        healthy.next_of(Event.SUBSCRIBED)
        # Each reconciliation of 500 unknown tasks puts ~150 KB of updates on the stalled stream,
        # which reads nothing more; the master stops at its 64 KiB limit and closes the stream.
        tasks = [{"task_id": {"value": f"ghost-{i:04d}-" + "x" * 100}} for i in range(500)]
        reconcile = {"type": "RECONCILE", "framework_id": {"value": stalled_id},
                     "reconcile": {"tasks": tasks}}

        def cut_off() -> bool:
            status, _ = stalled.call(live, reconcile)
            return status == 400  # its stream id is no longer a subscription
        wait_until(cut_off, what="the stalled stream closed")
        frameworks = {f["id"]: f for f in live.state()["frameworks"]}
        assert not frameworks[stalled_id]["connected"]
        # The other subscription still streams.
        assert healthy.next_of(Event.HEARTBEAT).type == Event.HEARTBEAT
    finally:
        stalled.close()
        healthy.close()
