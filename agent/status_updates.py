"""Reliable status updates: one ordered stream per task, retried until acknowledged.

Every update the agent generates for a task joins that task's stream. Only the oldest
unacknowledged update of a stream (its *head*) is in flight: it is due at once, then due again
after ``min_interval`` seconds, doubling up to ``max_interval``, until the master acknowledges
its uuid. An acknowledgement pops the head and makes the next update due immediately. An
acknowledgement for any other uuid (a duplicate or a stale one) changes nothing. Updates are
never dropped before they are acknowledged, except when the whole framework is shut down
(``discard_framework``) or the agent is told to shut down (``discard_all``).

Pure: no clock reads (``now`` is passed in), no I/O.

Usage::

    updates = StatusUpdateManager(min_interval=1.0, max_interval=60.0)
    updates.enqueue("fw-1", "task-1", status, now=0.0)
    for pending in updates.due(now=0.0):     # the head of each stream that is due
        send(pending.status)
    updates.acknowledge("fw-1", "task-1", status.uuid, now=0.2)
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from mensa.proto import mensa_pb2

TaskKey = tuple[str, str]  # (framework_id, task_id)


class Ack(enum.Enum):
    """What an acknowledgement did."""

    ACCEPTED = "accepted"  # It matched the head, which was popped.
    STALE = "stale"  # A duplicate or out-of-order uuid: ignored.
    UNKNOWN = "unknown"  # No pending update for that task: ignored.


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """A status update waiting for its acknowledgement; ``attempts`` counts sends so far."""

    framework_id: str
    task_id: str
    status: mensa_pb2.TaskStatus
    attempts: int


@dataclass(slots=True)
class _Stream:
    updates: deque[mensa_pb2.TaskStatus] = field(default_factory=deque)
    next_send: float = 0.0  # When the head is next due.
    attempts: int = 0  # Sends of the current head.


class StatusUpdateManager:
    """Per-task ordered streams of status updates with retry and acknowledgement."""

    def __init__(self, min_interval: float = 1.0, max_interval: float = 60.0) -> None:
        if min_interval <= 0 or max_interval < min_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._streams: dict[TaskKey, _Stream] = {}

    def enqueue(
        self, framework_id: str, task_id: str, status: mensa_pb2.TaskStatus, now: float
    ) -> None:
        """Appends ``status`` (which must carry a uuid) to the task's stream.

        When the stream was empty the update becomes the head and is due at ``now``.
        """
        if not status.uuid:
            raise ValueError("a status update needs a uuid to be acknowledged")
        key = (framework_id, task_id)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        if not stream.updates:
            stream.next_send = now
            stream.attempts = 0
        stream.updates.append(status)

    def due(self, now: float) -> list[PendingUpdate]:
        """Returns the heads that are due at ``now`` (in stream creation order) and counts
        them as sent: each is due again after the current backoff interval."""
        out: list[PendingUpdate] = []
        for (framework_id, task_id), stream in self._streams.items():
            if not stream.updates or stream.next_send > now:
                continue
            stream.attempts += 1
            stream.next_send = now + self._interval(stream.attempts)
            out.append(PendingUpdate(framework_id, task_id, stream.updates[0], stream.attempts))
        return out

    def _interval(self, attempts: int) -> float:
        """The wait after the ``attempts``-th send: min, 2*min, 4*min, ... capped at max."""
        return min(self.min_interval * 2 ** min(attempts - 1, 62), self.max_interval)

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes, now: float) -> Ack:
        """Pops the task's head when ``uuid`` is its uuid; the next update is then due at
        ``now``. Any other uuid is ignored (duplicate or stale acknowledgement)."""
        key = (framework_id, task_id)
        stream = self._streams.get(key)
        if stream is None or not stream.updates:
            return Ack.UNKNOWN
        if stream.updates[0].uuid != uuid:
            return Ack.STALE
        stream.updates.popleft()
        stream.attempts = 0
        stream.next_send = now
        if not stream.updates:
            del self._streams[key]
        return Ack.ACCEPTED

    def discard_framework(self, framework_id: str) -> int:
        """Drops every pending update of the framework (it was shut down); returns how many."""
        keys = [k for k in self._streams if k[0] == framework_id]
        return sum(len(self._streams.pop(k).updates) for k in keys)

    def discard_task(self, framework_id: str, task_id: str) -> int:
        """Drops the pending updates of one task; returns how many."""
        stream = self._streams.pop((framework_id, task_id), None)
        return len(stream.updates) if stream else 0

    def discard_all(self) -> int:
        """Drops every pending update (the agent was shut down); returns how many."""
        count = sum(len(s.updates) for s in self._streams.values())
        self._streams.clear()
        return count

    def retry_now(self, now: float) -> None:
        """Makes every head due at ``now`` with the backoff restarted (after re-registering)."""
        for stream in self._streams.values():
            stream.next_send = now
            stream.attempts = 0

    def pending(
        self, framework_id: str | None = None, task_id: str | None = None
    ) -> list[PendingUpdate]:
        """Returns the unacknowledged updates, oldest first per stream, optionally only those
        of one framework or one task."""
        out: list[PendingUpdate] = []
        for (fid, tid), stream in self._streams.items():
            if framework_id is not None and fid != framework_id:
                continue
            if task_id is not None and tid != task_id:
                continue
            for i, status in enumerate(stream.updates):
                out.append(PendingUpdate(fid, tid, status, stream.attempts if i == 0 else 0))
        return out

    def head(self, framework_id: str, task_id: str) -> mensa_pb2.TaskStatus | None:
        """Returns the oldest unacknowledged update of the task, or None."""
        stream = self._streams.get((framework_id, task_id))
        return stream.updates[0] if stream and stream.updates else None

    def has_pending(self, framework_id: str, task_id: str) -> bool:
        return (framework_id, task_id) in self._streams

    def next_due_at(self) -> float | None:
        """Returns when the earliest head is due, or None when nothing is pending."""
        times = [s.next_send for s in self._streams.values() if s.updates]
        return min(times) if times else None

    def __len__(self) -> int:
        return sum(len(s.updates) for s in self._streams.values())
