"""The agent's checkpoint on disk: carries out the state's checkpoint commands, reads it back.

``CheckpointStore(work_dir)`` writes what ``AgentState`` asks for (``CheckpointAgent``,
``CheckpointTask``, ``CheckpointUpdate``, ``CheckpointAck``, ``RemoveCheckpoint``; the layout
and encoding are in ``checkpoint_records``) and ``load()`` reads it back for recovery. Whole
files are replaced atomically (written to a temporary file, then renamed over the old one);
status updates and acknowledgements are appended to a per-task log whose torn last record is
ignored on reading.

``execute_all`` carries out a batch (the checkpoint commands one event produced) with one
``write`` per task log, and skips writes to a task whose checkpoint the same batch removes.
With ``background_removal`` a completed task's directory is removed by a worker thread, off the
caller's (the event loop's) path; a directory still waiting for removal when a task with the
same ids is checkpointed again is removed first, synchronously. A removal cut short by the
agent's death only leaves a completed task behind, which the next recovery completes again.

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
import threading
from collections import deque
from collections.abc import Iterable

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
    apply_started,
    meta_dir,
    parse_agent_json,
    replay_updates,
    started_record,
    task_dir,
    update_record,
)
from mensa.agent.events import (
    CheckpointAck,
    CheckpointAgent,
    CheckpointCommand,
    CheckpointStarted,
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

    def __init__(self, work_dir: str, background_removal: bool = False) -> None:
        self.work_dir = work_dir
        self.meta = meta_dir(work_dir)
        self.background_removal = background_removal
        # Task directories to remove (in order); a directory stays in ``_doomed`` until it is
        # gone, and is removed under ``_lock`` (by the worker, or by a writer that needs it).
        self._doomed: set[str] = set()
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closing = False

    def execute(self, command: CheckpointCommand) -> None:
        """Carries out one checkpoint command; logs (never raises) when the disk says no."""
        self.execute_all((command,))

    def execute_all(self, commands: Iterable[CheckpointCommand]) -> None:
        """Carries out checkpoint commands in order, appending to each task's log once; logs
        (never raises) when the disk says no."""
        appends: dict[str, list[bytes]] = {}  # log path -> records, in order
        acks: dict[str, list[bytes]] = {}  # log path -> ack records (the log must exist)
        for command in commands:
            try:
                if isinstance(command, CheckpointUpdate | CheckpointStarted | CheckpointAck):
                    directory = task_dir(self.work_dir, command.framework_id, command.task_id)
                    path = os.path.join(directory, UPDATES_FILE)
                    if isinstance(command, CheckpointAck):
                        if path not in appends:
                            acks.setdefault(path, []).append(ack_record(command.uuid))
                            continue
                        data = ack_record(command.uuid)
                    elif isinstance(command, CheckpointUpdate):
                        data = update_record(command.status)
                    else:
                        data = started_record(command.pid, command.waiter_pid,
                                              command.containerizer)
                    pending_acks = acks.pop(path, None)
                    if pending_acks is not None:
                        self._append(path, pending_acks, existing=True)
                    appends.setdefault(path, []).append(data)
                elif isinstance(command, RemoveCheckpoint):
                    directory = task_dir(self.work_dir, command.framework_id, command.task_id)
                    path = os.path.join(directory, UPDATES_FILE)
                    appends.pop(path, None)  # removed anyway
                    acks.pop(path, None)
                    self._remove(directory)
                else:
                    self._flush(appends, acks)
                    self._execute(command)
            except OSError as exc:
                _write_failed(command, exc)
        self._flush(appends, acks)

    def _flush(self, appends: dict[str, list[bytes]], acks: dict[str, list[bytes]]) -> None:
        for path, records in appends.items():
            try:
                self._append(path, records, existing=False)
            except OSError as exc:
                _write_failed(CheckpointUpdate, exc)
        for path, records in acks.items():
            try:
                self._append(path, records, existing=True)
            except OSError as exc:
                _write_failed(CheckpointAck, exc)
        appends.clear()
        acks.clear()

    @staticmethod
    def _append(path: str, records: list[bytes], existing: bool) -> None:
        data = b"".join(records)
        if existing:
            with contextlib.suppress(FileNotFoundError):  # already removed
                _append_existing(path, data)
        else:
            append(path, data)

    def _execute(self, command: CheckpointCommand) -> None:
        if isinstance(command, CheckpointTask):
            record = command.record
            directory = task_dir(self.work_dir, record.framework_id, record.task_id)
            if directory in self._doomed:
                self._remove_now(directory)  # the ids were reused before the removal ran
            os.makedirs(directory, exist_ok=True)
            write_atomically(os.path.join(directory, TASK_FILE), record.to_json())
        elif isinstance(command, CheckpointAgent):
            os.makedirs(self.meta, exist_ok=True)
            write_atomically(os.path.join(self.meta, AGENT_FILE), agent_json(command.agent_id))

    # -- removal of completed tasks' directories -------------------------------------------

    def _remove(self, directory: str) -> None:
        if not self.background_removal:
            shutil.rmtree(directory, ignore_errors=True)
            return
        with self._wake:
            if directory in self._doomed:
                return
            self._doomed.add(directory)
            self._queue.append(directory)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._remove_loop, name="checkpoint-removal", daemon=True
                )
                self._worker.start()
            self._wake.notify()

    def _remove_now(self, directory: str) -> None:
        with self._lock:
            if directory in self._doomed:
                shutil.rmtree(directory, ignore_errors=True)
                self._doomed.discard(directory)

    def _remove_loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                directory = self._queue.popleft()
            self._remove_now(directory)

    def pending_removals(self) -> int:
        """Returns how many completed tasks' directories are still to be removed."""
        return len(self._doomed)

    def close(self, timeout: float = 5.0) -> None:
        """Finishes the pending removals (waiting at most ``timeout`` seconds) and stops the
        worker; the store still works afterwards (removals are then synchronous)."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout)
        self.background_removal = False

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
        apply_started(record, data)
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


def _write_failed(command: object, exc: OSError) -> None:
    kind = command.__name__ if isinstance(command, type) else type(command).__name__
    log.error(
        "checkpoint_write_failed",
        command=kind,
        error=str(exc),
        consequence="a restarted agent may not recover this",
    )


def _append_existing(path: str, data: bytes) -> None:
    """Appends to ``path`` only if it exists (FileNotFoundError otherwise)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
