"""AdoptedTask / a recovered process task without a live waiter: its cgroup's pids tell whether
it runs, and a pid reused by another process is never taken for the task (nor signalled)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mensa.agent.checkpoint import CheckpointStore
from mensa.agent.checkpoint_records import TaskCheckpoint
from mensa.agent.containerizer import launcher
from mensa.agent.containerizer.base import LaunchSpec
from mensa.agent.containerizer.launcher import AdoptedTask, start_time
from mensa.agent.containerizer.process import ProcessContainerizer
from mensa.agent.events import CheckpointStarted, CheckpointTask
from mensa.proto import mensa_pb2

pytestmark = pytest.mark.integration


@pytest.fixture
def stranger() -> subprocess.Popen[bytes]:
    """An unrelated process leading its own group (what a reused pid may turn out to be)."""
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield p
    with contextlib.suppress(ProcessLookupError):
        p.kill()
    p.wait()


def test_without_a_waiter_the_cgroup_pids_say_whether_the_task_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(launcher, "ADOPTED_POLL_SECONDS", 0.001)
    left = [[4242], [4242], []]
    calls: list[int] = []

    def members() -> list[int]:
        calls.append(1)
        return left.pop(0) if left else []

    task = AdoptedTask(None, None, "/nonexistent/exit_status", members=members)
    assert asyncio.run(task.wait()) is None
    assert len(calls) >= 3 and task.ended  # it waited until the cgroup was empty


def test_a_reused_pid_is_not_the_task(stranger: subprocess.Popen[bytes]) -> None:
    started = start_time(stranger.pid)
    assert started is not None
    ours = AdoptedTask(stranger.pid, None, "", pid_start=started)
    assert ours.pid_is_ours() and ours.task_members() == [stranger.pid]
    reused = AdoptedTask(stranger.pid, None, "", pid_start=started - 1)
    assert not reused.pid_is_ours() and reused.task_members() == []
    assert asyncio.run(asyncio.wait_for(reused.wait(), timeout=5)) is None


def test_a_kill_of_a_recovered_task_spares_the_process_that_reused_its_pid(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    started = start_time(stranger.pid)
    assert started is not None
    info = mensa_pb2.TaskInfo(name="t", command=mensa_pb2.CommandInfo(value="sleep 30"))
    info.task_id.value = "t"
    spec = LaunchSpec("gone-1", "fw", "t", "/bin/sh", ("sh",), {}, str(tmp_path), info,
                      runtime_dir=str(tmp_path))

    async def main() -> None:
        c = ProcessContainerizer(isolation="rlimits")
        handle = c.recover(spec, stranger.pid, None, started + 1)
        await c.kill(handle, 0.0)
        await asyncio.wait_for(c.wait(handle), timeout=5)

    asyncio.run(main())
    assert stranger.poll() is None  # still running: never signalled


def test_the_task_start_time_is_checkpointed(tmp_path: Path) -> None:
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = "fw"
    info = mensa_pb2.TaskInfo(name="t")
    info.task_id.value = "t"
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(TaskCheckpoint(framework, info, container_id="c")))
    store.execute(CheckpointStarted("fw", "t", 42, 41, "process", pid_start=987654))
    (loaded,) = store.load().tasks
    assert (loaded.checkpoint.pid, loaded.checkpoint.pid_start) == (42, 987654)


def test_a_waited_task_knows_its_start_time(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, int | None]:
        popen = subprocess.Popen(["sleep", "30"], start_new_session=True)
        try:
            child = launcher.Child(popen)
            task = launcher.WaitedTask(child, popen.pid)
            return task.pid_start, start_time(popen.pid)
        finally:
            os.kill(popen.pid, signal.SIGKILL)
            popen.wait()

    recorded, actual = asyncio.run(main())
    assert recorded is not None and recorded == actual
