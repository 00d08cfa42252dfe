"""Agent attributes: parsed from ``--attributes "rack:a;zone:z1;generation:3"``, rendered for /state.

Numeric values become SCALAR attributes, everything else TEXT, as Mesos reads its
``--attributes`` flag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from mensa.proto import mensa_pb2

_NAME_RE = re.compile(r"^[a-zA-Z0-9_.\-]+$")


def parse_attributes(text: str) -> list[mensa_pb2.Attribute]:
    """Parses ``name:value;name:value``; raises ValueError naming the malformed part."""
    out: list[mensa_pb2.Attribute] = []
    seen: set[str] = set()
    for raw in text.split(";"):
        part = raw.strip()
        if not part:
            continue
        name, sep, value = (s.strip() for s in part.partition(":"))
        if not sep or not value or not _NAME_RE.match(name):
            raise ValueError(f"attribute {part!r}: expected NAME:VALUE")
        if name in seen:
            raise ValueError(f"attribute {name!r} given twice")
        seen.add(name)
        attribute = mensa_pb2.Attribute(name=name)
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            attribute.type = mensa_pb2.Value.SCALAR
            attribute.scalar.value = number
        else:
            attribute.type = mensa_pb2.Value.TEXT
            attribute.text.value = value
        out.append(attribute)
    return out


def attributes_json(attributes: Iterable[mensa_pb2.Attribute]) -> dict[str, float | str]:
    """Returns attributes the Mesos /state way: ``{"rack": "a", "generation": 3.0}``."""
    out: dict[str, float | str] = {}
    for a in attributes:
        if a.type == mensa_pb2.Value.SCALAR:
            out[a.name] = a.scalar.value
        elif a.type == mensa_pb2.Value.TEXT:
            out[a.name] = a.text.value
        elif a.type == mensa_pb2.Value.RANGES:
            out[a.name] = "[" + ", ".join(f"{r.begin}-{r.end}" for r in a.ranges.range) + "]"
        else:
            out[a.name] = "{" + ",".join(a.set.item) + "}"
    return out
