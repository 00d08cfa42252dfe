"""What the agent offers: its resources (given, or detected from the machine) and attributes.

``detect_resources`` is used when ``--resources`` is absent: all CPUs; total memory minus
min(1 GiB, half); free disk of the work dir minus min(5 GiB, half); ports 31000-32000 (the
Mesos defaults). ``parse_attributes`` reads ``--attributes "rack:a;zone:z1;generation:3"``:
numeric values become SCALAR attributes, everything else TEXT.
"""

from __future__ import annotations

import math
import os
import re
import shutil

from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

DEFAULT_PORTS = "[31000-32000]"
_NAME_RE = re.compile(r"^[a-zA-Z0-9_.\-]+$")


def total_memory_mb() -> float:
    """Returns the machine's physical memory in MB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1024 * 1024)


def detect_resources(work_dir: str) -> Resources:
    """Returns the resources this machine can offer (see the module docstring)."""
    cpus = os.cpu_count() or 1
    mem = total_memory_mb()
    mem -= min(1024.0, mem / 2)
    os.makedirs(work_dir, exist_ok=True)
    disk = shutil.disk_usage(work_dir).free / (1024 * 1024)
    disk -= min(5120.0, disk / 2)
    return Resources.parse(f"cpus:{cpus};mem:{int(mem)};disk:{int(disk)};ports:{DEFAULT_PORTS}")


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


def attributes_json(attributes: list[mensa_pb2.Attribute]) -> dict[str, float | str]:
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
