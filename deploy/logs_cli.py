"""``mensa logs TASK_ID``: print a task's stdout (or stderr), from any agent, live or finished.

    mensa logs web-1 --master 10.0.0.1:5050            # the whole stdout
    mensa logs web-1 --stderr --lines 20               # the last 20 lines of stderr
    mensa logs web-1 --follow                          # then new output, until the task ends
    mensa logs web-1 --master zk://10.0.0.1:2181/mensa # ask whichever master leads

The task is found in the leading master's /state (live and completed tasks of every framework); its
agent (``hostname`` and HTTP ``port`` there) gives the task's sandbox in its own /state, and the
file is read through the agent's ``/files/read`` (Mesos's offset/length protocol). ``--follow``
polls from the last offset and stops once the task is terminal and its file has stopped growing
(or on Ctrl-C). Errors (unknown task, an id in several frameworks, an unreachable agent) print one
line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from mensa.deploy.state_cli import fetch_state, quiet_kazoo
from mensa.proto import mensa_pb2
from mensa.proto.detector import MasterUnreachable
from mensa.proto.states import TERMINAL_STATES

READ_BYTES = 1024 * 1024
TERMINAL_STATE_NAMES = frozenset(mensa_pb2.TaskState.Name(s) for s in TERMINAL_STATES)


class LogsError(Exception):
    """Why the logs cannot be shown; ``str()`` is the message for the user."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id", metavar="TASK_ID", help="the task whose output to print")
    parser.add_argument("--stderr", action="store_true", help="print stderr instead of stdout")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new output until the task ends (or Ctrl-C)")
    parser.add_argument("--framework", metavar="ID", help="the task's framework id, when the task "
                        "id is used in several frameworks")
    parser.add_argument("--master", default="127.0.0.1:5050",
                        help="master ZeroMQ address HOST:PORT, zk://HOST:PORT,.../PATH, or "
                        "http://HOST:PORT (default 127.0.0.1:5050)")
    parser.add_argument("--lines", "-n", type=int, metavar="N", help="print only the last N lines")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer")
    parser.add_argument("--poll-interval", type=float, default=0.2,
                        help="seconds between reads with --follow (default 0.2)")


@dataclass(slots=True, frozen=True)
class TaskLocation:
    """Where a task ran: its framework, its agent and that agent's HTTP address."""

    task_id: str
    framework_id: str
    agent_id: str
    agent_url: str


def locate_task(state: dict[str, Any], task_id: str, framework_id: str | None) -> TaskLocation:
    """Returns where the task ran, from the master's /state; raises LogsError when it is unknown,
    ambiguous (the id in several frameworks and no ``framework_id``) or its agent is gone."""
    found: dict[str, dict[str, Any]] = {}
    frameworks = state.get("frameworks", []) + state.get("completed_frameworks", [])
    for fw in frameworks:
        if framework_id is not None and fw.get("id") != framework_id:
            continue
        # Live tasks last, so they win over a completed task that had the same id.
        for task in fw.get("completed_tasks", []) + fw.get("tasks", []):
            if task.get("id") == task_id:
                found[fw["id"]] = task
    if not found:
        where = f" in framework {framework_id}" if framework_id else ""
        raise LogsError(f"task {task_id} not found{where}")
    if len(found) > 1:
        raise LogsError(f"task {task_id} exists in several frameworks ({', '.join(sorted(found))}); "
                        "choose one with --framework")
    [(fw_id, task)] = found.items()
    agent_id = task.get("agent_id") or task.get("slave_id") or ""
    agents = {a["id"]: a for a in state.get("agents", state.get("slaves", []))}
    agent = agents.get(agent_id)
    if agent is None:
        raise LogsError(f"task {task_id} ran on agent {agent_id or '?'}, which is not registered "
                        "with the master")
    if not agent.get("port"):
        raise LogsError(f"agent {agent_id} ({agent.get('hostname')}) serves no HTTP")
    host = agent.get("ip") or agent["hostname"]
    return TaskLocation(task_id, fw_id, agent_id, f"http://{host}:{agent['port']}")


class AgentFiles:
    """Reads a task's sandbox through one agent's HTTP API."""

    def __init__(self, location: TaskLocation, timeout: float) -> None:
        self.location = location
        self.timeout = timeout

    def _get(self, endpoint: str, **query: Any) -> Any:
        url = f"{self.location.agent_url}{endpoint}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError:
            raise
        except (OSError, ValueError) as exc:
            raise LogsError(f"cannot reach agent {self.location.agent_id} at "
                            f"{self.location.agent_url}: {exc}") from None

    def task(self) -> dict[str, Any] | None:
        """Returns the task as the agent's /state shows it (None when the agent does not know it)."""
        state = self._get("/state")
        key = (self.location.task_id, self.location.framework_id)
        matches = [t for t in state.get("completed_tasks", []) + state.get("tasks", [])
                   if (t.get("id"), t.get("framework_id")) == key]
        return matches[-1] if matches else None  # a live task wins over an old one of that id

    def read(self, path: str, offset: int, length: int = READ_BYTES) -> tuple[str, int] | None:
        """Returns ``(text, next_offset)`` read from ``offset`` (-1: no text, the size), or None
        when the file does not exist."""
        try:
            doc = self._get("/files/read", path=path, offset=offset, length=length)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise LogsError(f"agent {self.location.agent_id} refused to read {path}: "
                            f"{exc.code} {exc.reason}") from None
        data = str(doc.get("data", ""))
        # The agent shows each byte of invalid UTF-8 as one "?": text and bytes have one length.
        return data, int(doc.get("offset", offset)) + len(data.encode())


def copy(files: AgentFiles, path: str, offset: int, out: list[str] | None = None) -> int:
    """Prints (or appends to ``out``) the file from ``offset`` to its current end; returns the
    offset after what it read."""
    while True:
        chunk = files.read(path, offset)
        if chunk is None or chunk[1] <= offset:
            return offset
        text, offset = chunk
        if out is None:
            _write(text)
        else:
            out.append(text)


def last_lines(files: AgentFiles, path: str, size: int, lines: int) -> tuple[str, int]:
    """Returns the file's last ``lines`` lines and the offset after them. Reads ever larger
    windows back from ``size`` until they hold enough lines."""
    window = 64 * 1024
    while True:
        start = max(0, size - window)
        chunks: list[str] = []
        offset = copy(files, path, start, chunks)
        parts = "".join(chunks).splitlines(keepends=True)
        if start == 0 or len(parts) > lines:  # more than N: the first may be cut off
            return "".join(parts[-lines:] if lines > 0 else []), offset
        window *= 2


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def show(files: AgentFiles, path: str, lines: int | None, follow: bool, poll: float) -> None:
    """Prints the file (or its last ``lines`` lines); with ``follow``, then its new output until
    the task is terminal and the file has stopped growing."""
    size = files.read(path, -1)
    if size is None and not follow:
        raise LogsError(f"task {files.location.task_id} has no {path.rsplit('/', 1)[-1]} on agent "
                        f"{files.location.agent_id} (its sandbox may have been removed)")
    offset = 0
    if size is not None and lines is not None:
        text, offset = last_lines(files, path, size[1], lines)
        _write(text)
    elif size is not None:
        offset = copy(files, path, 0)
    while follow:
        task = files.task()
        done = task is None or task.get("state") in TERMINAL_STATE_NAMES
        size = files.read(path, -1)
        if size is not None and size[1] < offset:
            print(f"mensa logs: {path} was truncated; following it from its start", file=sys.stderr)
            offset = 0
        before, offset = offset, copy(files, path, offset)
        if offset == before:
            if done:
                return
            time.sleep(poll)


def run(args: argparse.Namespace) -> int:
    quiet_kazoo()
    try:
        if args.lines is not None and args.lines < 0:
            raise LogsError("--lines must not be negative")
        try:
            state = fetch_state(args.master, args.timeout)
        except (MasterUnreachable, OSError) as exc:
            raise LogsError(f"cannot reach the master at {args.master}: {exc}") from None
        except ValueError as exc:  # a malformed --master, or /state that is not JSON
            raise LogsError(str(exc)) from None
        location = locate_task(state, args.task_id, args.framework)
        files = AgentFiles(location, args.timeout)
        task = files.task()
        if task is None or not task.get("sandbox"):
            raise LogsError(f"agent {location.agent_id} does not know task {args.task_id} "
                            "(it may have restarted, or removed the task's sandbox)")
        name = "stderr" if args.stderr else "stdout"
        show(files, f"{task['sandbox']}/{name}", args.lines, args.follow, args.poll_interval)
    except LogsError as exc:
        print(f"mensa logs: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return 0
