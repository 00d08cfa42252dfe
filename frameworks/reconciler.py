"""Reconciler: the tasks a framework believes live, and the rounds that reconcile them (pure).

After a master failover the new leader knows only the tasks of the agents that re-registered;
it answers nothing for a task whose agent is still "recovering". So, as the Mesos docs'
reconciliation algorithm says, after every (re-)subscription the framework explicitly
reconciles each task it believes non-terminal, then again (with backoff) those that got no
answer, until every one was answered; after that implicit reconciliation suffices.

The Reconciler tracks tasks (task id -> agent id, latest state) from launches (TASK_STAGING)
and every status update seen; a task leaves once a terminal update for it was delivered to the
scheduler. ``start(now)`` begins a round (a new round replaces a running one) and returns the
RECONCILE to send; ``due(now)`` returns the retry for the tasks still unanswered once the
backoff (``initial`` doubling to ``maximum``) elapsed; any status update for a task answers it.
No I/O and no clock: the caller passes ``now`` and sends what it is given.

Usage::

    rec = Reconciler()
    rec.launched("t1", "a1")
    request = rec.start(now)                   # Request(tasks=(("t1", "a1"),), attempt=1)
    rec.observed("t1", "a1", TASK_RUNNING, delivered=True)   # True: the round is complete
    rec.due(now + 5)                           # None: nothing left to ask
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from mensa.proto import mensa_pb2
from mensa.proto.states import is_terminal

TaskState: TypeAlias = mensa_pb2.TaskState

TaskRef = tuple[str, str]  # (task id, agent id; "" when unknown)

DEFAULT_INITIAL = 1.0
DEFAULT_MAXIMUM = 30.0


@dataclass(frozen=True, slots=True)
class Request:
    """A RECONCILE to send: these (task id, agent id) pairs, or none for an implicit one.
    ``attempt`` is 1 for the first request of a round, 2 for its first retry, ..."""

    tasks: tuple[TaskRef, ...]
    attempt: int

    @property
    def implicit(self) -> bool:
        return not self.tasks


@dataclass(slots=True)
class Tracked:
    """What the framework last heard of a live task."""

    agent_id: str
    state: TaskState


@dataclass(slots=True)
class Reconciler:
    """Tracks live tasks and runs reconciliation rounds; see the module docstring."""

    initial: float = DEFAULT_INITIAL
    maximum: float = DEFAULT_MAXIMUM
    _tasks: dict[str, Tracked] = field(default_factory=dict)
    _pending: set[str] = field(default_factory=set)  # asked in this round, not yet answered
    _attempt: int = 0
    _delay: float = 0.0  # the wait before the next retry
    _deadline: float | None = None  # when the next retry is due (None: no round running)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"want 0 < initial <= maximum, got {self.initial}, {self.maximum}")

    # -- tracking ---------------------------------------------------------------------------------

    def launched(self, task_id: str, agent_id: str) -> None:
        """Records a task sent to the master in a LAUNCH (TASK_STAGING, unless already known)."""
        if task_id and task_id not in self._tasks:
            self._tasks[task_id] = Tracked(agent_id, mensa_pb2.TASK_STAGING)

    def observed(self, task_id: str, agent_id: str, state: TaskState, delivered: bool) -> bool:
        """Records a status update for ``task_id``, which answers it in the running round.

        A terminal update ``delivered`` to the scheduler drops the task; an undelivered one (the
        callback raised) keeps it, as the update comes again. An update for an untracked task
        starts tracking it unless it is terminal or TASK_UNKNOWN (the master does not know it).
        Returns True when this answer completed the running round.
        """
        tracked = self._tasks.get(task_id)
        if is_terminal(state) and delivered:
            self._tasks.pop(task_id, None)
        elif tracked is not None:
            tracked.state = state
            tracked.agent_id = agent_id or tracked.agent_id
        elif task_id and not is_terminal(state) and state != mensa_pb2.TASK_UNKNOWN:
            self._tasks[task_id] = Tracked(agent_id, state)
        if task_id not in self._pending:
            return False
        self._pending.discard(task_id)
        return self._finish_if_answered()

    def forget(self, task_id: str) -> None:
        """Stops tracking a task (the framework no longer cares)."""
        self._tasks.pop(task_id, None)
        self._pending.discard(task_id)
        self._finish_if_answered()

    @property
    def tasks(self) -> dict[str, Tracked]:
        """The tracked tasks (a copy): task id -> what was last heard of it."""
        return {task_id: Tracked(t.agent_id, t.state) for task_id, t in self._tasks.items()}

    # -- rounds ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a round waits for answers."""
        return self._deadline is not None

    @property
    def pending(self) -> frozenset[str]:
        """The tasks asked in the running round that got no answer yet."""
        return frozenset(self._pending)

    @property
    def deadline(self) -> float | None:
        """When the next retry is due (None when no round runs)."""
        return self._deadline

    @property
    def attempt(self) -> int:
        """How many requests the running (or last) round sent."""
        return self._attempt

    def start(self, now: float, implicit_if_empty: bool = False) -> Request | None:
        """Begins a round asking every tracked task (replacing a running round: the backoff
        starts over) and returns its first request. With nothing tracked: an implicit request
        (no round follows; every answer gets tracked) when ``implicit_if_empty``, else None."""
        self._pending = set(self._tasks)
        self._attempt = 0
        self._delay = self.initial
        self._deadline = None
        if not self._pending:
            return Request((), 1) if implicit_if_empty else None
        return self._ask(now)

    def due(self, now: float) -> Request | None:
        """Returns the retry for the tasks still unanswered when it is due, else None."""
        if self._deadline is None or now < self._deadline:
            return None
        return self._ask(now)

    def stop(self) -> None:
        """Ends the running round unanswered (the next ``start`` asks again)."""
        self._pending.clear()
        self._deadline = None

    def _ask(self, now: float) -> Request:
        self._attempt += 1
        self._deadline = now + self._delay
        self._delay = min(self._delay * 2, self.maximum)
        refs = tuple((task_id, self._tasks[task_id].agent_id) for task_id in sorted(self._pending))
        return Request(refs, self._attempt)

    def _finish_if_answered(self) -> bool:
        if self._pending or self._deadline is None:
            return False
        self._deadline = None
        return True
