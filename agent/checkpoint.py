"""The agent's checkpoint on disk: carries out the state's checkpoint commands, reads it back.

``CheckpointStore(work_dir)`` writes what ``AgentState`` asks for (``CheckpointAgent``,
``CheckpointTask``, ``CheckpointUpdate``, ``CheckpointAck``, ``RemoveCheckpoint``; the layout
and encoding are in ``checkpoint_records``) and ``load()`` reads it back for recovery. Whole
files are replaced atomically (written to a temporary file, then renamed over the old one);
status updates and acknowledgements are appended to a per-task log whose torn last record is
ignored on reading.

Durability: no fsync. The failure this guards against is the agent process dying (SIGKILL, a
crash, an upgrade); a ``write()`` that returned is in the kernel's page cache and survives the
process, which is all a restarted agent needs. A machine crash loses the page cache, but it
also kills every task on the machine, so the master's agent timeout (tasks reported LOST /
UNREACHABLE) is the recovery then, as it would be with fsync. An fsync per update (three or
four per task) would cost milliseconds each on real disks, more than a whole task launch costs
today.

A checkpoint that cannot be read (garbage, a missing field, an unreadable file) is logged
loudly (``checkpoint_corrupt``) and skipped; ``load`` never raises. Errors while writing are
logged (``checkpoint_write_failed``) and the agent keeps going.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import structlog

from mensa.agent.checkpoint_records import (
    AGENT_FILE,
    TASK_FILE,
    TASKS_DIR,
    UPDATES_FILE,
    CorruptCheckpoint,
    RecoveredAgent,
    RecoveredTask,
    TaskCheckpoint,
    ack_record,
    agent_json,
    meta_dir,
    parse_agent_json,
    replay_updates,
    task_dir,
    update_record,
)
from mensa.agent.events import (
    CheckpointAck,
    CheckpointAgent,
    CheckpointCommand,
    CheckpointTask,
    CheckpointUpdate,
    RemoveCheckpoint,
)

log = structlog.get_logger(__name__)


def write_atomically(path: str, data: bytes) -> None:
    """Replaces ``path`` with ``data``: a reader sees the old content or the new, never a mix."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def append(path: str, data: bytes) -> None:
    """Appends ``data`` to ``path`` with one write (O_APPEND)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class CheckpointStore:
    """Reads and writes one agent's checkpoint under ``<work_dir>/meta``."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.meta = meta_dir(work_dir)

    def execute(self, command: CheckpointCommand) -> None:
        """Carries out one checkpoint command; logs (never raises) when the disk says no."""
        try:
            self._execute(command)
        except OSError as exc:
            log.error(
                "checkpoint_write_failed",
                command=type(command).__name__,
                error=str(exc),
                consequence="a restarted agent may not recover this",
            )

    def _execute(self, command: CheckpointCommand) -> None:
        if isinstance(command, CheckpointUpdate):
            directory = task_dir(self.work_dir, command.framework_id, command.task_id)
            append(os.path.join(directory, UPDATES_FILE), update_record(command.status))
        elif isinstance(command, CheckpointAck):
            directory = task_dir(self.work_dir, command.framework_id, command.task_id)
            with contextlib.suppress(FileNotFoundError):  # already removed
                _append_existing(os.path.join(directory, UPDATES_FILE), ack_record(command.uuid))
        elif isinstance(command, CheckpointTask):
            record = command.record
            directory = task_dir(self.work_dir, record.framework_id, record.task_id)
            os.makedirs(directory, exist_ok=True)
            write_atomically(os.path.join(directory, TASK_FILE), record.to_json())
        elif isinstance(command, RemoveCheckpoint):
            directory = task_dir(self.work_dir, command.framework_id, command.task_id)
            shutil.rmtree(directory, ignore_errors=True)
        elif isinstance(command, CheckpointAgent):
            os.makedirs(self.meta, exist_ok=True)
            write_atomically(os.path.join(self.meta, AGENT_FILE), agent_json(command.agent_id))

    def load(self) -> RecoveredAgent:
        """Reads the whole checkpoint back; corrupt parts are logged and skipped."""
        out = RecoveredAgent()
        agent_path = os.path.join(self.meta, AGENT_FILE)
        try:
            with open(agent_path, "rb") as f:
                out.agent_id = parse_agent_json(f.read())
        except FileNotFoundError:
            pass
        except (OSError, CorruptCheckpoint) as exc:
            self._skip(out, agent_path, str(exc))
        tasks_root = os.path.join(self.meta, TASKS_DIR)
        try:
            names = sorted(os.listdir(tasks_root))
        except FileNotFoundError:
            names = []
        except OSError as exc:
            self._skip(out, tasks_root, str(exc))
            names = []
        loaded: list[tuple[float, RecoveredTask]] = []
        for name in names:
            directory = os.path.join(tasks_root, name)
            try:
                task = self._load_task(directory)
                created = os.stat(os.path.join(directory, TASK_FILE)).st_mtime
            except FileNotFoundError as exc:
                # A task dir without task.json: a checkpoint cut short before the launch.
                self._skip(out, directory, f"incomplete: {exc}")
                continue
            except (OSError, CorruptCheckpoint) as exc:
                self._skip(out, directory, str(exc))
                continue
            if task is not None:
                loaded.append((created, task))
        out.tasks = [t for _c, t in sorted(loaded, key=lambda x: x[0])]
        return out

    def _load_task(self, directory: str) -> RecoveredTask | None:
        with open(os.path.join(directory, TASK_FILE), "rb") as f:
            record = TaskCheckpoint.from_json(f.read())
        if os.path.basename(directory) != os.path.basename(
            task_dir(self.work_dir, record.framework_id, record.task_id)
        ):
            raise CorruptCheckpoint("the task checkpoint is in another task's directory")
        try:
            with open(os.path.join(directory, UPDATES_FILE), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        pending, latest, torn = replay_updates(data)
        if torn:
            log.warning(
                "checkpoint_log_torn",
                framework_id=record.framework_id,
                task_id=record.task_id,
                consequence="its last record was cut short and is ignored",
            )
        return RecoveredTask(record, pending, latest, torn)

    @staticmethod
    def _skip(out: RecoveredAgent, path: str, why: str) -> None:
        log.error("checkpoint_corrupt", path=path, error=why, consequence="skipped")
        out.skipped.append((path, why))


def _append_existing(path: str, data: bytes) -> None:
    """Appends to ``path`` only if it exists (FileNotFoundError otherwise)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
