"""SchedulerStream's accounting of what waits to be written, against a handler that behaves like
tornado's (only the latest flush's future resolves; a flush covers everything written before it)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from mensa.master.http.scheduler_api import SchedulerStream
from mensa.proto import internal_pb2, scheduler_pb2


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False
        self.stream = None

    def close(self) -> None:
        self.closed = True


class FakeHandler:
    def __init__(self) -> None:
        self.request = SimpleNamespace(remote_ip="127.0.0.1", connection=FakeConnection())
        self.buffered = 0  # written, not yet flushed
        self.in_kernel: list[tuple[asyncio.Future[None], int]] = []
        self.status = 0
        self.headers: dict[str, str] = {}
        self.finished = False

    def set_status(self, status: int) -> None:
        self.status = status

    def set_header(self, name: str, value: Any) -> None:
        self.headers[name] = value

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("Cannot write() after finish()")
        self.buffered += len(data)

    def flush(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.in_kernel.append((future, self.buffered))
        self.buffered = 0
        return future

    def drain(self) -> None:
        """The socket took everything: like tornado, only the newest flush future resolves."""
        if self.in_kernel:
            self.in_kernel[-1][0].set_result(None)
            self.in_kernel.clear()

    def finish(self) -> None:
        self.finished = True


def event(kind: int = scheduler_pb2.Event.HEARTBEAT, size: int = 0) -> internal_pb2.Envelope:
    ev = scheduler_pb2.Event(type=kind)  # type: ignore[arg-type]
    if size:
        ev.type = scheduler_pb2.Event.MESSAGE
        ev.message.data = b"x" * size
    return internal_pb2.Envelope(event=ev)


def run(coro: Any) -> Any:
    return asyncio.new_event_loop().run_until_complete(coro)


def test_pending_returns_to_zero_when_the_client_catches_up() -> None:
    async def scenario() -> tuple[int, int, list[SchedulerStream]]:
        handler = FakeHandler()
        lost: list[SchedulerStream] = []
        stream = SchedulerStream(handler, protobuf=True, limit=1 << 20, on_lost=lost.append)  # type: ignore[arg-type]
        for _ in range(50):  # the client reads nothing for a while
            assert stream.deliver(event(size=1000))
        peak = stream.pending
        for _ in range(5):  # then catches up, flush after flush
            handler.drain()
            await asyncio.sleep(0)
        return peak, stream.pending, lost

    peak, after, lost = run(scenario())
    assert peak > 50_000
    assert after == 0 and not lost


def test_a_stream_nobody_reads_is_dropped_at_its_limit_but_one_big_record_passes() -> None:
    async def scenario() -> tuple[bool, bool, bool, bool]:
        handler = FakeHandler()
        stream = SchedulerStream(handler, protobuf=True, limit=10_000, on_lost=lambda s: None)  # type: ignore[arg-type]
        big_ok = stream.deliver(event(size=50_000))  # alone, it goes even though it is over the limit
        handler.drain()
        await asyncio.sleep(0)
        small = [stream.deliver(event(size=3000)) for _ in range(5)]
        return big_ok, all(small), stream.closed, handler.request.connection.closed

    big_ok, all_small, closed, dropped = run(scenario())
    assert big_ok and not all_small  # the fourth small one would pass 10 kB waiting: cut off
    assert closed and dropped  # the connection itself is closed, not left to drain


def test_an_error_event_ends_the_stream_and_later_events_are_refused() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        handler = FakeHandler()
        stream = SchedulerStream(handler, protobuf=False, limit=1 << 20, on_lost=lambda s: None)  # type: ignore[arg-type]
        stream.deliver(event(scheduler_pb2.Event.ERROR))
        return handler.finished, stream.deliver(event()), handler.status

    finished, later, status = run(scenario())
    assert finished and not later and status == 200


def test_a_handler_finished_behind_its_back_counts_as_lost() -> None:
    async def scenario() -> tuple[bool, int]:
        handler = FakeHandler()
        lost: list[SchedulerStream] = []
        stream = SchedulerStream(handler, protobuf=False, limit=1 << 20, on_lost=lost.append)  # type: ignore[arg-type]
        stream.deliver(event())
        handler.finished = True
        return stream.deliver(event()), len(lost)

    delivered, lost = run(scenario())
    assert not delivered and lost == 1
