"""The containerizer port: how the agent starts, watches and stops a task's container.

A containerizer turns a ``LaunchSpec`` (what to run, where, with which environment) into a
running container and reports how it ended. The agent's shell picks the first containerizer
whose ``can_run`` accepts the task, so new kinds slot in without touching the agent's state
machine: ``process.py`` (plain processes in their own session) today; cgroups isolation and
Docker (``docker.py``) later, each implementing the same ``Containerizer`` protocol.

Contract:
  * ``launch`` returns once the container is spawned (the agent then reports TASK_RUNNING);
    it raises ``LaunchError`` when it cannot be spawned (the agent reports TASK_FAILED with
    REASON_CONTAINER_LAUNCH_FAILED and the error text).
  * ``wait`` returns the ``Termination`` once the container's main process has ended and
    nothing of the container is left running.
  * ``kill`` asks everything in the container to stop (SIGTERM), and forces it (SIGKILL) after
    ``grace_seconds``; it returns when the container is gone. Killing a container that already
    ended, or killing twice, is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mensa.proto import mensa_pb2


class EngineUnreachable(Exception):
    """A containerizer's engine (the Docker daemon) could not be asked; ``str()`` says why."""


class LaunchError(RuntimeError):
    """The container could not be spawned; ``str()`` says why (for the task's status)."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything a containerizer needs to start one task.

    ``argv`` is the full argument vector (``argv[0]`` included) and ``executable`` the program
    to execute: ``/bin/sh`` with ``["/bin/sh", "-c", value]`` for a shell command, the command's
    value otherwise. ``sandbox`` is an absolute directory that exists when ``launch`` is called;
    the task's stdout and stderr go to ``<sandbox>/stdout`` and ``<sandbox>/stderr``.
    ``task_info`` carries the rest (container image, resources for limits, user).
    """

    container_id: str
    framework_id: str
    task_id: str
    executable: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    sandbox: str
    task_info: mensa_pb2.TaskInfo = field(default_factory=mensa_pb2.TaskInfo, compare=False)
    user: str | None = None
    # A directory outside the sandbox for the container's runtime files (the exit status a
    # process task's waiter records, so a restarted agent learns how it ended); "" for none.
    runtime_dir: str = ""

    @property
    def stdout_path(self) -> str:
        return f"{self.sandbox.rstrip('/')}/stdout"

    @property
    def stderr_path(self) -> str:
        return f"{self.sandbox.rstrip('/')}/stderr"


@dataclass(frozen=True, slots=True)
class Termination:
    """How a container ended.

    Exactly one of ``exit_code`` (normal exit) and ``signal`` (killed by a signal) is set,
    or neither when the container never started (killed before it was spawned).
    ``killed_by_us`` is True when ``kill`` was called for it. ``reason`` is a
    ``TaskStatus.Reason`` an isolator may set (e.g. REASON_CONTAINER_LIMITATION_MEMORY), with
    ``message`` explaining it.
    """

    exit_code: int | None = None
    signal: int | None = None
    killed_by_us: bool = False
    reason: int | None = None
    message: str = ""


@runtime_checkable
class ContainerHandle(Protocol):
    """A running (or ended) container, as returned by ``Containerizer.launch``."""

    @property
    def container_id(self) -> str: ...

    @property
    def pid(self) -> int | None: ...


@runtime_checkable
class Containerizer(Protocol):
    """Starts, waits for and kills containers of one kind (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def can_run(self, task_info: mensa_pb2.TaskInfo) -> bool:
        """Returns True when this containerizer knows how to run the task."""
        ...

    async def launch(self, spec: LaunchSpec) -> ContainerHandle:
        """Spawns the container; raises LaunchError when it cannot."""
        ...

    async def wait(self, handle: ContainerHandle) -> Termination:
        """Returns how the container ended, once nothing of it is left running."""
        ...

    async def kill(self, handle: ContainerHandle, grace_seconds: float) -> None:
        """SIGTERM to the whole container, SIGKILL after ``grace_seconds``; idempotent."""
        ...
