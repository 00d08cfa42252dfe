"""ZeroMQ framing: one protobuf ``Envelope`` per ZeroMQ message, with size limits.

The master binds a ROUTER socket; agents and scheduler drivers connect DEALER sockets. On the
ROUTER side a message is ``[identity, payload]``; on a DEALER it is ``[payload]``. Payloads are
serialized ``mensa.internal.Envelope`` messages.

Two limits guard every socket: ``max_message_bytes`` is the application limit (a larger message
is answered with an error naming both sizes), and libzmq's ``MAXMSGSIZE`` is set well above it
so a hostile peer cannot make a process buffer an arbitrary amount of memory (libzmq drops
that connection).

Usage::

    ctx = zmq.asyncio.Context()
    router, port = bind_router(ctx, "127.0.0.1", 0)
    dealer = connect_dealer(ctx, f"tcp://127.0.0.1:{port}")
    await dealer.send(encode(envelope))
"""

from __future__ import annotations

import os
import socket as _socket
from dataclasses import dataclass

import zmq
from google.protobuf.message import DecodeError

from mensa.proto import internal_pb2

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# libzmq's own cap: messages beyond this are dropped by libzmq along with the connection.
HARD_LIMIT_FACTOR = 4
HIGH_WATER_MARK = 200_000


class TransportError(ValueError):
    """A frame that cannot be turned into an Envelope; ``str()`` is the reason for the sender."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A host and port to reach a ZeroMQ socket at, e.g. ``Endpoint("10.0.0.1", 5050)``."""

    host: str
    port: int

    @staticmethod
    def parse(text: str, default_port: int = 5050) -> Endpoint:
        """Parses ``HOST:PORT``, ``tcp://HOST:PORT`` or ``HOST``; raises ValueError when malformed."""
        value = text.strip()
        value = value.removeprefix("tcp://")
        if not value:
            raise ValueError("empty master address")
        host, sep, port_text = value.rpartition(":")
        if not sep:
            return Endpoint(value, default_port)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port in address {text!r}")
        return Endpoint(host.strip("[]") or "127.0.0.1", int(port_text))

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def encode(envelope: internal_pb2.Envelope) -> bytes:
    """Serializes an envelope for sending."""
    return envelope.SerializeToString()


def decode(payload: bytes, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> internal_pb2.Envelope:
    """Parses one payload into an Envelope.

    Raises TransportError when the payload is over the limit, is not a valid Envelope, or
    carries no message this version knows (an unknown oneof field).
    """
    if len(payload) > max_message_bytes:
        raise TransportError(
            f"message of {len(payload)} bytes exceeds the limit of {max_message_bytes} bytes"
        )
    envelope = internal_pb2.Envelope()
    try:
        envelope.ParseFromString(payload)
    except DecodeError as exc:
        raise TransportError(f"malformed message ({len(payload)} bytes): {exc}") from None
    if envelope.WhichOneof("message") is None:
        if payload:
            raise TransportError("unknown message type (no message this master understands)")
        raise TransportError("empty message")
    return envelope


def error_envelope(
    message: str, code: internal_pb2.Error.Code = internal_pb2.Error.BAD_REQUEST
) -> internal_pb2.Envelope:
    """Returns an Envelope carrying an Error for the sender of a bad message."""
    return internal_pb2.Envelope(error=internal_pb2.Error(code=code, message=message))


def _tune(sock: zmq.Socket, max_message_bytes: int) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
    sock.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes * HARD_LIMIT_FACTOR)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)


def bind_router(
    ctx: zmq.Context,
    host: str,
    port: int,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[zmq.Socket, int]:
    """Binds a ROUTER socket on ``host:port`` (0 picks a free port); returns it and its port."""
    sock = ctx.socket(zmq.ROUTER)
    _tune(sock, max_message_bytes)
    # Fail loudly (EHOSTUNREACH) instead of silently dropping a message to a vanished peer,
    # and let a reconnecting peer take over its identity.
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    if port == 0:
        port = sock.bind_to_random_port(f"tcp://{host}", min_port=20000, max_port=60000, max_tries=200)
    else:
        sock.bind(f"tcp://{host}:{port}")
    return sock, port


def new_dealer(
    ctx: zmq.Context,
    identity: bytes | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    immediate: bool = False,
) -> zmq.Socket:
    """Returns a tuned, not yet connected DEALER socket (attach a monitor, then connect).

    With ``immediate``, messages are queued only to a live connection (ZMQ_IMMEDIATE), so what
    cannot be delivered stays with the caller instead of piling up in ZeroMQ.
    """
    sock = ctx.socket(zmq.DEALER)
    _tune(sock, max_message_bytes)
    sock.setsockopt(zmq.IDENTITY, identity or new_identity())
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    if immediate:
        sock.setsockopt(zmq.IMMEDIATE, 1)
    return sock


def connect_dealer(
    ctx: zmq.Context,
    endpoint: Endpoint,
    identity: bytes | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> zmq.Socket:
    """Connects a DEALER socket to ``endpoint``; ``identity`` defaults to a random one."""
    sock = new_dealer(ctx, identity, max_message_bytes)
    sock.connect(endpoint.url)
    return sock


def new_identity() -> bytes:
    """Returns a fresh routing identity (ROUTER identities must not start with a zero byte)."""
    return b"m" + os.urandom(11)


def local_hostname() -> str:
    return _socket.gethostname()
