"""Session: the driver's loop-thread half, which keeps one framework subscribed.

A Session holds the MasterLink (the transport) and the subscription state. It sends SUBSCRIBE
with backoff until SUBSCRIBED, queues calls until then, turns master Envelopes into Scheduler
callbacks (``events.callback_for``) plus their side effects (offer book, implicit ACKNOWLEDGE,
pong, abort on ERROR), and notices a lost master: silence for max(factor x heartbeat interval,
min_master_silence), a dropped connection, or a NOT_SUBSCRIBED answer. Then the scheduler hears
``disconnected`` and the session re-subscribes with its framework id.

It follows the leading master. A MasterDetector reports the leader (a fixed address, or the
leader znodes of a ``zk://`` URI); a master that does not lead answers NOT_LEADER, naming the
leader when it knows it. On a new leader the session points its link at the leader's ZeroMQ
endpoint (a fresh socket), loses the old master (``disconnected`` once; unsent calls are
requeued; offers are void) and re-subscribes there with its framework id. While no leader is
known it waits, queueing calls; NOT_LEADER without a leader is retried with backoff.

It reconciles (unless ``auto_reconcile`` is off): a Reconciler tracks the tasks launched and
every status update; after each re-subscription (and the first SUBSCRIBED of a failover) the
session sends RECONCILE for the tracked tasks, then again for the unanswered ones with backoff
until all were answered; a failover that tracks nothing sends one implicit RECONCILE.

Everything here runs on the driver's event loop thread; SchedulerDriver is the thread-safe
front that hands calls over with ``loop.call_soon_threadsafe(session.on_call, call)``. The
detector's reports (from kazoo's thread) hop over the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
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
    is_removal_error,
    leader_hint,
    removal_hint,
    same_master,
    silence_timeout,
)
from mensa.frameworks.idfile import FrameworkIdFile
from mensa.frameworks.link import MasterLink
from mensa.frameworks.offerbook import OfferBook
from mensa.frameworks.reconciling import AutoReconciler
from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2, transport
from mensa.proto.detector import FixedDetector, MasterDetector
from mensa.proto.zk import Leader

log = structlog.get_logger(__name__)

UNANSWERED_BEFORE_FALLBACK = 3

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
    auto_reconcile: bool = True
    reconcile_backoff_initial: float = 1.0
    reconcile_backoff_max: float = 30.0


class Session:
    """Keeps ``info`` subscribed with the master ``detector`` reports as leading, and drives
    ``scheduler``'s callbacks. The session starts and stops the detector; with ``id_file`` it
    stores the framework id after each SUBSCRIBED that changes it (and removes the file after
    a TEARDOWN)."""

    def __init__(
        self,
        scheduler: Any,
        driver: Any,
        info: mensa_pb2.FrameworkInfo,
        detector: MasterDetector,
        options: SessionOptions,
        offers: OfferBook,
        is_running: Callable[[], bool],
        abort: Callable[[], object],
        id_file: FrameworkIdFile | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._driver = driver  # the first argument of every callback
        self._info = info
        self._detector = detector
        self._opts = options
        self._offers = offers
        self._is_running = is_running
        self._abort = abort
        self._id_file = id_file
        self._backoff = Backoff(options.backoff_initial, options.backoff_max)
        self._log = log.bind(framework=info.name)
        self._framework_id: str | None = info.id.value or None
        self._stored_id = self._framework_id if id_file is not None else None
        self._failover_id = self._framework_id  # the first SUBSCRIBED with it is a failover
        self._target: Leader | None = None
        self._detected: Leader | None = None  # what the detector said last
        self._unanswered = 0  # SUBSCRIBEs sent to the target since it last said anything
        self._leaders: asyncio.Queue[tuple[Leader | None, str]] | None = None
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
        self._reconcile = AutoReconciler(
            options.reconcile_backoff_initial,
            options.reconcile_backoff_max,
            send=self._send_call,
            subscribed=lambda: self._subscribed,
            logger=lambda: self._log,
            enabled=options.auto_reconcile,
        )

    @property
    def framework_id(self) -> str | None:
        return self._framework_id

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    @property
    def leader(self) -> Leader | None:
        """The master this session talks to (None while no leader is known)."""
        return self._target

    # -- entry points (loop thread; on_call also before run) -----------------------------------

    async def run(self) -> None:
        """Runs until begin_stop(); then sends TEARDOWN if asked, flushes and closes."""
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._kick = asyncio.Event()
        self._leaders = asyncio.Queue()
        if self._stop_requested:
            self._stop_event.set()
        ctx = zmq.asyncio.Context()
        self._link = MasterLink(
            ctx, None, self._on_envelope, self._on_link, self._opts.max_message_bytes
        )
        self._last_received = loop.time()
        workers = [
            asyncio.create_task(self._subscribe_loop()),
            asyncio.create_task(self._watchdog()),
            asyncio.create_task(self._leader_loop()),
        ]
        detecting = self._start_detector(loop)
        try:
            await self._stop_event.wait()
        finally:
            if detecting:
                await self._stop_detector(loop)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._reconcile.cancel()
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
        """Sends a call now if subscribed, else queues it until SUBSCRIBED; tracks the tasks it
        launches for reconciliation."""
        self._reconcile.track_launches(call)
        if self._subscribed:
            self._send_call(call)
        else:
            self._queued.append(call)
            self._log.debug("call_queued", call=convert.call_name(call), reason="not subscribed")

    # -- sending --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        assert self._link is not None
        teardown = self._teardown and bool(self._framework_id)
        if teardown and self._link.endpoint is None:
            self._log.warning("framework_teardown_skipped", reason="no leading master known")
            teardown = False
        if teardown:
            self._send_call(convert.teardown_call())
            self._log.info("framework_teardown_sent")
        if self._queued:
            names = [convert.call_name(c) for c in self._queued]
            self._log.warning("calls_dropped", count=len(names), calls=names, reason="stopped")
            self._queued = []
        flushed = self._link.endpoint is not None and await self._link.flush(
            self._opts.flush_timeout
        )
        if not flushed and self._link.unsent():
            self._log.warning("calls_unflushed", count=len(self._link.unsent()))
        await self._link.close(linger=self._opts.flush_timeout)
        self._subscribed = False
        if teardown and flushed and self._id_file is not None:
            # The framework is gone: the next run registers anew instead of being refused.
            try:
                self._id_file.remove()
                self._log.info("framework_id_file_removed", path=str(self._id_file))
            except OSError as exc:
                self._log.error("framework_id_file_remove_failed", path=str(self._id_file),
                                error=str(exc))

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
        assert kick is not None and self._link is not None
        while True:
            if self._subscribed or self._link.endpoint is None:  # nothing to do, or nowhere to go
                kick.clear()
                await kick.wait()
                continue
            kick.clear()
            fallback = self._detected
            if (
                self._unanswered >= UNANSWERED_BEFORE_FALLBACK
                and fallback is not None
                and not same_master(fallback, self._target)
            ):
                # The leader a master named is silent: back to the one the detector reports.
                self._log.warning("named_leader_silent", fallback=_describe(fallback))
                self._unanswered = 0
                self._leader_news(fallback, "fallback")
                with contextlib.suppress(TimeoutError):  # the leader loop retargets and kicks
                    await asyncio.wait_for(kick.wait(), self._backoff.next())
                continue
            self._unanswered += 1
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

    def _lose_master(
        self, reason: str, unsent: list[internal_pb2.Envelope] | None = None
    ) -> None:
        """Marks the subscription lost: requeues unsent calls (the link's, or ``unsent`` taken
        from it already), tells the scheduler, re-subscribes."""
        assert self._link is not None and self._kick is not None
        if unsent is None and self._subscribed:
            unsent = self._link.take_unsent()
        requeue = [
            e.call
            for e in unsent or ()
            if e.HasField("call") and e.call.type != Call.SUBSCRIBE
        ]
        self._queued[:0] = requeue
        if self._subscribed:
            self._subscribed = False
            self._log.warning("master_disconnected", reason=reason, requeued=len(requeue))
            self._invoke(Callback("disconnected", ()))
        if self._framework_id:
            self._kick.set()

    # -- following the leader -------------------------------------------------------------------

    def _start_detector(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Starts the detector; its reports reach ``_leader_news`` on this loop's thread."""

        def report(leader: Leader | None) -> None:  # any thread (kazoo's for a ZkDetector)
            with contextlib.suppress(RuntimeError):  # the loop closed: the session is over
                loop.call_soon_threadsafe(self._leader_news, leader, "detector")

        try:
            self._detector.start(report)
        except Exception:
            self._log.exception("master_detector_failed", detector=str(self._detector))
            self._abort()
            return False
        return True

    async def _stop_detector(self, loop: asyncio.AbstractEventLoop) -> None:
        try:  # kazoo's stop blocks (briefly): not on the loop
            await asyncio.wait_for(loop.run_in_executor(None, self._detector.stop), 5.0)
        except Exception:
            self._log.warning("master_detector_stop_failed", exc_info=True)

    def _leader_news(self, leader: Leader | None, source: str) -> None:
        if source == "detector":
            self._detected = leader
        if self._leaders is not None and not self._stop_requested:
            self._leaders.put_nowait((leader, source))

    async def _leader_loop(self) -> None:
        assert self._leaders is not None
        while True:
            leader, source = await self._leaders.get()
            await self._follow(leader, source)

    async def _follow(self, leader: Leader | None, source: str) -> None:
        """Points the link at ``leader`` (None: nowhere) unless it is the master already in use."""
        assert self._link is not None and self._kick is not None
        if same_master(leader, self._target):
            return
        old, self._target = self._target, leader
        if leader is None:
            self._log.warning("leading_master_lost", old=_describe(old), source=source)
        else:
            self._log.info("leading_master_changed", old=_describe(old), new=_describe(leader),
                           source=source)
        self._log = self._log.bind(master=str(leader.zmq) if leader is not None else None)
        unsent = await self._link.retarget(leader.zmq if leader is not None else None)
        self._link_lost = False
        self._unanswered = 0
        self._last_received = asyncio.get_running_loop().time()
        self._offers.clear()  # offers from another master are void
        self._lose_master("leading master changed", unsent)
        self._backoff.reset()
        self._kick.set()  # subscribe at the new leader now

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
        self._unanswered = 0
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
        elif error.code == internal_pb2.Error.NOT_LEADER:
            hint = leader_hint(error)
            # Only a fixed address follows a standby's hint; a ZooKeeper detector is the
            # authority (a standby may still name the leader that just died).
            if (hint is not None and isinstance(self._detector, FixedDetector)
                    and not same_master(hint, self._target)):
                self._leader_news(hint, "master")  # the standby named the leader: go there
            elif self._subscribed:
                self._lose_master("master does not lead")  # re-subscribes with backoff

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
            self._on_fatal(event.error.message)
        callback = callback_for(event, first_subscription=False)
        if callback is None:
            self._log.warning("event_ignored", type=int(kind))
            return
        handled = self._invoke(callback)
        if kind == Event.UPDATE:
            self._reconcile.observed(event.update.status, delivered=handled)
        # An update whose callback raised is not acknowledged: the agent sends it again later.
        # A reconciliation answer carries no uuid: acknowledge_call returns None for it.
        if kind == Event.UPDATE and handled and self._opts.implicit_acknowledgements:
            ack = convert.acknowledge_call(event.update.status)
            if ack is not None:
                self.on_call(ack)

    def _on_fatal(self, message: str) -> None:
        """An ERROR event: the master wants this scheduler gone; the driver aborts."""
        if is_removal_error(message):
            path = str(self._id_file) if self._id_file is not None else None
            self._log.error("framework_removed", message=message, framework_id_file=path,
                            hint=removal_hint(self._framework_id, path))
        else:
            self._log.error("framework_error_received", message=message)
        self._abort()

    def _store_framework_id(self, framework_id: str) -> None:
        if self._id_file is None or framework_id == self._stored_id:
            return
        try:
            self._id_file.write(framework_id)
        except OSError as exc:
            self._log.error("framework_id_file_write_failed", path=str(self._id_file),
                            error=str(exc), hint="a restart will not fail over")
            return
        self._stored_id = framework_id
        self._log.info("framework_id_stored", path=str(self._id_file))

    def _on_subscribed(self, event: scheduler_pb2.Event) -> None:
        framework_id = event.subscribed.framework_id.value
        if not framework_id:
            self._log.warning("subscribed_ignored", reason="no framework id")
            return
        if self._subscribed and framework_id == self._framework_id:
            self._log.debug("duplicate_subscribed_ignored")
            return
        first = not self._ever_subscribed or framework_id != self._framework_id
        failover = first and framework_id == self._failover_id
        self._failover_id = None
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
        self._store_framework_id(framework_id)
        for call in queued:
            self._send_call(call)
        if not first or failover:
            self._reconcile.start("failover" if failover else "resubscribed")
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


def _describe(leader: Leader | None) -> str | None:
    if leader is None:
        return None
    return f"{leader.master_id}@{leader.zmq}" if leader.master_id else str(leader.zmq)
