"""Stale cgroup removal spares the cgroups of checkpointed tasks, and a checkpointing agent runs
it only once its checkpoint is read (an OOM kill while the agent was down stays readable)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mensa.agent import recovery
from mensa.agent.checkpoint import CheckpointStore
from mensa.agent.checkpoint_records import TaskCheckpoint
from mensa.agent.containerizer import cgroups
from mensa.agent.events import CheckpointTask
from mensa.proto import mensa_pb2


def test_remove_stale_keeps_the_cgroups_it_is_told_to(tmp_path: Path) -> None:
    for name in ("c-owned", "c-stale"):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (0, 0))
    hierarchy = cgroups.Hierarchy("v2", {"": tmp_path})
    assert cgroups.remove_stale(hierarchy, time.time(), keep={"c-owned"}) == ["c-stale"]
    assert (tmp_path / "c-owned").is_dir() and not (tmp_path / "c-stale").exists()


def test_recovery_removes_stale_cgroups_but_not_the_checkpointed_tasks(tmp_path: Path) -> None:
    framework = mensa_pb2.FrameworkInfo(name="fw")
    framework.id.value = "fw"
    info = mensa_pb2.TaskInfo(name="t")
    info.task_id.value = "t"
    store = CheckpointStore(str(tmp_path))
    store.execute(CheckpointTask(TaskCheckpoint(framework, info, container_id="c-owned")))
    kept: list[set[str]] = []
    process = SimpleNamespace(name="process", remove_stale_cgroups=kept.append)
    dispatched: list[Any] = []
    service = SimpleNamespace(store=store, containerizers=[process], dispatch=dispatched.append)
    asyncio.run(recovery.recover(service))  # type: ignore[arg-type]
    assert kept == [{"c-owned"}] and len(dispatched) == 1
