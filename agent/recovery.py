"""Recovery at start: the agent's checkpoint read back and its tasks' containers found again
(the I/O shell's side; the decisions are ``task_recovery``'s).

``recover(service)`` reads the checkpoint (when checkpointing) and feeds it to the state
(``Recovered``); Docker containers labelled with this agent's id that no checkpointed task owns
(a launch given up on) are removed first. An unreachable engine is asked again for up to
``DOCKER_RECOVERY_SECONDS``; if it stays unreachable, each Docker task is force-removed by its
container's name (best effort) before it is reported failed, never left running untracked.
For each ``RecoverContainer`` the state returns, ``recover_container`` finds the container again
(a process task by its waiter, pid and cgroup, a Docker task by its labels), reports it running
(``ContainerRecovered``) or ended, with its real exit status (``ContainerExited``), and waits
for its end. A process task whose launch was not checkpointed is found by its waiter's command
line; one that cannot be adopted is killed (its cgroup) before it is reported failed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from mensa.agent.checkpoint_records import RecoveredAgent
from mensa.agent.containerizer.base import ContainerHandle, EngineUnreachable
from mensa.agent.containerizer.launcher import AdoptedTask
from mensa.agent.events import (
    ContainerExited,
    ContainerRecovered,
    Event,
    LaunchFailed,
    RecoverContainer,
    Recovered,
)
from mensa.agent.status_updates import TaskKey
from mensa.proto import mensa_pb2

if TYPE_CHECKING:
    from mensa.agent.service import AgentService, Container

log = structlog.get_logger("mensa.agent.service")

# How long recovery keeps asking an unreachable Docker engine for this agent's containers
# (only when a checkpointed task is a Docker one), and how often.
DOCKER_RECOVERY_SECONDS = 30.0
DOCKER_RETRY_SECONDS = 1.0


async def recover(service: AgentService) -> None:
    """Reads the checkpoint (when checkpointing) and rebuilds the state from it."""
    if service.store is None:
        return
    checkpoint = service.store.load()
    owned = {t.checkpoint.container_id for t in checkpoint.tasks if t.checkpoint.container_id}
    for containerizer in service.containerizers:
        remove_stale = getattr(containerizer, "remove_stale_cgroups", None)
        if remove_stale is not None:
            remove_stale(owned)
    if checkpoint.agent_id:
        await find_docker_containers(service, checkpoint)
    service.dispatch(Recovered(checkpoint))


async def find_docker_containers(service: AgentService, checkpoint: RecoveredAgent) -> None:
    docker = next((c for c in service.containerizers if c.name == "docker"), None)
    find = getattr(docker, "find_containers", None)
    if docker is None or find is None:
        return
    owned = {t.checkpoint.container_id for t in checkpoint.tasks}
    wanted = any(t.checkpoint.containerizer == "docker" for t in checkpoint.tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (DOCKER_RECOVERY_SECONDS if wanted else 0.0)
    while True:
        try:
            listed = await find(checkpoint.agent_id, strict=True)
            break
        except EngineUnreachable as exc:
            if loop.time() >= deadline:
                service._docker_unreachable = True
                log.error("docker_unreachable_at_recovery", error=str(exc),
                          consequence="its checkpointed tasks are removed by name (best effort) "
                          "and reported failed" if wanted else "no Docker task to recover")
                return
            await asyncio.sleep(DOCKER_RETRY_SECONDS)
    for found in listed:
        if found.container_id in owned:
            service._docker_found[found.container_id] = found
            continue
        log.warning("docker_orphan_found", container_id=found.container_id,
                    task_id=found.task_id, reason="no task of this agent owns it",
                    action="removing it")
        await docker.remove(found)  # type: ignore[attr-defined]


async def recover_container(service: AgentService, key: TaskKey, container: Container,
                            command: RecoverContainer) -> None:
    """Finds a checkpointed task's container, reports it, waits for its end."""
    final: Event
    try:
        final = await find_and_wait(service, key, container, command)
    except Exception as exc:
        log.exception("container_recovery_failed", framework_id=key[0], task_id=key[1])
        final = ContainerExited(*key, reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
                                message=f"lost track of the container: {exc}")
    if service._containers.get(key) is container:
        del service._containers[key]
    service.dispatch(final)


async def find_and_wait(service: AgentService, key: TaskKey, container: Container,
                        command: RecoverContainer) -> Event:
    by_name = {c.name: c for c in service.containerizers}
    found = service._docker_found.get(command.spec.container_id)
    handle: ContainerHandle | None = None
    ended = False
    if found is not None and "docker" in by_name:
        containerizer = by_name["docker"]
        handle = await containerizer.recover(found)  # type: ignore[attr-defined]
        ended = not found.running
    elif command.containerizer in ("", "process") and "process" in by_name:
        containerizer = by_name["process"]
        process = containerizer.recover(  # type: ignore[attr-defined]
            command.spec, command.pid, command.waiter_pid, command.pid_start)
        adopted = process.process
        if isinstance(adopted, AdoptedTask):
            ended = adopted.recorded() is not None
            if not ended and adopted.pid is None and not adopted.waiter_alive():
                # Not adoptable: nothing would ever tell its end. Whatever of it runs (in its
                # cgroup) is killed before it is reported failed.
                await containerizer.abandon(process)  # type: ignore[attr-defined]
                return LaunchFailed(*key, message="the agent restarted while it was "
                                    "launching the task")
        handle = process
    else:
        message = (f"the task's {command.containerizer or 'docker'} container was not found "
                   "after the agent restarted")
        docker = by_name.get("docker")
        if docker is not None and service._docker_unreachable:
            # Never report a task failed while its container may run on: remove it first.
            message = "the Docker engine could not be reached after the agent restarted"
            remove = getattr(docker, "remove_by_name", None)
            if remove is not None:
                await remove(command.spec.container_id)
        return ContainerExited(
            *key, reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED, message=message)
    assert handle is not None
    container.containerizer, container.handle = containerizer, handle
    if not ended:
        service.dispatch(ContainerRecovered(*key, pid=handle.pid))
    if container.kill_grace is not None:
        service._spawn(containerizer.kill(handle, container.kill_grace))
    termination = await containerizer.wait(handle)
    return ContainerExited(
        *key,
        exit_code=termination.exit_code,
        signal=termination.signal,
        killed_by_us=termination.killed_by_us,
        reason=termination.reason,
        message=termination.message,
    )
