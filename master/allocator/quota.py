"""Quota: per-role guarantees and limits on scalar resources (Mesos semantics). Pure.

A role's *guarantee* is what it is offered first, before anyone's fair share, and what others'
allocations may not eat into while it is unmet (the *headroom*: enough unreserved resources are
kept free in the cluster to meet every unmet guarantee). Its *limit* is never exceeded by what
the role and its sub-roles hold. Both count what the role and its sub-roles hold, reserved or
not. Scalars only, unreserved, like Mesos.

Usage::

    q = check_quota("ml", Resources.parse("cpus:4"), Resources.parse("cpus:8;mem:8192"))
    unmet(q, {"cpus": 1000})   # {"cpus": 3000}: thousandths still owed to ml
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mensa.proto.resources import MILLI, UNRESERVED, Resources

from .roles import check_role


@dataclass(frozen=True, slots=True)
class Quota:
    """A role's quota: ``guarantee`` offered first; never more than ``limit`` (None: no limit)."""

    guarantee: Resources
    limit: Resources | None = None
    # Names limited to zero (``Resources`` holds no zero amounts): the role gets none of them.
    zero_limits: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, object]:
        """Returns ``{"guarantee": {...}, "limit": {...} | None}`` (scalars only)."""
        limit = None
        if self.limit is not None or self.zero_limits:
            limit = {**dict.fromkeys(sorted(self.zero_limits), 0.0),
                     **(self.limit.scalar_totals() if self.limit is not None else {})}
        return {"guarantee": self.guarantee.scalar_totals(), "limit": limit}


def check_quota(role: str, guarantee: Resources, limit: Resources | None,
                zero_limits: frozenset[str] = frozenset()) -> Quota:
    """Returns the Quota when valid; else raises ValueError saying what is wrong.

    Valid: a valid role other than ``*``; guarantee and limit unreserved scalars; the limit at
    least the guarantee for every name both give.
    """
    check_role(role)
    for what, resources in (("guarantee", guarantee), ("limit", limit)):
        if resources is None:
            continue
        if not isinstance(resources, Resources):
            raise TypeError(f"quota {what} for {role!r} must be Resources, got {resources!r}")
        if not resources.is_scalar_only():
            raise ValueError(f"quota {what} for {role!r} must be scalars only, got {resources}")
        if not resources.roles() <= {UNRESERVED}:
            raise ValueError(f"quota {what} for {role!r} must be unreserved, got {resources}")
    owed = sorted(n for n in zero_limits if guarantee.quantities().get(n, 0) > 0)
    if owed:
        raise ValueError(f"quota for {role!r}: a limit of 0 is below the guarantee for {', '.join(owed)}")
    if limit is not None:
        floor = guarantee.quantities()
        cap = limit.quantities()
        below = sorted(n for n, v in floor.items() if n in cap and cap[n] < v)
        if below:
            raise ValueError(
                f"quota for {role!r}: limit {limit} is below the guarantee {guarantee} for "
                + ", ".join(below))
    return Quota(guarantee, limit, frozenset(zero_limits))


def unmet(quota: Quota, consumed: Mapping[str, int]) -> dict[str, int]:
    """Returns what the guarantee still lacks given ``consumed``, per name, in thousandths."""
    out: dict[str, int] = {}
    for name, milli in quota.guarantee.quantities().items():
        left = milli - consumed.get(name, 0)
        if left > 0:
            out[name] = left
    return out


def room(quota: Quota, consumed: Mapping[str, int]) -> dict[str, int] | None:
    """Returns how much more the limit allows, per limited name in thousandths (None: no limit)."""
    if quota.limit is None and not quota.zero_limits:
        return None
    out = dict.fromkeys(quota.zero_limits, 0)
    if quota.limit is not None:
        out.update({name: max(0, milli - consumed.get(name, 0))
                    for name, milli in quota.limit.quantities().items()})
    return out


def clip(offer: Resources, caps: Mapping[str, int]) -> Resources:
    """Returns ``offer`` with each capped scalar name cut down to ``caps[name]`` thousandths.

    Unreserved amounts are cut first, then reserved ones. Names without a cap are untouched.
    """
    have = offer.quantities()
    cut = offer
    for name, cap in caps.items():
        excess = have.get(name, 0) - cap
        if excess <= 0:
            continue
        for role in sorted(offer.roles(), key=lambda r: r != UNRESERVED):
            part = offer.filter_roles((role,)).quantities().get(name, 0)
            take = min(part, excess)
            if take > 0:
                cut = cut - Resources.scalars(role, **{name: take / MILLI})
                excess -= take
            if excess <= 0:
                break
    return cut
