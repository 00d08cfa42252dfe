"""AgentService against a scripted master (a bare ZeroMQ ROUTER in the test), real processes.

The test plays the master's side of the protocol by hand: it answers RegisterAgent, pings,
sends RunTask and KillTask, and acknowledges (or deliberately does not acknowledge) updates.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from mensa.agent.service import AgentService
from mensa.agent.state import AgentConfig
from mensa.deploy.processes import kill_processes_under
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources
from mensa.proto.transport import Endpoint, bind_router, decode, encode

pytestmark = pytest.mark.integration
FW = "fw-1"


class ScriptedMaster:
    """The master's ROUTER socket, driven step by step by the test."""

    def __init__(self, ctx: zmq.asyncio.Context, port: int = 0) -> None:
        self.sock, self.port = bind_router(ctx, "127.0.0.1", port)
        self.identity: bytes | None = None

    async def expect(self, kind: str, timeout: float = 10.0) -> internal_pb2.Envelope:
        """Returns the next message of ``kind``, skipping others (pongs, duplicates)."""

        async def loop() -> internal_pb2.Envelope:
            while True:
                identity, payload = await self.sock.recv_multipart()
                self.identity = identity
                envelope = decode(payload)
                if envelope.WhichOneof("message") == kind:
                    return envelope

        return await asyncio.wait_for(loop(), timeout)

    async def send(self, **message: object) -> None:
        assert self.identity is not None
        await self.sock.send_multipart([self.identity, encode(internal_pb2.Envelope(**message))])

    async def send_raw(self, payload: bytes) -> None:
        assert self.identity is not None
        await self.sock.send_multipart([self.identity, payload])

    async def register(
        self, agent_id: str = "agent-1", ping_timeout: float = 30.0
    ) -> internal_pb2.RegisterAgent:
        envelope = await self.expect("register_agent")
        reply = internal_pb2.AgentRegistered(
            ping_interval_seconds=1.0, ping_timeout_seconds=ping_timeout
        )
        reply.agent_id.value = agent_id
        await self.send(agent_registered=reply)
        return envelope.register_agent

    async def run_task(self, task_id: str, command: str, **task: object) -> None:
        msg = internal_pb2.RunTask()
        msg.framework.id.value = FW
        msg.framework.name = "scripted"
        msg.task.CopyFrom(mensa_pb2.TaskInfo(name=task_id, **task))
        msg.task.task_id.value = task_id
        msg.task.command.value = command
        await self.send(run_task=msg)

    async def update(self) -> internal_pb2.StatusUpdate:
        return (await self.expect("status_update")).status_update

    async def ack(self, update: internal_pb2.StatusUpdate) -> None:
        ack = internal_pb2.StatusUpdateAcknowledgement(uuid=update.status.uuid)
        ack.framework_id.value = update.framework_id.value
        ack.task_id.value = update.status.task_id.value
        await self.send(status_update_acknowledgement=ack)

    async def update_and_ack(self) -> internal_pb2.StatusUpdate:
        update = await self.update()
        await self.ack(update)
        return update

    def close(self) -> None:
        self.sock.close(linger=0)


def config(work_dir: Path) -> AgentConfig:
    return AgentConfig(
        work_dir=str(work_dir),
        hostname="scripted-host",
        resources=Resources.parse("cpus:2;mem:512;ports:[31000-31009]").to_proto(),
        http_port=5999,
        path_env=os.environ["PATH"],
        kill_grace_seconds=0.5,
        update_retry_min=0.2,
        update_retry_max=1.0,
        registration_backoff=0.1,
        registration_backoff_max=0.5,
    )


async def read_pid(path: Path) -> int:
    """Waits for a task's shell to write its pid (RUNNING means spawned, not yet run)."""
    for _ in range(500):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} was never written")


def with_agent(
    work_dir: Path,
    body: Callable[[ScriptedMaster, AgentService, zmq.asyncio.Context], Awaitable[None]],
) -> None:
    """Runs an AgentService and a scripted master on one loop; stops both and cleans up."""

    async def main() -> None:
        ctx = zmq.asyncio.Context()
        master = ScriptedMaster(ctx)
        service = AgentService(
            config(work_dir), Endpoint("127.0.0.1", master.port), tick_seconds=0.02
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(service.run(stop))
        try:
            await asyncio.wait_for(body(master, service, ctx), timeout=30)
        finally:
            stop.set()
            await asyncio.wait_for(runner, timeout=15)
            master.close()
            ctx.term()

    asyncio.run(main())  # The _no_leftovers fixture checks (and cleans) task processes.


def test_register_ping_run_task_and_reliable_updates(tmp_path: Path) -> None:
    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        reg = await master.register()
        assert reg.agent_info.hostname == "scripted-host" and reg.http_port == 5999
        assert not reg.agent_info.HasField("id")

        await master.send(ping=internal_pb2.Ping())
        await master.expect("pong")

        # Junk from the socket is ignored; the agent keeps answering.
        await master.send_raw(b"\xff\xfe not a protobuf")
        await master.send(ping=internal_pb2.Ping())
        await master.expect("pong")

        resources = Resources.parse("cpus:0.1;ports:[31004-31004]").to_proto()
        await master.run_task("t1", 'echo "port=$PORT0 dir=$MESOS_SANDBOX"', resources=resources)
        starting = await master.update()
        assert starting.status.state == mensa_pb2.TASK_STARTING
        assert starting.status.agent_id.value == "agent-1"
        # Not acknowledged: it comes again, same uuid, before anything newer.
        again = await master.update()
        assert again.status.uuid == starting.status.uuid
        await master.ack(starting)
        running = await master.update_and_ack()
        assert running.status.state == mensa_pb2.TASK_RUNNING
        finished = await master.update()
        assert finished.status.state == mensa_pb2.TASK_FINISHED
        assert finished.status.message == "Command exited with status 0"
        # A duplicate acknowledgement of an older update is harmless.
        await master.ack(running)
        await master.ack(finished)
        await master.ack(finished)

        sandbox = tmp_path / "agents/agent-1/frameworks/fw-1/executors/t1/runs/latest"
        assert (sandbox / "stdout").read_text() == f"port=31004 dir={sandbox}\n"
        for _ in range(100):
            if not service.state.tasks:
                break
            await asyncio.sleep(0.02)
        assert [r.task_id for r in service.state.completed] == ["t1"]
        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        assert endpoints["agent_id"] == "agent-1" and endpoints["http_port"] == 5999

    with_agent(tmp_path, body)


def test_bad_task_id_failed_command_and_kill(tmp_path: Path) -> None:
    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        await master.run_task("../../escape", "true")
        error = await master.update_and_ack()
        assert error.status.state == mensa_pb2.TASK_ERROR
        assert error.status.reason == mensa_pb2.TaskStatus.REASON_TASK_INVALID
        assert not (tmp_path / "agents/agent-1/frameworks/escape").exists()

        await master.run_task("fails", "exit 7")
        states = [
            mensa_pb2.TaskState.Name((await master.update_and_ack()).status.state) for _ in range(3)
        ]
        assert states == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]

        await master.run_task("sleeper", "echo $$ > pid; exec sleep 60")
        assert (await master.update_and_ack()).status.state == mensa_pb2.TASK_STARTING
        assert (await master.update_and_ack()).status.state == mensa_pb2.TASK_RUNNING
        pid_file = tmp_path / "agents/agent-1/frameworks/fw-1/executors/sleeper/runs/latest/pid"
        pid = await read_pid(pid_file)
        kill = internal_pb2.KillTask()
        kill.framework_id.value = FW
        kill.task_id.value = "sleeper"
        await master.send(kill_task=kill)
        killed = await master.update_and_ack()
        assert killed.status.state == mensa_pb2.TASK_KILLED
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    with_agent(tmp_path, body)


def test_restarted_master_is_reregistered_with_and_stop_kills_tasks(tmp_path: Path) -> None:
    pid_holder: list[int] = []

    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        await master.run_task("long", "echo $$ > pid; exec sleep 60")
        await master.update_and_ack()  # STARTING
        await master.update()  # RUNNING, deliberately not acknowledged
        pid_file = tmp_path / "agents/agent-1/frameworks/fw-1/executors/long/runs/latest/pid"
        pid_holder.append(await read_pid(pid_file))

        # The master dies and a new one starts on the same port.
        port = master.port
        master.close()
        await asyncio.sleep(0.2)
        new = ScriptedMaster(ctx, port)
        master.sock = new.sock
        reg = await master.register(agent_id="agent-1")
        assert reg.agent_info.id.value == "agent-1"
        (task,) = reg.tasks
        assert task.task_id.value == "long" and task.state == mensa_pb2.TASK_RUNNING
        assert task.status_update_state == mensa_pb2.TASK_RUNNING
        # The unacknowledged RUNNING is sent again to the new master.
        running = await master.update()
        assert running.status.uuid == task.status_update_uuid
        await master.ack(running)
        # Stopping the agent (in with_agent) kills the task.

    with_agent(tmp_path, body)
    (pid,) = pid_holder
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_shutdown_framework_and_unknown_kill(tmp_path: Path) -> None:
    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        kill = internal_pb2.KillTask()
        kill.framework_id.value = FW
        kill.task_id.value = "ghost"
        await master.send(kill_task=kill)
        lost = await master.update_and_ack()
        assert lost.status.state == mensa_pb2.TASK_LOST
        assert lost.status.reason == mensa_pb2.TaskStatus.REASON_TASK_UNKNOWN

        await master.run_task("victim", "exec sleep 60")
        await master.update()  # STARTING, never acknowledged
        shutdown = internal_pb2.ShutdownFramework()
        shutdown.framework_id.value = FW
        await master.send(shutdown_framework=shutdown)
        for _ in range(200):
            if not service.state.tasks:
                break
            await asyncio.sleep(0.02)
        assert not service.state.tasks
        assert service.state.completed[-1].state == mensa_pb2.TASK_KILLED
        assert len(service.state.updates) == 0
        # Nothing more about the framework is sent (no TASK_KILLED, no retries): up to the pong
        # that answers this ping, only an update already on the wire may arrive.
        await master.send(ping=internal_pb2.Ping())
        while True:
            _identity, payload = await asyncio.wait_for(master.sock.recv_multipart(), 5)
            envelope = decode(payload)
            if envelope.WhichOneof("message") == "pong":
                break
            assert envelope.status_update.status.state == mensa_pb2.TASK_STARTING

    with_agent(tmp_path, body)


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Every task process is gone once the agent has stopped."""
    yield
    assert kill_processes_under(tmp_path) == []
