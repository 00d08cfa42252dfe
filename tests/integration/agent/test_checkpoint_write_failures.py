"""AgentService when checkpoint writes fail: a task that cannot be checkpointed is failed, not
launched; a status update that cannot be checkpointed is not sent until its write succeeds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mensa.agent.checkpoint import Failed
from mensa.agent.containerizer.base import ContainerHandle, LaunchSpec, Termination
from mensa.agent.events import (
    CheckpointCommand,
    CheckpointTask,
    CheckpointUpdate,
    MasterMessage,
    Tick,
)
from mensa.agent.service import AgentService
from mensa.agent.state import AgentConfig
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.transport import Endpoint

FW = "fw"


class Handle:
    container_id = "c"
    pid = 4242


class NeverRuns:
    """A containerizer that records launches (the test never waits for one)."""

    name = "process"

    def __init__(self) -> None:
        self.launched: list[str] = []

    def can_run(self, task_info: mensa_pb2.TaskInfo) -> bool:
        return True

    async def launch(self, spec: LaunchSpec) -> ContainerHandle:
        self.launched.append(spec.task_id)
        return Handle()

    async def wait(self, handle: ContainerHandle) -> Termination:
        await asyncio.Event().wait()
        raise AssertionError

    async def kill(self, handle: ContainerHandle, grace_seconds: float) -> None:
        return None


def setup(tmp_path: Path, fail: set[type]) -> tuple[AgentService, list[internal_pb2.Envelope],
                                                       NeverRuns, list[float]]:
    containerizer = NeverRuns()
    now = [0.0]
    config = AgentConfig(work_dir=str(tmp_path), hostname="h", checkpoint=True)
    service = AgentService(config, Endpoint.parse("127.0.0.1:1"), [containerizer],
                           publish_endpoints=False, clock=lambda: now[0])
    sent: list[internal_pb2.Envelope] = []
    service._send = sent.append  # type: ignore[method-assign]
    assert service.store is not None
    real = service.store.execute_all

    def execute_all(commands: Iterable[CheckpointCommand]) -> list[Failed]:
        commands = list(commands)
        refused = [c for c in commands if type(c) in fail]
        failed = real([c for c in commands if type(c) not in fail])
        return failed + [(c, OSError(28, "No space left on device")) for c in refused]

    service.store.execute_all = execute_all  # type: ignore[method-assign]
    return service, sent, containerizer, now


def register(service: AgentService) -> None:
    service.dispatch(Tick())
    reply = internal_pb2.AgentRegistered(ping_timeout_seconds=100.0)
    reply.agent_id.value = "agent-1"
    service.dispatch(MasterMessage(internal_pb2.Envelope(agent_registered=reply)))


def run_task(service: AgentService, task_id: str) -> None:
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    info.command.value = "true"
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = FW
    service.dispatch(MasterMessage(internal_pb2.Envelope(
        run_task=internal_pb2.RunTask(framework=framework, task=info))))


def statuses(sent: list[internal_pb2.Envelope]) -> list[Any]:
    return [(e.status_update.status.task_id.value,
             mensa_pb2.TaskState.Name(e.status_update.status.state),
             e.status_update.status.reason)
            for e in sent if e.HasField("status_update")]


def test_a_task_that_cannot_be_checkpointed_is_failed_not_launched(tmp_path: Path) -> None:
    async def main() -> None:
        service, sent, containerizer, _now = setup(tmp_path, {CheckpointTask})
        register(service)
        run_task(service, "t1")
        await asyncio.sleep(0)
        assert containerizer.launched == []
        assert not service._containers
        assert statuses(sent) == [("t1", "TASK_STARTING", 0)]
        starting = next(e for e in sent if e.HasField("status_update")).status_update
        ack = internal_pb2.StatusUpdateAcknowledgement(uuid=starting.status.uuid)
        ack.framework_id.value, ack.task_id.value = FW, "t1"
        service.dispatch(MasterMessage(internal_pb2.Envelope(status_update_acknowledgement=ack)))
        assert statuses(sent)[-1] == (
            "t1", "TASK_FAILED", mensa_pb2.TaskStatus.REASON_CONTAINER_LAUNCH_FAILED)

    asyncio.run(main())


def test_an_update_that_cannot_be_checkpointed_is_sent_only_once_it_is(tmp_path: Path) -> None:
    async def main() -> None:
        fail: set[type] = set()
        service, sent, containerizer, now = setup(tmp_path, fail)
        register(service)
        fail.add(CheckpointUpdate)  # the disk is full from here on
        run_task(service, "t1")
        await asyncio.sleep(0.01)
        assert containerizer.launched == ["t1"]  # task.json was written
        assert statuses(sent) == []
        now[0] = 5.0  # the update's retry is due; the disk is still full
        service.dispatch(Tick())
        assert statuses(sent) == []
        fail.clear()  # room again: the next retry writes it, then sends it
        now[0] = 20.0
        service.dispatch(Tick())
        assert statuses(sent) == [("t1", "TASK_STARTING", 0)]
        assert service.store is not None
        (loaded,) = service.store.load().tasks
        assert [mensa_pb2.TaskState.Name(s.state) for s in loaded.pending][:1] == ["TASK_STARTING"]
        for container in service._containers.values():
            if container.task is not None:
                container.task.cancel()

    asyncio.run(main())
