"""Timings and counters the master observes, for /metrics and /metrics/snapshot (pure).

The shell times allocation passes (it owns the clock); the state observes offer-to-accept and
launch-to-running latencies from the timestamps it already keeps, and counts tasks as they reach
a terminal state (completed tasks are kept only in bounded numbers, so their totals live here).

Each timing is a ``Histogram``: Prometheus-style buckets over every observation since election,
plus a bounded window of the most recent samples from which ``timer_json`` derives Mesos's timer
form (``.../allocation_run_ms``, ``/count``, ``/min``, ``/max``, ``/p50`` ... ``/p9999``).

Usage::

    metrics = MasterMetrics()
    metrics.allocation.observe(0.004)
    timer_json("allocator/mesos/allocation_run_ms", metrics.allocation)
    # {"allocator/mesos/allocation_run_ms": 4.0, ".../count": 1, ".../p50": 4.0, ...}
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from mensa.proto import internal_pb2, scheduler_pb2

Call = scheduler_pb2.Call
_CALL_TYPES = frozenset(Call.Type.values())

# Seconds: from 100 us to a minute, roughly x2.5 per step.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# How many recent samples a timer keeps for its percentiles (Mesos keeps a similar window).
WINDOW = 1000
# Mesos's timer percentiles: suffix -> quantile.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999), ("p9999", 0.9999),
)


@dataclass(slots=True)
class Histogram:
    """A histogram of observations (seconds), and a window of the most recent ones.

    ``counts[i]`` counts the observations in bucket ``i``: above ``buckets[i-1]`` and at most
    ``buckets[i]``; the last count is the implicit +Inf bucket. ``cumulative()`` gives the
    Prometheus form. ``recent`` holds the last ``WINDOW`` observations, oldest first.
    """

    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        """Records one observation; negative ones (a clock stepped back) count as zero."""
        value = max(0.0, value)
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.count += 1
        self.total += value
        self.recent.append(value)

    @property
    def last(self) -> float | None:
        """The latest observation, or None before the first."""
        return self.recent[-1] if self.recent else None

    def cumulative(self) -> list[tuple[float, int]]:
        """Returns ``(upper bound, observations at most that)`` per bucket, ending with +Inf."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.buckets, math.inf), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def percentile(ordered: list[float], q: float) -> float:
    """Returns the ``q`` quantile (0..1) of sorted, non-empty ``ordered``, interpolating linearly
    between the two nearest ranks (as Mesos's statistics do)."""
    if not ordered:
        raise ValueError("percentile of no samples")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def timer_json(name: str, histogram: Histogram, scale: float = 1000.0) -> dict[str, float]:
    """Returns Mesos's timer metrics for ``histogram`` under ``name``: the latest value, and the
    ``/count``, ``/min``, ``/max`` and percentiles of the recent window, in seconds times ``scale``
    (milliseconds by default). Nothing but ``/count`` (0) before the first observation."""
    if not histogram.recent:
        return {f"{name}/count": 0}
    ordered = sorted(v * scale for v in histogram.recent)
    out = {
        name: histogram.recent[-1] * scale,
        f"{name}/count": len(ordered),
        f"{name}/min": ordered[0],
        f"{name}/max": ordered[-1],
    }
    for suffix, q in PERCENTILES:
        out[f"{name}/{suffix}"] = percentile(ordered, q)
    return out


def message_kind(envelope: internal_pb2.Envelope) -> str:
    """Returns the kind of a received message for counting: the envelope's field name
    (``status_update``, ``register_agent``, ...) or ``call:TYPE`` for a scheduler call; unknown
    call types count as ``call:UNKNOWN`` so the set of kinds stays bounded."""
    kind = envelope.WhichOneof("message")
    if kind != "call":
        return kind or "empty"
    call_type = envelope.call.type
    return f"call:{Call.Type.Name(call_type) if call_type in _CALL_TYPES else 'UNKNOWN'}"


@dataclass(slots=True)
class MasterMetrics:
    """The master's latency histograms (seconds) and the counters its records cannot give back.

    ``tasks_completed`` counts, by lower-case state name (``finished``, ``failed``, ``killed``,
    ``lost``, ``error``, ``dropped``, ``unreachable``, ``gone``), the tasks that reached that
    state since election. ``messages`` counts received messages by kind (``call:ACCEPT``,
    ``status_update``, ``register_agent``, ...).
    """

    allocation: Histogram = field(default_factory=Histogram)
    offer_to_accept: Histogram = field(default_factory=Histogram)
    launch_to_running: Histogram = field(default_factory=Histogram)
    tasks_completed: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)

    def task_completed(self, state_name: str) -> None:
        """Counts a task that reached ``state_name`` (e.g. ``TASK_FINISHED`` or ``finished``)."""
        key = state_name.lower().removeprefix("task_")
        self.tasks_completed[key] = self.tasks_completed.get(key, 0) + 1

    def message_received(self, kind: str) -> None:
        """Counts one received message of ``kind`` (the caller keeps kinds bounded)."""
        self.messages[kind] = self.messages.get(kind, 0) + 1
