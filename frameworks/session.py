"""Session: the driver's loop-thread half, which keeps one framework subscribed.

A Session holds the MasterLink (the transport) and the subscription state. It sends SUBSCRIBE
with backoff until SUBSCRIBED, queues calls until then, turns master Envelopes into Scheduler
callbacks (``events.callback_for``) plus their side effects (offer book, implicit ACKNOWLEDGE,
pong, abort on ERROR), and notices a lost master: silence for max(factor x heartbeat interval,
min_master_silence), a dropped connection, or a NOT_SUBSCRIBED answer. Then the scheduler hears
``disconnected`` and the session re-subscribes with its framework id.

Everything here runs on the driver's event loop thread; SchedulerDriver is the thread-safe
front that hands calls over with ``loop.call_soon_threadsafe(session.on_call, call)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
import zmq.asyncio

from mensa.frameworks import convert
from mensa.frameworks.events import (
    DEFAULT_HEARTBEAT_INTERVAL,
    Backoff,
    Callback,
    callback_for,
    heartbeat_interval,
    silence_timeout,
)
from mensa.frameworks.link import MasterLink
from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2, transport

log = structlog.get_logger(__name__)

Call = scheduler_pb2.Call
Event = scheduler_pb2.Event
Envelope = internal_pb2.Envelope


@dataclass(slots=True)
class SessionOptions:
    """How a session acknowledges, times out and retries (the defaults suit production)."""

    implicit_acknowledgements: bool = True
    min_master_silence: float = 5.0
    heartbeat_timeout_factor: float = 3.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    flush_timeout: float = 2.0
    max_message_bytes: int = transport.DEFAULT_MAX_MESSAGE_BYTES


class OfferBook:
    """Outstanding offers (offer id -> agent id), thread-safe; forgets the oldest past ``limit``."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._agents: collections.OrderedDict[str, str] = collections.OrderedDict()

    def add(self, offers: Iterable[mensa_pb2.Offer]) -> None:
        with self._lock:
            for offer in offers:
                self._agents[offer.id.value] = offer.agent_id.value
            while len(self._agents) > self._limit:
                self._agents.popitem(last=False)

    def forget(self, offer_ids: Iterable[mensa_pb2.OfferID]) -> None:
        with self._lock:
            for oid in offer_ids:
                self._agents.pop(oid.value, None)

    def clear(self) -> None:
        with self._lock:
            self._agents.clear()

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self._agents)


class Session:
    """Keeps ``info`` subscribed at ``endpoint`` and drives ``scheduler``'s callbacks."""

    def __init__(
        self,
        scheduler: Any,
        driver: Any,
        info: mensa_pb2.FrameworkInfo,
        endpoint: transport.Endpoint,
        options: SessionOptions,
        offers: OfferBook,
        is_running: Callable[[], bool],
        abort: Callable[[], object],
    ) -> None:
        self._scheduler = scheduler
        self._driver = driver  # the first argument of every callback
        self._info = info
        self._endpoint = endpoint
        self._opts = options
        self._offers = offers
        self._is_running = is_running
        self._abort = abort
        self._backoff = Backoff(options.backoff_initial, options.backoff_max)
        self._log = log.bind(framework=info.name, master=str(endpoint))
        self._framework_id: str | None = info.id.value or None
        self._queued: list[scheduler_pb2.Call] = []
        self._link: MasterLink | None = None
        self._subscribed = False
        self._ever_subscribed = False
        self._link_lost = False
        self._heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL
        self._last_received = 0.0
        self._stop_event: asyncio.Event | None = None
        self._kick: asyncio.Event | None = None
        self._stop_requested = False
        self._teardown = False

    @property
    def framework_id(self) -> str | None:
        return self._framework_id

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    # -- entry points (loop thread; on_call also before run) -----------------------------------

    async def run(self) -> None:
        """Runs until begin_stop(); then sends TEARDOWN if asked, flushes and closes."""
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._kick = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        ctx = zmq.asyncio.Context()
        self._link = MasterLink(
            ctx, self._endpoint, self._on_envelope, self._on_link, self._opts.max_message_bytes
        )
        self._link.open()
        self._last_received = loop.time()
        workers = [
            asyncio.create_task(self._subscribe_loop()),
            asyncio.create_task(self._watchdog()),
        ]
        try:
            await self._stop_event.wait()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            try:
                await self._shutdown()
            finally:
                ctx.destroy(linger=0)

    def begin_stop(self, teardown: bool) -> None:
        """Ends run(), after a TEARDOWN when ``teardown`` and the framework has an id."""
        if self._stop_requested:
            return
        self._stop_requested = True
        self._teardown = teardown
        if self._stop_event is not None:
            self._stop_event.set()

    def on_call(self, call: scheduler_pb2.Call) -> None:
        """Sends a call now if subscribed, else queues it until SUBSCRIBED."""
        if self._subscribed:
            self._send_call(call)
        else:
            self._queued.append(call)
            self._log.debug("call_queued", call=convert.call_name(call), reason="not subscribed")

    # -- sending --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        assert self._link is not None
        if self._teardown and self._framework_id:
            self._send_call(convert.teardown_call())
            self._log.info("framework_teardown_sent")
        if self._queued:
            names = [convert.call_name(c) for c in self._queued]
            self._log.warning("calls_dropped", count=len(names), calls=names, reason="stopped")
            self._queued = []
        if not await self._link.flush(self._opts.flush_timeout):
            self._log.warning("calls_unflushed", count=len(self._link.unsent()))
        await self._link.close(linger=self._opts.flush_timeout)
        self._subscribed = False

    def _send_call(self, call: scheduler_pb2.Call) -> None:
        assert self._link is not None
        if self._framework_id:
            call.framework_id.value = self._framework_id
        self._link.send(Envelope(call=call))

    def _pong(self) -> None:
        assert self._link is not None
        self._link.send(Envelope(pong=internal_pb2.Pong()))

    def _send_subscribe(self) -> None:
        assert self._link is not None
        unsent = self._link.unsent()
        if any(e.HasField("call") and e.call.type == Call.SUBSCRIBE for e in unsent):
            return
        info = mensa_pb2.FrameworkInfo()
        info.CopyFrom(self._info)
        if self._framework_id:
            info.id.value = self._framework_id
        self._send_call(convert.subscribe_call(info))
        self._log.info("subscribe_sent", framework_id=self._framework_id)

    # -- staying subscribed ---------------------------------------------------------------------

    async def _subscribe_loop(self) -> None:
        kick = self._kick
        assert kick is not None
        while True:
            if self._subscribed:
                kick.clear()
                await kick.wait()
                continue
            kick.clear()
            self._send_subscribe()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kick.wait(), self._backoff.next())

    def _silence_timeout(self) -> float:
        opts = self._opts
        return silence_timeout(
            self._heartbeat_interval, opts.heartbeat_timeout_factor, opts.min_master_silence
        )

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Every timeout is at least min_master_silence: checking at a quarter of it suffices.
            await asyncio.sleep(max(0.01, min(self._opts.min_master_silence / 4, 1.0)))
            timeout = self._silence_timeout()
            silent = loop.time() - self._last_received
            if self._subscribed and silent > timeout:
                self._log.warning(
                    "master_silence_detected", seconds=round(silent, 3), timeout=timeout
                )
                assert self._link is not None
                await self._link.reopen()  # a fresh socket and routing identity
                self._link_lost = False
                self._last_received = loop.time()
                self._lose_master("master silent")

    def _lose_master(self, reason: str) -> None:
        """Marks the subscription lost: requeues unsent calls, tells the scheduler, re-subscribes."""
        assert self._link is not None and self._kick is not None
        if self._subscribed:
            self._subscribed = False
            requeue = [
                e.call
                for e in self._link.take_unsent()
                if e.HasField("call") and e.call.type != Call.SUBSCRIBE
            ]
            self._queued[:0] = requeue
            self._log.warning("master_disconnected", reason=reason, requeued=len(requeue))
            self._invoke(Callback("disconnected", ()))
        if self._framework_id:
            self._kick.set()

    def _on_link(self, connected: bool) -> None:
        if not self._is_running():
            return
        if not connected:
            self._link_lost = True
            self._log.warning("master_connection_lost")
            if self._subscribed:
                self._lose_master("connection lost")
        elif self._link_lost:
            self._link_lost = False
            self._log.info("master_connection_restored")
            if not self._subscribed and self._framework_id and self._kick is not None:
                self._kick.set()

    # -- receiving ------------------------------------------------------------------------------

    def _on_envelope(self, envelope: internal_pb2.Envelope) -> None:
        self._last_received = asyncio.get_running_loop().time()
        if not self._is_running():
            return  # stopping: no more callbacks
        kind = envelope.WhichOneof("message")
        if kind == "event":
            self._on_event(envelope.event)
        elif kind == "error":
            self._on_error(envelope.error)
        elif kind == "ping":
            self._pong()
        elif kind != "pong":
            self._log.warning("master_message_ignored", kind=kind)

    def _on_error(self, error: internal_pb2.Error) -> None:
        codes = internal_pb2.Error.Code
        name = codes.Name(error.code) if error.code in codes.values() else str(error.code)
        self._log.warning("call_rejected", code=name, message=error.message, refused=error.refused)
        if error.code == internal_pb2.Error.NOT_SUBSCRIBED:
            self._lose_master("master answered NOT_SUBSCRIBED")
        # NOT_LEADER: nothing yet (following the leader comes with HA).

    def _on_event(self, event: scheduler_pb2.Event) -> None:
        kind = event.type
        if kind == Event.HEARTBEAT:
            self._pong()
            return
        if kind == Event.SUBSCRIBED:
            self._on_subscribed(event)
            return
        if kind == Event.OFFERS:
            self._offers.add(event.offers.offers)
        elif kind == Event.RESCIND:
            self._offers.forget([event.rescind.offer_id])
        elif kind == Event.ERROR:
            self._log.error("framework_error_received", message=event.error.message)
            self._abort()
        callback = callback_for(event, first_subscription=False)
        if callback is None:
            self._log.warning("event_ignored", type=int(kind))
            return
        handled = self._invoke(callback)
        # An update whose callback raised is not acknowledged: the agent sends it again later.
        if kind == Event.UPDATE and handled and self._opts.implicit_acknowledgements:
            ack = convert.acknowledge_call(event.update.status)
            if ack is not None:
                self.on_call(ack)

    def _on_subscribed(self, event: scheduler_pb2.Event) -> None:
        framework_id = event.subscribed.framework_id.value
        if not framework_id:
            self._log.warning("subscribed_ignored", reason="no framework id")
            return
        if self._subscribed and framework_id == self._framework_id:
            self._log.debug("duplicate_subscribed_ignored")
            return
        first = not self._ever_subscribed or framework_id != self._framework_id
        if self._framework_id and framework_id != self._framework_id:
            self._log.warning("framework_id_changed", old=self._framework_id, new=framework_id)
        if self._ever_subscribed:
            self._offers.clear()  # offers made before the disconnection are void
        self._framework_id = framework_id
        self._info.id.value = framework_id
        self._heartbeat_interval = heartbeat_interval(event)
        self._subscribed = self._ever_subscribed = True
        self._backoff.reset()
        self._log = self._log.bind(framework_id=framework_id)
        queued, self._queued = self._queued, []
        self._log.info(
            "framework_subscribed" if first else "framework_resubscribed",
            heartbeat_interval=self._heartbeat_interval,
            queued_calls=len(queued),
        )
        for call in queued:
            self._send_call(call)
        callback = callback_for(event, first_subscription=first)
        assert callback is not None
        self._invoke(callback)

    def _invoke(self, callback: Callback) -> bool:
        """Runs one callback; returns False (after logging it) when it raised."""
        try:
            getattr(self._scheduler, callback.name)(self._driver, *callback.args)
        except Exception:
            self._log.exception("scheduler_callback_failed", callback=callback.name)
            return False
        return True
