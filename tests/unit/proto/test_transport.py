"""Envelope framing: limits, malformed and unknown payloads, endpoints."""

from __future__ import annotations

import pytest

from mensa.proto import internal_pb2
from mensa.proto.transport import Endpoint, TransportError, decode, encode, error_envelope


def test_round_trip() -> None:
    env = internal_pb2.Envelope(ping=internal_pb2.Ping(timeout_seconds=3))
    assert decode(encode(env)) == env


@pytest.mark.parametrize("payload, message", [
    (b"", "empty message"),
    (b"\xff\xff", "malformed"),
    (b"\x0a\x10short", "malformed"),
    (b"\xf8\x07\x01", "unknown message type"),
])
def test_bad_payloads_are_refused_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(TransportError, match=message):
        decode(payload)


def test_size_limit_names_both_sizes() -> None:
    with pytest.raises(TransportError, match="message of 11 bytes exceeds the limit of 10 bytes"):
        decode(b"x" * 11, max_message_bytes=10)


def test_error_envelope() -> None:
    env = error_envelope("nope", internal_pb2.Error.TOO_LARGE)
    assert env.error.message == "nope" and env.error.code == internal_pb2.Error.TOO_LARGE


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.1:5050", Endpoint("10.0.0.1", 5050)),
    ("tcp://h:1", Endpoint("h", 1)),
    ("myhost", Endpoint("myhost", 5050)),
])
def test_endpoint_parse(text: str, expected: Endpoint) -> None:
    assert Endpoint.parse(text) == expected


@pytest.mark.parametrize("text", ["", "h:0", "h:99999", "h:x"])
def test_endpoint_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.parse(text)
