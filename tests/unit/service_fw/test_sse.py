"""The event bus (framing, filters, bounded queues) and ``GET /v2/events`` on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

from tornado.iostream import IOStream, StreamClosedError
from tornado.testing import gen_test

from mensa.frameworks.service_fw import events
from mensa.frameworks.service_fw.app_reading import app_json, parse_app
from mensa.frameworks.service_fw.deployments import RESTART, START, STOP, Action, Deployment
from mensa.frameworks.service_fw.instances import Instance
from mensa.frameworks.service_fw.sse import KEEPALIVE, EventBus, frame

from .service_api_harness import ApiCase


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"eventType": kind, "timestamp": "2026-11-22T10:00:00.000Z", **fields}


# -- the documents ---------------------------------------------------------------------------------
# Exactly Marathon's fields: the marathon client builds typed objects from some of them (a plan,
# ip addresses) and refuses any field it does not know there.

NOW = 1_900_000_000.0
INST = Instance(task_id="shop_web.t1", app_id="/shop/web", version="v2", agent_id="a1", hostname="10.0.0.7",
                host_ports=(31005,), state="TASK_RUNNING", healthy=False, message="HTTP 500")


def test_a_status_update_has_marathons_fields() -> None:
    doc = events.status_update(INST, NOW).doc
    assert doc == {
        "eventType": "status_update_event", "timestamp": events.iso(NOW), "slaveId": "a1",
        "taskId": "shop_web.t1", "taskStatus": "TASK_RUNNING", "message": "HTTP 500", "appId": "/shop/web",
        "host": "10.0.0.7", "ports": [31005], "version": "v2",
        "ipAddresses": [{"ipAddress": "10.0.0.7", "protocol": "IPv4"}]}
    named = Instance(task_id="web.t2", app_id="/web", version="v1", hostname="node-1.example")
    assert events.status_update(named, NOW).doc["ipAddresses"] == []  # a name, not an address


def test_health_events_have_marathons_fields() -> None:
    changed = events.health_changed(INST, NOW).doc
    assert set(changed) == {"eventType", "timestamp", "appId", "taskId", "instanceId", "version", "alive"}
    assert changed["alive"] is False and changed["instanceId"] == "shop_web.t1"
    killed = events.unhealthy_killed(INST, NOW).doc
    assert killed == {"eventType": "unhealthy_instance_kill_event", "timestamp": events.iso(NOW),
                      "appId": "/shop/web", "taskId": "shop_web.t1", "instanceId": "shop_web.t1",
                      "version": "v2", "reason": "HTTP 500", "host": "10.0.0.7", "slaveId": "a1"}
    assert events.app_terminated("/web", NOW).doc == {"eventType": "app_terminated_event",
                                                      "timestamp": events.iso(NOW), "appId": "/web"}


OLD_WEB = parse_app({"id": "/shop/web", "cmd": "sleep 1"})
NEW_WEB = parse_app({"id": "/shop/web", "cmd": "sleep 2"})
DB = parse_app({"id": "/db", "cmd": "db"})
GONE = parse_app({"id": "/shop/old/job", "cmd": "job"})


def group(group_id: str, version: str | None, apps: list[dict[str, Any]],
          groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": group_id, "apps": apps, "groups": groups, "pods": [], "dependencies": [],
            "version": version}


def test_a_deployment_plan_is_marathons_with_the_apps_in_their_groups() -> None:
    steps = [[Action(START, "/db")], [Action(RESTART, "/shop/web"), Action(STOP, "/shop/old/job")]]
    dep = Deployment(id="d1", version="2030-01-01T00:00:00.000Z", steps=steps,
                     original={"/db": None, "/shop/web": OLD_WEB, "/shop/old/job": GONE},
                     target={"/db": DB, "/shop/web": NEW_WEB, "/shop/old/job": None}, started_at=NOW)
    info = events.deployment("deployment_info", dep, NOW).doc
    assert set(info) == {"eventType", "timestamp", "plan", "currentStep"}
    assert info["plan"] == {
        "id": "d1", "version": "2030-01-01T00:00:00.000Z",
        "original": group("/", None, [], [group("/shop", None, [app_json(OLD_WEB)],
                                                [group("/shop/old", None, [app_json(GONE)], [])])]),
        "target": group("/", dep.version, [app_json(DB)],
                        [group("/shop", dep.version, [app_json(NEW_WEB)], [])]),
        "steps": [{"actions": [{"action": START, "app": "/db"}]},
                  {"actions": [{"action": RESTART, "app": "/shop/web"},
                               {"action": STOP, "app": "/shop/old/job"}]}]}
    assert info["currentStep"] == {"actions": [{"action": START, "app": "/db"}]}
    dep.current_step = 1
    step = events.deployment("deployment_step_success", dep, NOW).doc
    assert step["currentStep"]["actions"][0] == {"action": RESTART, "app": "/shop/web"}
    assert step["plan"] == info["plan"]
    for kind in ("deployment_success", "deployment_failed"):
        done = events.deployment(kind, dep, NOW).doc
        assert set(done) == {"eventType", "timestamp", "id", "plan"} and done["id"] == "d1"
        assert done["plan"] == info["plan"]


# -- the bus ---------------------------------------------------------------------------------------

def test_events_are_framed_as_marathon_frames_them() -> None:
    text = frame("status_update_event", event("status_update_event", taskId="web.1", message="a\nb")).decode()
    head, data, end = text.split("\n", 2)
    assert head == "event: status_update_event"
    assert data.startswith("data: ") and json.loads(data[6:])["message"] == "a\nb"  # one line
    assert end == "\n"


def test_subscribers_get_the_types_they_asked_for_in_order() -> None:
    bus = EventBus()
    everything = bus.subscribe()
    deployments = bus.subscribe({"deployment_info", "deployment_success"})
    for kind in ("deployment_info", "status_update_event", "deployment_success"):
        bus.publish(kind, event(kind))
    assert [c.split(b"\n")[0] for c in everything.take()] == [
        b"event: deployment_info", b"event: status_update_event", b"event: deployment_success"]
    assert [c.split(b"\n")[0] for c in deployments.take()] == [b"event: deployment_info",
                                                               b"event: deployment_success"]
    assert everything.take() == []  # taken once
    assert bus.published == 3


def test_a_subscriber_that_falls_behind_is_dropped_and_the_others_go_on() -> None:
    bus = EventBus(max_queued=3)
    cut: list[str] = []
    slow = bus.subscribe(on_drop=lambda: cut.append("slow"))
    fast = bus.subscribe()
    for i in range(3):
        assert bus.publish("e", event("e", n=i)) == 2
        fast.take()
    assert bus.publish("e", event("e", n=3)) == 1  # slow's queue was full
    assert slow.dropped and slow.closed and cut == ["slow"]
    assert bus.subscribers == [fast] and bus.dropped == 1
    assert bus.publish("e", event("e", n=4)) == 1
    assert len(fast.take()) == 2


def test_the_queue_is_bounded_in_bytes_too() -> None:
    bus = EventBus(max_queued=1000, max_queued_bytes=1000)
    sub = bus.subscribe()
    bus.publish("e", event("e", blob="x" * 600))
    assert not sub.dropped
    bus.publish("e", event("e", blob="x" * 600))
    assert sub.dropped


def test_unsubscribing_and_closing_end_subscriptions() -> None:
    bus = EventBus()
    one, two = bus.subscribe(), bus.subscribe()
    bus.unsubscribe(one)
    assert one.closed and bus.subscribers == [two]
    bus.unsubscribe(one)  # twice is harmless
    bus.close_all()
    assert two.closed and not two.dropped and bus.subscribers == []
    assert bus.publish("e", event("e")) == 0


def test_a_failing_drop_callback_does_not_stop_publishing() -> None:
    bus = EventBus(max_queued=1)

    def broken() -> None:
        raise RuntimeError("boom")

    bus.subscribe(on_drop=broken)
    other = bus.subscribe()
    bus.publish("e", event("e"))
    other.take()
    assert bus.publish("e", event("e")) == 1


# -- the stream ------------------------------------------------------------------------------------

class RawStream:
    """A client of ``/v2/events`` reading the chunked response by hand (so a test can stop reading)."""

    def __init__(self, stream: IOStream) -> None:
        self.stream = stream
        self.buffer = b""

    @staticmethod
    async def open(port: int, path: str, *, rcvbuf: int | None = None) -> RawStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        stream = IOStream(sock)
        await stream.connect(("127.0.0.1", port))
        await stream.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
        return RawStream(stream)

    async def head(self) -> tuple[int, dict[str, str]]:
        raw = (await self.stream.read_until(b"\r\n\r\n")).decode()
        lines = raw.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split()[1]), headers

    async def chunk(self) -> bytes:
        size = int((await self.stream.read_until(b"\r\n")).strip(), 16)
        data = await self.stream.read_bytes(size + 2)
        return data[:-2]

    async def events(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        """The next ``n`` events (keep-alive comments skipped)."""
        out: list[tuple[str, dict[str, Any]]] = []
        while len(out) < n:
            while b"\n\n" not in self.buffer:
                self.buffer += await self.chunk()
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            if block.startswith(b":"):
                continue
            kind, data = block.decode().split("\n")
            out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
        return out


class StreamTest(ApiCase):
    @gen_test
    async def test_a_stream_delivers_engine_events_in_marathons_framing(self) -> None:
        client = await RawStream.open(self.get_http_port(), "/v2/events")
        status, headers = await client.head()
        assert status == 200 and headers["Content-Type"] == "text/event-stream"
        assert headers["Transfer-Encoding"] == "chunked" and "no-cache" in headers["Cache-Control"]
        self.service.events.publish("status_update_event", event("status_update_event", taskId="web.1"))
        [(kind, doc)] = await client.events(1)
        assert kind == "status_update_event" and doc == event("status_update_event", taskId="web.1")
        client.stream.close()

    @gen_test
    async def test_event_type_filters_keep_only_those_types(self) -> None:
        client = await RawStream.open(self.get_http_port(),
                                      "/v2/events?event_type=deployment_info&event_type=api_post_event,"
                                      "deployment_success")
        await client.head()
        bus = self.service.events
        for kind in ("status_update_event", "deployment_info", "event_stream_attached", "deployment_success"):
            bus.publish(kind, event(kind))
        assert [k for k, _ in await client.events(2)] == ["deployment_info", "deployment_success"]
        client.stream.close()

    @gen_test
    async def test_streams_announce_each_other_and_changes_arrive_as_events(self) -> None:
        watcher = await RawStream.open(self.get_http_port(), "/v2/events")
        await watcher.head()
        other = await RawStream.open(self.get_http_port(), "/v2/events?event_type=deployment_info")
        await other.head()
        [(kind, doc)] = await watcher.events(1)
        assert kind == "event_stream_attached" and doc["remoteAddress"] == "127.0.0.1"
        # A change through the API: the engine's deployment_info, then the API's api_post_event.
        response = await self.http_client.fetch(self.get_url("/v2/apps"), method="POST", raise_error=False,
                                                body=json.dumps({"id": "/web", "cmd": "sleep 9"}))
        assert response.code == 201
        seen: list[tuple[str, dict[str, Any]]] = []
        while not seen or seen[-1][0] != "api_post_event":
            seen += await watcher.events(1)
        kinds = [k for k, _ in seen]
        assert kinds[0] == "deployment_info" and kinds.count("api_post_event") == 1
        post = seen[-1][1]
        assert (post["uri"], post["clientIp"]) == ("/v2/apps", "127.0.0.1")
        assert post["appDefinition"]["id"] == "/web" and post["appDefinition"]["cmd"] == "sleep 9"
        assert [k for k, _ in await other.events(1)] == ["deployment_info"]
        other.stream.close()
        [(kind, _doc)] = await watcher.events(1)
        assert kind == "event_stream_detached"
        watcher.stream.close()

    @gen_test
    async def test_an_idle_stream_gets_keep_alive_comments(self) -> None:
        client = await RawStream.open(self.get_http_port(), "/v2/events")
        await client.head()
        assert await client.chunk() == KEEPALIVE  # after keepalive (0.05 s here) without events
        client.stream.close()

    @gen_test
    async def test_closing_the_bus_ends_streams_cleanly(self) -> None:
        client = await RawStream.open(self.get_http_port(), "/v2/events?event_type=x")
        await client.head()
        self.service.events.close_all()  # the instance stops leading or stops
        while (chunk := await client.chunk()) == KEEPALIVE:
            pass
        assert chunk == b""  # the last chunk: the response ended, not cut
        client.stream.close()

    @gen_test(timeout=30)
    async def test_a_client_that_stops_reading_is_dropped_without_blocking(self) -> None:
        bus = self.service.events = EventBus(max_queued=4)
        client = await RawStream.open(self.get_http_port(), "/v2/events?event_type=big", rcvbuf=4096)
        await client.head()
        blob = "x" * 256 * 1024
        published = 0
        while bus.dropped == 0 and published < 400:  # ~100 MB at most; a few MB fill the socket
            bus.publish("big", event("big", blob=blob))
            published += 1
            await asyncio.sleep(0)  # the handler writes while it can
        assert bus.dropped == 1 and bus.subscribers == []
        # The loop was never held up: other requests are served, the dropped client sees the end.
        ping = await self.http_client.fetch(self.get_url("/ping"))
        assert ping.body == b"pong"
        with contextlib.suppress(StreamClosedError):
            await client.stream.read_until_close()
        assert client.stream.closed()


class StandbyStreamTest(ApiCase):
    leading = False
    leader = "10.0.0.7:8080"

    def test_a_standby_sends_stream_clients_to_the_leader(self) -> None:
        status, headers, _body = self.call("GET", "/v2/events?event_type=deployment_info")
        assert status == 307
        assert headers["Location"] == "http://10.0.0.7:8080/v2/events?event_type=deployment_info"
