"""The vocabulary of the agent's state machine: the events it handles, the commands it returns.

Events describe what happened (a master message arrived, a container started or ended, time
passed); commands say what the I/O shell must do (send to the master, launch or kill a
container). All are immutable dataclasses, so tests compare them with ``==``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mensa.agent.checkpoint_records import RecoveredAgent, TaskCheckpoint
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
    """The container runs; ``containerizer`` names who runs it, ``waiter_pid`` the process that
    records its exit status (both checkpointed so a restarted agent finds it again)."""

    framework_id: str
    task_id: str
    pid: int | None = None
    containerizer: str = ""
    waiter_pid: int | None = None
    # The task process's start time (/proc/<pid>/stat field 22): with ``pid`` it names one
    # process for good (a reused pid has another start time).
    pid_start: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerRecovered:
    """A restarted agent found a task's container still running (it is tracked again)."""

    framework_id: str
    task_id: str
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Recovered:
    """The agent (re)started and read its checkpoint (empty for a new agent). Handled once,
    before anything else."""

    checkpoint: RecoveredAgent


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """The leading master changed (``leader`` its MasterInfo, None while no master leads).

    ``jitter`` is a random number in [0, 1) drawn by the shell: the first registration with a
    new leader waits ``jitter * registration_backoff`` so that thousands of agents do not
    re-register at the same instant."""

    leader: mensa_pb2.MasterInfo | None
    jitter: float = 0.0


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
    | ContainerRecovered
    | Recovered
    | LeaderChanged
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


@dataclass(frozen=True, slots=True)
class RecoverContainer:
    """Find the container of a task checkpointed by an earlier run of this agent: report
    ContainerRecovered when it still runs (and ContainerExited when it ends), ContainerExited
    with its exit status when it ended while the agent was down."""

    framework_id: str
    task_id: str
    spec: LaunchSpec
    containerizer: str
    pid: int | None
    waiter_pid: int | None
    pid_start: int | None = None


@dataclass(frozen=True, slots=True)
class SwitchMaster:
    """A master that does not lead named the one that does: talk to it instead (when the
    leader is not detected through ZooKeeper)."""

    leader: mensa_pb2.MasterInfo


# -- checkpoint commands: carried out (in order, before the commands after them) by
# checkpoint.CheckpointStore.


@dataclass(frozen=True, slots=True)
class CheckpointAgent:
    agent_id: str


@dataclass(frozen=True, slots=True)
class CheckpointTask:
    """Replace the task's checkpoint record (creating its checkpoint directory)."""

    record: TaskCheckpoint


@dataclass(frozen=True, slots=True)
class CheckpointUpdate:
    """Append a status update to the task's log (before it is first sent)."""

    framework_id: str
    task_id: str
    status: mensa_pb2.TaskStatus


@dataclass(frozen=True, slots=True)
class CheckpointStarted:
    """Record where the task's container runs (appended to its log; ``task.json`` is not
    rewritten)."""

    framework_id: str
    task_id: str
    pid: int | None
    waiter_pid: int | None
    containerizer: str
    pid_start: int | None = None


@dataclass(frozen=True, slots=True)
class CheckpointKill:
    """Record that the task's kill began at ``wall_time`` (epoch seconds) with ``grace_seconds``
    (appended to its log): a restarted agent finishes it."""

    framework_id: str
    task_id: str
    grace_seconds: float
    wall_time: float


@dataclass(frozen=True, slots=True)
class CheckpointAck:
    framework_id: str
    task_id: str
    uuid: bytes


@dataclass(frozen=True, slots=True)
class RemoveCheckpoint:
    """The task completed: forget its checkpoint."""

    framework_id: str
    task_id: str


CheckpointCommand = (
    CheckpointAgent
    | CheckpointTask
    | CheckpointStarted
    | CheckpointKill
    | CheckpointUpdate
    | CheckpointAck
    | RemoveCheckpoint
)

Command = (
    SendToMaster
    | LaunchContainer
    | KillContainer
    | RecoverContainer
    | SwitchMaster
    | CheckpointCommand
)
