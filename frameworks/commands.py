"""What a bundled framework's pure engine asks its shell to do (pure values).

An engine returns these in the order they must be carried out: every ``Persist``/``Forget``
comes before the ``Launch`` that depends on it (the shell writes them durably, then sends).

    Persist(kind, key, doc)   store ``doc`` as record ``key`` of ``kind`` (replacing it)
    Forget(kind, key)         delete that record
    Launch(offer_id, tasks, refuse_seconds)   ACCEPT the offer with one LAUNCH of ``tasks``
                                              (filters: what is left is refused that long)
    Decline(offer_ids, refuse_seconds)        DECLINE the offers with that filter
    Kill(task_id, agent_id, grace)            KILL a task (grace: kill policy seconds or None)
    Reconcile(tasks)          RECONCILE these (task id, agent id) pairs
    Revive() / Suppress()     ask for offers again / stop them
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mensa.proto import mensa_pb2


@dataclass(frozen=True, slots=True)
class Persist:
    kind: str
    key: str
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Forget:
    kind: str
    key: str


@dataclass(frozen=True, slots=True)
class Launch:
    offer_id: str
    tasks: tuple[mensa_pb2.TaskInfo, ...]
    refuse_seconds: float = 5.0

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id.value for t in self.tasks]


@dataclass(frozen=True, slots=True)
class Decline:
    offer_ids: tuple[str, ...]
    refuse_seconds: float


@dataclass(frozen=True, slots=True)
class Kill:
    task_id: str
    agent_id: str
    grace: float | None = None


@dataclass(frozen=True, slots=True)
class Reconcile:
    tasks: tuple[tuple[str, str], ...]  # (task id, agent id)

    @property
    def task_ids(self) -> list[str]:
        return [t for t, _a in self.tasks]


@dataclass(frozen=True, slots=True)
class Revive:
    pass


@dataclass(frozen=True, slots=True)
class Suppress:
    pass


Command = Persist | Forget | Launch | Decline | Kill | Reconcile | Revive | Suppress
