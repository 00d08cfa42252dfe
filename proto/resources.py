"""Resources: an immutable bag of scalar, range and set resources, keyed by name and role.

This is the value type everything that counts resources uses: the agent's total, the master's
free/offered/used books, offers and task requirements. It is pure (no I/O) and cheap to copy.

Scalars are held as integer thousandths, as Mesos holds them in fixed point with three decimal
places, so that repeated addition and subtraction never drift (0.1 + 0.2 - 0.3 is 0 here).
Ranges (ports) are kept as sorted, merged, inclusive ``(begin, end)`` intervals. Sets are frozen.
The role is ``"*"`` for unreserved resources, or the role a resource is reserved for.

Usage::

    total = Resources.parse("cpus:4;mem:4096;ports:[31000-32000]")
    task = Resources.parse("cpus:0.5;mem:128;ports:[31000-31000]")
    assert total.contains(task)
    left = total - task          # cpus:3.5;mem:3968;ports:[31001-32000]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mensa.proto import mensa_pb2

UNRESERVED = "*"
MILLI = 1000

# Names the master understands as well-known; any other name is still carried and counted.
SCALAR_NAMES = ("cpus", "mem", "disk", "gpus")

_ROLE_RE = re.compile(r"^[a-zA-Z0-9_.\-]+(/[a-zA-Z0-9_.\-]+)*$")
_NAME_RE = re.compile(r"^[a-zA-Z0-9_.\-]+$")


class ResourceError(ValueError):
    """Raised for resources that are malformed: negative, NaN, bad ranges, unknown types."""


Key = tuple[str, str]  # (name, role)
Interval = tuple[int, int]


def _to_milli(value: float, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResourceError(f"resource {name!r}: scalar must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ResourceError(f"resource {name!r}: scalar must be finite, got {value}")
    if value < 0:
        raise ResourceError(f"resource {name!r}: scalar must not be negative, got {value}")
    return round(value * MILLI)


def _normalize(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Returns the intervals sorted and merged (adjacent ones joined)."""
    out: list[list[int]] = []
    for begin, end in sorted(intervals):
        if out and begin <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([begin, end])
    return tuple((b, e) for b, e in out)


def _ranges_subtract(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    """Returns the intervals of ``a`` with every point of ``b`` removed (both normalized)."""
    out: list[Interval] = []
    j = 0
    for begin, end in a:
        cur = begin
        while j < len(b) and b[j][1] < cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= end:
            if b[k][0] > cur:
                out.append((cur, b[k][0] - 1))
            cur = max(cur, b[k][1] + 1)
            if cur > end:
                break
            k += 1
        if cur <= end:
            out.append((cur, end))
    return tuple(out)


def _ranges_contain(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> bool:
    """True when every point of ``b`` lies in ``a`` (both normalized)."""
    i = 0
    for begin, end in b:
        while i < len(a) and a[i][1] < begin:
            i += 1
        if i == len(a) or a[i][0] > begin or a[i][1] < end:
            return False
    return True


def _ranges_size(a: tuple[Interval, ...]) -> int:
    return sum(e - b + 1 for b, e in a)


def format_ranges(a: Iterable[Interval]) -> str:
    """Formats intervals the Mesos way: ``[31000-31005, 31010-31010]``."""
    return "[" + ", ".join(f"{b}-{e}" for b, e in a) + "]"


@dataclass(frozen=True, slots=True)
class Resources:
    """An immutable bag of resources. Build with ``parse``, ``from_proto`` or ``scalars``."""

    _scalars: Mapping[Key, int]
    _ranges: Mapping[Key, tuple[Interval, ...]]
    _sets: Mapping[Key, frozenset[str]]

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def empty() -> Resources:
        return _EMPTY

    @staticmethod
    def _make(
        scalars: dict[Key, int], ranges: dict[Key, tuple[Interval, ...]], sets: dict[Key, frozenset[str]]
    ) -> Resources:
        return Resources(
            {k: v for k, v in scalars.items() if v > 0},
            {k: v for k, v in ranges.items() if v},
            {k: v for k, v in sets.items() if v},
        )

    @staticmethod
    def scalars(role: str = UNRESERVED, **values: float) -> Resources:
        """Returns scalar resources, e.g. ``Resources.scalars(cpus=1, mem=128)``."""
        return Resources._make({(n, role): _to_milli(v, n) for n, v in values.items()}, {}, {})

    @staticmethod
    def parse(text: str, default_role: str = UNRESERVED) -> Resources:
        """Parses the Mesos flag syntax: ``cpus:4;mem(ml):2048;ports:[31000-32000];zones:{a,b}``.

        Raises ResourceError with the offending part on malformed input.
        """
        scalars: dict[Key, int] = {}
        ranges: dict[Key, list[Interval]] = {}
        sets: dict[Key, set[str]] = {}
        for raw in text.split(";"):
            part = raw.strip()
            if not part:
                continue
            if ":" not in part:
                raise ResourceError(f"resource {part!r}: expected NAME[(ROLE)]:VALUE")
            head, value = (s.strip() for s in part.split(":", 1))
            match = re.fullmatch(r"([^()\s]+)(?:\(([^()]*)\))?", head)
            if not match:
                raise ResourceError(f"resource {part!r}: bad name or role")
            name, role = match.group(1), match.group(2) or default_role
            _check_name_role(name, role)
            key = (name, role)
            if value.startswith("["):
                if not value.endswith("]"):
                    raise ResourceError(f"resource {part!r}: unterminated range")
                for item in filter(None, (s.strip() for s in value[1:-1].split(","))):
                    bounds = item.split("-")
                    if len(bounds) != 2 or not all(b.strip().isdigit() for b in bounds):
                        raise ResourceError(f"resource {part!r}: bad range {item!r}")
                    begin, end = int(bounds[0]), int(bounds[1])
                    if begin > end:
                        raise ResourceError(f"resource {part!r}: range {item!r} ends before it begins")
                    ranges.setdefault(key, []).append((begin, end))
            elif value.startswith("{"):
                if not value.endswith("}"):
                    raise ResourceError(f"resource {part!r}: unterminated set")
                items = {s.strip() for s in value[1:-1].split(",") if s.strip()}
                sets.setdefault(key, set()).update(items)
            else:
                try:
                    number = float(value)
                except ValueError:
                    raise ResourceError(f"resource {part!r}: {value!r} is not a number") from None
                scalars[key] = scalars.get(key, 0) + _to_milli(number, name)
        return Resources._make(
            scalars,
            {k: _normalize(v) for k, v in ranges.items()},
            {k: frozenset(v) for k, v in sets.items()},
        )

    @staticmethod
    def from_proto(resources: Iterable[mensa_pb2.Resource]) -> Resources:
        """Builds from protobuf Resource messages, validating each one.

        Raises ResourceError naming the first malformed resource (negative, NaN, empty name,
        a range that ends before it begins, a type without its value).
        """
        from mensa.proto import mensa_pb2

        scalars: dict[Key, int] = {}
        ranges: dict[Key, list[Interval]] = {}
        sets: dict[Key, set[str]] = {}
        Type = mensa_pb2.Value
        for r in resources:
            role = role_of(r)
            _check_name_role(r.name, role)
            key = (r.name, role)
            if r.type == Type.SCALAR:
                if not r.HasField("scalar"):
                    raise ResourceError(f"resource {r.name!r}: SCALAR without a scalar value")
                scalars[key] = scalars.get(key, 0) + _to_milli(r.scalar.value, r.name)
            elif r.type == Type.RANGES:
                for rng in r.ranges.range:
                    if rng.begin > rng.end:
                        raise ResourceError(
                            f"resource {r.name!r}: range [{rng.begin}-{rng.end}] ends before it begins"
                        )
                    ranges.setdefault(key, []).append((rng.begin, rng.end))
            elif r.type == Type.SET:
                sets.setdefault(key, set()).update(r.set.item)
            else:
                raise ResourceError(f"resource {r.name!r}: unsupported type {r.type}")
        return Resources._make(
            scalars,
            {k: _normalize(v) for k, v in ranges.items()},
            {k: frozenset(v) for k, v in sets.items()},
        )

    # -- conversion ---------------------------------------------------------------------------

    def to_proto(self, allocation_role: str | None = None) -> list[mensa_pb2.Resource]:
        """Returns protobuf Resource messages; ``allocation_role`` sets allocation_info.role."""
        from mensa.proto import mensa_pb2

        out: list[mensa_pb2.Resource] = []
        Type = mensa_pb2.Value

        def base(name: str, role: str, type_: mensa_pb2.Value.Type) -> mensa_pb2.Resource:
            r = mensa_pb2.Resource(name=name, type=type_)
            if role != UNRESERVED:
                res = r.reservations.add()
                res.type = mensa_pb2.Resource.ReservationInfo.STATIC
                res.role = role
            if allocation_role is not None:
                r.allocation_info.role = allocation_role
            return r

        for (name, role), milli in sorted(self._scalars.items()):
            r = base(name, role, Type.SCALAR)
            r.scalar.value = milli / MILLI
            out.append(r)
        for (name, role), intervals in sorted(self._ranges.items()):
            r = base(name, role, Type.RANGES)
            for b, e in intervals:
                r.ranges.range.add(begin=b, end=e)
            out.append(r)
        for (name, role), items in sorted(self._sets.items()):
            r = base(name, role, Type.SET)
            r.set.item.extend(sorted(items))
            out.append(r)
        return out

    def to_json(self) -> dict[str, float | str]:
        """Returns the Mesos /state shape: ``{"cpus": 4.0, "mem": 4096.0, "ports": "[1-2]"}``.

        Roles are summed; the four common scalars are always present.
        """
        out: dict[str, float | str] = {n: 0.0 for n in SCALAR_NAMES}
        for (name, _role), milli in self._scalars.items():
            out[name] = float(out.get(name, 0.0)) + milli / MILLI
        merged: dict[str, list[Interval]] = {}
        for (name, _role), intervals in self._ranges.items():
            merged.setdefault(name, []).extend(intervals)
        for name, merged_intervals in merged.items():
            out[name] = format_ranges(_normalize(merged_intervals))
        sets: dict[str, set[str]] = {}
        for (name, _role), members in self._sets.items():
            sets.setdefault(name, set()).update(members)
        for name, merged_items in sets.items():
            out[name] = "{" + ",".join(sorted(merged_items)) + "}"
        return out

    def __str__(self) -> str:
        parts: list[str] = []

        def head(name: str, role: str) -> str:
            return name if role == UNRESERVED else f"{name}({role})"

        for (name, role), milli in sorted(self._scalars.items()):
            parts.append(f"{head(name, role)}:{_fmt_scalar(milli)}")
        for (name, role), intervals in sorted(self._ranges.items()):
            parts.append(f"{head(name, role)}:{format_ranges(intervals)}")
        for (name, role), items in sorted(self._sets.items()):
            parts.append(f"{head(name, role)}:{{{','.join(sorted(items))}}}")
        return ";".join(parts)

    # -- queries ------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return not (self._scalars or self._ranges or self._sets)

    def __bool__(self) -> bool:
        return not self.is_empty()

    def scalar(self, name: str) -> float:
        """Returns the total of scalar ``name`` across roles (0.0 when absent)."""
        return sum(v for (n, _r), v in self._scalars.items() if n == name) / MILLI

    def scalar_totals(self) -> dict[str, float]:
        """Returns every scalar summed across roles, e.g. ``{"cpus": 4.0, "mem": 4096.0}``."""
        out: dict[str, float] = {}
        for (name, _role), milli in self._scalars.items():
            out[name] = out.get(name, 0.0) + milli / MILLI
        return out

    def ranges(self, name: str) -> tuple[Interval, ...]:
        """Returns the merged intervals of range resource ``name`` across roles."""
        merged: list[Interval] = []
        for (n, _r), intervals in self._ranges.items():
            if n == name:
                merged.extend(intervals)
        return _normalize(merged)

    def roles(self) -> set[str]:
        return {r for (_n, r) in self._keys()}

    def keys(self) -> set[tuple[str, str]]:
        """The (name, role) pairs present, e.g. {("cpus", "*"), ("cpus", "ml")}."""
        return set(self._keys())

    def _keys(self) -> Iterator[Key]:
        yield from self._scalars
        yield from self._ranges
        yield from self._sets

    def filter_roles(self, roles: Iterable[str]) -> Resources:
        """Returns only the resources whose role is one of ``roles``."""
        keep = set(roles)
        return Resources(
            {k: v for k, v in self._scalars.items() if k[1] in keep},
            {k: v for k, v in self._ranges.items() if k[1] in keep},
            {k: v for k, v in self._sets.items() if k[1] in keep},
        )

    def unreserved(self) -> Resources:
        return self.filter_roles((UNRESERVED,))

    def reserved(self) -> Resources:
        """Returns the resources reserved for some role (everything but ``*``)."""
        return Resources(
            {k: v for k, v in self._scalars.items() if k[1] != UNRESERVED},
            {k: v for k, v in self._ranges.items() if k[1] != UNRESERVED},
            {k: v for k, v in self._sets.items() if k[1] != UNRESERVED},
        )

    def with_role(self, role: str) -> Resources:
        """Returns the same resources, all carrying ``role`` (``*``: unreserved).

        This is what a RESERVE (to a role) or UNRESERVE (to ``*``) does to them. Raises
        ResourceError when ``role`` is not a valid role name.
        """
        if role != UNRESERVED and not _ROLE_RE.match(role):
            raise ResourceError(f"role {role!r} is not a valid role name")
        scalars: dict[Key, int] = {}
        for (name, _role), milli in self._scalars.items():
            scalars[(name, role)] = scalars.get((name, role), 0) + milli
        ranges: dict[Key, list[Interval]] = {}
        for (name, _role), intervals in self._ranges.items():
            ranges.setdefault((name, role), []).extend(intervals)
        sets: dict[Key, frozenset[str]] = {}
        for (name, _role), items in self._sets.items():
            sets[(name, role)] = sets.get((name, role), frozenset()) | items
        return Resources(scalars, {k: _normalize(v) for k, v in ranges.items()}, sets)

    def quantities(self) -> dict[str, int]:
        """Returns every scalar summed across roles, in exact thousandths."""
        out: dict[str, int] = {}
        for (name, _role), milli in self._scalars.items():
            out[name] = out.get(name, 0) + milli
        return out

    def is_scalar_only(self) -> bool:
        """True when there are no range (ports) or set resources."""
        return not (self._ranges or self._sets)

    def contains(self, other: Resources) -> bool:
        """True when ``other`` fits inside this bag, role by role."""
        for key, milli in other._scalars.items():
            if self._scalars.get(key, 0) < milli:
                return False
        for key, intervals in other._ranges.items():
            if not _ranges_contain(self._ranges.get(key, ()), intervals):
                return False
        return all(items <= self._sets.get(key, frozenset()) for key, items in other._sets.items())

    # -- arithmetic ---------------------------------------------------------------------------

    def __add__(self, other: Resources) -> Resources:
        if other.is_empty():
            return self
        if self.is_empty():
            return other
        scalars = dict(self._scalars)
        for key, milli in other._scalars.items():
            scalars[key] = scalars.get(key, 0) + milli
        ranges = dict(self._ranges)
        for key, intervals in other._ranges.items():
            ranges[key] = _normalize(ranges.get(key, ()) + intervals)
        sets = dict(self._sets)
        for key, items in other._sets.items():
            sets[key] = sets.get(key, frozenset()) | items
        return Resources(scalars, ranges, sets)

    def __sub__(self, other: Resources) -> Resources:
        """Removes what ``other`` holds; what this bag lacks is ignored (floors at zero)."""
        if other.is_empty() or self.is_empty():
            return self
        scalars = dict(self._scalars)
        for key, milli in other._scalars.items():
            if key in scalars:
                scalars[key] -= milli
        ranges = dict(self._ranges)
        for key, intervals in other._ranges.items():
            if key in ranges:
                ranges[key] = _ranges_subtract(ranges[key], intervals)
        sets = dict(self._sets)
        for key, items in other._sets.items():
            if key in sets:
                sets[key] = sets[key] - items
        return Resources._make(scalars, ranges, sets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return (
            dict(self._scalars) == dict(other._scalars)
            and dict(self._ranges) == dict(other._ranges)
            and dict(self._sets) == dict(other._sets)
        )

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"Resources({str(self)!r})"

    def range_count(self, name: str) -> int:
        """Returns how many values range resource ``name`` holds (e.g. how many ports)."""
        return _ranges_size(self.ranges(name))


def role_of(resource: mensa_pb2.Resource) -> str:
    """Returns the role a protobuf resource is reserved for, or ``"*"``."""
    if len(resource.reservations):
        return resource.reservations[-1].role or UNRESERVED
    return resource.role or UNRESERVED


def _check_name_role(name: str, role: str) -> None:
    if not name or not _NAME_RE.match(name):
        raise ResourceError(f"resource name {name!r} is empty or has characters outside [a-zA-Z0-9_.-]")
    if role != UNRESERVED and not _ROLE_RE.match(role):
        raise ResourceError(f"resource {name!r}: role {role!r} is not a valid role name")


def _fmt_scalar(milli: int) -> str:
    whole, frac = divmod(milli, MILLI)
    return str(whole) if frac == 0 else f"{milli / MILLI:g}"


_EMPTY = Resources({}, {}, {})
