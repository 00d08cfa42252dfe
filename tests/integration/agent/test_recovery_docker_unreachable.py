"""Recovery when the Docker engine cannot be reached at restart: it is asked again for a bounded
time; a Docker task is never reported failed while its container may run on untracked."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from mensa.agent import recovery
from mensa.agent.checkpoint_records import RecoveredAgent, RecoveredTask, TaskCheckpoint
from mensa.agent.containerizer.base import EngineUnreachable, LaunchSpec
from mensa.agent.events import ContainerExited, RecoverContainer
from mensa.proto import mensa_pb2


class FakeDocker:
    name = "docker"

    def __init__(self, unreachable_times: int) -> None:
        self.unreachable_times = unreachable_times
        self.asked = 0
        self.removed: list[str] = []

    async def find_containers(self, agent_id: str | None = None, *,
                              strict: bool = False) -> list[Any]:
        self.asked += 1
        if self.asked <= self.unreachable_times:
            if strict:
                raise EngineUnreachable("connection refused")
            return []
        return [SimpleNamespace(container_id="c1", task_id="t1", running=True)]

    async def remove(self, found: Any) -> None:
        self.removed.append(found.container_id)

    async def remove_by_name(self, container_id: str) -> None:
        self.removed.append(container_id)


def checkpoint() -> RecoveredAgent:
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = "fw"
    info = mensa_pb2.TaskInfo(name="t1")
    info.task_id.value = "t1"
    cp = TaskCheckpoint(framework, info, container_id="c1", containerizer="docker")
    return RecoveredAgent("agent-1", [RecoveredTask(cp)])


def service(docker: FakeDocker) -> Any:
    return SimpleNamespace(containerizers=[docker], _docker_found={}, _docker_unreachable=False)


def test_an_engine_unreachable_for_a_while_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "DOCKER_RETRY_SECONDS", 0.01)
    docker = FakeDocker(unreachable_times=3)
    svc = service(docker)
    asyncio.run(recovery.find_docker_containers(svc, checkpoint()))
    assert docker.asked == 4 and "c1" in svc._docker_found and not svc._docker_unreachable


def test_an_engine_that_stays_unreachable_gets_its_containers_removed_before_the_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recovery, "DOCKER_RETRY_SECONDS", 0.01)
    monkeypatch.setattr(recovery, "DOCKER_RECOVERY_SECONDS", 0.05)
    docker = FakeDocker(unreachable_times=10**6)
    svc = service(docker)
    asyncio.run(recovery.find_docker_containers(svc, checkpoint()))
    assert svc._docker_unreachable and svc._docker_found == {}
    spec = LaunchSpec("c1", "fw", "t1", "", (), {}, "/sb", mensa_pb2.TaskInfo())
    command = RecoverContainer("fw", "t1", spec, "docker", None, None)
    event = asyncio.run(recovery.find_and_wait(svc, ("fw", "t1"), SimpleNamespace(), command))
    assert isinstance(event, ContainerExited) and "could not be reached" in event.message
    assert docker.removed == ["c1"]
