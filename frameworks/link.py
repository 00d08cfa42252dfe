"""MasterLink: the driver's transport, one ZeroMQ DEALER socket to the master.

The driver holds a MasterLink (it does not inherit one). The link owns the socket, an ordered
outbox and the asyncio tasks that move bytes, and knows nothing of subscriptions: each
Envelope received goes to ``on_envelope``, and TCP-level link changes seen by a ZeroMQ socket
monitor go to ``on_link(connected)``. ``reopen()`` replaces the socket with a fresh one (a new
routing identity), ``retarget(endpoint)`` does so towards another master (the new leader) and
hands back what the old one never got, ``flush()`` waits for the outbox to drain, ``close()``
lingers so what was sent still reaches the master. A link made without an endpoint holds its
outbox until ``retarget`` names one. Everything here runs on the driver's event loop thread.

Usage (inside the loop)::

    link = MasterLink(ctx, Endpoint.parse("127.0.0.1:5050"), on_envelope, on_link)
    link.open()
    link.send(internal_pb2.Envelope(pong=internal_pb2.Pong()))
    await link.flush(2.0)
    await link.close(linger=2.0)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import structlog
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from mensa.proto import internal_pb2, transport

log = structlog.get_logger(__name__)

_MONITORED = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED


class MasterLink:
    """One DEALER socket to the master with an ordered outbox; replaceable by ``reopen``."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: transport.Endpoint | None,
        on_envelope: Callable[[internal_pb2.Envelope], None],
        on_link: Callable[[bool], None],
        max_message_bytes: int = transport.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._on_envelope = on_envelope
        self._on_link = on_link
        self._max_message_bytes = max_message_bytes
        self._outbox: collections.deque[internal_pb2.Envelope] = collections.deque()
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._sock: Any = None
        self._monitor: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: internal_pb2.Envelope | None = None
        self.identity = b""

    @property
    def endpoint(self) -> transport.Endpoint | None:
        """The master this link talks to (None until ``retarget`` names one)."""
        return self._endpoint

    def open(self) -> None:
        """Connects a new DEALER socket (a fresh identity) and starts moving messages; a link
        without an endpoint stays closed (its outbox waits)."""
        if self._endpoint is None:
            return
        # IMMEDIATE, and the monitor attached before connecting (so no CONNECTED is missed):
        # ZeroMQ queues only to a live connection, and what the master cannot get yet waits in
        # our outbox, where it is deduplicated (one SUBSCRIBE) and requeued.
        sock = transport.new_dealer(
            self._ctx, max_message_bytes=self._max_message_bytes, immediate=True
        )
        monitor = sock.get_monitor_socket(_MONITORED, f"inproc://mensa-driver-{uuid.uuid4().hex}")
        sock.connect(self._endpoint.url)
        identity = sock.getsockopt(zmq.IDENTITY)
        self.identity = identity if isinstance(identity, bytes) else b""
        self._sock, self._monitor = sock, monitor
        self._tasks = [
            asyncio.create_task(self._receive(sock)),
            asyncio.create_task(self._transmit(sock)),
            asyncio.create_task(self._watch(monitor)),
        ]
        log.debug("master_link_opened", master=str(self._endpoint), identity=self.identity.hex())

    def send(self, envelope: internal_pb2.Envelope) -> None:
        """Queues an envelope; envelopes leave in the order they were queued."""
        self._outbox.append(envelope)
        self._empty.clear()
        self._ready.set()

    def unsent(self) -> list[internal_pb2.Envelope]:
        """Returns the envelopes queued but not yet handed to ZeroMQ."""
        return list(self._outbox)

    def take_unsent(self) -> list[internal_pb2.Envelope]:
        """Removes and returns the envelopes not yet handed to ZeroMQ, except one being handed
        over right now (it leaves as soon as the connection allows, so it is not returned)."""
        busy = bool(self._outbox) and self._outbox[0] is self._inflight
        out = list(self._outbox)[1 if busy else 0 :]
        for _ in out:
            self._outbox.pop()
        if not self._outbox:
            self._empty.set()
        return out

    async def flush(self, timeout: float) -> bool:
        """Waits until the outbox is empty; returns False if ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def reopen(self) -> None:
        """Closes the socket at once (dropping what ZeroMQ still holds) and opens a new one."""
        await self.close(linger=0.0)
        self.open()

    async def retarget(self, endpoint: transport.Endpoint | None) -> list[internal_pb2.Envelope]:
        """Closes the socket at once and opens a fresh one to ``endpoint`` (none when None).

        Returns the envelopes the old master may not have got (all the outbox, emptied): the
        caller decides what goes to the new one.
        """
        await self.close(linger=0.0)
        left = list(self._outbox)
        self._outbox.clear()
        self._empty.set()
        self._endpoint = endpoint
        self.open()
        return left

    async def close(self, linger: float) -> None:
        """Stops the tasks and closes the socket, letting ZeroMQ deliver for ``linger`` seconds."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sock, monitor = self._sock, self._monitor
        self._sock = self._monitor = None
        if sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            if monitor is not None:
                monitor.close(linger=0)
            sock.close(linger=int(linger * 1000))

    async def _receive(self, sock: Any) -> None:
        while True:
            try:
                frames = await sock.recv_multipart()
            except zmq.ZMQError as exc:
                log.warning("master_receive_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            try:
                envelope = transport.decode(frames[-1], self._max_message_bytes)
            except transport.TransportError as exc:
                log.warning("master_message_dropped", reason=str(exc))
                continue
            try:
                self._on_envelope(envelope)
            except Exception:
                log.exception("master_message_handling_failed")

    async def _transmit(self, sock: Any) -> None:
        while True:
            while not self._outbox:
                self._ready.clear()
                await self._ready.wait()
            envelope = self._inflight = self._outbox[0]
            try:
                await sock.send(transport.encode(envelope))
            except zmq.ZMQError as exc:
                log.warning(
                    "master_send_failed", error=str(exc), kind=envelope.WhichOneof("message")
                )
            finally:
                self._inflight = None
            # Cancelled mid-send, the head stays queued and goes out on the next socket.
            if self._outbox and self._outbox[0] is envelope:
                self._outbox.popleft()
            if not self._outbox:
                self._empty.set()

    async def _watch(self, monitor: Any) -> None:
        while True:
            try:
                event = parse_monitor_message(await monitor.recv_multipart())
            except (zmq.ZMQError, RuntimeError) as exc:
                log.debug("master_link_monitor_failed", error=str(exc))
                return
            if event["event"] not in (zmq.EVENT_CONNECTED, zmq.EVENT_DISCONNECTED):
                continue
            try:
                self._on_link(event["event"] == zmq.EVENT_CONNECTED)
            except Exception:
                log.exception("master_link_handling_failed")
