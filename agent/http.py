"""The agent's HTTP endpoints (tornado, on the agent's asyncio loop).

* ``GET /health`` -> ``200 {"healthy": true}``
* ``GET /state`` (also ``/state.json``) -> the agent as Mesos's agent /state shows it: ``id``,
  ``hostname``, ``master``, ``registered``, ``resources``, ``attributes``, ``frameworks`` (each
  with its ``executors``, ``tasks`` and ``completed_tasks``), and flat ``tasks`` and
  ``completed_tasks`` lists. A task has ``id``, ``name``, ``framework_id``, ``state``,
  ``sandbox``, ``pid``, ``resources`` and its latest ``statuses``.
* ``GET /files/browse?path=DIR`` -> a JSON list of the directory's entries, each with ``path``,
  ``mode`` (``-rw-r--r--``), ``nlink``, ``uid``, ``gid`` (names), ``size`` and ``mtime``.
* ``GET /files/read?path=FILE&offset=N&length=N`` -> ``{"data": ..., "offset": N}`` (Mesos's
  files API), e.g. for a task's ``<sandbox>/stdout``: at most ``length`` bytes (and at most
  1 MiB) from ``offset``, as text (each byte of invalid UTF-8 shown as ``?``, so the next read
  starts at ``offset + len(data.encode())``); ``offset=-1`` returns the file's size as
  ``offset`` and no data, for tailing.
* ``GET /files/download?path=FILE`` -> the file's raw bytes.
* ``GET /metrics/snapshot`` (Mesos's ``slave/...`` names, JSON) and ``GET /metrics`` (Prometheus
  text, ``mensa_agent_*``): see ``metrics.py`` and ``metrics_http.py``.

Paths (absolute, or relative to the work dir) must lie in the sandboxes tree
``<work-dir>/agents`` once symlinks are resolved: ``..``, paths outside it and symlinks out of it
are refused with 403. A missing path is 404; a bad offset or length, or a directory where a file
is expected, is 400. Errors are ``{"error": REASON, "code": STATUS}``.
"""

from __future__ import annotations

import codecs
import errno
import grp
import json
import os
import pwd
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import tornado.web

from mensa.agent.metrics import AgentMetrics
from mensa.agent.metrics_http import metrics_routes
from mensa.agent.state import AgentState
from mensa.agent.tasks import TaskRecord
from mensa.proto import mensa_pb2
from mensa.proto.attributes import attributes_json
from mensa.proto.resources import ResourceError, Resources

MAX_READ_BYTES = 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 64 * 1024
# Every task sandbox lies under <work-dir>/agents (see agent/sandbox.py); /files serves only that.
SANDBOXES_DIR = "agents"


def _resources_json(resources: Iterable[mensa_pb2.Resource]) -> dict[str, float | str]:
    try:
        return Resources.from_proto(resources).to_json()
    except ResourceError:
        return {}


def task_json(record: TaskRecord, agent_id: str | None) -> dict[str, Any]:
    """Returns one task the Mesos /state way."""
    statuses = []
    if record.latest_status is not None:
        s = record.latest_status
        status: dict[str, Any] = {
            "state": mensa_pb2.TaskState.Name(s.state),
            "timestamp": s.timestamp,
            "message": s.message,
        }
        if s.HasField("healthy"):
            status["healthy"] = s.healthy
        statuses.append(status)
    doc: dict[str, Any] = {
        "id": record.task_id,
        "name": record.task_info.name,
        "framework_id": record.framework_id,
        "executor_id": record.task_id,
        "agent_id": agent_id,
        "state": mensa_pb2.TaskState.Name(record.state),
        "sandbox": record.sandbox,
        "pid": record.pid,
        "resources": _resources_json(record.task_info.resources),
        "statuses": statuses,
    }
    if record.latest_status is not None and record.latest_status.HasField("healthy"):
        doc["healthy"] = record.latest_status.healthy
    return doc


UsageProbe = Callable[[str, str], "dict[str, Any] | None"]


def state_json(
    state: AgentState,
    master: str,
    containerizers: Sequence[object] = (),
    usage: UsageProbe | None = None,
) -> dict[str, Any]:
    """Returns the agent's /state document (see the module docstring)."""
    agent_id = state.agent_id
    active = [task_json(r, agent_id) for r in state.tasks.values()]
    if usage is not None:
        for record, doc in zip(state.tasks.values(), active, strict=True):
            reading = usage(record.framework_id, record.task_id)
            if reading is not None:
                doc["usage"] = reading
    completed = [task_json(r, agent_id) for r in state.completed]
    frameworks: dict[str, dict[str, Any]] = {}

    def framework_doc(record: TaskRecord) -> dict[str, Any]:
        return frameworks.setdefault(
            record.framework_id,
            {
                "id": record.framework_id,
                "name": record.framework.name,
                "role": record.framework.role,
                "executors": [],
                "tasks": [],
                "completed_tasks": [],
            },
        )

    for record, doc in zip(state.tasks.values(), active, strict=True):
        fw = framework_doc(record)
        fw["tasks"].append(doc)
        fw["executors"].append({"id": record.task_id, "directory": record.sandbox, "tasks": [doc]})
    for record, doc in zip(state.completed, completed, strict=True):
        framework_doc(record)["completed_tasks"].append(doc)
    config = state.config
    return {
        "id": agent_id,
        "hostname": config.hostname,
        "master": master,
        "registered": state.registered,
        "http_port": config.http_port,
        "resources": _resources_json(config.resources),
        "attributes": attributes_json(list(config.attributes)),
        "frameworks": list(frameworks.values()),
        "tasks": active,
        "completed_tasks": completed,
        "containerizers": [_describe(c) for c in containerizers],
    }


def _describe(containerizer: object) -> dict[str, Any]:
    """Returns what a containerizer says of itself (name, isolation, engine) for /state."""
    doc: dict[str, Any] = {"name": getattr(containerizer, "name", type(containerizer).__name__)}
    describe = getattr(containerizer, "describe", None)
    if callable(describe):
        doc.update(describe())
    return doc


class _JsonHandler(tornado.web.RequestHandler):
    def write_json(self, doc: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self._reason, "code": status_code}))


class HealthHandler(_JsonHandler):
    def get(self) -> None:
        self.write_json({"healthy": True})


class StateHandler(_JsonHandler):
    def initialize(
        self, state: AgentState, master: str, containerizers: Sequence[object], usage: UsageProbe | None
    ) -> None:
        self.state = state
        self.master = master
        self.containerizers = containerizers
        self.usage = usage

    def get(self) -> None:
        self.write_json(state_json(self.state, self.master, self.containerizers, self.usage))


class FilesError(Exception):
    """A files request that cannot be served: ``status`` is the HTTP status, ``reason`` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def resolve_sandbox_path(work_dir: str, path: str) -> str:
    """Returns the real path (symlinks resolved) that ``path`` names inside the sandboxes tree.

    ``path`` is absolute, or relative to ``work_dir``. The sandboxes tree is
    ``<work_dir>/agents`` (every task's sandbox lies under it). Raises FilesError: 400 for an
    empty path or one holding NUL, 403 for a ``..`` component or a path that, symlinks resolved,
    lies outside the tree. Whether the path exists is the caller's business.
    """
    if not path or "\0" in path:
        raise FilesError(400, "missing or invalid path")
    if ".." in path.split("/"):
        raise FilesError(403, "path must not contain '..'")
    root = os.path.realpath(os.path.join(work_dir, SANDBOXES_DIR))
    real = os.path.realpath(os.path.join(os.path.abspath(work_dir), path))
    if os.path.commonpath([root, real]) != root:
        raise FilesError(403, "path is outside the agent's sandboxes")
    return real


def open_inside(work_dir: str, real: str, *, directory: bool = False) -> int:
    """Opens ``real`` and returns the descriptor, checking what was really opened.

    Resolving a path and opening it later leaves a window in which a task can swap a directory
    of its sandbox for a symlink, or a file for a FIFO. So the final component is opened without
    following symlinks and without blocking, and then the open file itself is checked: it must be
    a regular file (or a directory) whose path, as the kernel reports it, lies in the sandboxes
    tree. Raises FilesError: 404 when missing, 400 when of the wrong kind, 403 when outside.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if directory:
        flags |= os.O_DIRECTORY
    kind = "directory" if directory else "file"
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise FilesError(404, f"no such {kind}") from None
    except NotADirectoryError:
        raise FilesError(400, "path is not a directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FilesError(403, "path is a symbolic link") from None
        raise FilesError(403, f"{kind} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if directory and not stat.S_ISDIR(st.st_mode):
            raise FilesError(400, "path is not a directory")
        if not directory and not stat.S_ISREG(st.st_mode):
            raise FilesError(400, "path is not a regular file")
        opened = os.readlink(f"/proc/self/fd/{fd}")
        root = os.path.realpath(os.path.join(work_dir, SANDBOXES_DIR))
        if os.path.commonpath([root, opened]) != root:
            raise FilesError(403, "path is outside the agent's sandboxes")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _name(lookup: Callable[[int], Any], ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except (KeyError, OverflowError):
        return str(ident)


def entry_json(path: str, st: os.stat_result) -> dict[str, Any]:
    """Returns one /files/browse entry, as Mesos shows it."""
    return {
        "path": path,
        "mode": stat.filemode(st.st_mode),
        "nlink": st.st_nlink,
        "uid": _name(pwd.getpwuid, st.st_uid),
        "gid": _name(grp.getgrgid, st.st_gid),
        "size": st.st_size,
        "mtime": st.st_mtime,
    }


def _complete_utf8(data: bytes) -> bytes:
    """Returns ``data`` without a trailing, incomplete UTF-8 sequence (so a chunk boundary does
    not split a character), unless that would leave nothing."""
    for back in range(1, min(3, len(data) - 1) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): how long should its sequence be?
            need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            return data[:-back] if need > back else data
    return data


def _one_mark_per_byte(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return "?" * (error.end - error.start), error.end


codecs.register_error("mensa_files_replace", _one_mark_per_byte)


def decode_text(raw: bytes) -> str:
    """Returns ``raw`` as text: UTF-8, each byte of an invalid sequence shown as ``?``, so the
    text's UTF-8 encoding is exactly as long as ``raw`` (a client's next offset is
    ``offset + len(data.encode())``)."""
    return raw.decode("utf-8", errors="mensa_files_replace")


def read_chunk(fd: int, offset: int, length: int) -> dict[str, Any]:
    """Reads up to ``length`` bytes (capped at MAX_READ_BYTES) of an open file from ``offset``.

    Returns Mesos's ``{"data", "offset"}``; ``offset=-1`` returns the file's size as ``offset`` and
    no data, as does an offset at or past the end. ``data`` is text (see ``decode_text``); a read
    that would end inside a UTF-8 character ends before it.
    """
    size = os.fstat(fd).st_size
    if offset == -1 or offset >= size:
        return {"data": "", "offset": size}
    raw = os.pread(fd, min(length, MAX_READ_BYTES), offset)
    return {"data": decode_text(_complete_utf8(raw)), "offset": offset}


class _FilesHandler(_JsonHandler):
    def initialize(self, work_dir: str) -> None:
        self.work_dir = work_dir

    def open(self, *, directory: bool = False) -> tuple[str, int]:
        """Returns the requested path and a descriptor of what it names; raises HTTPError."""
        path = self.get_query_argument("path", "")
        try:
            return path, open_inside(self.work_dir, resolve_sandbox_path(self.work_dir, path),
                                     directory=directory)
        except FilesError as exc:
            raise tornado.web.HTTPError(exc.status, reason=exc.reason) from None

    def int_argument(self, name: str, default: int) -> int:
        try:
            return int(self.get_query_argument(name, str(default)))
        except ValueError:
            raise tornado.web.HTTPError(400, reason=f"{name} must be an integer") from None


class FilesBrowseHandler(_FilesHandler):
    """``GET /files/browse?path=DIR``: the directory's entries (not following symlinks)."""

    def get(self) -> None:
        path, fd = self.open(directory=True)
        entries = []
        try:
            try:
                names = sorted(os.listdir(fd))
            except OSError:
                raise tornado.web.HTTPError(403, reason="directory cannot be read") from None
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue  # removed while listing
                entries.append(entry_json(os.path.join(path.rstrip("/") or "/", name), st))
        finally:
            os.close(fd)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(entries))


class FilesReadHandler(_FilesHandler):
    """``GET /files/read?path=FILE&offset=N&length=N`` (see ``read_chunk``)."""

    def get(self) -> None:
        offset = self.int_argument("offset", 0)
        length = self.int_argument("length", MAX_READ_BYTES)
        if offset < -1:
            raise tornado.web.HTTPError(400, reason="offset must be -1 or more")
        if length < 0:
            raise tornado.web.HTTPError(400, reason="length must not be negative")
        _, fd = self.open()
        try:
            self.write_json(read_chunk(fd, offset, length))
        except OSError:
            raise tornado.web.HTTPError(404, reason="file cannot be read") from None
        finally:
            os.close(fd)


class FilesDownloadHandler(_FilesHandler):
    """``GET /files/download?path=FILE``: the file's bytes, streamed."""

    async def get(self) -> None:
        path, fd = self.open()
        with os.fdopen(fd, "rb") as f:
            self.set_header("Content-Type", "application/octet-stream")
            name = "".join(c for c in os.path.basename(path) if " " <= c < "\x7f" and c not in '"\\')
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            while chunk := f.read(DOWNLOAD_CHUNK_BYTES):
                self.write(chunk)
                await self.flush()
        self.finish()

def make_app(
    state: AgentState,
    master: str,
    containerizers: Sequence[object] = (),
    usage: UsageProbe | None = None,
    metrics: AgentMetrics | None = None,
) -> tornado.web.Application:
    """Returns the agent's tornado application. ``metrics`` is the service's (``AgentService.
    metrics``); without it, uptime counts from now and completions are counted at each scrape."""
    files = {"work_dir": state.config.work_dir}
    state_args = {"state": state, "master": master, "containerizers": containerizers, "usage": usage}
    if metrics is None:
        metrics = AgentMetrics(started_at=time.time())
    return tornado.web.Application(
        [
            (r"/health", HealthHandler),
            (r"/state(?:\.json)?", StateHandler, state_args),
            (r"/files/browse(?:\.json)?", FilesBrowseHandler, files),
            (r"/files/read(?:\.json)?", FilesReadHandler, files),
            (r"/files/download(?:\.json)?", FilesDownloadHandler, files),
            *metrics_routes(state, metrics),
        ]
    )
