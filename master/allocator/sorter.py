"""DRFSorter: orders clients by weighted Dominant Resource Fairness. A plain data structure.

A *client* is whoever resources are allocated to (a framework within a role, or a role within
the cluster). The sorter holds each client's allocation per agent and the *total* pool the
shares are computed against, and answers one question: in which order should the active
clients be offered resources? (Ghodsi et al., "Dominant Resource Fairness", NSDI 2011; Mesos's
``DRFSorter``.)

A client's *share* is its dominant share divided by its weight: the largest, over every scalar
resource name with a non-zero total, of ``allocated[name] / total[name]``. Ranges (ports) and
sets are ignored, as are names with a zero total. Roles of the resources are summed: the sorter
compares quantities, not reservations.

Cost: shares are cached and the active clients are kept in a sorted list, so ``allocated`` /
``unallocated`` cost O(resource names + log clients) (plus a list move); a change of the total
invalidates every share, which are then recomputed once, lazily, by the next ``sort``.

Usage::

    sorter = DRFSorter()
    sorter.add_total(Resources.parse("cpus:10;mem:100"))
    sorter.add("a")
    sorter.add("b")
    sorter.allocated("a", "agent-1", Resources.parse("cpus:5;mem:5"))  # a: share .5
    assert sorter.sort() == ["b", "a"]                                 # b: share 0
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from mensa.proto.resources import MILLI, Resources

# (weighted dominant share, allocated scalar sum in thousandths, client id): the sort key.
_Key = tuple[float, int, str]


def _milli(resources: Resources) -> dict[str, int]:
    """Returns the scalars of ``resources`` summed across roles, in exact thousandths."""
    return resources.quantities()


@dataclass(slots=True)
class _Client:
    weight: float
    active: bool
    allocation: dict[str, Resources] = field(default_factory=dict)  # agent id -> resources
    scalars: dict[str, int] = field(default_factory=dict)  # name -> allocated thousandths
    key: _Key | None = None  # the entry in DRFSorter._order while active and not stale


class DRFSorter:
    """Clients, their weights and allocations, and the total they are measured against.

    Misuse (an unknown client, a client added twice, a weight that is not a positive finite
    number) raises KeyError, ValueError or TypeError: the caller owns the bookkeeping.
    """

    __slots__ = ("_active", "_clients", "_order", "_stale", "_total")

    def __init__(self, total: Mapping[str, float] | None = None) -> None:
        """Starts with no clients and ``total`` (scalar name -> amount, e.g. another sorter's
        ``totals()``) as the pool."""
        self._clients: dict[str, _Client] = {}
        self._total: dict[str, int] = {}  # name -> thousandths
        for name, value in (total or {}).items():
            milli = round(value * MILLI)
            if milli > 0:
                self._total[name] = milli
        self._order: list[_Key] = []  # keys of the active clients, ascending
        self._stale = False  # the total changed: every key must be recomputed
        self._active = 0  # how many clients are active

    # -- clients ------------------------------------------------------------------------------

    def add(self, client: str, weight: float = 1.0, *, active: bool = True) -> None:
        """Adds a client with no allocation; it takes part in ``sort`` while active."""
        if client in self._clients:
            raise ValueError(f"sorter client {client!r} already exists")
        c = _Client(weight=_check_weight(weight), active=False)
        self._clients[client] = c
        if active:
            self.activate(client)

    def remove(self, client: str) -> None:
        """Removes a client and forgets its allocations (the total is not changed)."""
        self.deactivate(client)
        del self._clients[client]

    def activate(self, client: str) -> None:
        """Makes a client take part in ``sort`` again. Idempotent."""
        c = self._clients[client]
        if c.active:
            return
        c.active = True
        self._active += 1
        if not self._stale:
            self._insert(client, c)

    def deactivate(self, client: str) -> None:
        """Takes a client out of ``sort``; its allocations stay counted. Idempotent."""
        c = self._clients[client]
        if not c.active:
            return
        c.active = False
        self._active -= 1
        if c.key is not None:
            self._discard(c)

    def update_weight(self, client: str, weight: float) -> None:
        """Sets a client's weight: a client of weight 2 is entitled to twice the share."""
        c = self._clients[client]
        c.weight = _check_weight(weight)
        self._reposition(client, c)

    def __contains__(self, client: object) -> bool:
        return client in self._clients

    def __len__(self) -> int:
        return len(self._clients)

    def clients(self) -> list[str]:
        """Returns every client, active or not, in the order they were added."""
        return list(self._clients)

    def is_active(self, client: str) -> bool:
        return self._clients[client].active

    # -- allocations --------------------------------------------------------------------------

    def allocated(self, client: str, agent_id: str, resources: Resources) -> None:
        """Records ``resources`` on ``agent_id`` as allocated to ``client`` (adds to it)."""
        if resources.is_empty():
            return
        c = self._clients[client]
        before = c.allocation.get(agent_id)
        c.allocation[agent_id] = resources if before is None else before + resources
        for name, milli in _milli(resources).items():
            c.scalars[name] = c.scalars.get(name, 0) + milli
        self._reposition(client, c)

    def unallocated(self, client: str, agent_id: str, resources: Resources) -> None:
        """Takes ``resources`` on ``agent_id`` off ``client``'s allocation.

        Only what is allocated is taken off: the rest of ``resources`` is ignored.
        """
        c = self._clients[client]
        before = c.allocation.get(agent_id)
        if before is None or resources.is_empty():
            return
        after = before - resources
        if after.is_empty():
            del c.allocation[agent_id]
        else:
            c.allocation[agent_id] = after
        for name, milli in _milli(before - after).items():
            left = c.scalars.get(name, 0) - milli
            if left > 0:
                c.scalars[name] = left
            else:
                c.scalars.pop(name, None)
        self._reposition(client, c)

    def allocation(self, client: str) -> dict[str, Resources]:
        """Returns ``client``'s allocation per agent id (a copy)."""
        return dict(self._clients[client].allocation)

    def scalars(self, client: str) -> dict[str, int]:
        """Returns ``client``'s allocated scalars summed across roles, in thousandths (a copy)."""
        return dict(self._clients[client].scalars)

    def active_count(self) -> int:
        """Returns how many clients are active."""
        return self._active

    def allocation_on(self, client: str, agent_id: str) -> Resources:
        """Returns what ``client`` is allocated on ``agent_id`` (empty when nothing)."""
        return self._clients[client].allocation.get(agent_id, Resources.empty())

    # -- the pool -----------------------------------------------------------------------------

    def add_total(self, resources: Resources) -> None:
        """Adds ``resources`` (e.g. a new agent's) to the pool shares are computed against."""
        for name, milli in _milli(resources).items():
            if milli:
                self._total[name] = self._total.get(name, 0) + milli
                self._invalidate()

    def remove_total(self, resources: Resources) -> None:
        """Takes ``resources`` out of the pool (floors at zero)."""
        for name, milli in _milli(resources).items():
            if milli and name in self._total:
                left = self._total[name] - milli
                if left > 0:
                    self._total[name] = left
                else:
                    del self._total[name]
                self._invalidate()

    def totals(self) -> dict[str, float]:
        """Returns the pool's scalars, e.g. ``{"cpus": 10.0, "mem": 100.0}``."""
        return {name: milli / MILLI for name, milli in self._total.items()}

    # -- the answer ---------------------------------------------------------------------------

    def share(self, client: str) -> float:
        """Returns ``client``'s weighted dominant share, in [0, 1/weight]."""
        c = self._clients[client]
        if c.key is not None and not self._stale:
            return c.key[0]
        return self._share(c)

    def sort(self) -> list[str]:
        """Returns the active clients in the order they should be allocated to.

        Ascending weighted dominant share; ties go to the client with the smaller sum of
        allocated scalars, then to the smaller client id, so the order is deterministic.
        """
        if self._stale:
            self._rebuild()
        return [key[2] for key in self._order]

    def iter_sorted(self) -> Iterator[str]:
        """Yields what ``sort`` returns, lazily: cheap when the caller stops at the first few.

        The sorter must not be changed while the iterator is resumed; stop iterating first.
        """
        if self._stale:
            self._rebuild()
        for key in self._order:
            yield key[2]

    # -- internals ----------------------------------------------------------------------------

    def _share(self, c: _Client) -> float:
        dominant = 0.0
        total = self._total
        for name, milli in c.scalars.items():
            pool = total.get(name, 0)
            if pool > 0:
                ratio = milli / pool
                dominant = max(dominant, ratio)
        return dominant / c.weight

    def _key(self, client: str, c: _Client) -> _Key:
        return (self._share(c), sum(c.scalars.values()), client)

    def _insert(self, client: str, c: _Client) -> None:
        c.key = self._key(client, c)
        bisect.insort(self._order, c.key)

    def _discard(self, c: _Client) -> None:
        assert c.key is not None
        i = bisect.bisect_left(self._order, c.key)
        del self._order[i]
        c.key = None

    def _reposition(self, client: str, c: _Client) -> None:
        if self._stale or not c.active:
            return  # recomputed by the next _rebuild / activate
        if c.key is not None:
            self._discard(c)
        self._insert(client, c)

    def _invalidate(self) -> None:
        if not self._stale:
            self._stale = True
            self._order.clear()
            for c in self._clients.values():
                c.key = None

    def _rebuild(self) -> None:
        order: list[_Key] = []
        for client, c in self._clients.items():
            if c.active:
                c.key = self._key(client, c)
                order.append(c.key)
        order.sort()
        self._order = order
        self._stale = False


def _check_weight(weight: float) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f"weight must be a number, got {weight!r}")
    if not math.isfinite(weight) or weight <= 0:
        raise ValueError(f"weight must be a positive finite number, got {weight}")
    return float(weight)
