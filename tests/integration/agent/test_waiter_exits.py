"""The waiter (containerizer/launcher.py) with real processes: exit codes above 128 that are not
terminating signals, and the signal dispositions the task starts with."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path

import pytest

from mensa.agent.checkpoint_records import parse_exit_status
from mensa.agent.containerizer.base import LaunchSpec, Termination
from mensa.agent.containerizer.launcher import AdoptedTask
from mensa.agent.containerizer.process import ProcessContainerizer
from mensa.agent.sandbox import command_line, task_environment
from mensa.proto import mensa_pb2

pytestmark = pytest.mark.integration


def waited_spec(tmp_path: Path, command: str) -> LaunchSpec:
    """A shell task launched under a waiter (it has a runtime dir for its exit status)."""
    sandbox, runtime = tmp_path / "sandbox", tmp_path / "runtime"
    sandbox.mkdir()
    runtime.mkdir()
    info = mensa_pb2.TaskInfo(name="t", command=mensa_pb2.CommandInfo(value=command))
    info.task_id.value = "task-1"
    executable, argv = command_line(info.command)
    env = task_environment(task_info=info, framework_id="fw", agent_id="ag", sandbox=str(sandbox),
                           hostname="localhost", path=os.environ["PATH"])
    return LaunchSpec(container_id=f"w-{uuid.uuid4().hex[:12]}", framework_id="fw",
                      task_id="task-1", executable=executable, argv=argv, env=env,
                      sandbox=str(sandbox), task_info=info, runtime_dir=str(runtime))


def launch_and_wait(spec: LaunchSpec) -> Termination:
    pids: list[int] = []

    async def main() -> Termination:
        c = ProcessContainerizer(isolation="rlimits")
        handle = await c.launch(spec)
        assert handle.pid is not None and getattr(handle, "waiter_pid", None) is not None
        pids.extend([handle.pid, handle.waiter_pid])  # type: ignore[attr-defined]
        return await asyncio.wait_for(c.wait(handle), timeout=10)

    try:
        return asyncio.run(main())
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("code", [147, 145, 156])
def test_an_exit_code_of_128_plus_a_non_terminating_signal_is_an_exit_code(
    tmp_path: Path, code: int
) -> None:
    spec = waited_spec(tmp_path, f"exit {code}")
    termination = launch_and_wait(spec)
    assert (termination.exit_code, termination.signal) == (code, None)
    recorded = (Path(spec.runtime_dir) / "exit_status").read_text()
    assert parse_exit_status(recorded) == (code, None)
    # A restarted agent reads it the same way.
    adopted = AdoptedTask(None, None, str(Path(spec.runtime_dir) / "exit_status"))
    assert asyncio.run(adopted.wait()) == code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGPIPE, signal.SIGUSR1])
def test_a_task_killed_by_a_signal_is_still_reported_killed_by_it(
    tmp_path: Path, sig: signal.Signals
) -> None:
    spec = waited_spec(tmp_path, f"kill -{sig.name[3:]} $$")
    termination = launch_and_wait(spec)
    assert (termination.exit_code, termination.signal) == (None, sig)
    assert parse_exit_status((Path(spec.runtime_dir) / "exit_status").read_text()) == (None, sig)


def test_the_task_starts_with_sigint_and_sigquit_at_their_default(tmp_path: Path) -> None:
    spec = waited_spec(tmp_path, "grep SigIgn /proc/self/status")
    termination = launch_and_wait(spec)
    assert termination.exit_code == 0
    line = Path(spec.stdout_path).read_text().split()
    ignored = int(line[-1], 16)
    assert not ignored & (1 << (signal.SIGINT - 1)), line
    assert not ignored & (1 << (signal.SIGQUIT - 1)), line


def test_a_task_whose_launch_was_not_checkpointed_is_found_by_its_waiter(tmp_path: Path) -> None:
    """The agent died after spawning the waiter, before it checkpointed any pid: a restarted
    agent finds the waiter by its command line and the task as its child, and adopts it."""
    spec = waited_spec(tmp_path, "sleep 30")
    pids: list[int] = []

    async def main() -> tuple[int, int, int | None, int | None, Termination]:
        c = ProcessContainerizer(isolation="rlimits")
        spawned: list[int] = []
        c.on_spawned = lambda s, waiter_pid: spawned.append(waiter_pid)
        launched = await c.launch(spec)
        assert launched.pid is not None
        pids.extend([launched.pid, *spawned])
        assert spawned == [launched.waiter_pid]  # type: ignore[attr-defined]
        restarted = ProcessContainerizer(isolation="rlimits")
        handle = restarted.recover(spec, None, None)
        await restarted.kill(handle, 0.0)
        termination = await asyncio.wait_for(restarted.wait(handle), timeout=10)
        return (launched.pid, spawned[0], handle.pid,
                handle.waiter_pid, termination)  # type: ignore[attr-defined]

    try:
        pid, waiter_pid, found_pid, found_waiter, termination = asyncio.run(main())
    finally:
        for started in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(started, signal.SIGKILL)
    assert (found_pid, found_waiter) == (pid, waiter_pid)
    assert termination.killed_by_us and termination.signal == signal.SIGTERM


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for cgroups")
def test_an_unadoptable_task_is_killed_through_its_cgroup(tmp_path: Path) -> None:
    """No waiter to find (launched without one here): what runs in the task's cgroup is killed
    before the task is reported failed, never left running untracked."""
    spec = waited_spec(tmp_path, "sleep 30")
    bare = LaunchSpec(**{f: getattr(spec, f) for f in ("container_id", "framework_id", "task_id",
                                                       "executable", "argv", "env", "sandbox",
                                                       "task_info")})
    pids: list[int] = []

    async def main() -> tuple[bool, list[int]]:
        c = ProcessContainerizer()
        if c.hierarchy is None:
            pytest.skip("cgroups are not writable here")
        launched = await c.launch(bare)
        assert launched.pid is not None
        pids.append(launched.pid)
        restarted = ProcessContainerizer()
        handle = restarted.recover(spec, None, None)
        adoptable = handle.pid is not None
        await restarted.abandon(handle)
        return adoptable, [p for p in pids if alive(p)]

    try:
        adoptable, left = asyncio.run(main())
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    assert not adoptable and left == []


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"
