"""A stand-in for the service framework's shell around a real ServiceEngine, and a tornado test
case serving the REST API on loopback, for the API and event stream tests (no master, no agents).

``FakeService`` runs engine changes as the shell does (``apply_returning``: ``fn(now)`` under a
lock, its ``Emit`` commands published on the event bus in order) with a clock that moves one
second per change; ``service.offer(...)`` and ``service.update(...)`` feed the engine offers and
status updates the same way. ``ApiCase.call(method, path, body)`` returns ``(status, headers,
decoded body)``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from tornado.testing import AsyncHTTPTestCase

from mensa.frameworks.hosting import HostOptions, NotLeading
from mensa.frameworks.service_fw.api import make_app
from mensa.frameworks.service_fw.commands import Emit
from mensa.frameworks.service_fw.engine import ServiceEngine
from mensa.frameworks.service_fw.instances import Instance
from mensa.frameworks.service_fw.sse import EventBus
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

T = TypeVar("T")

START = 1_900_000_000.0


def offer(offer_id: str, hostname: str = "h1", agent_id: str | None = None,
          resources: str = "cpus:8;mem:8192;disk:1000;ports:[31000-31099]") -> mensa_pb2.Offer:
    o = mensa_pb2.Offer(hostname=hostname)
    o.id.value = offer_id
    o.agent_id.value = agent_id or f"agent-{hostname}"
    o.framework_id.value = "fw-1"
    o.resources.extend(Resources.parse(resources).to_proto())
    return o


class FakeService:
    """See the module docstring. ``leading=False`` gives a standby naming ``leader``."""

    def __init__(self, *, leading: bool = True, leader: str | None = None,
                 bus: EventBus | None = None) -> None:
        counter = itertools.count(1)
        self.engine: ServiceEngine | None = (
            ServiceEngine(new_id=lambda: f"{next(counter):032x}") if leading else None)
        self.events = bus or EventBus()
        self.counters: collections.Counter[str] = collections.Counter({"status_updates": 2})
        self.started_at = START - 60
        self.framework_id: str | None = "fw-1"
        self.opts = HostOptions(master="127.0.0.1:5050", work_dir=Path("/nonexistent"), name="mensa-service",
                                zk=None, http_port=0)
        self.address = "127.0.0.1:8080"
        self.time = START
        self.commands: list[Any] = []
        self._leader = leader
        self._lock: asyncio.Lock | None = None

    @property
    def leading(self) -> bool:
        return self.engine is not None

    def clock(self) -> float:
        return self.time

    def leader(self) -> str | None:
        return self.address if self.leading else self._leader

    def require_engine(self) -> ServiceEngine:
        if self.engine is None:
            raise NotLeading("this instance does not lead")
        return self.engine

    async def apply_returning(self, fn: Callable[[float], tuple[T, Sequence[Any] | None]]) -> T:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return self.step(fn)

    def step(self, fn: Callable[[float], tuple[T, Sequence[Any] | None]]) -> T:
        self.require_engine()
        self.time += 1.0
        value, commands = fn(self.time)
        for command in commands or ():
            self.commands.append(command)
            if isinstance(command, Emit):
                self.events.publish(command.event_type, command.doc)
        return value

    # -- driving the engine ------------------------------------------------------------------------

    def offer(self, offer_id: str, hostname: str = "h1", resources: str | None = None) -> None:
        engine = self.require_engine()
        o = offer(offer_id, hostname) if resources is None else offer(offer_id, hostname, resources=resources)
        self.step(lambda now: (None, engine.offers([o], now)))

    def update(self, task_id: str, state: str, *, healthy: bool | None = None, message: str = "") -> None:
        engine = self.require_engine()
        status = mensa_pb2.TaskStatus(state=mensa_pb2.TaskState.Value(state), message=message)
        status.task_id.value = task_id
        status.agent_id.value = engine.instance(task_id).agent_id
        if healthy is not None:
            status.healthy = healthy
        self.step(lambda now: (None, engine.status_update(status, now)))

    def tasks(self, app_id: str) -> list[Instance]:
        return self.require_engine().instances_of(app_id)

    def run_all(self, app_id: str, *, healthy: bool | None = None) -> list[str]:
        """Marks every task of the app running (and healthy/unhealthy); returns their ids."""
        ids = [i.task_id for i in self.tasks(app_id)]
        for task_id in ids:
            self.update(task_id, "TASK_RUNNING", healthy=healthy)
        return ids


class ApiCase(AsyncHTTPTestCase):
    """Serves ``make_app(FakeService)``; subclasses set ``leading``/``leader`` to test a standby."""

    leading = True
    leader: str | None = None
    keepalive = 0.05

    def setUp(self) -> None:
        self.service = FakeService(leading=self.leading, leader=self.leader)
        super().setUp()

    def get_app(self) -> tornado.web.Application:
        return make_app(self.service, sse_keepalive=self.keepalive, clock=self.service.clock)  # type: ignore[arg-type]

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        response = self.fetch(path, method=method, body=data, raise_error=False, follow_redirects=False,
                              allow_nonstandard_methods=True,
                              headers={"Content-Type": "application/json", **(headers or {})})
        payload = response.body or b""
        try:
            decoded: Any = json.loads(payload) if payload else None
        except ValueError:
            decoded = payload.decode()
        return response.code, dict(response.headers), decoded

    def app(self, app_id: str = "/web", **fields: Any) -> dict[str, Any]:
        """Creates an app through the API; returns the POST's answer."""
        doc = {"id": app_id, "cmd": "python3 -m http.server $PORT0", "cpus": 0.5, "mem": 64, **fields}
        status, _h, body = self.call("POST", "/v2/apps", doc)
        assert status == 201, body
        return body  # type: ignore[no-any-return]
