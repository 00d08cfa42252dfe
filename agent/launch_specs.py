"""What the agent launches for a task: its ``LaunchSpec`` (pure).

``launch_spec`` turns a task's record into the container to launch (command line, environment,
sandbox, user and, when checkpointing, the runtime directory where its waiter records its exit
status); a task that cannot be run raises ``InvalidTask``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from mensa.agent.checkpoint_records import task_dir
from mensa.agent.containerizer.base import LaunchSpec
from mensa.agent.sandbox import InvalidTask, command_line, sandbox_path, task_environment
from mensa.agent.tasks import TaskRecord
from mensa.proto import mensa_pb2

if TYPE_CHECKING:
    from mensa.agent.state import AgentConfig


def launch_spec(
    config: AgentConfig,
    record: TaskRecord,
    agent_id: str,
    container_id: str | None,
    new_id: Callable[[], bytes],
) -> LaunchSpec:
    """Returns what to launch for a task (with a new container id unless one is given);
    raises InvalidTask when it cannot be run."""
    info, framework_id, task_id = record.task_info, record.framework_id, record.task_id
    sandbox = sandbox_path(config.work_dir, agent_id, framework_id, task_id)
    if info.HasField("executor"):
        raise InvalidTask("custom executors are not supported; give the task a command")
    executable: str = ""
    argv: tuple[str, ...] = ()
    if info.command.value or info.container.type != mensa_pb2.ContainerInfo.DOCKER:
        executable, argv = command_line(info.command)
    env = task_environment(
        task_info=info,
        framework_id=framework_id,
        agent_id=agent_id,
        sandbox=sandbox,
        hostname=config.hostname,
        path=config.path_env,
    )
    runtime_dir = task_dir(config.work_dir, framework_id, task_id)
    return LaunchSpec(
        container_id=container_id or new_id().hex(),
        framework_id=framework_id,
        task_id=task_id,
        executable=executable,
        argv=argv,
        env=env,
        sandbox=sandbox,
        task_info=info,
        user=info.command.user or None,
        runtime_dir=runtime_dir if config.checkpoint else "",
    )


def with_sandbox(spec: LaunchSpec, sandbox: str) -> LaunchSpec:
    """Returns ``spec`` with another sandbox (the one a recovered task was launched in)."""
    return dataclasses.replace(spec, sandbox=sandbox)


def has_image(info: mensa_pb2.TaskInfo) -> bool:
    """True for a task whose container names an image (which the agent may have to pull)."""
    return (info.HasField("container") and info.container.type == mensa_pb2.ContainerInfo.DOCKER
            and bool(info.container.docker.image))
