"""The vocabulary of the agent's state machine: the events it handles, the commands it returns.

Events describe what happened (a master message arrived, a container started or ended, time
passed); commands say what the I/O shell must do (send to the master, launch or kill a
container). All are immutable dataclasses, so tests compare them with ``==``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mensa.agent.containerizer.base import LaunchSpec
from mensa.proto import internal_pb2, mensa_pb2

# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: retry registration, notice a silent master, resend due updates."""


@dataclass(frozen=True, slots=True)
class MasterMessage:
    """A well-formed envelope arrived from the master."""

    envelope: internal_pb2.Envelope


@dataclass(frozen=True, slots=True)
class MasterReconnected:
    """The socket re-established its connection to the master (which may be a new process)."""


@dataclass(frozen=True, slots=True)
class ContainerStarted:
    framework_id: str
    task_id: str
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerExited:
    """The container ended; neither code nor signal when it was killed before it spawned."""

    framework_id: str
    task_id: str
    exit_code: int | None = None
    signal: int | None = None
    killed_by_us: bool = False
    reason: mensa_pb2.TaskStatus.Reason | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class LaunchFailed:
    """The container could not be started; ``invalid`` when the task itself is at fault."""

    framework_id: str
    task_id: str
    message: str
    invalid: bool = False


@dataclass(frozen=True, slots=True)
class StopRequested:
    """The agent is stopping (SIGTERM/SIGINT): kill every task."""


Event = (
    Tick
    | MasterMessage
    | MasterReconnected
    | ContainerStarted
    | ContainerExited
    | LaunchFailed
    | StopRequested
)


# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendToMaster:
    envelope: internal_pb2.Envelope


@dataclass(frozen=True, slots=True)
class LaunchContainer:
    """Create ``spec.sandbox``, start the container, then report ContainerStarted (or
    LaunchFailed), and ContainerExited when it ends."""

    framework_id: str
    task_id: str
    spec: LaunchSpec


@dataclass(frozen=True, slots=True)
class KillContainer:
    """SIGTERM the container, SIGKILL after ``grace_seconds``; if it is still being launched,
    do not start it (report ContainerExited with killed_by_us)."""

    framework_id: str
    task_id: str
    grace_seconds: float


Command = SendToMaster | LaunchContainer | KillContainer
