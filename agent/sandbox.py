"""What a task sees: its sandbox directory, its command line and its environment.

A task's sandbox is ``<work-dir>/agents/<agent_id>/frameworks/<framework_id>/executors/
<task_id>/runs/latest/``. Each id becomes one path component, so ids are checked first
(``id_problem``): non-empty, at most 255 characters, no ``/`` or NUL, not ``.`` or ``..``.

Everything here is pure except ``create_sandbox``, which makes the directory and checks that
its resolved path (symlinks followed) is still under the work dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError, Resources

MAX_ID_LENGTH = 255
SHELL = "/bin/sh"


class InvalidTask(ValueError):
    """The task cannot be run as given; ``str()`` is the reason for its TASK_ERROR status."""


def id_problem(kind: str, value: str) -> str | None:
    """Returns why ``value`` cannot be used as a path component (None when it can)."""
    if not value:
        return f"{kind} is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{kind} is longer than {MAX_ID_LENGTH} characters"
    if "/" in value or "\0" in value:
        return f"{kind} {value!r} contains '/' or NUL"
    if value in (".", ".."):
        return f"{kind} {value!r} is not a valid name"
    return None


def sandbox_path(work_dir: str, agent_id: str, framework_id: str, task_id: str) -> str:
    """Returns the absolute sandbox directory of a task (with a trailing separator stripped).

    Raises InvalidTask when an id is not a valid path component or the path would leave
    ``work_dir``.
    """
    for kind, value in (
        ("agent id", agent_id),
        ("framework id", framework_id),
        ("task id", task_id),
    ):
        problem = id_problem(kind, value)
        if problem:
            raise InvalidTask(problem)
    root = os.path.normpath(os.path.abspath(work_dir))
    path = os.path.normpath(
        os.path.join(
            root,
            "agents",
            agent_id,
            "frameworks",
            framework_id,
            "executors",
            task_id,
            "runs",
            "latest",
        )
    )
    if os.path.commonpath([root, path]) != root:
        raise InvalidTask(f"sandbox of task {task_id!r} would be outside the work dir")
    return path


def create_sandbox(path: str, work_dir: str) -> None:
    """Creates ``path`` (and parents); raises InvalidTask if, symlinks resolved, it is not
    under ``work_dir``, and OSError when it cannot be created."""
    root = os.path.realpath(work_dir)
    os.makedirs(path, exist_ok=True)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        raise InvalidTask(f"sandbox {path!r} resolves outside the work dir")


def command_line(command: mensa_pb2.CommandInfo) -> tuple[str, tuple[str, ...]]:
    """Returns ``(executable, argv)`` for a CommandInfo.

    shell=true (the default): ``/bin/sh -c value``; shell=false: ``value`` executed with
    ``arguments`` as argv (``[value]`` when there are none). Raises InvalidTask without a value.
    """
    if not command.value:
        raise InvalidTask("the task's command has no value")
    if "\0" in command.value or any("\0" in a for a in command.arguments):
        raise InvalidTask("the task's command contains NUL")
    if command.shell:
        return SHELL, (SHELL, "-c", command.value)
    argv = tuple(command.arguments) or (command.value,)
    return command.value, argv


def task_ports(task_info: mensa_pb2.TaskInfo) -> list[int]:
    """Returns the ports of the task's ``ports`` range resources, ascending."""
    try:
        resources = Resources.from_proto(task_info.resources)
    except ResourceError as exc:
        raise InvalidTask(f"invalid resources: {exc}") from None
    return [p for begin, end in resources.ranges("ports") for p in range(begin, end + 1)]


def task_environment(
    *,
    task_info: mensa_pb2.TaskInfo,
    framework_id: str,
    agent_id: str,
    sandbox: str,
    hostname: str,
    path: str,
) -> dict[str, str]:
    """Returns the task's environment.

    PATH (the agent's), the Mesos variables (MESOS_TASK_ID, MESOS_FRAMEWORK_ID, MESOS_AGENT_ID,
    MESOS_EXECUTOR_ID, MESOS_SANDBOX, MESOS_DIRECTORY), HOST, PORT0..PORTn, PORTS and PORT from
    the task's ports; then the command's own environment variables, which win on a clash.
    Raises InvalidTask for a variable name that is empty or holds ``=`` or NUL, or a value
    holding NUL.
    """
    task_id = task_info.task_id.value
    env: dict[str, str] = {
        "PATH": path,
        "MESOS_TASK_ID": task_id,
        "MESOS_FRAMEWORK_ID": framework_id,
        "MESOS_AGENT_ID": agent_id,
        "MESOS_EXECUTOR_ID": task_id,
        "MESOS_SANDBOX": sandbox,
        "MESOS_DIRECTORY": sandbox,
        "HOST": hostname,
    }
    ports = task_ports(task_info)
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(str(p) for p in ports)
    env.update(_user_variables(task_info.command.environment.variables))
    return env


def _user_variables(variables: Iterable[mensa_pb2.Environment.Variable]) -> dict[str, str]:
    out: dict[str, str] = {}
    for var in variables:
        name, value = var.name, var.value
        if not name or "=" in name or "\0" in name:
            raise InvalidTask(f"invalid environment variable name {name!r}")
        if "\0" in value:
            raise InvalidTask(f"environment variable {name!r} contains NUL")
        out[name] = value
    return out
