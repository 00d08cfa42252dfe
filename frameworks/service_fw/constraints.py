"""Marathon placement constraints: may this agent take one more instance of the app? (pure)

A constraint is ``[field, OPERATOR, value]`` where the field is ``hostname`` or an agent
attribute (read as text by ``frameworks.placement.OfferView.attribute``: scalars as numbers,
ranges as ``[b-e,...]``, sets as ``{a,b}``). What the app's other *active* instances already
occupy is given as ``Placement`` records (the hostname and attributes of their agents).

Operators, as Marathon applies them:

* ``UNIQUE``: no other instance has the agent's value of the field.
* ``CLUSTER value``: the agent's value equals ``value``. Without a value, every instance goes
  where the first went: the agent's value must equal the first placed instance's.
* ``GROUP_BY [n]``: spread evenly. A value no instance has yet is always accepted; a value
  already in use only when its count is the smallest among the values in use and (with ``n``)
  at least ``n`` distinct values are in use, so the first ``n`` instances go to ``n`` distinct
  values. Values are only known from where instances run: give ``n`` to spread over values not
  yet seen.
* ``LIKE regex`` / ``UNLIKE regex``: the value fully matches (does not match) the regex.
* ``MAX_PER n``: fewer than ``n`` instances already have the agent's value.
* ``IS value``: the value equals ``value`` (numbers compare as numbers: "2" is "2.0").

An agent without the field fails every operator but ``UNLIKE``, which accepts it.

``constraint_problem`` answers for one agent; ``Tally`` answers many times in a row as
instances are added (what matching uses: each check is O(1) in the number of instances).

Usage::

    placed = [Placement("h1", (("rack", "r1"),))]
    constraint_problem([Constraint("hostname", "UNIQUE")], view, placed)  # None or the reason
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mensa.frameworks.placement import OfferView, equal_values, regex
from mensa.frameworks.service_fw.apps import Constraint

__all__ = ["Located", "Placement", "Tally", "constraint_problem", "field_value"]


class Located(Protocol):
    """Anything that says where an instance runs (``Placement``, ``Instance``)."""

    @property
    def hostname(self) -> str: ...

    @property
    def attributes(self) -> tuple[tuple[str, str], ...]: ...


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one of the app's active instances runs: its agent's hostname and attributes."""

    hostname: str
    attributes: tuple[tuple[str, str], ...] = ()


def field_value(where: Located | OfferView, name: str) -> str | None:
    """The value of constraint field ``name`` (``hostname`` or an attribute), None if absent."""
    if name == "hostname":
        return where.hostname
    for key, value in where.attributes:
        if key == name:
            return value
    return None


@dataclass(slots=True)
class _Counts:
    """What the placed instances hold for one constraint's field."""

    constraint: Constraint
    counts: dict[str, int] = field(default_factory=dict)
    first: str | None = None  # the value of the first placed instance that has the field

    def add(self, value: str | None) -> None:
        if value is None:
            return
        if self.first is None:
            self.first = value
        self.counts[value] = self.counts.get(value, 0) + 1

    def problem(self, actual: str | None) -> str | None:
        c = self.constraint
        op, expected = c.operator, c.value
        if op == "UNLIKE":
            if actual is None or expected is None or regex(expected).fullmatch(actual) is None:
                return None
            return f"constraint [{c}] not met: {c.field} {actual!r} matches {expected!r}"
        if actual is None:
            return f"constraint [{c}] not met: the agent has no attribute {c.field!r}"
        count = self.counts.get(actual, 0)
        if op == "UNIQUE":
            if count == 0:
                return None
            return f"constraint [{c}] not met: an instance already runs on {c.field} {actual!r}"
        if op == "CLUSTER":
            target = expected if expected is not None else self.first
            if target is None or equal_values(target, actual):
                return None
            return f"constraint [{c}] not met: {c.field} is {actual!r}, instances go to {target!r}"
        if op == "GROUP_BY":
            return self._group_by(actual, count)
        if op == "LIKE":
            if expected is not None and regex(expected).fullmatch(actual) is not None:
                return None
            return f"constraint [{c}] not met: {c.field} {actual!r} does not match {expected!r}"
        if op == "MAX_PER":
            limit = int(expected) if expected is not None else 1
            if count < limit:
                return None
            return (f"constraint [{c}] not met: {count} instance(s) already run on "
                    f"{c.field} {actual!r} (at most {limit})")
        if op == "IS":
            if expected is not None and equal_values(expected, actual):
                return None
            return f"constraint [{c}] not met: {c.field} is {actual!r}, not {expected!r}"
        return f"constraint [{c}]: unknown operator {op!r}"

    def _group_by(self, actual: str, count: int) -> str | None:
        c = self.constraint
        if count == 0:
            return None
        expected = int(c.value) if c.value is not None else 0
        seen = len(self.counts)
        if seen < expected:
            return (f"constraint [{c}] not met: {c.field} {actual!r} already has {count} instance(s) "
                    f"and only {seen} of {expected} values are in use")
        least = min(self.counts.values())
        if count == least:
            return None
        return (f"constraint [{c}] not met: {c.field} {actual!r} has {count} instance(s), "
                f"another value has {least}")


class Tally:
    """The constraints of one app with what its placed instances hold: ``problem(view)`` says
    whether the agent may take one more instance, ``add(view)`` records one placed there.
    Building it is O(instances x constraints); each ``problem``/``add`` is O(constraints)
    (GROUP_BY: also O(values in use))."""

    __slots__ = ("_fields",)

    def __init__(self, constraints: Iterable[Constraint], placed: Iterable[Located]) -> None:
        self._fields = [_Counts(c) for c in constraints]
        if self._fields:
            for where in placed:
                self.add(where)

    def problem(self, view: OfferView) -> str | None:
        """None when the agent of ``view`` satisfies every constraint, else the first reason."""
        for counts in self._fields:
            reason = counts.problem(field_value(view, counts.constraint.field))
            if reason is not None:
                return reason
        return None

    def add(self, where: Located | OfferView) -> None:
        """Records one more instance placed at ``where``."""
        for counts in self._fields:
            counts.add(field_value(where, counts.constraint.field))


def constraint_problem(constraints: Sequence[Constraint], view: OfferView,
                       placed: Sequence[Located]) -> str | None:
    """Returns None when the offer's agent may take one more instance of an app with
    ``constraints`` whose active instances run at ``placed``; else a reason naming the first
    constraint not met."""
    if not constraints:
        return None
    return Tally(constraints, placed).problem(view)
