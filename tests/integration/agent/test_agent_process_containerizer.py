"""ProcessContainerizer with real processes: exit codes, output files, environment, killing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mensa.agent.containerizer.base import Containerizer, LaunchError, LaunchSpec, Termination
from mensa.agent.containerizer.process import ProcessContainerizer, ProcessHandle
from mensa.agent.sandbox import command_line, task_environment
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

T = TypeVar("T")
pytestmark = pytest.mark.integration


def make_spec(sandbox: Path, command: mensa_pb2.CommandInfo, ports: str = "") -> LaunchSpec:
    sandbox.mkdir(parents=True, exist_ok=True)
    info = mensa_pb2.TaskInfo(name="t", command=command)
    info.task_id.value = "task-1"
    if ports:
        info.resources.extend(Resources.parse(f"ports:{ports}").to_proto())
    executable, argv = command_line(command)
    env = task_environment(
        task_info=info,
        framework_id="fw",
        agent_id="ag",
        sandbox=str(sandbox),
        hostname="localhost",
        path=os.environ["PATH"],
    )
    return LaunchSpec(
        # Unique: the container id names the task's cgroup, shared by every run on this host.
        container_id=f"c1-{uuid.uuid4().hex[:12]}",
        framework_id="fw",
        task_id="task-1",
        executable=executable,
        argv=argv,
        env=env,
        sandbox=str(sandbox),
        task_info=info,
    )


def shell(value: str) -> mensa_pb2.CommandInfo:
    return mensa_pb2.CommandInfo(value=value)


def alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def run(body: Callable[[ProcessContainerizer, list[int]], Awaitable[T]]) -> T:
    """Runs ``body`` with a containerizer; SIGKILLs every pid/process group it recorded."""
    pids: list[int] = []

    async def main() -> T:
        return await asyncio.wait_for(body(ProcessContainerizer(), pids), timeout=20)

    try:
        return asyncio.run(main())
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


async def launch_and_wait(
    c: ProcessContainerizer, spec: LaunchSpec, pids: list[int]
) -> Termination:
    handle = await c.launch(spec)
    assert handle.pid is not None
    pids.append(handle.pid)
    return await c.wait(handle)


async def wait_for_file(path: Path) -> str:
    while not path.exists() or not path.read_text().strip():
        await asyncio.sleep(0.02)
    return path.read_text().strip()


def test_it_is_a_containerizer() -> None:
    c = ProcessContainerizer()
    assert isinstance(c, Containerizer)
    assert c.can_run(mensa_pb2.TaskInfo(command=shell("true")))
    docker = mensa_pb2.TaskInfo(command=shell("true"))
    docker.container.type = mensa_pb2.ContainerInfo.DOCKER
    assert not c.can_run(docker)


def test_exit_zero_with_stdout_and_stderr_in_the_sandbox(tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "sb", shell("echo hello; echo oops >&2; pwd"))
    term = run(lambda c, pids: launch_and_wait(c, spec, pids))
    assert term == Termination(exit_code=0)
    sandbox = tmp_path / "sb"
    assert (sandbox / "stdout").read_text() == f"hello\n{sandbox}\n"
    assert (sandbox / "stderr").read_text() == "oops\n"


def test_exit_code_is_reported(tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "sb", shell("exit 3"))
    term = run(lambda c, pids: launch_and_wait(c, spec, pids))
    assert term.exit_code == 3 and term.signal is None and not term.killed_by_us


def test_environment_has_ports_and_sandbox(tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    spec = make_spec(
        sandbox,
        shell('echo "$PORT0 $PORT1 $PORTS $MESOS_SANDBOX $MESOS_TASK_ID"'),
        ports="[31002-31003]",
    )
    assert run(lambda c, pids: launch_and_wait(c, spec, pids)).exit_code == 0
    assert (sandbox / "stdout").read_text() == f"31002 31003 31002,31003 {sandbox} task-1\n"


def test_shell_false_runs_the_executable_with_its_arguments(tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    command = mensa_pb2.CommandInfo(
        value="/bin/echo", shell=False, arguments=["echo", "a  b", "$HOME"]
    )
    spec = make_spec(sandbox, command)
    assert run(lambda c, pids: launch_and_wait(c, spec, pids)).exit_code == 0
    assert (sandbox / "stdout").read_text() == "a  b $HOME\n"


def test_missing_executable_is_a_launch_error(tmp_path: Path) -> None:
    command = mensa_pb2.CommandInfo(value=str(tmp_path / "no-such-program"), shell=False)
    spec = make_spec(tmp_path / "sb", command)

    async def body(c: ProcessContainerizer, pids: list[int]) -> str:
        with pytest.raises(LaunchError) as info:
            await c.launch(spec)
        return str(info.value)

    assert "no-such-program" in run(body)


def test_kill_reaches_the_whole_group_and_sigkills_a_child_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    sandbox = tmp_path / "sb"
    spec = make_spec(
        sandbox,
        shell("""sh -c 'trap "" TERM; echo ready > child.ready; sleep 60' &
echo $! > child.pid; wait"""),
    )

    async def body(c: ProcessContainerizer, pids: list[int]) -> tuple[Termination, int]:
        handle = await c.launch(spec)
        assert isinstance(handle, ProcessHandle) and handle.pid is not None
        pids.append(handle.pid)
        child = int(await wait_for_file(sandbox / "child.pid"))
        pids.append(child)
        await wait_for_file(sandbox / "child.ready")  # its SIGTERM trap is in place
        waiter = asyncio.create_task(c.wait(handle))
        await c.kill(handle, grace_seconds=0.3)
        assert not alive(child)
        return await waiter, child

    term, child = run(body)
    assert term.killed_by_us and term.signal == signal.SIGTERM
    assert not alive(child)


def test_a_leader_that_ignores_sigterm_is_sigkilled_after_the_grace(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path / "sb", shell('trap "" TERM; echo ready > ready; while :; do sleep 0.05; done')
    )

    async def body(c: ProcessContainerizer, pids: list[int]) -> Termination:
        handle = await c.launch(spec)
        assert handle.pid is not None
        pids.append(handle.pid)
        await wait_for_file(tmp_path / "sb" / "ready")
        waiter = asyncio.create_task(c.wait(handle))
        await c.kill(handle, grace_seconds=0.2)
        await c.kill(handle, grace_seconds=0.2)  # again: harmless
        return await waiter

    term = run(body)
    assert term.killed_by_us and term.signal == signal.SIGKILL


def test_processes_left_behind_by_a_finished_task_are_killed(tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    spec = make_spec(sandbox, shell("sleep 60 & echo $! > bg.pid; exit 0"))

    async def body(c: ProcessContainerizer, pids: list[int]) -> tuple[Termination, int]:
        term = await launch_and_wait(c, spec, pids)
        bg = int((sandbox / "bg.pid").read_text())
        pids.append(bg)
        return term, bg

    term, bg = run(body)
    assert term == Termination(exit_code=0)
    assert not alive(bg)


def test_kill_after_exit_is_harmless(tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "sb", shell("true"))

    async def body(c: ProcessContainerizer, pids: list[int]) -> Termination:
        handle = await c.launch(spec)
        assert handle.pid is not None
        pids.append(handle.pid)
        term = await c.wait(handle)
        await c.kill(handle, grace_seconds=0.1)
        return term

    assert run(body).exit_code == 0
