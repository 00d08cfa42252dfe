"""What any framework reads from offers, and how it takes resources from them (pure).

``OfferView`` reads what placement needs from an Offer once (hostname, attributes as strings,
free resources, the role it was allocated to). ``attribute_strings`` renders agent attributes
as text, ``equal_values`` compares an expected value with an attribute (numbers as numbers),
``regex`` caches compiled patterns, and ``carve`` takes scalar amounts out of an offer,
reserved resources (for the offer's role) first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mensa.proto import mensa_pb2
from mensa.proto.resources import UNRESERVED, ResourceError, Resources


@dataclass(frozen=True, slots=True)
class OfferView:
    """What placement reads from an offer (or remembers of an agent's latest offer)."""

    agent_id: str
    hostname: str
    attributes: tuple[tuple[str, str], ...]
    free: Resources
    role: str | None  # the role the offer was allocated to (allocation_info), if any

    @staticmethod
    def of(offer: mensa_pb2.Offer) -> OfferView:
        """Reads an offer; raises ResourceError when its resources are malformed."""
        role = offer.allocation_info.role if offer.HasField("allocation_info") else None
        return OfferView(offer.agent_id.value, offer.hostname, attribute_strings(offer.attributes),
                         Resources.from_proto(offer.resources), role or None)

    def attribute(self, name: str) -> str | None:
        if name == "hostname":
            return self.hostname
        for key, value in self.attributes:
            if key == name:
                return value
        return None


def fmt_number(value: float) -> str:
    """A number as text, exactly and without a needless ".0": "3", "2.5", "0.1234567" (agent
    attributes for constraints; seconds and amounts in the reasons the API shows)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def attribute_strings(attributes: Iterable[mensa_pb2.Attribute]) -> tuple[tuple[str, str], ...]:
    """Agent attributes as (name, text): text as is, scalars as numbers ("3", "2.5"), ranges as
    "[1-2,5-6]", sets as "{a,b}"."""
    out: list[tuple[str, str]] = []
    for a in attributes:
        if a.type == mensa_pb2.Value.SCALAR:
            out.append((a.name, fmt_number(a.scalar.value)))
        elif a.type == mensa_pb2.Value.RANGES:
            out.append((a.name, "[" + ",".join(f"{r.begin}-{r.end}" for r in a.ranges.range) + "]"))
        elif a.type == mensa_pb2.Value.SET:
            out.append((a.name, "{" + ",".join(a.set.item) + "}"))
        else:
            out.append((a.name, a.text.value))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def regex(pattern: str) -> re.Pattern[str]:
    """The compiled pattern (cached)."""
    return re.compile(pattern)


def equal_values(expected: str, actual: str) -> bool:
    """True when ``actual`` is ``expected``, as text or as numbers ("2" equals "2.0")."""
    if expected == actual:
        return True
    try:
        return float(expected) == float(actual)
    except ValueError:
        return False


def carve(free: Resources, need: dict[str, float]) -> Resources | None:
    """Returns the resources a task needing ``need`` takes from ``free`` (reserved roles first,
    then unreserved), or None when they do not fit."""
    taken = Resources.empty()
    roles = sorted(free.roles(), key=lambda r: (r == UNRESERVED, r))
    for name, amount in need.items():
        left = round(amount * 1000)
        for role in roles:
            if left <= 0:
                break
            have = round(free.filter_roles((role,)).scalar(name) * 1000)
            use = min(left, have)
            if use > 0:
                try:
                    taken = taken + Resources.scalars(role=role, **{name: use / 1000})
                except ResourceError:
                    return None
                left -= use
        if left > 0:
            return None
    return taken
