"""What the agent checkpoints, and how it is laid out and encoded on disk (pure).

A restarted agent with the same ``--work-dir`` reads back:

  * ``<work_dir>/meta/agent.json``: ``{"agent_id": ...}``, so it re-registers as the same agent;
  * ``<work_dir>/meta/tasks/<key>/task.json``: one ``TaskCheckpoint`` per live task (its
    FrameworkInfo and TaskInfo, container id, containerizer, task and waiter pids, sandbox,
    whether its updates are still wanted), replaced whole;
  * ``<work_dir>/meta/tasks/<key>/updates.log``: the task's status updates and their
    acknowledgements, appended in order (``encode_record``), so the unacknowledged ones are
    resent in order with their original uuids;
  * ``<work_dir>/meta/tasks/<key>/exit_status``: written by the task's waiter (see
    ``containerizer/launcher.py``) when a process task ends, so an exit that happened while the
    agent was down is reported with its real code.

``<key>`` is ``task_key(framework_id, task_id)``, a hash: ids may hold any character. A task's
directory is removed when it completes (terminal, container gone, every update acknowledged).

Log records: ``MAGIC | kind (1 byte) | length (4 bytes, big endian) | payload | crc32 (4 bytes)``,
kind ``U`` (payload: a serialized TaskStatus), ``A`` (payload: the acknowledged uuid) or ``S``
(payload: JSON ``{"pid", "waiter_pid", "containerizer", "pid_start"}`` once the container started: appended to
the log rather than rewriting ``task.json``; the last one wins over ``task.json``'s fields) or
``K`` (payload: JSON ``{"grace", "at"}``: a kill began at epoch time ``at`` with that grace
period; a restarted agent finishes it).
``decode_records`` stops at the first record that is cut short or fails its checksum (a torn last
write) and says so; ``good_length`` says where the valid records end (a torn log is cut back
there before a restarted agent appends to it, or the records appended would stay hidden behind
the torn one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from mensa.proto import mensa_pb2

META_DIR = "meta"
AGENT_FILE = "agent.json"
TASKS_DIR = "tasks"
TASK_FILE = "task.json"
UPDATES_FILE = "updates.log"
EXIT_STATUS_FILE = "exit_status"

MAGIC = b"\xa7"
UPDATE = b"U"
ACK = b"A"
STARTED = b"S"
KILL = b"K"
_HEADER = struct.Struct(">cI")
_CRC = struct.Struct(">I")
_KINDS = (UPDATE, ACK, STARTED, KILL)
MAX_RECORD_BYTES = 16 * 1024 * 1024
# Signals whose default action does not end a process (CHLD, CONT, STOP, TSTP, TTIN, TTOU, URG,
# WINCH): a shell status of 128+N for one of them can only be the task's own exit code.
NON_TERMINATING_SIGNALS = frozenset({17, 18, 19, 20, 21, 22, 23, 28})


class CorruptCheckpoint(ValueError):
    """A checkpoint file cannot be understood; ``str()`` says why."""


def meta_dir(work_dir: str) -> str:
    return os.path.join(work_dir, META_DIR)


def task_key(framework_id: str, task_id: str) -> str:
    """Returns the directory name of a task's checkpoint (stable, safe for any ids)."""
    digest = hashlib.sha256(f"{framework_id}\0{task_id}".encode()).hexdigest()
    return digest[:40]


def task_dir(work_dir: str, framework_id: str, task_id: str) -> str:
    """Returns the directory holding a task's checkpoint (and its waiter's exit status)."""
    return os.path.join(meta_dir(work_dir), TASKS_DIR, task_key(framework_id, task_id))


@dataclass(slots=True)
class TaskCheckpoint:
    """Everything but the updates that a restarted agent needs to find a task again."""

    framework: mensa_pb2.FrameworkInfo
    task_info: mensa_pb2.TaskInfo
    container_id: str = ""  # "" when no container was launched (a refused task)
    containerizer: str = ""  # the containerizer's name once it started the container
    pid: int | None = None  # the task's process (its process group leader)
    waiter_pid: int | None = None  # the process that records its exit status
    pid_start: int | None = None  # the task process's start time (/proc/<pid>/stat field 22)
    sandbox: str = ""
    silent: bool = False  # its updates are no longer wanted (framework shut down)

    @property
    def framework_id(self) -> str:
        return str(self.framework.id.value)

    @property
    def task_id(self) -> str:
        return str(self.task_info.task_id.value)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "framework_id": self.framework_id,
            "task_id": self.task_id,
            "framework": _b64(self.framework.SerializeToString()),
            "task_info": _b64(self.task_info.SerializeToString()),
            "container_id": self.container_id,
            "containerizer": self.containerizer,
            "pid": self.pid,
            "waiter_pid": self.waiter_pid,
            "pid_start": self.pid_start,
            "sandbox": self.sandbox,
            "silent": self.silent,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @staticmethod
    def from_json(data: bytes) -> TaskCheckpoint:
        """Parses ``task.json``; raises CorruptCheckpoint when it is not one."""
        try:
            doc = json.loads(data)
            framework = mensa_pb2.FrameworkInfo.FromString(base64.b64decode(doc["framework"]))
            info = mensa_pb2.TaskInfo.FromString(base64.b64decode(doc["task_info"]))
            record = TaskCheckpoint(
                framework,
                info,
                container_id=str(doc.get("container_id") or ""),
                containerizer=str(doc.get("containerizer") or ""),
                pid=_opt_int(doc.get("pid")),
                waiter_pid=_opt_int(doc.get("waiter_pid")),
                pid_start=_opt_int(doc.get("pid_start")),
                sandbox=str(doc.get("sandbox") or ""),
                silent=bool(doc.get("silent")),
            )
        except (ValueError, TypeError, KeyError, AttributeError, DecodeError) as exc:
            raise CorruptCheckpoint(f"not a task checkpoint: {exc!r}") from None
        if not record.framework_id or not record.task_id:
            raise CorruptCheckpoint("the task checkpoint names no framework id or task id")
        if (record.framework_id, record.task_id) != (doc.get("framework_id"), doc.get("task_id")):
            raise CorruptCheckpoint("the task checkpoint's ids do not match its infos")
        return record


@dataclass(slots=True)
class RecoveredTask:
    """A task read back from its checkpoint: its record and its update history replayed.

    ``pending`` are the unacknowledged updates in order; ``latest`` the last update generated
    (acknowledged or not), which gives the task's state.
    """

    checkpoint: TaskCheckpoint
    pending: list[mensa_pb2.TaskStatus] = field(default_factory=list)
    latest: mensa_pb2.TaskStatus | None = None
    torn: bool = False  # the log ended in a partial record (a write cut short)
    # A kill under way when the agent went down: (grace seconds, epoch time it began).
    kill: tuple[float, float] | None = None


@dataclass(slots=True)
class RecoveredAgent:
    """What a checkpoint held: the agent id (None for a new agent) and the live tasks."""

    agent_id: str | None = None
    tasks: list[RecoveredTask] = field(default_factory=list)
    # Checkpoints skipped because they could not be read (path, why), for the logs.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def encode_record(kind: bytes, payload: bytes) -> bytes:
    """Returns one log record (see the module docstring)."""
    header = MAGIC + _HEADER.pack(kind, len(payload))
    return header + payload + _CRC.pack(zlib.crc32(header + payload))


def update_record(status: mensa_pb2.TaskStatus) -> bytes:
    return encode_record(UPDATE, status.SerializeToString())


def kill_record(grace_seconds: float, wall_time: float) -> bytes:
    doc = {"grace": grace_seconds, "at": wall_time}
    return encode_record(KILL, json.dumps(doc, separators=(",", ":")).encode())


def last_kill(data: bytes) -> tuple[float, float] | None:
    """Returns (grace seconds, epoch time) of the last ``K`` record of updates log ``data``,
    None when no kill was recorded (a garbled one is ignored)."""
    records, _torn = decode_records(data)
    for kind, payload in reversed(records):
        if kind != KILL:
            continue
        try:
            doc = json.loads(payload)
            return float(doc["grace"]), float(doc["at"])
        except (ValueError, TypeError, KeyError):
            continue
    return None


def ack_record(uuid: bytes) -> bytes:
    return encode_record(ACK, uuid)


def started_record(pid: int | None, waiter_pid: int | None, containerizer: str,
                   pid_start: int | None = None) -> bytes:
    doc = {"pid": pid, "waiter_pid": waiter_pid, "containerizer": containerizer,
           "pid_start": pid_start}
    return encode_record(STARTED, json.dumps(doc, separators=(",", ":")).encode())


def decode_records(data: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Returns the (kind, payload) records of a log and whether it ended in a torn record
    (cut short or failing its checksum; it and anything after it are ignored)."""
    records, good, _size = _decode(data)
    return records, good < len(data)


def good_length(data: bytes) -> int:
    """Returns the length of the longest prefix of log ``data`` made of whole, valid records
    (what a torn log is cut back to before anything is appended to it again)."""
    return _decode(data)[1]


def _decode(data: bytes) -> tuple[list[tuple[bytes, bytes]], int, int]:
    out: list[tuple[bytes, bytes]] = []
    pos, size = 0, len(data)
    head = len(MAGIC) + _HEADER.size
    while pos < size:
        if size - pos < head or data[pos : pos + 1] != MAGIC:
            break
        kind, length = _HEADER.unpack_from(data, pos + 1)
        end = pos + head + length + _CRC.size
        if length > MAX_RECORD_BYTES or end > size:
            break
        (crc,) = _CRC.unpack_from(data, end - _CRC.size)
        if zlib.crc32(data[pos : end - _CRC.size]) != crc or kind not in _KINDS:
            break
        out.append((kind, data[pos + head : end - _CRC.size]))
        pos = end
    return out, pos, size


def replay_updates(
    data: bytes,
) -> tuple[list[mensa_pb2.TaskStatus], mensa_pb2.TaskStatus | None, bool]:
    """Replays an updates log: returns the unacknowledged updates in order, the latest update
    and whether the log was torn. An acknowledgement removes the update with its uuid."""
    records, torn = decode_records(data)
    pending: list[mensa_pb2.TaskStatus] = []
    latest: mensa_pb2.TaskStatus | None = None
    for kind, payload in records:
        if kind in (STARTED, KILL):
            continue
        if kind == UPDATE:
            try:
                status = mensa_pb2.TaskStatus.FromString(payload)
            except DecodeError:
                torn = True
                break
            pending.append(status)
            latest = status
        else:
            pending = [s for s in pending if s.uuid != payload]
    return pending, latest, torn


def apply_started(record: TaskCheckpoint, data: bytes) -> None:
    """Sets ``record``'s pid, waiter pid and containerizer from the last ``S`` record of the
    updates log ``data`` (if any; a torn or garbled one is ignored)."""
    records, _torn = decode_records(data)
    for kind, payload in reversed(records):
        if kind != STARTED:
            continue
        try:
            doc = json.loads(payload)
            record.pid = _opt_int(doc.get("pid"))
            record.waiter_pid = _opt_int(doc.get("waiter_pid"))
            record.pid_start = _opt_int(doc.get("pid_start"))
            record.containerizer = str(doc.get("containerizer") or "")
        except (ValueError, TypeError, AttributeError):
            continue
        return


def parse_exit_status(text: str) -> tuple[int | None, int | None] | None:
    """Parses a waiter's ``exit_status`` (the shell's ``$?`` and a newline); returns
    ``(exit_code, signal)`` or None while it is incomplete. The shell reports a task killed by
    signal N as 128+N, so codes above 128 are read as signals (a task that itself exits with
    such a code is reported as killed by that signal), except for signals that cannot end a
    process (``NON_TERMINATING_SIGNALS``): the waiter exits with those codes as they are, and
    they are read as exit codes here too."""
    if not text.endswith("\n") or not text.strip().isdigit():
        return None
    code = int(text.strip())
    if 128 < code < 128 + 65 and code - 128 not in NON_TERMINATING_SIGNALS:
        return None, code - 128
    return code, None


def agent_json(agent_id: str) -> bytes:
    return json.dumps({"agent_id": agent_id}).encode()


def parse_agent_json(data: bytes) -> str:
    """Returns the agent id in ``agent.json``; raises CorruptCheckpoint when there is none."""
    try:
        doc = json.loads(data)
        agent_id = doc["agent_id"]
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptCheckpoint(f"not an agent checkpoint: {exc!r}") from None
    if not isinstance(agent_id, str) or not agent_id:
        raise CorruptCheckpoint("the agent checkpoint holds no agent id")
    return agent_id


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
