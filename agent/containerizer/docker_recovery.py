"""Finding the Docker containers an earlier run of the agent started, and adopting or removing them.

Contract:

  * ``find_containers(engine, agent_id, strict=...)`` lists the containers labelled as Mensa's
    (of ``agent_id`` when given) as ``FoundContainer``s. An unreachable engine yields an empty
    list (and a warning), or, with ``strict``, raises ``DockerUnreachable``: recovery must tell
    "none found" from "could not look".
  * ``recover(engine, found)`` returns a ``DockerHandle`` for a found container, for ``wait`` and
    ``kill``; a running container's output is appended to the sandbox files from now on (what
    it wrote while no agent was attached is not copied). Never raises: an engine that fails
    midway leaves a handle whose ``wait`` reports the container's fate.
  * ``remove(engine, found)`` and ``remove_abandoned(engine, container_id)`` (blocking, by name)
    force-remove a container, best effort: engine errors are swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import docker.errors
import structlog

from mensa.agent.containerizer.base import EngineUnreachable
from mensa.agent.containerizer.docker_config import LABEL_PREFIX, MB, NAME_PREFIX
from mensa.agent.containerizer.docker_engine import UNREACHABLE, DockerEngine
from mensa.agent.containerizer.docker_wait import DockerHandle, start_pump

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FoundContainer:
    """A container of this agent's found on the engine by its labels."""

    docker_id: str
    container_id: str
    framework_id: str
    task_id: str
    agent_id: str
    sandbox: str
    running: bool


class DockerUnreachable(EngineUnreachable):
    """The engine could not be asked (``find_containers(strict=True)``)."""


async def find_containers(
    engine: DockerEngine, agent_id: str | None = None, *, strict: bool = False
) -> list[FoundContainer]:
    """Returns the containers labelled as Mensa's (of ``agent_id`` when given); see the module
    docstring for an unreachable engine."""
    wanted = [f"{LABEL_PREFIX}container_id"]
    if agent_id:
        wanted.append(f"{LABEL_PREFIX}agent_id={agent_id}")
    try:
        client = await engine.call(engine.connect)
        listed = await engine.call(client.api.containers, all=True, filters={"label": wanted})
    except Exception as exc:
        log.warning("docker_containers_not_listed", socket=engine.base_url, error=str(exc))
        if strict:
            raise DockerUnreachable(str(exc)) from None
        return []
    found = []
    for c in listed:
        labels = c.get("Labels") or {}
        found.append(
            FoundContainer(
                docker_id=c["Id"],
                container_id=labels.get(f"{LABEL_PREFIX}container_id", ""),
                framework_id=labels.get(f"{LABEL_PREFIX}framework_id", ""),
                task_id=labels.get(f"{LABEL_PREFIX}task_id", ""),
                agent_id=labels.get(f"{LABEL_PREFIX}agent_id", ""),
                sandbox=labels.get(f"{LABEL_PREFIX}sandbox", ""),
                running=c.get("State") == "running",
            )
        )
    return found


async def recover(engine: DockerEngine, found: FoundContainer) -> DockerHandle:
    """Returns a handle for a container found after a restart, for ``wait`` and ``kill``.

    Its output from now on is appended to the sandbox files; what it wrote while no agent
    was attached is not copied.
    """
    handle = DockerHandle(found.container_id, found.docker_id, found.sandbox)
    handle.logs_done = asyncio.get_running_loop().create_future()
    try:
        client = await engine.call(engine.connect)
        attrs = await engine.call(client.api.inspect_container, found.docker_id)
        handle.pid = attrs.get("State", {}).get("Pid") or None
        handle.mem_mb = (attrs.get("HostConfig", {}).get("Memory") or 0) / MB
        if found.running:
            stream = await engine.call(engine.attach, found.docker_id)
            start_pump(handle, stream)
    except Exception as exc:
        log.warning("docker_recover_incomplete", container_id=found.container_id, error=str(exc))
    if not handle.logs_done.done() and not found.running:
        handle.logs_done.set_result(True)
    log.info("docker_container_recovered", container_id=found.container_id, task_id=found.task_id)
    return handle


async def remove(engine: DockerEngine, found: FoundContainer) -> None:
    """Force-removes a container found on the engine (an orphan found at recovery)."""

    def remove() -> None:
        with contextlib.suppress(*UNREACHABLE, docker.errors.DockerException):
            engine.connect().api.remove_container(found.docker_id, force=True)
            log.info("docker_orphan_removed", container_id=found.container_id,
                     task_id=found.task_id)

    await engine.call(remove)


def remove_abandoned(engine: DockerEngine, container_id: str) -> None:
    """Force-removes the container of Mensa container ``container_id`` by its name (blocking;
    for a launch or a recovered task that was given up on)."""
    with contextlib.suppress(*UNREACHABLE, docker.errors.DockerException):
        engine.connect().api.remove_container(f"{NAME_PREFIX}{container_id}", force=True)
        log.info("docker_abandoned_container_removed", container_id=container_id)
