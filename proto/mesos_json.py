"""Protobuf messages to and from JSON as Mesos's HTTP APIs write it (pure).

``google.protobuf.json_format`` is close, but renders 64-bit integers as strings (proto3 JSON
mapping) where Mesos writes numbers, and scripts written for Mesos do arithmetic on
``ranges.range[0].begin``. ``to_dict`` therefore walks the message itself: field names as in
the .proto, enums by name, 64-bit integers as numbers, bytes in base64 (as Mesos does for
``uuid`` and ``data``). ``parse`` accepts what Mesos accepts: unknown fields are ignored (newer
clients send fields this master does not know), anything else malformed is a ``ValueError``
that says where.

Usage::

    event_dict = to_dict(event)
    call = parse(body_bytes, scheduler_pb2.Call())
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_GROUP = FieldDescriptor.TYPE_GROUP
_ENUM = FieldDescriptor.TYPE_ENUM
_BYTES = FieldDescriptor.TYPE_BYTES
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def _value(field: FieldDescriptor, value: Any) -> Any:
    kind = field.type
    if kind in (_MESSAGE, _GROUP):
        return to_dict(value)
    if kind == _ENUM:
        named = field.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    if kind == _BYTES:
        return base64.b64encode(value).decode("ascii")
    if kind in _FLOATS and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity; Mesos writes them as strings too
    return value


def to_dict(message: Message) -> dict[str, Any]:
    """Returns ``message`` as a dict of JSON values, Mesos style (set fields only)."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def to_json(message: Message) -> bytes:
    """Returns ``message`` as compact UTF-8 JSON bytes."""
    return json.dumps(to_dict(message), separators=(",", ":")).encode()


def parse(data: bytes | str | dict[str, Any], message: M) -> M:
    """Fills ``message`` from JSON text (or an already decoded dict) and returns it; raises
    ValueError saying what is wrong when the text is not JSON, not an object, or does not fit
    the message's fields. Unknown field names and unknown enum names are ignored."""
    if isinstance(data, dict):
        document: Any = data
    else:
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise ValueError("the body is JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise ValueError(  # noqa: TRY004 - a bad request body, not a programming error
            f"the body is JSON {type(document).__name__}, not an object "
                         f"(a {message.DESCRIPTOR.name} message)")
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(f"the body is not a valid {message.DESCRIPTOR.name}: {exc}") from None
    except (TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"the body is not a valid {message.DESCRIPTOR.name}: {exc}") from None
    return message
