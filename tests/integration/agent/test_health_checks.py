"""Health checks and kill policies end to end: a real AgentService, real task processes, a
scripted master (the ROUTER socket of test_agent_service_scripted_master), short intervals."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq.asyncio
from test_agent_service_scripted_master import FW, ScriptedMaster, read_pid, with_agent

from mensa.agent.service import AgentService
from mensa.deploy.processes import kill_processes_under
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources

pytestmark = pytest.mark.integration
HC = mensa_pb2.HealthCheck
TS = mensa_pb2.TaskStatus
KILLING = mensa_pb2.FrameworkInfo.Capability.TASK_KILLING_STATE
HEALTH_REASON = TS.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED
SERVER = "exec python3 -m http.server $PORT0 --bind 127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(kind: int, **fields: object) -> mensa_pb2.HealthCheck:
    policy: dict[str, object] = {
        "delay_seconds": 0.0,
        "interval_seconds": 0.2,
        "timeout_seconds": 2.0,
        "grace_period_seconds": 0.0,
        "consecutive_failures": 2,
    }
    policy.update(fields)
    return HC(type=kind, **policy)  # type: ignore[arg-type]


async def launch(
    master: ScriptedMaster,
    task_id: str,
    command: str,
    *,
    port: int | None = None,
    killing_capable: bool = False,
    **task: object,
) -> None:
    """Sends RunTask and acknowledges STARTING and RUNNING."""
    msg = internal_pb2.RunTask()
    msg.framework.id.value = FW
    msg.framework.name = "health"
    if killing_capable:
        msg.framework.capabilities.add(type=KILLING)
    msg.task.CopyFrom(mensa_pb2.TaskInfo(name=task_id, **task))  # type: ignore[arg-type]
    msg.task.task_id.value = task_id
    msg.task.command.value = command
    if port is not None:
        msg.task.resources.extend(Resources.parse(f"cpus:0.1;ports:[{port}-{port}]").to_proto())
    await master.send(run_task=msg)
    assert (await master.update_and_ack()).status.state == mensa_pb2.TASK_STARTING
    assert (await master.update_and_ack()).status.state == mensa_pb2.TASK_RUNNING


async def kill_task(master: ScriptedMaster, task_id: str, grace_seconds: float | None = None) -> None:
    kill = internal_pb2.KillTask()
    kill.framework_id.value = FW
    kill.task_id.value = task_id
    if grace_seconds is not None:
        kill.kill_policy.grace_period.nanoseconds = int(grace_seconds * 1e9)
    await master.send(kill_task=kill)


def sandbox(tmp_path: Path, task_id: str) -> Path:
    return tmp_path / f"agents/agent-1/frameworks/{FW}/executors/{task_id}/runs/latest"


def state(update: internal_pb2.StatusUpdate) -> str:
    return mensa_pb2.TaskState.Name(update.status.state)


def test_http_check_goes_healthy_and_state_shows_it(tmp_path: Path) -> None:
    port = free_port()

    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        # The server needs a moment to listen: failures within the grace period are ignored.
        hc = check(HC.HTTP, http=HC.HTTPCheckInfo(port=port, path="/"), grace_period_seconds=20.0)
        await launch(master, "web", SERVER, port=port, health_check=hc)
        healthy = await master.update_and_ack()
        assert state(healthy) == "TASK_RUNNING" and healthy.status.reason == HEALTH_REASON
        assert healthy.status.HasField("healthy") and healthy.status.healthy
        assert service.state.task_health(FW, "web") is True
        await kill_task(master, "web")
        killed = await master.update_and_ack()
        assert state(killed) == "TASK_KILLED" and not killed.status.HasField("healthy")

    with_agent(tmp_path, body)


def test_http_check_unhealthy_on_404_then_task_killed(tmp_path: Path) -> None:
    port = free_port()

    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        # The server serves its sandbox: /flag answers 200 until the test removes the file.
        hc = check(HC.HTTP, http=HC.HTTPCheckInfo(port=port, path="/flag"), grace_period_seconds=20.0)
        await launch(master, "web404", f"touch flag; {SERVER}", port=port, health_check=hc)
        healthy = await master.update_and_ack()
        assert healthy.status.healthy and healthy.status.reason == HEALTH_REASON
        (sandbox(tmp_path, "web404") / "flag").unlink()
        unhealthy = await master.update_and_ack()
        assert unhealthy.status.reason == HEALTH_REASON and not unhealthy.status.healthy
        assert unhealthy.status.message == f"HTTP GET http://127.0.0.1:{port}/flag returned status 404"
        assert service.state.task_health(FW, "web404") is False
        killed = await master.update_and_ack()
        assert state(killed) == "TASK_KILLED"
        assert killed.status.message.startswith("task killed after 2 consecutive failed health checks")


def test_tcp_check_healthy_then_unhealthy_when_the_listener_goes_and_task_killed(
    tmp_path: Path,
) -> None:
    port = free_port()
    command = (
        "python3 -m http.server $PORT0 --bind 127.0.0.1 & echo $! > server.pid; wait; exec sleep 60"
    )

    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        hc = check(HC.TCP, tcp=HC.TCPCheckInfo(port=port), grace_period_seconds=20.0)
        await launch(master, "tcp", command, port=port, health_check=hc)
        healthy = await master.update_and_ack()
        assert healthy.status.healthy and healthy.status.reason == HEALTH_REASON
        os.kill(await read_pid(sandbox(tmp_path, "tcp") / "server.pid"), 9)
        unhealthy = await master.update_and_ack()
        assert state(unhealthy) == "TASK_RUNNING" and not unhealthy.status.healthy
        assert "TCP connect" in unhealthy.status.message
        killed = await master.update_and_ack()
        assert state(killed) == "TASK_KILLED" and not killed.status.healthy
        assert killed.status.message.startswith("task killed after 2 consecutive failed health checks")

    with_agent(tmp_path, body)


def test_command_check_turns_unhealthy_when_file_removed_and_task_is_killed(tmp_path: Path) -> None:
    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        command = mensa_pb2.CommandInfo(value='test -f "$MESOS_SANDBOX/ready" && test "$X" = 1')
        command.environment.variables.add(name="X", value="1")
        hc = check(HC.COMMAND, command=command, consecutive_failures=3, grace_period_seconds=20.0)
        await launch(
            master, "cmd", "touch ready; echo $$ > pid; exec sleep 60",
            killing_capable=True, health_check=hc,
        )
        healthy = await master.update_and_ack()
        assert healthy.status.healthy and healthy.status.reason == HEALTH_REASON
        (sandbox(tmp_path, "cmd") / "ready").unlink()
        unhealthy = await master.update_and_ack()
        assert not unhealthy.status.healthy
        assert unhealthy.status.message == "health check command exited with status 1"
        killing = await master.update_and_ack()
        why = (
            "task killed after 3 consecutive failed health checks: "
            "health check command exited with status 1"
        )
        assert state(killing) == "TASK_KILLING" and killing.status.message == why
        killed = await master.update_and_ack()
        assert state(killed) == "TASK_KILLED" and killed.status.message == why
        assert not killed.status.healthy

    with_agent(tmp_path, body)


def test_hanging_check_command_times_out_and_its_processes_are_killed(tmp_path: Path) -> None:
    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        command = mensa_pb2.CommandInfo(value="echo $$ >> check.pids; sleep 60 & sleep 60")
        hc = check(HC.COMMAND, command=command, timeout_seconds=0.3, consecutive_failures=1)
        await launch(master, "hang", "exec sleep 60", health_check=hc)
        unhealthy = await master.update_and_ack()
        assert not unhealthy.status.healthy
        assert unhealthy.status.message.endswith("timed out after 0.3s")
        killed = await master.update_and_ack()
        assert state(killed) == "TASK_KILLED"
        assert "timed out after 0.3s" in killed.status.message
        pids = [int(p) for p in (sandbox(tmp_path, "hang") / "check.pids").read_text().split()]
        assert pids
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        # Nothing of the check (its backgrounded sleep included) is left in the sandbox.
        assert kill_processes_under(tmp_path) == []

    with_agent(tmp_path, body)


# -- kill policy --------------------------------------------------------------------------------

LOOP = "echo $$ > pid; while :; do sleep 0.05; done"


def test_task_trapping_sigterm_exits_promptly_with_killing_first(tmp_path: Path) -> None:
    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        policy = mensa_pb2.KillPolicy()
        policy.grace_period.nanoseconds = 60 * 10**9  # Far longer than the test waits.
        await launch(
            master, "polite", f"trap 'echo term > got; exit 3' TERM; {LOOP}",
            killing_capable=True, kill_policy=policy,
        )
        await read_pid(sandbox(tmp_path, "polite") / "pid")
        await kill_task(master, "polite")
        assert state(await master.update_and_ack()) == "TASK_KILLING"
        killed = await master.update_and_ack()  # Well before the 60 s grace period.
        assert state(killed) == "TASK_KILLED"
        assert killed.status.message == "Command exited with status 3"
        assert (sandbox(tmp_path, "polite") / "got").read_text() == "term\n"

    with_agent(tmp_path, body)


def test_task_ignoring_sigterm_is_sigkilled_after_the_grace_period(tmp_path: Path) -> None:
    async def body(master: ScriptedMaster, service: AgentService, ctx: zmq.asyncio.Context) -> None:
        await master.register()
        await launch(master, "stubborn", f"trap 'echo term >> got' TERM; {LOOP}")
        pid = await read_pid(sandbox(tmp_path, "stubborn") / "pid")
        await kill_task(master, "stubborn", grace_seconds=0.5)  # KillTask's policy wins.
        killed = await master.update_and_ack()  # No TASK_KILLING: the framework did not ask.
        assert state(killed) == "TASK_KILLED"
        assert killed.status.message == "Command terminated with signal SIGKILL"
        assert "term" in (sandbox(tmp_path, "stubborn") / "got").read_text()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    with_agent(tmp_path, body)


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Every task and health-check process is gone once the agent has stopped."""
    yield
    assert kill_processes_under(tmp_path) == []
