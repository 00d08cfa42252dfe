"""CheckpointStore on a real directory: what is written is read back; a torn log end, garbage and
foreign files are skipped (loudly), never a crash."""

from __future__ import annotations

import os
from pathlib import Path

from mensa.agent.checkpoint import CheckpointStore
from mensa.agent.checkpoint_records import TASK_FILE, UPDATES_FILE, TaskCheckpoint, task_dir
from mensa.agent.events import (
    CheckpointAck,
    CheckpointAgent,
    CheckpointStarted,
    CheckpointTask,
    CheckpointUpdate,
    RemoveCheckpoint,
)
from mensa.proto import mensa_pb2


def record(task_id: str) -> TaskCheckpoint:
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = "fw/1"  # ids may hold characters a path cannot
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    return TaskCheckpoint(framework, info, container_id="c-" + task_id, containerizer="process",
                          pid=10, waiter_pid=9, sandbox="/sb")


def status(task_id: str, state: mensa_pb2.TaskState, uuid: bytes) -> mensa_pb2.TaskStatus:
    s = mensa_pb2.TaskStatus(state=state, uuid=uuid)
    s.task_id.value = task_id
    return s


def test_round_trip_and_removal(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    assert store.load().agent_id is None and store.load().tasks == []
    store.execute(CheckpointAgent("agent-7"))
    for task_id in ("a", "b"):
        store.execute(CheckpointTask(record(task_id)))
        store.execute(CheckpointUpdate("fw/1", task_id, status(task_id, mensa_pb2.TASK_STARTING,
                                                                 b"s" + task_id.encode())))
        store.execute(CheckpointUpdate("fw/1", task_id, status(task_id, mensa_pb2.TASK_RUNNING,
                                                                 b"r" + task_id.encode())))
    store.execute(CheckpointAck("fw/1", "a", b"sa"))
    loaded = store.load()
    assert loaded.agent_id == "agent-7"
    by_id = {t.checkpoint.task_id: t for t in loaded.tasks}
    assert [s.uuid for s in by_id["a"].pending] == [b"ra"]
    assert [s.uuid for s in by_id["b"].pending] == [b"sb", b"rb"]
    assert by_id["a"].checkpoint.pid == 10 and by_id["a"].checkpoint.waiter_pid == 9
    assert by_id["a"].latest is not None and by_id["a"].latest.state == mensa_pb2.TASK_RUNNING
    store.execute(RemoveCheckpoint("fw/1", "a"))
    store.execute(CheckpointAck("fw/1", "a", b"ra"))  # late: harmless, creates nothing
    assert not os.path.exists(task_dir(str(tmp_path), "fw/1", "a"))
    assert [t.checkpoint.task_id for t in store.load().tasks] == ["b"]


def test_corrupt_checkpoints_are_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(record("good")))
    store.execute(CheckpointUpdate("fw/1", "good", status("good", mensa_pb2.TASK_RUNNING, b"1")))
    store.execute(CheckpointTask(record("torn")))
    store.execute(CheckpointUpdate("fw/1", "torn", status("torn", mensa_pb2.TASK_STARTING, b"2")))
    store.execute(CheckpointUpdate("fw/1", "torn", status("torn", mensa_pb2.TASK_RUNNING, b"3")))
    log = Path(task_dir(str(tmp_path), "fw/1", "torn")) / UPDATES_FILE
    log.write_bytes(log.read_bytes()[:-5])  # the last append was cut short
    store.execute(CheckpointTask(record("garbage")))
    (Path(task_dir(str(tmp_path), "fw/1", "garbage")) / TASK_FILE).write_bytes(b"\x00{not json")
    (tmp_path / "meta" / "tasks" / "stray").mkdir()  # no task.json at all
    (tmp_path / "meta" / "agent.json").write_text("[]")
    loaded = store.load()
    assert loaded.agent_id is None
    by_id = {t.checkpoint.task_id: t for t in loaded.tasks}
    assert sorted(by_id) == ["good", "torn"]
    assert by_id["torn"].torn and [s.uuid for s in by_id["torn"].pending] == [b"2"]
    assert len(loaded.skipped) == 3


def test_write_errors_are_logged_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = CheckpointStore(str(blocker))  # meta/ cannot be created under a file
    store.execute(CheckpointTask(record("x")))
    store.execute(CheckpointAgent("a"))
    assert store.load().tasks == []


def test_a_batch_appends_once_per_log_and_the_start_is_logged_not_rewritten(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    bare = record("t")
    bare.pid = bare.waiter_pid = None
    bare.containerizer = ""
    store.execute_all([
        CheckpointTask(bare),
        CheckpointUpdate("fw/1", "t", status("t", mensa_pb2.TASK_STARTING, b"1")),
    ])
    task_json = Path(task_dir(str(tmp_path), "fw/1", "t")) / TASK_FILE
    before = task_json.read_bytes()
    store.execute_all([
        CheckpointAck("fw/1", "t", b"1"),
        CheckpointStarted("fw/1", "t", 42, 41, "process"),
        CheckpointUpdate("fw/1", "t", status("t", mensa_pb2.TASK_RUNNING, b"2")),
    ])
    assert task_json.read_bytes() == before
    (loaded,) = store.load().tasks
    cp = loaded.checkpoint
    assert (cp.pid, cp.waiter_pid, cp.containerizer) == (42, 41, "process")
    assert [s.uuid for s in loaded.pending] == [b"2"]
    assert loaded.latest is not None and loaded.latest.state == mensa_pb2.TASK_RUNNING


def test_background_removal_and_reused_ids(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path), background_removal=True)
    for task_id in ("a", "b"):
        store.execute(CheckpointTask(record(task_id)))
        store.execute(CheckpointUpdate("fw/1", task_id, status(task_id, mensa_pb2.TASK_FAILED,
                                                                 task_id.encode())))
    # The last ack and the removal come in one batch: the ack is never written.
    store.execute_all([CheckpointAck("fw/1", "a", b"a"), RemoveCheckpoint("fw/1", "a")])
    # "b" completes and is launched again (same ids) at once: the new checkpoint survives.
    store.execute_all([RemoveCheckpoint("fw/1", "b"), CheckpointTask(record("b"))])
    store.execute(CheckpointUpdate("fw/1", "b", status("b", mensa_pb2.TASK_STARTING, b"b2")))
    store.close()
    assert store.pending_removals() == 0
    assert not os.path.exists(task_dir(str(tmp_path), "fw/1", "a"))
    (loaded,) = store.load().tasks
    assert loaded.checkpoint.task_id == "b" and [s.uuid for s in loaded.pending] == [b"b2"]
