"""The shared framework host with a tiny engine, a recording store and a recording driver:
state is written before anything is sent, the framework's own commands come after the write
in the engine's order, a refusal changes nothing, a bug rebuilds the engine from the store,
status updates are written in one group then acknowledged, the timer ticks, and a standalone
instance leads from its work dir (no master, no HTTP)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mensa.frameworks import commands as cmds
from mensa.frameworks.driver import DriverStatus
from mensa.frameworks.hosting import FrameworkHost, HostOptions, HttpServer, NotLeading
from mensa.frameworks.store import Change, FileStore, Put, Records, StoreError
from mensa.proto import mensa_pb2

Events = list[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class Note:
    """A command of the framework's own (as the service framework's Emit)."""

    text: str


class Refused(Exception):
    pass


class TinyEngine:
    """Keeps a set of names; ``restore`` reconciles one task per stored name."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.restored: Records | None = None
        self.ticks: list[float] = []
        self.wakeup: float | None = None

    def restore(self, records: Records, now: float) -> list[Any]:
        self.restored = records
        self.names = set(records.get("name", {}))
        return [cmds.Reconcile(tuple((f"task-{n}", "agent-1") for n in sorted(self.names)))]

    def subscribed(self, now: float) -> list[Any]:
        return [cmds.Revive()]

    def offers(self, offers: list[mensa_pb2.Offer], now: float) -> list[Any]:
        return [cmds.Decline(tuple(o.id.value for o in offers), 5.0)]

    def status_update(self, status: mensa_pb2.TaskStatus, now: float) -> list[Any]:
        name = status.task_id.value
        self.names.add(name)
        return [cmds.Persist("name", name, {"state": status.state}), Note(f"updated {name}")]

    def tick(self, now: float) -> list[Any]:
        self.ticks.append(now)
        self.wakeup = None
        return [Note("ticked")]

    def next_wakeup(self) -> float | None:
        return self.wakeup

    def add(self, name: str, now: float) -> list[Any]:
        if name in self.names:
            raise Refused(name)
        self.names.add(name)
        return [cmds.Kill("old", "agent-1"), Note(f"added {name}"), cmds.Persist("name", name, {}),
                cmds.Forget("name", "gone"), cmds.Revive()]


class RecordingStore(FileStore):
    def __init__(self, root: Path, events: Events, *, broken: bool = False) -> None:
        super().__init__(root)
        self.events = events
        self.broken = broken

    def commit(self, changes: Sequence[Change]) -> None:
        if self.broken:
            raise StoreError("the disk is full")
        super().commit(changes)
        self.events.append(("commit", [(c.kind, c.key, isinstance(c, Put)) for c in changes]))


class RecordingDriver:
    """Stands in for SchedulerDriver: records calls; ``join`` waits until ``stop``."""

    def __init__(self, events: Events, framework_id: str | None = None) -> None:
        self.events = events
        self.framework_id = framework_id
        self._done = threading.Event()

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name not in ("launch_tasks", "decline_offer", "kill_task", "reconcile_tasks", "revive_offers",
                        "suppress_offers", "acknowledge_status_update"):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> None:
            self.events.append((name, args))
        return record

    def start(self) -> None:
        self.events.append(("start", ()))

    def stop(self, failover: bool = False) -> None:
        self.events.append(("stop", (failover,)))
        self._done.set()

    def join(self, timeout: float | None = None) -> DriverStatus:
        self._done.wait(timeout)
        return DriverStatus.STOPPED


class NoServer:
    def __init__(self, events: Events) -> None:
        self.events = events

    def stop(self) -> None:
        self.events.append(("http_stopped", ()))


class Host(FrameworkHost[TinyEngine]):
    def __init__(self, work_dir: Path) -> None:
        super().__init__(HostOptions(master="127.0.0.1:5050", work_dir=work_dir, name="mensa-tiny"),
                         name="tiny", make_engine=TinyEngine, refusals=(Refused,))
        self.events: Events = []
        self.info: mensa_pb2.FrameworkInfo | None = None

    def start_http(self) -> tuple[HttpServer, int]:
        return NoServer(self.events), 9999

    def handle_command(self, command: Any) -> bool:
        if isinstance(command, Note):
            self.events.append(("note", command.text))
            return True
        return False

    def make_driver(self, info: mensa_pb2.FrameworkInfo, framework_id_file: Path | None) -> Any:
        self.info = info
        return RecordingDriver(self.events, "fw-1")


def leading(tmp_path: Path, *, broken: bool = False) -> Host:
    """A host that leads with an empty engine (as the API harness of the batch framework)."""
    host = Host(tmp_path)
    host.engine = TinyEngine()
    host.store = RecordingStore(tmp_path / "state", host.events, broken=broken)
    host.driver = RecordingDriver(host.events)  # type: ignore[assignment]
    return host


def on_loop(host: Host, body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def go() -> Any:
        host._loop = asyncio.get_running_loop()
        try:
            return await body()
        finally:
            if host._timer is not None:
                host._timer.cancel()
    return asyncio.run(go())


def test_state_is_written_before_anything_is_sent_and_own_commands_keep_order(tmp_path: Path) -> None:
    host = leading(tmp_path)
    on_loop(host, lambda: host.apply(lambda now: host.require_engine().add("a", now)))
    # Puts before removals (the default write order), one commit, then the rest in order.
    assert host.events == [
        ("commit", [("name", "a", True), ("name", "gone", False)]),
        ("kill_task", ("old", "agent-1")),
        ("note", "added a"),
        ("revive_offers", ()),
    ]
    assert host.counters["state_batches_written"] == 1 and host.counters["kills_sent"] == 1


def test_a_failed_write_sends_nothing_and_stops_the_instance(tmp_path: Path) -> None:
    host = leading(tmp_path, broken=True)

    async def body() -> None:
        with pytest.raises(StoreError, match="disk is full"):
            await host.apply(lambda now: host.require_engine().add("a", now))
    on_loop(host, body)
    assert host.events == []  # no kill, no note, no revive
    assert host.engine is None and host.exit_code == 1 and host._stopping.is_set()


def test_a_refusal_keeps_the_engine_and_a_bug_rebuilds_it_from_the_store(tmp_path: Path) -> None:
    host = leading(tmp_path)
    host.events.clear()

    async def body() -> None:
        await host.apply(lambda now: host.require_engine().add("a", now))
        engine = host.require_engine()
        with pytest.raises(Refused):
            await host.apply(lambda now: host.require_engine().add("a", now))
        assert host.engine is engine

        def bug(now: float) -> list[Any]:
            engine.names.add("half-changed")
            raise RuntimeError("a bug")
        with pytest.raises(RuntimeError, match="a bug"):
            await host.apply(bug)
        rebuilt = host.require_engine()
        assert rebuilt is not engine and rebuilt.names == {"a"}  # what the store holds
        assert host.events[-1] == ("reconcile_tasks", ([("task-a", "agent-1")],))
    on_loop(host, body)


def test_without_an_engine_apply_raises_not_leading(tmp_path: Path) -> None:
    host = Host(tmp_path)

    async def body() -> None:
        with pytest.raises(NotLeading):
            await host.apply(lambda now: [])
    on_loop(host, body)
    assert host.leader() is None and not host.leading


def test_queued_status_updates_are_stored_in_one_write_then_acknowledged(tmp_path: Path) -> None:
    host = leading(tmp_path)

    async def body() -> None:
        for i in range(3):
            status = mensa_pb2.TaskStatus(state=mensa_pb2.TASK_RUNNING, uuid=b"u%d" % i)
            status.task_id.value = f"t{i}"
            host.queue_update(status)
        for _ in range(200):
            if len([e for e in host.events if e[0] == "acknowledge_status_update"]) == 3:
                return
            await asyncio.sleep(0.01)
    on_loop(host, body)
    kinds = [e[0] for e in host.events]
    assert kinds == ["commit", "note", "note", "note"] + ["acknowledge_status_update"] * 3
    assert host.events[0][1] == [("name", "t0", True), ("name", "t1", True), ("name", "t2", True)]
    assert host.counters["status_update_batches"] == 1


def test_the_timer_ticks_the_engine_at_its_next_wakeup(tmp_path: Path) -> None:
    host = leading(tmp_path)

    async def body() -> None:
        host.require_engine().wakeup = 0.0  # due now
        await host.apply(lambda now: [])  # arms the timer
        for _ in range(200):
            if host.require_engine().ticks:
                return
            await asyncio.sleep(0.01)
    on_loop(host, body)
    assert len(host.require_engine().ticks) == 1 and host.events == [("note", "ticked")]


def test_a_standalone_instance_restores_subscribes_and_stops_without_teardown(tmp_path: Path) -> None:
    FileStore(tmp_path / "state").commit([Put("name", "a", {})])
    host = Host(tmp_path)

    async def body() -> int:
        running = asyncio.ensure_future(host.run())
        for _ in range(200):
            if ("start", ()) in host.events:
                break
            await asyncio.sleep(0.01)
        assert host.leading and host.leader() == "127.0.0.1:9999"
        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        assert endpoints["framework_id"] == "fw-1" and endpoints["leading"] is True
        # A second instance may not share the work dir: it fails to contend and exits 1.
        second = Host(tmp_path)
        assert await second.run() == 1 and not second.leading
        host.stop()
        return await running

    assert asyncio.run(body()) == 0
    assert host.events == [
        ("reconcile_tasks", ([("task-a", "agent-1")],)),  # restored before subscribing
        ("start", ()),
        ("stop", (True,)),  # failover: the tasks keep running
        ("http_stopped", ()),
    ]
    assert host.info is not None and host.info.name == "mensa-tiny" and host.info.webui_url == "http://127.0.0.1:9999"
    assert [c.type for c in host.info.capabilities] == [mensa_pb2.FrameworkInfo.Capability.PARTITION_AWARE]
    assert host.framework_id == "fw-1" and (tmp_path / "tiny.lock").exists()
