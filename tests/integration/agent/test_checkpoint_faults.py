"""CheckpointStore under faults: torn logs appended to by a later run, short and failed writes,
a removal cut short by the agent's death."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mensa.agent import checkpoint
from mensa.agent.checkpoint import TOMBSTONE_MARK, CheckpointStore
from mensa.agent.checkpoint_records import TASK_FILE, UPDATES_FILE, TaskCheckpoint, task_dir
from mensa.agent.events import CheckpointTask, CheckpointUpdate, RemoveCheckpoint
from mensa.proto import mensa_pb2


def record(task_id: str, pid: int = 10) -> TaskCheckpoint:
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = "fw"
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    return TaskCheckpoint(framework, info, container_id="c-" + task_id, containerizer="process",
                          pid=pid, waiter_pid=9, sandbox="/sb")


def update(task_id: str, state: mensa_pb2.TaskState, uuid: bytes) -> CheckpointUpdate:
    s = mensa_pb2.TaskStatus(state=state, uuid=uuid)
    s.task_id.value = task_id
    return CheckpointUpdate("fw", task_id, s)


def test_a_torn_log_is_cut_back_so_a_later_run_appends_where_it_is_read(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(record("t")))
    store.execute(update("t", mensa_pb2.TASK_STARTING, b"1"))
    store.execute(update("t", mensa_pb2.TASK_RUNNING, b"2"))
    log = Path(task_dir(str(tmp_path), "fw", "t")) / UPDATES_FILE
    log.write_bytes(log.read_bytes()[:-5])  # the agent died mid-append
    # The restarted agent loads, then appends the task's end.
    restarted = CheckpointStore(str(tmp_path))
    (first,) = restarted.load().tasks
    assert first.torn and [s.uuid for s in first.pending] == [b"1"]
    restarted.execute(update("t", mensa_pb2.TASK_FINISHED, b"3"))
    (second,) = CheckpointStore(str(tmp_path)).load().tasks
    assert not second.torn
    assert [s.uuid for s in second.pending] == [b"1", b"3"]
    assert second.latest is not None and second.latest.state == mensa_pb2.TASK_FINISHED


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(checkpoint.os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(record("t")))
    store.execute(update("t", mensa_pb2.TASK_RUNNING, b"1"))
    monkeypatch.undo()
    (loaded,) = store.load().tasks
    assert loaded.checkpoint.pid == 10 and not loaded.torn
    assert [s.uuid for s in loaded.pending] == [b"1"]


def test_a_failed_write_never_replaces_task_json_nor_leaves_a_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(record("t", pid=10)))
    store.execute(update("t", mensa_pb2.TASK_STARTING, b"1"))
    real_write = os.write
    calls = []

    def half_then_full_disk(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) % 2:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "write", half_then_full_disk)
    store.execute(CheckpointTask(record("t", pid=99)))  # logged, not raised
    store.execute(update("t", mensa_pb2.TASK_RUNNING, b"2"))
    monkeypatch.undo()
    directory = Path(task_dir(str(tmp_path), "fw", "t"))
    assert not (directory / f"{TASK_FILE}.tmp").exists()
    store.execute(update("t", mensa_pb2.TASK_FINISHED, b"3"))  # the disk has room again
    (loaded,) = store.load().tasks
    assert loaded.checkpoint.pid == 10  # the old task.json, whole
    assert not loaded.torn and [s.uuid for s in loaded.pending] == [b"1", b"3"]


def test_a_removal_cut_short_is_finished_at_load_never_recovered(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(record("t")))
    store.execute(update("t", mensa_pb2.TASK_FINISHED, b"1"))
    directory = task_dir(str(tmp_path), "fw", "t")
    # The agent died while removing it: the tombstone has task.json but no log any more.
    tombstone = f"{directory}{TOMBSTONE_MARK}1-0"
    os.rename(directory, tombstone)
    os.unlink(os.path.join(tombstone, UPDATES_FILE))
    assert CheckpointStore(str(tmp_path)).load().tasks == []
    assert not os.path.exists(tombstone)


def test_removal_renames_the_directory_before_deleting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(record("t")))
    store.execute(update("t", mensa_pb2.TASK_FINISHED, b"1"))
    directory = task_dir(str(tmp_path), "fw", "t")
    removed: list[str] = []

    def die_midway(path: str, ignore_errors: bool = False) -> None:
        # The agent is SIGKILLed after deleting the log, before task.json.
        os.unlink(os.path.join(path, UPDATES_FILE))
        removed.append(path)

    monkeypatch.setattr(checkpoint.shutil, "rmtree", die_midway)
    store.execute(RemoveCheckpoint("fw", "t"))
    monkeypatch.undo()
    assert removed and removed[0] != directory and not os.path.exists(directory)
    assert CheckpointStore(str(tmp_path)).load().tasks == []


def test_a_kill_under_way_is_read_back(tmp_path: Path) -> None:
    from mensa.agent.events import CheckpointKill

    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(record("t")))
    store.execute_all([CheckpointKill("fw", "t", 5.0, 1234.5),
                       update("t", mensa_pb2.TASK_KILLING, b"1")])
    (loaded,) = store.load().tasks
    assert loaded.kill == (5.0, 1234.5) and [s.uuid for s in loaded.pending] == [b"1"]
