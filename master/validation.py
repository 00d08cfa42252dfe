"""Validation of what frameworks ask for: task ids, tasks, framework infos (pure).

Each function returns ``None`` when the input is acceptable, or a sentence saying what is wrong,
written for the framework author who will read it in a TASK_ERROR message or an error reply.
"""

from __future__ import annotations

import math

from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError, Resources

MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 1024


def validate_id(kind: str, value: str) -> str | None:
    """Checks an id that becomes a path component on agents (task, executor, framework ids)."""
    if not value:
        return f"{kind} id must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{kind} id is {len(value)} characters long, more than the {MAX_ID_LENGTH} allowed"
    if value in (".", ".."):
        return f"{kind} id {value!r} is not allowed (it would escape the sandbox directory)"
    if "/" in value or "\\" in value:
        return f"{kind} id {value!r} contains a path separator (it would escape the sandbox directory)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return f"{kind} id {value!r} contains control characters"
    if value != value.strip():
        return f"{kind} id {value!r} has leading or trailing whitespace"
    return None


def _has_nul(text: str) -> bool:
    return "\x00" in text


def validate_command(command: mensa_pb2.CommandInfo) -> str | None:
    """Checks a CommandInfo: a shell command needs a value; argv mode needs an executable."""
    if command.shell:
        if not command.value.strip():
            return "command is empty (shell mode needs a non-empty 'value')"
    elif not command.value.strip():
        return "command has no executable (with shell=false, 'value' is the program to run)"
    if _has_nul(command.value) or any(_has_nul(a) for a in command.arguments):
        return "command contains a NUL character"
    for var in command.environment.variables:
        if not var.name or "=" in var.name or _has_nul(var.name) or _has_nul(var.value):
            return f"environment variable name {var.name!r} is not valid"
    return None


def validate_task(task: mensa_pb2.TaskInfo, agent_id: str) -> tuple[Resources | None, str | None]:
    """Checks one TaskInfo launched on ``agent_id``; returns its resources, or an error.

    The caller checks what needs the master's books (uniqueness, fitting the offer).
    """
    error = validate_id("task", task.task_id.value)
    if error:
        return None, error
    if len(task.name) > MAX_NAME_LENGTH:
        return None, f"task name is longer than {MAX_NAME_LENGTH} characters"
    if task.HasField("agent_id") and task.agent_id.value and task.agent_id.value != agent_id:
        return None, (
            f"task names agent {task.agent_id.value} but the offer is for agent {agent_id}"
        )
    if task.HasField("executor"):
        return None, "custom executors are not supported; give the task a command"
    try:
        resources = Resources.from_proto(task.resources)
    except ResourceError as exc:
        return None, f"invalid resources: {exc}"
    if resources.is_empty():
        return None, "task uses no resources"
    has_image = task.HasField("container") and task.container.HasField("docker")
    if task.HasField("command"):
        if not (has_image and not task.command.shell and not task.command.value):
            error = validate_command(task.command)
            if error:
                return None, error
    elif not has_image:
        return None, "task has neither a command nor a container image to run"
    if task.HasField("kill_policy") and task.kill_policy.grace_period.nanoseconds < 0:
        return None, "kill_policy.grace_period must not be negative"
    return resources, None


def validate_framework_info(info: mensa_pb2.FrameworkInfo) -> str | None:
    """Checks a FrameworkInfo sent with SUBSCRIBE."""
    if not info.name:
        return "framework_info.name must not be empty"
    if len(info.name) > MAX_NAME_LENGTH:
        return f"framework_info.name is longer than {MAX_NAME_LENGTH} characters"
    if info.HasField("id") and info.id.value:
        error = validate_id("framework", info.id.value)
        if error:
            return error
    timeout = info.failover_timeout
    if math.isnan(timeout) or timeout < 0:
        return "framework_info.failover_timeout must be a non-negative number"
    roles = list(info.roles) if len(info.roles) else [info.role or "*"]
    for role in roles:
        error = validate_role(role)
        if error:
            return error
    return None


def validate_role(role: str) -> str | None:
    """Checks a role name (Mesos rules): ``*``, or ``/``-separated parts that are neither empty,
    ``.`` nor ``..``, without whitespace or control characters, none starting with ``-``."""
    if role == "*":
        return None
    if not role or len(role) > MAX_NAME_LENGTH:
        return f"role {role!r} is not a valid role name (empty or too long)"
    for part in role.split("/"):
        if part in ("", ".", "..") or part.startswith("-") or "*" in part \
                or any(ch.isspace() or ord(ch) < 32 or ch == "\x7f" for ch in part):
            return f"role {role!r} is not a valid role name"
    return None
