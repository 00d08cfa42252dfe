"""The Mesos v1 scheduler HTTP API: ``POST /api/v1/scheduler`` (tornado).

A second front door onto the same ``Call`` handler as the ZeroMQ SDK (``master/calls.py``):
the same validation, the same events. Mesos semantics:

- ``SUBSCRIBE`` answers 200 with a chunked RecordIO stream (``<length>\\n<event>`` records,
  JSON or protobuf as the ``Accept`` header asks) and a ``Mesos-Stream-Id`` header. The stream
  is the framework's connection: SUBSCRIBED, OFFERS, UPDATE, HEARTBEAT and the other events
  arrive on it, and when it closes the framework is disconnected (its tasks survive for its
  ``failover_timeout``).
- Every other call carries that ``Mesos-Stream-Id`` and answers 202 with no body, or a 4xx
  with the reason as text: 400 (malformed, no or stale stream id), 403 (a framework not
  subscribed on that stream), 406/415 (media types), 413 (too large).
- A master that does not lead answers 307 with a Location on the leader (503 while none is
  known), so clients follow the leader as they do with Mesos.

A client that stops reading its stream is not buffered for without bound: once more than
``--http-stream-buffer-bytes`` wait to be written, the stream is closed (logged as
``scheduler_stream_stalled``) and the framework is disconnected; it can re-subscribe.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import structlog
import tornado.web

from mensa.master.http.server import _Base
from mensa.master.records import ConnectionPeer
from mensa.proto import internal_pb2, mesos_json, scheduler_pb2

if TYPE_CHECKING:
    from mensa.master.service import MasterService

log = structlog.get_logger(__name__)

Call: TypeAlias = scheduler_pb2.Call
Event: TypeAlias = scheduler_pb2.Event
ErrorCode = internal_pb2.Error

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
STREAM_ID_HEADER = "Mesos-Stream-Id"

# How an error the Call handler returns is answered over HTTP.
HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.NOT_SUBSCRIBED: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.UNKNOWN_TASK: 400,
    ErrorCode.NOT_LEADER: 503,
}


@dataclass(slots=True)
class CallOutcome:
    """What became of a call: ``leading`` is False when this master did not (or stopped to)
    lead while handling it; ``errors`` are the Call handler's refusals."""

    leading: bool
    errors: list[internal_pb2.Error] = field(default_factory=list)


def media_type(header: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return (header or "").split(";", 1)[0].strip().lower()


def response_type(accept: str | None) -> str | None:
    """The event encoding a SUBSCRIBE's Accept header asks for (JSON when it does not care),
    or None when it accepts neither encoding."""
    if not accept:
        return JSON
    for part in accept.split(","):
        candidate = media_type(part)
        params = [p.strip().replace(" ", "") for p in part.split(";")[1:]]
        if any(p in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue  # explicitly not acceptable
        if candidate in (JSON, PROTOBUF):
            return candidate
        if candidate in ("*/*", "application/*"):
            return JSON
    return None


def record(data: bytes) -> bytes:
    """One RecordIO record: the length in decimal, a newline, the bytes."""
    return b"%d\n%s" % (len(data), data)


class SchedulerStream(ConnectionPeer):
    """One subscription's event stream: the peer the master state sends a framework's events
    to. ``deliver`` is called by the master's shell for every envelope addressed to it.

    At most one flush is in flight (tornado resolves only the latest write's future); records
    written meanwhile wait in the handler and go out with the next flush. ``pending`` counts
    every byte written and not yet handed to the kernel, so it bounds what this stream holds."""

    __slots__ = ("_flushing", "_handler", "_on_lost", "_unflushed", "closed", "done", "limit", "log",
                 "pending", "protobuf", "started", "stream_id")

    def __init__(self, handler: tornado.web.RequestHandler, *, protobuf: bool, limit: int,
                 on_lost: Callable[[SchedulerStream], None]) -> None:
        self._handler = handler
        self._on_lost = on_lost
        self.stream_id = str(uuid.uuid4())
        self.protobuf = protobuf
        self.limit = limit
        self.started = False
        self.closed = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending = 0
        self._unflushed = 0
        self._flushing = False
        self.log = log.bind(stream_id=self.stream_id, remote=handler.request.remote_ip)

    def __repr__(self) -> str:
        return f"SchedulerStream({self.stream_id})"

    def deliver(self, envelope: internal_pb2.Envelope) -> bool:
        """Writes an event record to the stream; returns False when the stream is gone (the
        shell then tells the state the peer is unreachable)."""
        if self.closed:
            return False
        if not envelope.HasField("event"):
            # Errors are answered on the call's own HTTP response, never on the stream.
            self.log.info("stream_message_dropped", kind=envelope.WhichOneof("message"))
            return True
        event = envelope.event
        data = record(event.SerializeToString() if self.protobuf else mesos_json.to_json(event))
        if self.pending and self.pending + len(data) > self.limit:
            # One record alone always goes (an OFFERS event can be big); more than the limit
            # waiting means the client stopped reading.
            self.log.warning("scheduler_stream_stalled", pending_bytes=self.pending, limit=self.limit,
                             consequence="connection dropped; the framework is disconnected and may "
                             "re-subscribe")
            self.drop()
            return False
        handler = self._handler
        try:
            if not self.started:
                self.started = True
                handler.set_status(200)
                handler.set_header("Content-Type", PROTOBUF if self.protobuf else JSON)
                handler.set_header(STREAM_ID_HEADER, self.stream_id)
                handler.set_header("Cache-Control", "no-cache")
                self._keepalive()
            handler.write(data)
        except RuntimeError as exc:  # the handler was finished behind our back
            self.log.warning("scheduler_stream_unwritable", error=str(exc))
            self.lost()
            return False
        self.pending += len(data)
        self._unflushed += len(data)
        if not self._flushing:
            self._flush()
        if event.type == Event.ERROR:
            self.log.info("scheduler_stream_closed", reason=event.error.message)
            self.close()
        return True

    def _keepalive(self) -> None:
        """A scheduler host that vanishes (no FIN, no RST) is noticed within about 30 s."""
        stream = getattr(self._handler.request.connection, "stream", None)
        sock = getattr(stream, "socket", None)
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3),
                                  ("TCP_USER_TIMEOUT", 30_000)):
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        except OSError as exc:
            self.log.debug("scheduler_stream_keepalive_failed", error=str(exc))

    def _flush(self) -> None:
        size, self._unflushed = self._unflushed, 0
        self._flushing = True
        self._handler.flush().add_done_callback(functools.partial(self._flushed, size))

    def _flushed(self, size: int, future: asyncio.Future[None]) -> None:
        self._flushing = False
        self.pending -= size
        if future.exception() is not None:
            self.lost()
        elif self._unflushed and not self.closed:
            self._flush()

    def close(self) -> None:
        """Ends the stream from the master's side: what is written goes out, then the last
        chunk, then the connection closes."""
        if self.closed:
            return
        self.closed = True
        if self.started:
            try:
                self._handler.finish()
            except Exception as exc:  # A connection that went away first: nothing to finish.
                self.log.debug("scheduler_stream_finish_failed", error=str(exc))
        if not self.done.done():
            self.done.set_result(None)

    def drop(self) -> None:
        """Closes the connection at once, dropping whatever the client did not read."""
        self.closed = True
        connection = self._handler.request.connection
        close = getattr(connection, "close", None)
        if close is not None:
            close()
        if not self.done.done():
            self.done.set_result(None)

    def lost(self) -> None:
        """The client closed the connection (or it broke): the master hears of it once."""
        if self.closed:
            return
        self.log.info("scheduler_stream_lost")
        self.closed = True
        if not self.done.done():
            self.done.set_result(None)
        self._on_lost(self)


class SchedulerApiHandler(_Base):
    """``POST /api/v1/scheduler``."""

    stream: SchedulerStream | None = None

    def initialize(self, master: MasterService) -> None:
        super().initialize(master)
        self.stream = None

    def fail(self, status: int, message: str) -> None:
        """Answers a refused request with ``message`` as plain text, as Mesos does."""
        log.info("scheduler_call_refused", status=status, reason=message, remote=self.request.remote_ip)
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(message)

    def answer_errors(self, errors: list[internal_pb2.Error]) -> None:
        first = errors[0]
        self.fail(HTTP_STATUS.get(first.code, 500), "; ".join(e.message for e in errors))

    def parse_call(self) -> Call | None:
        """The request's Call, or None after answering why there is none."""
        content = media_type(self.request.headers.get("Content-Type"))
        body = self.request.body
        limit = self.master.opts.max_message_bytes
        if len(body) > limit:
            self.fail(413, f"the body has {len(body)} bytes; the limit is {limit}")
            return None
        if content == JSON:
            try:
                return mesos_json.parse(body, Call())
            except ValueError as exc:
                self.fail(400, f"Failed to parse body into Call: {exc}")
                return None
        if content == PROTOBUF:
            call = Call()
            try:
                call.ParseFromString(body)
            except Exception as exc:  # DecodeError, or a RuntimeError from a deep message
                self.fail(400, f"Failed to parse body into Call: not a protobuf Call ({exc})")
                return None
            return call
        self.fail(415, f"Expecting 'Content-Type' of {JSON} or {PROTOBUF}, not {content or 'none'!r}")
        return None

    async def post(self) -> None:
        if self.leading_state() is None:
            return  # answered: 307 to the leader, or 503
        call = self.parse_call()
        if call is None:
            return
        if not call.HasField("type") or call.type == Call.UNKNOWN:
            self.fail(400, "Failed to validate scheduler::Call: expecting 'type' to be present")
            return
        if call.type == Call.SUBSCRIBE:
            await self.subscribe(call)
        else:
            await self.other_call(call)

    async def subscribe(self, call: Call) -> None:
        if self.request.headers.get(STREAM_ID_HEADER):
            self.fail(400, f"Subscribe calls should not include the '{STREAM_ID_HEADER}' header")
            return
        if self.request.version != "HTTP/1.1":
            self.fail(400, f"SUBSCRIBE needs HTTP/1.1 (events come as a chunked stream), not "
                      f"{self.request.version}")
            return
        encoding = response_type(self.request.headers.get("Accept"))
        if encoding is None:
            self.fail(406, f"Expecting 'Accept' to allow {JSON} or {PROTOBUF}")
            return
        stream = SchedulerStream(self, protobuf=encoding == PROTOBUF,
                                 limit=self.master.opts.http_stream_buffer_bytes,
                                 on_lost=self.master.stream_lost)
        self.stream = stream
        master = self.master
        master.streams[stream.stream_id] = stream
        try:
            outcome = await master.scheduler_call(stream, call)
            if outcome.errors:
                stream.closed = True
                self.answer_errors(outcome.errors)
                return
            if not stream.started:
                stream.closed = True
                if not outcome.leading:
                    self.leading_state()
                else:
                    self.fail(503, "the subscription was not completed; subscribe again")
                return
            stream.log.info("scheduler_stream_opened", encoding=encoding)
            await stream.done
        finally:
            master.streams.pop(stream.stream_id, None)
            if not stream.closed:
                # Only an exception gets here with the stream open: the state may know it, so
                # it hears that it is gone.
                started = stream.started
                stream.close()
                if started:
                    master.stream_lost(stream)

    async def other_call(self, call: Call) -> None:
        stream_id = self.request.headers.get(STREAM_ID_HEADER)
        if not stream_id:
            self.fail(400, f"All non-subscribe calls should include the '{STREAM_ID_HEADER}' header")
            return
        stream = self.master.streams.get(stream_id)
        if stream is None or stream.closed:
            self.fail(400, f"The stream ID '{stream_id}' included in this request is not a current "
                      "subscription of this master; SUBSCRIBE again")
            return
        outcome = await self.master.scheduler_call(stream, call)
        if outcome.errors:
            self.answer_errors(outcome.errors)
        elif not outcome.leading:
            if self.leading_state() is not None:
                self.fail(503, "leadership changed while handling the call; retry")
        else:
            self.set_status(202)
            self.finish()

    def on_connection_close(self) -> None:
        if self.stream is not None:
            self.stream.lost()


def scheduler_routes() -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The scheduler API's routes (Mesos serves it at both paths)."""
    return [
        (r"/api/v1/scheduler", SchedulerApiHandler, {}),
        (r"/master/api/v1/scheduler", SchedulerApiHandler, {}),
    ]
