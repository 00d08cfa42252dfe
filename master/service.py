"""The master's I/O shell: the ZeroMQ ROUTER loop, timers, and the HTTP server.

It reads messages in batches, feeds them to the pure ``MasterState``, runs an allocation pass
after each batch when resources changed (and on the allocation interval), and sends what the state
returns. Everything it decides is decided in ``state.py``/``calls.py``; this file only moves bytes.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import struct
import time
import uuid
from dataclasses import dataclass

import structlog
import zmq
import zmq.asyncio

from mensa.deploy.runtime import write_endpoints
from mensa.master.http.server import start_http
from mensa.master.state import MasterConfig, MasterState, PeerUnreachable, Received, Send
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    TransportError,
    bind_router,
    decode,
    encode,
    error_envelope,
)

log = structlog.get_logger(__name__)

VERSION = "0.1.0"
BATCH = 2000
TICK_SECONDS = 0.05


@dataclass(slots=True)
class MasterOptions:
    """The flags of ``mensa master``."""

    work_dir: str
    ip: str = "127.0.0.1"
    port: int = 5050
    http_port: int = 5051
    hostname: str | None = None
    advertise_ip: str | None = None
    allocation_interval: float = 1.0
    agent_ping_timeout: float = 15.0
    max_agent_ping_timeouts: int = 5
    framework_heartbeat_interval: float = 15.0
    offer_timeout: float | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


def _master_info(opts: MasterOptions, zmq_port: int, http_port: int) -> mensa_pb2.MasterInfo:
    hostname = opts.hostname or socket.gethostname()
    ip = opts.advertise_ip or (opts.ip if opts.ip not in ("0.0.0.0", "") else _resolve(hostname))
    info = mensa_pb2.MasterInfo(id=str(uuid.uuid4()), port=http_port, hostname=hostname, version=VERSION)
    try:
        info.ip = struct.unpack("<I", socket.inet_aton(ip))[0]
    except OSError:
        info.ip = 0
    info.pid = f"master@{ip}:{http_port}"
    info.address.hostname = hostname
    info.address.ip = ip
    info.address.port = http_port
    info.zmq_endpoint = f"tcp://{ip}:{zmq_port}"
    return info


def _resolve(hostname: str) -> str:
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return "127.0.0.1"


class MasterService:
    """Runs one master until ``stop()``."""

    def __init__(self, opts: MasterOptions) -> None:
        self.opts = opts
        self.ctx = zmq.asyncio.Context()
        self.sock, self.zmq_port = bind_router(self.ctx, opts.ip, opts.port, opts.max_message_bytes)
        # Sends go through a synchronous shadow of the same socket: a ROUTER never blocks on send.
        self.out = zmq.Socket.shadow(self.sock.underlying)
        self.http_server, self.http_port = start_http(self, opts.ip, opts.http_port)
        info = _master_info(opts, self.zmq_port, self.http_port)
        self.state = MasterState(MasterConfig(
            master_info=info,
            agent_ping_timeout=opts.agent_ping_timeout,
            max_agent_ping_timeouts=opts.max_agent_ping_timeouts,
            heartbeat_interval=opts.framework_heartbeat_interval,
            offer_timeout=opts.offer_timeout,
            started_at=time.time(),
        ))
        self.started_at = time.time()
        self.elected_at = self.started_at
        self._stopping = asyncio.Event()
        self._unreachable: list[bytes] = []
        self.log = log.bind(master_id=info.id)

    async def run(self) -> None:
        info = self.state.config.master_info
        write_endpoints(self.opts.work_dir, zmq_port=self.zmq_port, http_port=self.http_port,
                        master_id=info.id, zmq_endpoint=info.zmq_endpoint)
        self.log.info("master_started", zmq_port=self.zmq_port, http_port=self.http_port,
                      zmq_endpoint=info.zmq_endpoint, work_dir=self.opts.work_dir)
        tasks = [asyncio.ensure_future(self._receive_loop()), asyncio.ensure_future(self._timer_loop())]
        await self._stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.http_server.stop()
        self.sock.close(linger=0)
        self.ctx.term()
        self.log.info("master_stopped")

    def stop(self) -> None:
        self._stopping.set()

    # -- receiving ---------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            frames = await self.sock.recv_multipart(copy=True)
            now = time.time()
            sends = self._on_frames(frames, now)
            # Drain what is already queued, then allocate once for the whole batch.
            for _ in range(BATCH):
                try:
                    frames = self.out.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                sends += self._on_frames(frames, now)
            try:
                if self.state.allocation_pending:
                    sends += self.state.allocate(now)
                self._send_all(sends, now)
            except Exception:  # The loop must outlive a bug; the next batch starts afresh.
                self.log.exception("batch_failed", messages=len(sends))

    def _on_frames(self, frames: list[bytes], now: float) -> list[Send]:
        peer = frames[0]
        if len(frames) != 2:
            return [Send(peer, error_envelope(f"expected one frame per message, got {len(frames) - 1}"))]
        try:
            envelope = decode(frames[1], self.opts.max_message_bytes)
        except TransportError as exc:
            code = (internal_pb2.Error.TOO_LARGE if "exceeds the limit" in str(exc)
                    else internal_pb2.Error.BAD_REQUEST)
            self.state.counters.invalid_messages += 1
            self.log.warning("message_undecodable", reason=str(exc), bytes=len(frames[1]))
            return [Send(peer, error_envelope(str(exc), code))]
        try:
            return self.state.handle(Received(peer, envelope), now)
        except Exception:  # A bug must not take the master down; the sender hears of it.
            self.log.exception("message_handling_failed", kind=envelope.WhichOneof("message"))
            return [Send(peer, error_envelope("internal error while handling the message",
                                              internal_pb2.Error.UNKNOWN))]

    # -- timers ------------------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        next_allocation = time.time() + self.opts.allocation_interval
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.time()
            try:
                sends = self.state.tick(now)
                if now >= next_allocation or self.state.allocation_pending:
                    next_allocation = now + self.opts.allocation_interval
                    sends += self.state.allocate(now)
                self._send_all(sends, now)
            except Exception:
                self.log.exception("timer_failed")

    # -- sending -----------------------------------------------------------------------------

    def _send_all(self, sends: list[Send], now: float) -> None:
        while sends:
            unreachable: list[bytes] = []
            for send in sends:
                peer = send.peer
                if not isinstance(peer, bytes):
                    continue
                try:
                    self.out.send_multipart([peer, encode(send.envelope)], flags=zmq.NOBLOCK)
                except zmq.ZMQError as exc:
                    if exc.errno in (errno.EHOSTUNREACH, zmq.EHOSTUNREACH):
                        unreachable.append(peer)
                    elif exc.errno == zmq.EAGAIN:
                        self.log.warning("send_queue_full", peer=peer.hex())
                    else:
                        self.log.warning("send_failed", peer=peer.hex(), error=str(exc))
            sends = []
            for peer in dict.fromkeys(unreachable):
                self.log.info("peer_unreachable", peer=peer.hex())
                sends += self.state.handle(PeerUnreachable(peer), now)


async def serve(opts: MasterOptions) -> int:
    """Runs a master until SIGINT/SIGTERM."""
    service = MasterService(opts)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
    return 0
