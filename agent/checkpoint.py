"""The agent's checkpoint on disk: carries out the state's checkpoint commands, reads it back.

``CheckpointStore(work_dir)`` writes what ``AgentState`` asks for (``CheckpointAgent``,
``CheckpointTask``, ``CheckpointUpdate``, ``CheckpointAck``, ``RemoveCheckpoint``; the layout
and encoding are in ``checkpoint_records``) and ``load()`` reads it back for recovery. Whole
files are replaced atomically (written whole to a temporary file, then renamed over the old one;
never renamed when a write fails); status updates and acknowledgements are appended to a
per-task log whose torn last record is ignored on reading, and cut off by ``load`` so that
what a restarted agent appends is read back. An append that fails part way is cut back to the
log's old length. ``os.write`` is called until everything is written.

``execute_all`` carries out a batch (the checkpoint commands one event produced) with one
``write`` per task log, and skips writes to a task whose checkpoint the same batch removes.
A completed task's directory is first renamed to a tombstone (``<key>.removed-<pid>-<n>``, one
atomic rename), then deleted (by a worker thread with ``background_removal``, off the event
loop's path); ``load`` deletes tombstones and never recovers them, so a removal cut short by
the agent's death cannot leave a task.json without its log (which would be recovered as a
task that never started and reported failed after its acknowledged end).

Durability: no fsync. The failure this guards against is the agent process dying (SIGKILL, a
crash, an upgrade); a ``write()`` that returned is in the kernel's page cache and survives the
process, which is all a restarted agent needs. A machine crash loses the page cache, but it
also kills every task on the machine, so the master's agent timeout (tasks reported LOST /
UNREACHABLE) is the recovery then, as it would be with fsync. An fsync per update (three or
four per task) would cost milliseconds each on real disks, more than a whole task launch costs
today.

Process supervisors: a task's waiter (``containerizer/launcher.py``) stays in the agent's own
cgroup (only the task joins its cgroup), so whatever stops the agent must stop only the agent's
process. Under systemd the agent's unit needs ``KillMode=process`` (the default,
``control-group``, SIGKILLs every waiter, and every task without cgroup isolation, whenever the
agent is stopped or restarted, and a restarted agent then reports those tasks with their exit
status lost); likewise a container running the agent must not be torn down with it.

A checkpoint that cannot be read (garbage, a missing field, an unreadable file) is logged
loudly (``checkpoint_corrupt``) and skipped; ``load`` never raises. Errors while writing are
logged (``checkpoint_write_failed``) and returned by ``execute_all``: the agent fails a task
whose ``CheckpointTask`` failed instead of launching it, and holds back a status update whose
``CheckpointUpdate`` failed until a retry writes it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
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
    good_length,
    kill_record,
    last_kill,
    meta_dir,
    parse_agent_json,
    replay_updates,
    started_record,
    task_dir,
    update_record,
)
from mensa.agent.containerizer.base import LaunchSpec
from mensa.agent.events import (
    CheckpointAck,
    CheckpointAgent,
    CheckpointCommand,
    CheckpointKill,
    CheckpointStarted,
    CheckpointTask,
    CheckpointUpdate,
    RemoveCheckpoint,
)

log = structlog.get_logger(__name__)

Failed = tuple[CheckpointCommand, OSError]  # a command that was not written, and why

# A task directory being removed is first renamed to ``<key>.removed-<n>``: one atomic step,
# so a removal cut short never leaves a task.json without the log beside it.
TOMBSTONE_MARK = ".removed-"


def write_all(fd: int, data: bytes) -> None:
    """Writes all of ``data`` to ``fd`` (``os.write`` may write less than asked: it is called
    again for the rest); raises OSError when the disk says no or writes nothing."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "write() wrote nothing")
        view = view[written:]


def write_atomically(path: str, data: bytes) -> None:
    """Replaces ``path`` with ``data``: a reader sees the old content or the new, never a mix.
    Raises OSError (and leaves ``path`` as it was) when the new content cannot be written."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def append(path: str, data: bytes, create: bool = True) -> None:
    """Appends ``data`` to ``path`` (O_APPEND; created unless ``create`` is False, then
    FileNotFoundError when it is missing). When the whole of it cannot be written, the file is
    cut back to its old length (so no torn record is left for later appends to hide behind)
    and OSError raised."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        size = os.fstat(fd).st_size
        try:
            write_all(fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def is_tombstone(name: str) -> bool:
    """True for a task directory renamed away for removal (see ``CheckpointStore``)."""
    return TOMBSTONE_MARK in name


class CheckpointStore:
    """Reads and writes one agent's checkpoint under ``<work_dir>/meta``."""

    def __init__(self, work_dir: str, background_removal: bool = False) -> None:
        self.work_dir = work_dir
        self.meta = meta_dir(work_dir)
        self.background_removal = background_removal
        # Tombstones (renamed task directories) to remove, in order; one stays in ``_doomed``
        # until it is gone.
        self._doomed: set[str] = set()
        self._queue: deque[str] = deque()
        self._serial = itertools.count()
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closing = False

    def execute(self, command: CheckpointCommand) -> list[Failed]:
        """Carries out one checkpoint command; logs (never raises) when the disk says no and
        returns what failed (see ``execute_all``)."""
        return self.execute_all((command,))

    def execute_all(self, commands: Iterable[CheckpointCommand]) -> list[Failed]:
        """Carries out checkpoint commands in order, appending to each task's log once; logs
        (never raises) when the disk says no. Returns the commands that were not written, with
        the error (an append that failed fails every command batched into it)."""
        appends: dict[str, list[tuple[CheckpointCommand, bytes]]] = {}  # log path -> records
        acks: dict[str, list[tuple[CheckpointCommand, bytes]]] = {}  # the log must exist
        failed: list[Failed] = []
        for command in commands:
            try:
                if isinstance(command, CheckpointUpdate | CheckpointStarted | CheckpointAck
                              | CheckpointKill):
                    directory = task_dir(self.work_dir, command.framework_id, command.task_id)
                    path = os.path.join(directory, UPDATES_FILE)
                    if isinstance(command, CheckpointAck):
                        if path not in appends:
                            acks.setdefault(path, []).append((command, ack_record(command.uuid)))
                            continue
                        data = ack_record(command.uuid)
                    elif isinstance(command, CheckpointUpdate):
                        data = update_record(command.status)
                    elif isinstance(command, CheckpointKill):
                        data = kill_record(command.grace_seconds, command.wall_time)
                    else:
                        data = started_record(command.pid, command.waiter_pid,
                                              command.containerizer, command.pid_start)
                    pending_acks = acks.pop(path, None)
                    if pending_acks is not None:
                        self._append_batch(path, pending_acks, True, failed)
                    appends.setdefault(path, []).append((command, data))
                elif isinstance(command, RemoveCheckpoint):
                    directory = task_dir(self.work_dir, command.framework_id, command.task_id)
                    path = os.path.join(directory, UPDATES_FILE)
                    appends.pop(path, None)  # removed anyway
                    acks.pop(path, None)
                    self._remove(directory)
                else:
                    self._flush(appends, acks, failed)
                    self._execute(command)
            except OSError as exc:
                _write_failed(command, exc)
                failed.append((command, exc))
        self._flush(appends, acks, failed)
        return failed

    def _flush(self, appends: dict[str, list[tuple[CheckpointCommand, bytes]]],
               acks: dict[str, list[tuple[CheckpointCommand, bytes]]],
               failed: list[Failed]) -> None:
        for path, records in appends.items():
            self._append_batch(path, records, False, failed)
        for path, records in acks.items():
            self._append_batch(path, records, True, failed)
        appends.clear()
        acks.clear()

    def _append_batch(self, path: str, records: list[tuple[CheckpointCommand, bytes]],
                      existing: bool, failed: list[Failed]) -> None:
        try:
            self._append(path, [data for _command, data in records], existing)
        except OSError as exc:
            _write_failed(records[0][0], exc)
            failed.extend((command, exc) for command, _data in records)

    @staticmethod
    def _append(path: str, records: list[bytes], existing: bool) -> None:
        data = b"".join(records)
        if existing:
            with contextlib.suppress(FileNotFoundError):  # already removed
                append(path, data, create=False)
        else:
            append(path, data)

    def _execute(self, command: CheckpointCommand) -> None:
        if isinstance(command, CheckpointTask):
            record = command.record
            directory = task_dir(self.work_dir, record.framework_id, record.task_id)
            os.makedirs(directory, exist_ok=True)
            write_atomically(os.path.join(directory, TASK_FILE), record.to_json())
        elif isinstance(command, CheckpointAgent):
            os.makedirs(self.meta, exist_ok=True)
            write_atomically(os.path.join(self.meta, AGENT_FILE), agent_json(command.agent_id))

    # -- removal of completed tasks' directories -------------------------------------------

    def _remove(self, directory: str) -> None:
        """Renames a completed task's directory to a tombstone (atomically: a restarted agent
        sees the whole checkpoint or none of it, and the ids are free for reuse at once), then
        removes the tombstone, now or on the worker thread."""
        while True:
            tombstone = f"{directory}{TOMBSTONE_MARK}{os.getpid()}-{next(self._serial)}"
            try:
                os.rename(directory, tombstone)
            except FileNotFoundError:
                return  # removed already (or never created)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # a tombstone of an earlier run has that name
                raise
            break
        if not self.background_removal:
            shutil.rmtree(tombstone, ignore_errors=True)
            return
        with self._wake:
            self._doomed.add(tombstone)
            self._queue.append(tombstone)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._remove_loop, name="checkpoint-removal", daemon=True
                )
                self._worker.start()
            self._wake.notify()

    def _remove_loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                tombstone = self._queue.popleft()
            shutil.rmtree(tombstone, ignore_errors=True)
            with self._wake:
                self._doomed.discard(tombstone)

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
            if is_tombstone(name):
                # A completed task whose removal was cut short: finish it, never recover it.
                shutil.rmtree(directory, ignore_errors=True)
                log.info("checkpoint_tombstone_removed", path=directory)
                continue
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
        kill = last_kill(data)
        pending, latest, torn = replay_updates(data)
        if torn:
            log.warning(
                "checkpoint_log_torn",
                framework_id=record.framework_id,
                task_id=record.task_id,
                consequence="its last record was cut short and is ignored",
            )
            good = good_length(data)
            if good < len(data):
                # Later appends must not land behind the torn record, where no reader sees them.
                try:
                    os.truncate(os.path.join(directory, UPDATES_FILE), good)
                except OSError as exc:
                    _write_failed(CheckpointUpdate, exc)
        return RecoveredTask(record, pending, latest, torn, kill)

    @staticmethod
    def _skip(out: RecoveredAgent, path: str, why: str) -> None:
        log.error("checkpoint_corrupt", path=path, error=why, consequence="skipped")
        out.skipped.append((path, why))


class CheckpointGuard:
    """What the agent does when checkpoint writes fail (the shell's side of ``execute_all``'s
    answer): a task whose ``CheckpointTask`` failed is refused (failed, never launched); a
    status update whose ``CheckpointUpdate`` failed is held back, its write retried each time
    the state sends it again, and sent once written (a restarted agent must know of every update
    the master has)."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        # Status updates (by uuid) whose checkpoint failed: not sent until it is written.
        self.unsaved: dict[bytes, CheckpointUpdate] = {}
        # Tasks whose CheckpointTask failed (failed, never launched: their updates are not
        # held, there is no checkpoint for them to go to).
        self.uncheckpointed: set[tuple[str, str]] = set()

    def write(self, batch: list[CheckpointCommand], refused: dict[tuple[str, str], str]) -> None:
        """Writes ``batch``; adds each task whose CheckpointTask failed to ``refused`` (key ->
        error) and holds back each update whose CheckpointUpdate failed."""
        for command in batch:
            if isinstance(command, RemoveCheckpoint):
                key = (command.framework_id, command.task_id)
                self.uncheckpointed.discard(key)
                for uuid in [u for u, c in self.unsaved.items()
                             if (c.framework_id, c.task_id) == key]:
                    del self.unsaved[uuid]
        failed = self.store.execute_all(batch)
        for command, exc in failed:
            if isinstance(command, CheckpointTask):
                key = (command.record.framework_id, command.record.task_id)
                refused[key] = str(exc)
                self.uncheckpointed.add(key)
        for command, _exc in failed:
            if isinstance(command, CheckpointUpdate):
                key = (command.framework_id, command.task_id)
                if key not in self.uncheckpointed:
                    self.unsaved[command.status.uuid] = command

    def update_saved(self, uuid: bytes) -> bool:
        """True when the status update ``uuid`` may be sent: its checkpoint is written (now,
        when it was held back and the retried write succeeds)."""
        command = self.unsaved.get(uuid)
        if command is None:
            return True
        if self.store.execute(command):
            log.warning("status_update_held", framework_id=command.framework_id,
                        task_id=command.task_id, reason="its checkpoint could not be written",
                        action="retried when the update is")
            return False
        del self.unsaved[uuid]
        return True

    def waiter_spawned(self, spec: LaunchSpec, waiter_pid: int) -> None:
        """Checkpoints a task's waiter pid as soon as it exists (before the task's pid is
        known): an agent that dies before its ContainerStarted is written finds the task."""
        self.store.execute(CheckpointStarted(spec.framework_id, spec.task_id, None, waiter_pid,
                                             "process"))


def _write_failed(command: object, exc: OSError) -> None:
    kind = command.__name__ if isinstance(command, type) else type(command).__name__
    log.error(
        "checkpoint_write_failed",
        command=kind,
        error=str(exc),
        consequence="a restarted agent may not recover this",
    )
