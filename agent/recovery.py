"""Recovery at start: the agent's checkpoint read back and its tasks' containers found again
(the I/O shell's side; the decisions are ``task_recovery``'s).

``recover(service)`` reads the checkpoint (when checkpointing) and feeds it to the state
(``Recovered``); Docker containers labelled with this agent's id that no checkpointed task owns
(a launch given up on) are removed first. For each ``RecoverContainer`` the state returns,
``recover_container`` finds the container again (a process task by its waiter, pid and cgroup,
a Docker task by its labels), reports it running (``ContainerRecovered``) or ended, with its
real exit status (``ContainerExited``), and waits for its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from mensa.agent.checkpoint_records import RecoveredAgent
from mensa.agent.containerizer.base import ContainerHandle
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


async def recover(service: AgentService) -> None:
    """Reads the checkpoint (when checkpointing) and rebuilds the state from it."""
    if service.store is None:
        return
    checkpoint = service.store.load()
    if checkpoint.agent_id:
        await find_docker_containers(service, checkpoint)
    service.dispatch(Recovered(checkpoint))


async def find_docker_containers(service: AgentService, checkpoint: RecoveredAgent) -> None:
    docker = next((c for c in service.containerizers if c.name == "docker"), None)
    find = getattr(docker, "find_containers", None)
    if docker is None or find is None:
        return
    owned = {t.checkpoint.container_id for t in checkpoint.tasks}
    for found in await find(checkpoint.agent_id):
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
            command.spec, command.pid, command.waiter_pid)
        adopted = process.process
        if isinstance(adopted, AdoptedTask):
            ended = adopted.recorded() is not None
            if not ended and adopted.pid is None and not adopted.waiter_alive():
                return LaunchFailed(*key, message="the agent restarted while it was "
                                    "launching the task")
        handle = process
    else:
        return ContainerExited(
            *key, reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
            message=f"the task's {command.containerizer or 'docker'} container was not "
            "found after the agent restarted")
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
