"""What the master knows about agents, frameworks and tasks (plain records, no behaviour).

``MasterState`` owns these; ``master/http`` renders them. A peer is the opaque routing handle the
shell uses to reach a process: a ZeroMQ routing identity (``bytes``), or a ``ConnectionPeer`` such
as a subscriber of the HTTP scheduler API.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeAlias

from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources
from mensa.proto.states import TERMINAL_STATES, is_terminal

Peer = Hashable


class ConnectionPeer:
    """A peer whose liveness is its connection (an HTTP scheduler stream): the shell reports
    ``PeerUnreachable`` the moment the connection closes, so the master does not judge it by
    silence the way it judges a ZeroMQ scheduler, which sends nothing between calls."""

    __slots__ = ()

__all__ = ["TERMINAL_STATES", "AgentRecord", "FrameworkRecord", "TaskRecord", "is_terminal"]

TaskState: TypeAlias = mensa_pb2.TaskState
Reason: TypeAlias = mensa_pb2.TaskStatus.Reason

MAX_STATUSES_PER_TASK = 10
MAX_COMPLETED_TASKS = 1000


@dataclass(slots=True)
class TaskRecord:
    """A task the master launched or learned of from an agent."""

    task_id: str
    framework_id: str
    agent_id: str
    info: mensa_pb2.TaskInfo
    resources: Resources
    state: TaskState = mensa_pb2.TASK_STAGING
    statuses: deque[mensa_pb2.TaskStatus] = field(
        default_factory=lambda: deque(maxlen=MAX_STATUSES_PER_TASK)
    )
    # Whether the task's resources went back to the allocator (done once, at the first
    # terminal state the master hears of).
    released: bool = False
    # The uuid of the terminal update from the agent; its acknowledgement retires the task.
    terminal_uuid: bytes | None = None
    launched_at: float = 0.0
    # When the master first heard that the task runs (for the launch-to-running latency).
    running_at: float | None = None
    # The role its resources were allocated under (the offer's), when known.
    role: str | None = None

    @property
    def latest(self) -> mensa_pb2.TaskStatus | None:
        return self.statuses[-1] if self.statuses else None


@dataclass(slots=True)
class AgentRecord:
    """An admitted agent."""

    agent_id: str
    peer: Peer
    info: mensa_pb2.AgentInfo
    total: Resources
    registered_at: float
    http_port: int = 0
    # Where the agent's HTTP endpoints are reached (its advertised IP; else its hostname).
    ip: str = ""
    version: str = ""
    # Liveness: pings sent and not yet answered, and when the next ping is due.
    missed_pings: int = 0
    awaiting_pong: bool = False
    next_ping_at: float = 0.0
    # When it last registered or answered a ping.
    last_seen: float = 0.0
    reregistered_at: float | None = None
    # (framework_id, task_id) of the tasks on this agent the master considers live.
    tasks: set[tuple[str, str]] = field(default_factory=set)

    @property
    def hostname(self) -> str:
        return self.info.hostname


@dataclass(slots=True)
class FrameworkRecord:
    """A subscribed (or recovered, or disconnected) framework."""

    framework_id: str
    info: mensa_pb2.FrameworkInfo
    peer: Peer | None
    registered_at: float
    connected: bool = True
    # Learned of from a re-registering agent after a master restart; not yet re-subscribed.
    recovered: bool = False
    last_seen: float = 0.0
    next_heartbeat_at: float = 0.0
    disconnected_at: float | None = None
    reregistered_at: float | None = None
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    completed: deque[TaskRecord] = field(default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS))
    completed_ids: set[str] = field(default_factory=set)

    @property
    def roles(self) -> list[str]:
        if len(self.info.roles):
            return list(self.info.roles)
        return [self.info.role or "*"]

    def capable(self, capability: int) -> bool:
        return any(c.type == capability for c in self.info.capabilities)

    @property
    def partition_aware(self) -> bool:
        return self.capable(mensa_pb2.FrameworkInfo.Capability.PARTITION_AWARE)

    def complete(self, task: TaskRecord) -> None:
        """Moves a task from the live tasks to the completed ones."""
        self.tasks.pop(task.task_id, None)
        if len(self.completed) == self.completed.maxlen:
            self.completed_ids.discard(self.completed[0].task_id)
        self.completed.append(task)
        self.completed_ids.add(task.task_id)

    def uncomplete(self, task_id: str) -> None:
        """Forgets a completed task (it turned out to be alive after all)."""
        if task_id not in self.completed_ids:
            return
        self.completed_ids.discard(task_id)
        for task in list(self.completed):
            if task.task_id == task_id:
                self.completed.remove(task)

    def find_completed(self, task_id: str) -> TaskRecord | None:
        if task_id not in self.completed_ids:
            return None
        for task in reversed(self.completed):
            if task.task_id == task_id:
                return task
        return None
