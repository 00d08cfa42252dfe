"""The master's I/O shell: the ZeroMQ ROUTER loop, timers, leadership, and the HTTP server.

It reads messages in batches, feeds them to the pure ``MasterState``, runs an allocation pass
after each batch when resources changed (and on the allocation interval), persists the registry
when the batch changed it, and only then sends what the state returned (so nobody hears of an
agent id or framework id a successor would not know). Everything it decides is decided in
``state.py``/``calls.py``; this file only moves bytes.

Leadership: without ``--zk`` the master leads from the start, its registry in
``<work-dir>/registry``. With ``--zk`` it contends (``election.Contender``); while it does not
lead (standby, electing, or its ZooKeeper connection in doubt) it keeps no state and answers
every ZeroMQ message with NOT_LEADER naming the leader when known, and its HTTP endpoints
redirect (``http/server.py``). On election it reads the registry from ZooKeeper and starts a
fresh ``MasterState`` from it; agents and frameworks re-register and re-subscribe.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
import zmq
import zmq.asyncio

from mensa.deploy.runtime import write_endpoints
from mensa.master import registry
from mensa.master.allocator import Allocator
from mensa.master.election import Contender, Leadership
from mensa.master.http.scheduler_api import CallOutcome, SchedulerStream
from mensa.master.http.server import start_http
from mensa.master.records import Peer
from mensa.master.state import MasterConfig, MasterState, PeerUnreachable, Received, Send
from mensa.master.stores import FileStore, RegistryStore, RegistryUnavailable
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources
from mensa.proto.transport import (
    DEFAULT_MAX_MESSAGE_BYTES,
    TransportError,
    bind_router,
    decode,
    encode,
    error_envelope,
)
from mensa.proto.zk import parse_zk_uri

log = structlog.get_logger(__name__)

VERSION = "0.1.0"
BATCH = 2000
TICK_SECONDS = 0.05
ZK_WARNING_SECONDS = 10.0


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
    min_allocatable: list[Resources] | None = None
    zk: str | None = None
    zk_session_timeout: float = 10.0
    agent_reregister_timeout: float = 600.0
    # Bytes an HTTP scheduler's event stream may have waiting to be written before it is closed.
    http_stream_buffer_bytes: int = 8 * 1024 * 1024
    # The flags as given (for /flags).
    flags: dict[str, str] = field(default_factory=dict)


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
        # Open subscriptions of the HTTP scheduler API, by Mesos-Stream-Id.
        self.streams: dict[str, SchedulerStream] = {}
        self._background: set[asyncio.Future[None]] = set()
        self.http_server, self.http_port = start_http(self, opts.ip, opts.http_port)
        self.info = _master_info(opts, self.zmq_port, self.http_port)
        # Set while this master leads (and is not paused); None otherwise.
        self.state: MasterState | None = None
        # "standby", "electing" (reading the registry), "leading", or "paused" (leading, but the
        # ZooKeeper connection is in doubt).
        self.role = "standby"
        self.leader: mensa_pb2.MasterInfo | None = None
        self.started_at = time.time()
        self.elected_at: float | None = None
        self.exit_code = 0
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._term = 0
        self._election: asyncio.Future[None] | None = None
        self._restart: asyncio.Future[None] | None = None
        self._registry_version = 0
        self._revision = 0
        self.contender: Contender | None = None
        self.store: RegistryStore
        if opts.zk:
            self.contender = Contender(parse_zk_uri(opts.zk), opts.zk_session_timeout,
                                       self._new_info, self._leadership_threadsafe)
            self.store = self.contender
        else:
            self.store = FileStore(os.path.join(opts.work_dir, "registry"))
        self.log = log.bind(master_id=self.info.id)

    @property
    def master_id(self) -> str:
        """The id this master contends (or leads) with."""
        if self.contender is not None and self.contender.info is not None:
            return self.contender.info.id
        return self.info.id

    @property
    def leading(self) -> bool:
        return self.role == "leading" and self.state is not None

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        write_endpoints(self.opts.work_dir, zmq_port=self.zmq_port, http_port=self.http_port,
                        master_id=self.info.id, zmq_endpoint=self.info.zmq_endpoint)
        self.log.info("master_started", zmq_port=self.zmq_port, http_port=self.http_port,
                      zmq_endpoint=self.info.zmq_endpoint, work_dir=self.opts.work_dir,
                      zk=self.opts.zk)
        tasks = [asyncio.ensure_future(self._receive_loop()), asyncio.ensure_future(self._timer_loop())]
        if self.contender is not None:
            self.contender.start()
        else:
            await self._become_leader(self._term)
        await self._stopping.wait()
        if self.contender is not None:
            self.contender.stop()  # our znode goes now: a standby takes over without waiting
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.http_server.stop()
        self.sock.close(linger=0)
        self.ctx.term()
        self.log.info("master_stopped")

    def stop(self, exit_code: int = 0) -> None:
        self.exit_code = self.exit_code or exit_code
        self._stopping.set()

    # -- leadership --------------------------------------------------------------------------

    def _new_info(self) -> mensa_pb2.MasterInfo:
        """A MasterInfo with a fresh id for a new znode (ids this master hands out start with
        it, so a new term never reuses an id of an earlier one)."""
        info = mensa_pb2.MasterInfo()
        info.CopyFrom(self.info)
        info.id = str(uuid.uuid4())
        return info

    def _leadership_threadsafe(self, leadership: Leadership) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_leadership, leadership)

    def _on_leadership(self, leadership: Leadership) -> None:
        self.leader = leadership.leader
        role = self.role
        if leadership.leading:
            if role == "paused":
                self.role = "leading"
                self.log.info("leadership_resumed")
            elif role == "standby":
                self._term += 1
                self.role = "electing"
                self._election = asyncio.ensure_future(self._become_leader(self._term))
            return
        if role == "leading" and leadership.suspended:
            self.role = "paused"
            self.log.warning("leadership_paused", reason="ZooKeeper connection lost")
        elif role in ("leading", "paused", "electing"):
            self._step_down("session expired" if leadership.lost else "another master leads")
        elif role == "standby" and leadership.lost:
            self._term += 1

    async def _become_leader(self, term: int) -> None:
        """Reads the registry and starts leading with a fresh state seeded from it."""
        try:
            await self._elect(term)
        except Exception:  # Whatever failed, this master must not stay "electing" forever.
            self.log.exception("election_failed")
            if term == self._term and self.role == "electing":
                self._step_down("election failed", release=True)

    async def _elect(self, term: int) -> None:
        self.role = "electing"
        try:
            data, version = await self._registry_call(self.store.load)
        except (RegistryUnavailable, TimeoutError) as exc:
            if term != self._term or self.role != "electing":
                return
            self.log.error("registry_unreadable", error=str(exc) or type(exc).__name__)
            self._step_down("registry unreadable", release=True)
            return
        if term != self._term or self.role != "electing":
            return  # leadership changed while reading
        try:
            saved = registry.decode(data)
        except ValueError as exc:
            # Kept aside (a newer version's format, or damage) before anything overwrites it.
            aside = await self._registry_call(self.store.set_aside, f"corrupt-{int(time.time())}")
            self.log.error("registry_corrupt", error=str(exc), moved_to=str(aside) if aside else None,
                           consequence="starting from an empty registry")
            saved = registry.Registry()
        if term != self._term or self.role != "electing":
            return
        now = time.time()
        info = self.contender.info if self.contender is not None and self.contender.info else self.info
        state = MasterState(MasterConfig(
            master_info=info,
            agent_ping_timeout=self.opts.agent_ping_timeout,
            max_agent_ping_timeouts=self.opts.max_agent_ping_timeouts,
            heartbeat_interval=self.opts.framework_heartbeat_interval,
            offer_timeout=self.opts.offer_timeout,
            started_at=now,
            agent_reregister_timeout=self.opts.agent_reregister_timeout,
        ), Allocator(min_allocatable=self.opts.min_allocatable))
        registry.restore(state, saved, now)
        self._registry_version = version
        self._revision = saved.revision
        self.state = state
        self.role = "leading"
        self.elected_at = now
        self.leader = info
        self.log = log.bind(master_id=info.id)
        self.log.info("leader_elected", recovering_agents=len(state.recovering_agents),
                      frameworks=len(state.frameworks), registry_revision=saved.revision)

    def _step_down(self, reason: str, *, release: bool = False) -> None:
        """Stops acting as leader at once: the state is dropped (agents and frameworks
        re-register with whoever leads next). With ``release`` (a step-down ZooKeeper did not
        cause) the znode is given up too, so that another master can lead, and this one
        contends again. A standalone master exits with status 1."""
        was = self.role
        self.state = None
        self.role = "standby"
        for stream in list(self.streams.values()):
            stream.close()  # HTTP schedulers reconnect, and are redirected to the next leader
        self.elected_at = None
        self._term += 1
        self.log.warning("leadership_lost", reason=reason, was=was)
        if self.contender is None:
            self.log.error("master_exiting", reason=reason)
            self.stop(exit_code=1)
        elif release and self._loop is not None:
            self.leader = None
            self._restart = self._loop.run_in_executor(None, self.contender.restart)

    async def _registry_call(self, fn: Any, *args: Any) -> Any:
        if isinstance(self.store, FileStore):
            return fn(*args)
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(None, fn, *args),
                                      self.opts.zk_session_timeout)

    async def _commit(self, state: MasterState, sends: list[Send], now: float) -> None:
        """Persists the registry if ``state`` changed it, then sends, if this master still
        leads with a valid lease; otherwise the state is void and it steps down."""
        if state.registry_dirty:
            self._revision += 1
            try:
                data = registry.encode(registry.snapshot(state, self._revision))
                version = await self._registry_call(self.store.store, data, self._registry_version)
            except Exception as exc:  # Conflict, no connection, timeout, or a bug: all void it.
                self.log.error("registry_write_failed", error=str(exc) or type(exc).__name__,
                               dropped_messages=len(sends))
                if self.state is state:
                    self._step_down("registry write failed", release=True)
                return
            if self.state is not state:
                return
            self._registry_version = version
            state.registry_dirty = False
        if self.state is not state:
            return
        if not self.leading:
            # Paused while the registry was written: what was computed cannot be sent now.
            self._step_down("ZooKeeper connection lost while committing", release=True)
            return
        if self.contender is not None and not self.contender.lease_valid(time.monotonic()):
            self.log.error("leader_lease_lapsed", session_timeout=self.opts.zk_session_timeout,
                           dropped_messages=len(sends))
            self._step_down("no ZooKeeper answer within the lease", release=True)
            return
        self._send_all(state, sends, now)
        self._close_orphan_streams(state)

    def _close_orphan_streams(self, state: MasterState) -> None:
        """Ends the event streams of frameworks that were torn down or removed."""
        for stream in list(self.streams.values()):
            if stream.started and not stream.closed and stream not in state.peer_framework:
                stream.log.info("scheduler_stream_closed", reason="the framework is no longer subscribed")
                stream.close()

    async def operate(self, operation: Callable[[MasterState, float], list[Send]]) -> bool:
        """Runs an operator's change on the state (under the loop's lock, like a batch), then
        persists and sends; returns False when this master does not lead. ``operation`` raises
        (OperatorError) without changing anything when the request is invalid."""
        async with self._lock:
            state = self.state if self.leading else None
            if state is None:
                return False
            now = time.time()
            sends = operation(state, now)
            if state.allocation_pending:
                sends += self._allocate(state, now)
            await self._commit(state, sends, now)
            return self.state is state

    def _not_leader(self, peer: bytes, envelope: internal_pb2.Envelope | None) -> Send:
        """The answer of a master that does not lead (or cannot, right now)."""
        kind = envelope.WhichOneof("message") if envelope is not None else None
        known = self.leader if self.leader is not None and self.role == "standby" else None
        if known is not None and known.id == self.master_id:
            known = None  # our own znode, from before a step-down
        if kind == "master_info_request":
            reply = internal_pb2.MasterInfoResponse(leading=False)
            reply.master_info.CopyFrom(self.contender.info if self.contender is not None
                                       and self.contender.info is not None else self.info)
            if known is not None:
                reply.leader.CopyFrom(known)
            return Send(peer, internal_pb2.Envelope(master_info_response=reply))
        err = internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, refused=str(kind or ""))
        if known is not None:
            err.leader.CopyFrom(known)
            err.message = f"this master does not lead; the leader is at {known.zmq_endpoint}"
        elif self.role == "paused":
            err.message = "this master's ZooKeeper connection is down; ask again shortly"
        else:
            err.message = "this master does not lead and no leader is known yet; ask again shortly"
        return Send(peer, internal_pb2.Envelope(error=err))

    def _allocate(self, state: MasterState, now: float) -> list[Send]:
        """Runs an allocation pass, timing it for /metrics."""
        started = time.perf_counter()
        sends = state.allocate(now)
        state.metrics.allocation.observe(time.perf_counter() - started)
        return sends

    # -- the HTTP scheduler API ----------------------------------------------------------------

    async def scheduler_call(self, peer: SchedulerStream, call: Any) -> CallOutcome:
        """Handles a Call that arrived over HTTP exactly as one from ZeroMQ; the Call handler's
        refusals come back (answered on the call's HTTP response), everything else is sent."""
        async with self._lock:
            state = self.state if self.leading else None
            if state is None:
                return CallOutcome(leading=False)
            if peer.closed:
                # The client went away while the call waited: a SUBSCRIBE must not take the
                # framework over from its live scheduler for a dead connection.
                gone = internal_pb2.Error(code=internal_pb2.Error.BAD_REQUEST,
                                          message="the connection closed before the call was handled")
                return CallOutcome(leading=True, errors=[gone])
            now = time.time()
            try:
                sends = state.handle(Received(peer, internal_pb2.Envelope(call=call)), now)
            except Exception:  # A bug must not take the master down; the caller hears of it.
                self.log.exception("message_handling_failed", kind="call", transport="http")
                err = internal_pb2.Error(code=internal_pb2.Error.UNKNOWN,
                                         message="internal error while handling the call")
                return CallOutcome(leading=True, errors=[err])
            replies = [s for s in sends if s.peer is peer and s.envelope.HasField("error")]
            sends = [s for s in sends if not (s.peer is peer and s.envelope.HasField("error"))]
            # A call naming an offer or agent that is gone is a race, not a mistake: Mesos
            # answers 202 (the state logged it; the tasks' TASK_DROPPED/LOST updates follow).
            errors = [s.envelope.error for s in replies if s.envelope.error.code != internal_pb2.Error.STALE]
            try:
                if state.allocation_pending:
                    sends += self._allocate(state, now)
                await self._commit(state, sends, now)
            except Exception:
                self.log.exception("batch_failed", messages=len(sends), transport="http")
            return CallOutcome(leading=self.state is state, errors=errors)

    def stream_lost(self, stream: SchedulerStream) -> None:
        """An HTTP scheduler's connection closed: its framework is disconnected."""
        self.streams.pop(stream.stream_id, None)
        if self._loop is not None and not self._stopping.is_set():
            task = asyncio.ensure_future(self._peer_gone(stream))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _peer_gone(self, peer: Peer) -> None:
        async with self._lock:
            state = self.state if self.leading else None
            if state is None:
                return
            now = time.time()
            try:
                sends = state.handle(PeerUnreachable(peer), now)
                await self._commit(state, sends, now)
            except Exception:
                self.log.exception("peer_gone_failed")

    # -- receiving ---------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            first = await self.sock.recv_multipart(copy=True)
            batch = [first]
            # Drain what is already queued, then allocate and persist once for the whole batch.
            for _ in range(BATCH):
                try:
                    batch.append(self.out.recv_multipart(flags=zmq.NOBLOCK))
                except zmq.Again:
                    break
            async with self._lock:
                now = time.time()
                state = self.state if self.leading else None
                sends: list[Send] = []
                try:
                    for frames in batch:
                        sends += self._on_frames(state, frames, now)
                    if state is None:
                        self._send_all(None, sends, now)
                        continue
                    if state.allocation_pending:
                        sends += self._allocate(state, now)
                    await self._commit(state, sends, now)
                except Exception:  # The loop must outlive a bug; the next batch starts afresh.
                    self.log.exception("batch_failed", messages=len(sends))

    def _on_frames(self, state: MasterState | None, frames: list[bytes], now: float) -> list[Send]:
        peer = frames[0]
        if len(frames) != 2:
            return [Send(peer, error_envelope(f"expected one frame per message, got {len(frames) - 1}"))]
        try:
            envelope = decode(frames[1], self.opts.max_message_bytes)
        except TransportError as exc:
            code = (internal_pb2.Error.TOO_LARGE if "exceeds the limit" in str(exc)
                    else internal_pb2.Error.BAD_REQUEST)
            if state is not None:
                state.counters.invalid_messages += 1
            self.log.warning("message_undecodable", reason=str(exc), bytes=len(frames[1]))
            return [Send(peer, error_envelope(str(exc), code))]
        if state is None:
            return [self._not_leader(peer, envelope)]
        try:
            return state.handle(Received(peer, envelope), now)
        except Exception:  # A bug must not take the master down; the sender hears of it.
            self.log.exception("message_handling_failed", kind=envelope.WhichOneof("message"))
            return [Send(peer, error_envelope("internal error while handling the message",
                                              internal_pb2.Error.UNKNOWN))]

    # -- timers ------------------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        next_allocation = time.time() + self.opts.allocation_interval
        zk_silent_since: float | None = None
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self.contender is not None:
                zk_silent_since = self._watch_zookeeper(zk_silent_since)
            if not self.leading:
                continue
            async with self._lock:
                state = self.state
                if state is None or not self.leading:
                    continue
                now = time.time()
                try:
                    sends = state.tick(now)
                    if now >= next_allocation or state.allocation_pending:
                        next_allocation = now + self.opts.allocation_interval
                        sends += self._allocate(state, now)
                    await self._commit(state, sends, now)
                except Exception:
                    self.log.exception("timer_failed")

    def _watch_zookeeper(self, silent_since: float | None) -> float | None:
        """Logs, every ZK_WARNING_SECONDS, that ZooKeeper cannot be reached (it is retried)."""
        assert self.contender is not None
        now = time.monotonic()
        if self.contender.connected:
            if silent_since is not None and now - silent_since >= ZK_WARNING_SECONDS:
                self.log.info("zookeeper_reachable_again", zk=self.opts.zk)
            return None
        if silent_since is None:
            return now
        if now - silent_since >= ZK_WARNING_SECONDS and \
                int((now - silent_since) / ZK_WARNING_SECONDS) != \
                int((now - silent_since - TICK_SECONDS) / ZK_WARNING_SECONDS):
            self.log.warning("zookeeper_unreachable", zk=self.opts.zk, role=self.role,
                             seconds=round(now - silent_since), consequence="retrying; not leading")
        return silent_since

    # -- sending -----------------------------------------------------------------------------

    def _send_all(self, state: MasterState | None, sends: list[Send], now: float) -> None:
        while sends:
            unreachable: list[Peer] = []
            for send in sends:
                peer = send.peer
                if isinstance(peer, SchedulerStream):
                    if not peer.deliver(send.envelope):
                        unreachable.append(peer)
                    continue
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
            if state is None:
                return
            for peer in dict.fromkeys(unreachable):
                self.log.info("peer_unreachable", peer=peer.hex() if isinstance(peer, bytes) else repr(peer))
                sends += state.handle(PeerUnreachable(peer), now)


async def serve(opts: MasterOptions) -> int:
    """Runs a master until SIGINT/SIGTERM (exit status 1 when it had to give up leading)."""
    service = MasterService(opts)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
    return service.exit_code
