"""The official ``marathon`` Python client (0.13.0, unmodified) against the service framework's
REST API, served on loopback by the API test harness (a real engine, no master or agents).

The client builds its models with ``cls(**fields)``: any field Marathon does not define, in a
task, a queue entry, /v2/info or an event's plan, fails the call with a TypeError. Every call
here goes through those models, and the event stream through its event classes.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tornado.httpserver
import tornado.netutil

from mensa.frameworks.service_fw.api import make_app

UNIT = str(Path(__file__).resolve().parents[1] / "unit")
if UNIT not in sys.path:
    sys.path.append(UNIT)

from service_fw.service_api_harness import FakeService  # noqa: E402 (importable once the path is set)

marathon = pytest.importorskip("marathon", reason="pip install marathon==0.13.0 (the test extras)")
from marathon import MarathonClient  # noqa: E402
from marathon.models import MarathonApp, MarathonHealthCheck  # noqa: E402
from marathon.models.app import MarathonTaskFailure  # noqa: E402
from marathon.models.container import MarathonContainer, MarathonDockerContainer  # noqa: E402
from marathon.models.deployment import MarathonDeploymentAction, MarathonDeploymentPlan  # noqa: E402
from marathon.models.events import (  # noqa: E402
    MarathonApiPostEvent,
    MarathonAppTerminatedEvent,
    MarathonDeploymentFailed,
    MarathonDeploymentInfo,
    MarathonDeploymentStepSuccess,
    MarathonDeploymentSuccess,
    MarathonEvent,
    MarathonEventStreamAttached,
    MarathonEventStreamDetached,
    MarathonHealthStatusChangedEvent,
    MarathonStatusUpdateEvent,
    MarathonUnhealthyInstanceKillEvent,
)
from marathon.models.task import MarathonHealthCheckResult, MarathonIpAddress, MarathonTask  # noqa: E402

T = TypeVar("T")


class Served:
    """``make_app(FakeService())`` on 127.0.0.1 in a thread of its own (the client blocks);
    ``on_loop(fn)`` runs ``fn`` (feeding the engine offers and status updates) on the server's
    event loop, between requests."""

    def __init__(self) -> None:
        self.service = FakeService()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the API did not start"

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = tornado.httpserver.HTTPServer(
            make_app(self.service, sse_keepalive=0.2, clock=self.service.clock))  # type: ignore[arg-type]
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        self.service.events.close_all()
        server.stop()
        await server.close_all_connections()

    def on_loop(self, fn: Callable[[], T]) -> T:
        assert self._loop is not None

        async def call() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)


class Events:
    """``client.event_stream()`` read in a thread: the parsed events, in order."""

    def __init__(self, client: MarathonClient, served: Served, **kwargs: Any) -> None:
        self.seen: list[MarathonEvent] = []
        self.error: BaseException | None = None
        before = len(served.service.events.subscribers)
        self._thread = threading.Thread(target=self._read, args=(client, kwargs), daemon=True)
        self._thread.start()
        wait_until(lambda: len(served.service.events.subscribers) > before, "the stream to subscribe")

    def _read(self, client: MarathonClient, kwargs: dict[str, Any]) -> None:
        try:
            for event in client.event_stream(**kwargs):
                self.seen.append(event)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def of(self, cls: type[T]) -> list[T]:
        assert self.error is None, repr(self.error)
        return [e for e in self.seen if isinstance(e, cls)]

    def join(self) -> None:
        self._thread.join(10)
        assert not self._thread.is_alive() and self.error is None, repr(self.error)


def kill_all(service: FakeService, app_id: str) -> None:
    """The agent's answer to the kills: every live task of the app is TASK_KILLED."""
    for inst in service.tasks(app_id):
        if not inst.terminal:
            service.update(inst.task_id, "TASK_KILLED")


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    # marathon 0.13.0 encodes nested models with collections.Iterable, gone since Python 3.10.
    monkeypatch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)
    api = Served()
    api.start()
    yield api
    api.stop()


@pytest.fixture
def client(served: Served) -> MarathonClient:
    return MarathonClient(f"http://127.0.0.1:{served.port}", timeout=10)


WEB = dict(cmd="python3 -m http.server $PORT0", cpus=0.5, mem=64, instances=2,
           health_checks=[MarathonHealthCheck(protocol="HTTP", port_index=0, path="/", interval_seconds=5,
                                              timeout_seconds=2, grace_period_seconds=30)])


def test_apps_and_tasks_read_into_the_clients_models(served: Served, client: MarathonClient) -> None:
    created = client.create_app("web", MarathonApp(**WEB))
    assert isinstance(created, MarathonApp) and created.id == "/web" and created.instances == 2
    assert created.health_checks[0].interval_seconds == 5 and created.deployments
    served.on_loop(lambda: served.service.offer("o1", "10.0.0.7"))
    ids = served.on_loop(lambda: served.service.run_all("/web", healthy=True))

    [app] = client.list_apps(embed_tasks=True, embed_counts=True)
    assert (app.id, app.tasks_running, app.tasks_healthy, app.tasks_staged) == ("/web", 2, 2, 0)
    assert sorted(t.id for t in app.tasks) == sorted(ids)
    task = app.tasks[0]
    assert isinstance(task, MarathonTask) and task.slave_id == "agent-10.0.0.7" and task.host == "10.0.0.7"
    assert task.state == "TASK_RUNNING" and task.started_at is not None and len(task.ports) == 1
    [result] = task.health_check_results
    assert isinstance(result, MarathonHealthCheckResult) and result.alive and result.task_id == task.id
    [address] = task.ip_addresses
    assert isinstance(address, MarathonIpAddress) and address.ip_address == "10.0.0.7"

    shown = client.get_app("/web", embed_tasks=True, embed_counts=True, embed_deployments=True,
                           embed_readiness=True, embed_last_task_failure=True, embed_failures=True,
                           embed_task_stats=True)
    assert shown.version and shown.version_info.last_config_change_at is not None
    assert len(shown.tasks) == 2 and shown.deployments == [] and shown.last_task_failure is None
    assert sorted(t.id for t in client.list_tasks()) == sorted(ids)
    assert [t.app_id for t in client.list_tasks("/web")] == ["/web", "/web"]
    versions = client.list_versions("/web")
    assert client.get_version("/web", versions[0]).cmd == WEB["cmd"]

    # A task that failed its health checks and was killed: lastTaskFailure reads into its model.
    served.on_loop(lambda: served.service.update(ids[0], "TASK_KILLED", healthy=False, message="HTTP 500"))
    failure = client.get_app("/web", embed_last_task_failure=True).last_task_failure
    assert isinstance(failure, MarathonTaskFailure) and failure.task_id == ids[0]
    assert failure.state == "TASK_KILLED" and failure.slave_id == "agent-10.0.0.7"


def test_changes_through_the_client(served: Served, client: MarathonClient) -> None:
    client.create_app("web", MarathonApp(**WEB))
    served.on_loop(lambda: served.service.offer("o1", "h1"))
    served.on_loop(lambda: served.service.run_all("/web", healthy=True))

    changed = client.update_app("/web", MarathonApp(cmd="sleep 200", cpus=0.5, mem=64, instances=2),
                                force=True)
    assert set(changed) == {"version", "deploymentId"}
    [dep] = client.list_deployments()
    assert dep.id == changed["deploymentId"] and dep.affected_apps == ["/web"]
    assert all(isinstance(a, MarathonDeploymentAction) for a in dep.current_actions)
    assert dep.total_steps == len(dep.steps) >= 1

    # Cancelled: the answer names the rollback; forced, nothing comes back.
    rollback = client.delete_deployment(dep.id)
    assert set(rollback) == {"version", "deploymentId"} and rollback["deploymentId"] != dep.id
    waiting = client.update_app("/web", MarathonApp(instances=5), force=True)  # no offers: it waits
    assert [d.id for d in client.list_deployments()] == [waiting["deploymentId"]]
    assert client.delete_deployment(waiting["deploymentId"], force=True) == {}
    assert client.list_deployments() == []

    scaled = client.scale_app("/web", instances=3, force=True)
    assert set(scaled) == {"version", "deploymentId"} and client.get_app("/web").instances == 3
    served.on_loop(lambda: served.service.offer("o2", "h2"))
    served.on_loop(lambda: served.service.run_all("/web", healthy=True))  # the scale is done

    tasks = client.list_tasks("/web")
    assert len(tasks) == 3
    killed = client.kill_task("/web", tasks[0].id)
    assert isinstance(killed, MarathonTask) and killed.id == tasks[0].id
    shrunk = client.kill_task("/web", tasks[1].id, scale=True)
    assert set(shrunk) == {"version", "deploymentId"} and client.get_app("/web").instances == 2
    assert client.kill_given_tasks([tasks[2].id], scale=True, force=True)

    with pytest.raises(marathon.exceptions.MarathonHttpError) as refused:
        client.update_app("/web", MarathonApp(cmd="x", backoff_seconds=0.5), force=True)
    assert refused.value.status_code == 422
    assert any("whole number" in str(d) for d in refused.value.error_details)

    image = MarathonDockerContainer(image="postgres:16", network="BRIDGE",
                                    port_mappings=[{"container_port": 5432}])
    docker = client.create_app("shop/db", MarathonApp(
        cpus=0.5, mem=64, instances=0, container=MarathonContainer(type="DOCKER", docker=image),
        constraints=[["hostname", "UNIQUE"]]))
    assert docker.container.docker.image == "postgres:16"
    assert docker.container.docker.port_mappings[0].container_port == 5432
    assert client.delete_app("/shop/db", force=True)["deploymentId"]


def test_the_launch_queue_info_and_leader(served: Served, client: MarathonClient) -> None:
    client.create_app("big", MarathonApp(cmd="sleep 100", cpus=16, mem=64, instances=2))
    served.on_loop(lambda: served.service.offer("o1", "h1"))  # 8 cpus: too small

    [item] = client.list_queue()
    assert item.app.id == "/big" and item.count == 2 and item.delay.overdue is True
    summary = item.processed_offers_summary
    assert summary["processedOffersCount"] == 1 and "cpus" in summary["message"]
    [detailed] = client.list_queue(embed_last_unused_offers=True)
    assert detailed.last_unused_offers[0]["reason"] == ["InsufficientCpus"]

    info = client.get_info()
    assert info.elected is True and info.leader == "127.0.0.1:8080" and info.framework_id == "fw-1"
    assert info.event_subscriber.type == "sse" and info.http_config.http_port == 8080
    assert info.marathon_config.webui_url == "http://127.0.0.1:8080"
    assert client.get_leader() == {"leader": "127.0.0.1:8080"}
    assert client.ping().strip() == b"pong"


def test_the_event_stream_reads_into_the_clients_event_classes(served: Served,
                                                               client: MarathonClient) -> None:
    stream = Events(client, served)
    service = served.service
    client.create_app("web", MarathonApp(**WEB))
    served.on_loop(lambda: service.offer("o1", "10.0.0.7"))
    ids = served.on_loop(lambda: service.run_all("/web", healthy=True))
    served.on_loop(lambda: service.update(ids[0], "TASK_KILLED", healthy=False, message="HTTP 500"))
    client.update_app("/web", MarathonApp(instances=9), force=True)  # cannot all be placed: it waits
    [dep] = client.list_deployments()
    client.delete_deployment(dep.id, force=True)
    other = Events(client, served, event_types=["status_update_event"])  # attached, then detached
    client.delete_app("/web", force=True)
    served.on_loop(lambda: kill_all(service, "/web"))  # the kills are confirmed: the app is gone

    wait_until(lambda: stream.of(MarathonAppTerminatedEvent), "app_terminated_event")
    updates = stream.of(MarathonStatusUpdateEvent)
    running = [u for u in updates if u.task_status == "TASK_RUNNING"]
    assert sorted(u.task_id for u in running) == sorted(ids)
    assert running[0].app_id == "/web" and running[0].slave_id == "agent-10.0.0.7" and running[0].ports
    assert isinstance(running[0].ip_addresses[0], MarathonIpAddress)

    info = stream.of(MarathonDeploymentInfo)[0]
    assert isinstance(info.plan, MarathonDeploymentPlan) and info.plan.id
    assert [a["id"] for a in info.plan.target.apps] == ["/web"] and info.plan.original.apps == []
    assert info.plan.steps[0].actions[0].app == "/web"
    assert info.current_step["actions"][0]["app"] == "/web"
    step = stream.of(MarathonDeploymentStepSuccess)[0]
    assert step.plan.id == info.plan.id
    assert stream.of(MarathonDeploymentSuccess)[0].id == info.plan.id
    assert [f.id for f in stream.of(MarathonDeploymentFailed)] == [dep.id]

    healthy = stream.of(MarathonHealthStatusChangedEvent)
    # (the client sets no attribute for a false value: alive=False reads as absent)
    assert {(h.task_id, getattr(h, "alive", False)) for h in healthy} >= {(ids[1], True), (ids[0], False)}
    [killed] = stream.of(MarathonUnhealthyInstanceKillEvent)
    assert (killed.task_id, killed.reason, killed.slave_id) == (ids[0], "HTTP 500", "agent-10.0.0.7")
    posted = stream.of(MarathonApiPostEvent)
    assert posted[0].uri == "/v2/apps" and posted[0].app_definition["id"] == "/web"
    assert stream.of(MarathonEventStreamAttached)[0].remote_address == "127.0.0.1"
    assert [t.app_id for t in stream.of(MarathonAppTerminatedEvent)] == ["/web"]

    wait_until(lambda: other.seen, "the filtered stream's status updates")
    assert all(isinstance(e, MarathonStatusUpdateEvent) and e.task_status == "TASK_KILLED"
               for e in other.seen)
    served.on_loop(lambda: [s.close() for s in service.events.subscribers if s.event_types])  # other ends
    other.join()
    [detached] = wait_until(lambda: stream.of(MarathonEventStreamDetached), "event_stream_detached")
    assert detached.remote_address == "127.0.0.1"
    served.on_loop(service.events.close_all)
    stream.join()
