"""A BatchService with a real engine and store but a recording driver, serving its REST API on
loopback from a thread of its own, for the API tests (no master, no agents).

``ApiHarness.start(tmp_path)`` returns a running harness; ``harness.call(method, path, body)``
returns ``(status, headers, decoded body)``; ``harness.events`` lists, in order, the store's
commits (``("commit", [(kind, key), ...])``) and the driver calls (``("revive_offers", ...)``),
which is how a test sees that state is written before anything is sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil

from mensa.frameworks.batch_fw.api import make_app
from mensa.frameworks.batch_fw.engine import BatchEngine
from mensa.frameworks.batch_fw.service import BatchOptions, BatchService
from mensa.frameworks.store import Change, FileStore, Put


class RecordingStore(FileStore):
    def __init__(self, root: Path, events: list[tuple[str, Any]]) -> None:
        super().__init__(root)
        self.events = events

    def commit(self, changes: Sequence[Change]) -> None:
        super().commit(changes)
        self.events.append(("commit", [(c.kind, c.key, isinstance(c, Put)) for c in changes]))


class RecordingDriver:
    """Stands in for SchedulerDriver: records each call made by the service."""

    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.events = events

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name not in ("launch_tasks", "decline_offer", "kill_task", "reconcile_tasks", "revive_offers",
                        "suppress_offers", "acknowledge_status_update"):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> None:
            self.events.append((name, args))
        return record


class FixedLeader:
    """A Leadership that names a leader (or none) and never elects this instance."""

    def __init__(self, leader: str | None) -> None:
        self.value = leader

    def start(self, on_elected: Callable[[], None], on_lost: Callable[[str], None]) -> None: ...

    def leader(self) -> str | None:
        return self.value

    def stop(self) -> None: ...


class ApiHarness:
    def __init__(self, service: BatchService) -> None:
        self.service = service
        self.events: list[tuple[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: tornado.httpserver.HTTPServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @staticmethod
    def start(tmp_path: Path, *, leading: bool = True, leader: str | None = None) -> ApiHarness:
        service = BatchService(BatchOptions(master="127.0.0.1:5050", work_dir=tmp_path))
        harness = ApiHarness(service)
        if leading:
            service.engine = BatchEngine()
            service.store = RecordingStore(tmp_path / "state", harness.events)
            service.driver = RecordingDriver(harness.events)  # type: ignore[assignment]
        else:
            service.leadership = FixedLeader(leader)
        harness._thread.start()
        asyncio.run_coroutine_threadsafe(harness._serve(), harness.loop).result(10)
        return harness

    async def _serve(self) -> None:
        self.service._loop = asyncio.get_running_loop()
        self._server = tornado.httpserver.HTTPServer(make_app(self.service))
        sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self.service.address = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.stop()
            if self.service._timer is not None:
                self.service._timer.cancel()
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Runs ``fn`` on the service's loop (where the engine lives) and returns its result."""
        async def go() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is None and method in ("POST", "PUT"):
            data = b""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=10) as response:
                status, hdrs, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            status, hdrs, payload = exc.code, dict(exc.headers), exc.read()
        try:
            decoded: Any = json.loads(payload) if payload else None
        except ValueError:
            decoded = payload.decode()
        return status, hdrs, decoded


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
