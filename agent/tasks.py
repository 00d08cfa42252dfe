"""A task as the agent keeps it, from RunTask until its terminal update is acknowledged.

Pure: what the agent knows of each task (its TaskInfo, framework, state, sandbox, pid, whether a
kill was asked for) and how it is reported to the master when the agent re-registers.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass
from typing import Any

import structlog

from mensa.agent.checkpoint_records import TaskCheckpoint
from mensa.agent.events import ContainerExited
from mensa.proto import mensa_pb2
from mensa.proto.states import TERMINAL_STATES

_log = structlog.get_logger("mensa.agent.state")


def task_log(framework_id: str, task_id: str) -> Any:
    """Returns the agent state's logger bound to one task."""
    return _log.bind(framework_id=framework_id, task_id=task_id)


def state_name(state: mensa_pb2.TaskState) -> str:
    return mensa_pb2.TaskState.Name(state)


@dataclass(slots=True)
class TaskRecord:
    """A task on this agent, from RunTask until its terminal update is acknowledged."""

    framework: mensa_pb2.FrameworkInfo
    task_info: mensa_pb2.TaskInfo
    state: mensa_pb2.TaskState = mensa_pb2.TASK_STAGING
    sandbox: str = ""
    pid: int | None = None
    container_running: bool = False  # Launch issued, no exit or launch failure seen yet.
    kill_requested: bool = False
    silent: bool = False  # Its framework (or the agent) was shut down: no more updates.
    latest_status: mensa_pb2.TaskStatus | None = None
    container_id: str = ""
    containerizer: str = ""  # The name of the containerizer that started it.
    waiter_pid: int | None = None  # The process recording its exit status (process tasks).
    pid_start: int | None = None  # The task process's start time (tells a reused pid apart).

    @property
    def framework_id(self) -> str:
        return str(self.framework.id.value)

    @property
    def task_id(self) -> str:
        return str(self.task_info.task_id.value)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_checkpoint(self) -> TaskCheckpoint:
        """Returns what is checkpointed of this task (its updates are logged separately)."""
        return TaskCheckpoint(
            self.framework,
            self.task_info,
            container_id=self.container_id,
            containerizer=self.containerizer,
            pid=self.pid,
            waiter_pid=self.waiter_pid,
            pid_start=self.pid_start,
            sandbox=self.sandbox,
            silent=self.silent,
        )

    def grace_seconds(self, default: float) -> float:
        """The task's kill grace period: its TaskInfo.kill_policy, else ``default``."""
        if self.task_info.kill_policy.HasField("grace_period"):
            return duration_seconds(self.task_info.kill_policy.grace_period)
        return default

    def to_proto(self, agent_id: str | None, head: mensa_pb2.TaskStatus | None) -> mensa_pb2.Task:
        """The task as RegisterAgent reports it; ``head`` is its oldest unacknowledged update."""
        info = self.task_info
        task = mensa_pb2.Task(name=info.name, state=self.state)
        task.task_id.value = self.task_id
        task.framework_id.value = self.framework_id
        task.executor_id.value = self.task_id
        if agent_id:
            task.agent_id.value = agent_id
        task.resources.extend(info.resources)
        for name in ("labels", "discovery", "container", "health_check", "kill_policy"):
            if info.HasField(name):
                getattr(task, name).CopyFrom(getattr(info, name))
        if info.command.user:
            task.user = info.command.user
        if self.latest_status is not None:
            task.statuses.append(self.latest_status)
        if head is not None:
            task.status_update_state = head.state
            task.status_update_uuid = head.uuid
        return task


def duration_seconds(duration: mensa_pb2.DurationInfo) -> float:
    """Returns a DurationInfo in seconds (negative durations count as zero)."""
    return max(duration.nanoseconds, 0) / 1e9


def termination_text(event: ContainerExited) -> str:
    """Returns the status message for how a container ended, as Mesos's command executor words it."""
    if event.signal is not None:
        try:
            name = _signal.Signals(event.signal).name
        except ValueError:
            name = str(event.signal)
        return f"Command terminated with signal {name}"
    if event.exit_code is not None:
        return f"Command exited with status {event.exit_code}"
    return "Task killed before it started"
