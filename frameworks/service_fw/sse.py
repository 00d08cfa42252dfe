"""Marathon's event stream: an in-process event bus, and ``GET /v2/events`` as Server-Sent Events.

``EventBus.publish(event_type, doc)`` hands one event to every subscriber that wants its type,
framed once as Marathon frames it (``event: <type>\\ndata: <json>\\n\\n``). It never blocks and
never waits for a client: each subscriber has a bounded queue (``max_queued`` events and
``max_queued_bytes``), and a subscriber whose queue is full (a client that stopped reading) is
dropped: its stream is closed, the client reconnects when it is ready. ``publish`` must be
called on the event loop that serves the streams (the shell calls it for each ``Emit`` after
the state writes of the same step succeeded; the API calls it for ``api_post_event``).

``EventsHandler`` serves one stream: ``event_type`` query parameters (repeated or
comma-separated) keep only those types; ``event_stream_attached`` and ``event_stream_detached``
are published as streams come and go (as Marathon does); a comment line (``:``) goes out after
``keepalive`` seconds without an event so proxies and clients see the stream is alive. An
instance that does not lead redirects (307) to the leader, as for the rest of ``/v2``.

Usage::

    bus = EventBus()
    sub = bus.subscribe({"status_update_event"}, remote="10.0.0.9")
    bus.publish("status_update_event", {"eventType": "status_update_event", ...})
    sub.take()   # [b'event: status_update_event\\ndata: {...}\\n\\n']
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from tornado.iostream import StreamClosedError

from mensa.frameworks.service_fw.api import Leading
from mensa.frameworks.service_fw.events import iso

log = structlog.get_logger(__name__)

MAX_QUEUED = 1000  # events a subscriber may fall behind before it is dropped
MAX_QUEUED_BYTES = 8 * 1024 * 1024
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b":\n\n"


def frame(event_type: str, doc: Any) -> bytes:
    """One event as Server-Sent Events text: ``event: <type>``, ``data: <json on one line>``."""
    return f"event: {event_type}\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n".encode()


class Subscription:
    """One subscriber's queue of framed events (see ``EventBus``)."""

    __slots__ = ("_ready", "closed", "dropped", "event_types", "max_bytes", "max_events", "on_drop",
                 "queue", "queued_bytes", "remote")

    def __init__(self, event_types: frozenset[str] | None, remote: str, on_drop: Callable[[], None] | None,
                 max_events: int, max_bytes: int) -> None:
        self.event_types = event_types
        self.remote = remote
        self.on_drop = on_drop
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.closed = False
        self.dropped = False
        self._ready = asyncio.Event()

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    def push(self, chunk: bytes) -> bool:
        """Queues ``chunk``; False (nothing queued) when the queue is full."""
        if len(self.queue) >= self.max_events or self.queued_bytes + len(chunk) > self.max_bytes:
            return False
        self.queue.append(chunk)
        self.queued_bytes += len(chunk)
        self._ready.set()
        return True

    def take(self) -> list[bytes]:
        """Everything queued, oldest first; the queue is empty after."""
        out = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        self._ready.clear()
        return out

    async def wait(self, timeout: float) -> None:
        """Returns when something is queued or the subscription is closed, or after ``timeout``."""
        if self.queue or self.closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class EventBus:
    """Fans events out to subscribers (see the module docstring). ``published`` counts events,
    ``dropped`` subscribers dropped for falling behind."""

    def __init__(self, *, max_queued: int = MAX_QUEUED, max_queued_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.subscribers: list[Subscription] = []
        self.published = 0
        self.dropped = 0

    def subscribe(self, event_types: Iterable[str] | None = None, *, remote: str = "",
                  on_drop: Callable[[], None] | None = None) -> Subscription:
        """A new subscriber to the events of ``event_types`` (None: all). ``on_drop`` is called
        if it is dropped for falling behind (to close its connection)."""
        types = frozenset(event_types) if event_types is not None else None
        sub = Subscription(types, remote, on_drop, self.max_queued, self.max_queued_bytes)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(sub)
        sub.close()

    def publish(self, event_type: str, doc: Any) -> int:
        """Queues the event for every subscriber that wants it; returns how many got it. Never
        blocks: a subscriber with a full queue is dropped instead."""
        self.published += 1
        chunk: bytes | None = None
        delivered = 0
        for sub in list(self.subscribers):
            if sub.closed or not sub.wants(event_type):
                continue
            if chunk is None:
                chunk = frame(event_type, doc)
            if sub.push(chunk):
                delivered += 1
            else:
                self._drop(sub)
        return delivered

    def _drop(self, sub: Subscription) -> None:
        self.dropped += 1
        sub.dropped = True
        log.warning("event_subscriber_dropped", remote=sub.remote, queued=len(sub.queue),
                    queued_bytes=sub.queued_bytes)
        self.unsubscribe(sub)
        if sub.on_drop is not None:
            try:
                sub.on_drop()
            except Exception:
                log.exception("event_subscriber_drop_failed", remote=sub.remote)

    def close_all(self) -> None:
        """Ends every stream (this instance stopped leading, or is stopping)."""
        for sub in list(self.subscribers):
            self.unsubscribe(sub)




class EventsHandler(Leading):
    """``GET /v2/events`` (see the module docstring). The keep-alive interval is the
    application setting ``sse_keepalive`` (seconds; default ``KEEPALIVE_SECONDS``)."""

    _sub: Subscription | None = None

    async def get(self) -> None:
        bus: EventBus = self.service.events
        types = {t.strip() for value in self.get_query_arguments("event_type")
                 for t in value.split(",") if t.strip()}
        keepalive = float(self.settings.get("sse_keepalive", KEEPALIVE_SECONDS))
        remote = self.request.remote_ip or ""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache, no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass events through at once
        bus.publish("event_stream_attached", self._event("event_stream_attached", remoteAddress=remote))
        self._sub = sub = bus.subscribe(types or None, remote=remote, on_drop=self._cut)
        log.info("event_stream_attached", remote=remote, event_types=sorted(types) or "all")
        try:
            await self.flush()  # the headers: the client knows it is subscribed
            while not sub.closed:
                await sub.wait(keepalive)
                chunks = sub.take()
                if chunks:
                    self.write(b"".join(chunks))
                elif sub.closed:
                    break
                else:
                    self.write(KEEPALIVE)
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            bus.unsubscribe(sub)
            log.info("event_stream_detached", remote=remote, dropped=sub.dropped)
            bus.publish("event_stream_detached", self._event("event_stream_detached", remoteAddress=remote))

    def _event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        return {"eventType": event_type, "timestamp": iso(self.now()), **fields}

    def _cut(self) -> None:
        """Dropped for falling behind: the connection is closed (the pending write fails)."""
        self.request.connection.close()  # type: ignore[union-attr]

    def on_connection_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
