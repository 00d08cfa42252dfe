"""``mensa state|agents|frameworks|tasks``: a cluster's /state as tables (or JSON).

    mensa state      --master 10.0.0.1:5050 [--completed] [--json]   # everything, raw JSON with --json
    mensa agents     --master zk://zk1:2181,zk2:2181/mensa           # resources used/total, tasks
    mensa frameworks --master http://10.0.0.1:5051 [--completed]     # roles, tasks, dominant share
    mensa tasks      --state RUNNING,STAGING --framework NAME --agent HOSTNAME [--completed]

``--master`` is a master's ZeroMQ address (as for agents) or ``zk://HOST:PORT,.../PATH``; the
CLI finds the leading master (a standby it asks names the leader; a zk:// URI is read in
ZooKeeper) and reads ``/state`` from the leader's HTTP port. An ``http://HOST:PORT`` address
reads ``/state`` there directly. ``--json`` prints, for agents/frameworks/tasks, a JSON list of
the records the table shows with full values (MB, epoch seconds, full state names); for state,
the raw /state document. An unreachable master, no leader, a bad ``--master`` or filter prints
one line on stderr and exits 1. The tables come from the pure ``mensa.deploy.views``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from mensa.deploy.views import (
    StateIndex,
    TaskFilter,
    agent_rows,
    agents_table,
    framework_rows,
    frameworks_table,
    parse_states,
    render_state,
    select_tasks,
    tasks_table,
)
from mensa.proto.detector import MasterUnreachable, resolve_leader

__all__ = ["StateSource", "add_arguments", "add_master_arguments", "fetch_state", "leader_http",
           "quiet_kazoo", "run", "silence_stdout", "write_stdout"]


def add_master_arguments(parser: argparse.ArgumentParser, json_help: str) -> None:
    """Adds ``--master``, ``--json`` and ``--timeout``, which every view command takes."""
    parser.add_argument("--master", default="127.0.0.1:5050",
                        help="master ZeroMQ address HOST:PORT, zk://HOST:PORT,.../PATH, or "
                        "http://HOST:PORT (default 127.0.0.1:5050)")
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the master")


# The CLI registers each command with one add_arguments; this dispatches on the command name.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    name = parser.prog.split()[-1]
    add_master_arguments(parser, "print the raw /state JSON" if name == "state" else
                         f"print the {name} as a JSON list of records with full values (MB, epoch seconds)")
    if name in ("state", "tasks"):
        parser.add_argument("--completed", action="store_true", help="also list completed tasks")
    if name == "frameworks":
        parser.add_argument("--completed", action="store_true", help="also list completed frameworks")
    if name == "tasks":
        parser.add_argument("--state", metavar="STATES",
                            help="only tasks in these states, e.g. RUNNING,STAGING (a terminal state "
                            "such as FAILED includes completed tasks)")
        parser.add_argument("--framework", metavar="ID|NAME", help="only this framework's tasks")
        parser.add_argument("--agent", metavar="ID|HOSTNAME", help="only tasks on this agent")
    parser.set_defaults(_view=name if name in ("agents", "frameworks", "tasks") else "state")


def leader_http(master: str, timeout: float = 5.0) -> str:
    """Returns ``http://HOST:PORT`` of the leading master for a ``--master`` value (an
    ``http://`` address as is). Raises MasterUnreachable (no leader, no answer, ZooKeeper
    unreachable) or ValueError (a malformed address), each with a message for the user."""
    if master.startswith(("http://", "https://")):
        return master.rstrip("/")
    try:
        leader = resolve_leader(master, timeout)
    except ValueError as exc:
        raise ValueError(f"bad --master {master!r}: {exc}") from None
    if not leader.http or leader.http.endswith(":0"):
        raise MasterUnreachable(f"the leading master {leader} announces no HTTP port")
    return f"http://{leader.http}"


def quiet_kazoo() -> None:
    """Keeps kazoo's connection retries off a CLI's stderr (the CLI prints one clear error)."""
    kazoo = logging.getLogger("kazoo")
    if not kazoo.handlers:
        kazoo.addHandler(logging.NullHandler())
        kazoo.propagate = False


class StateSource:
    """Reads the leading master's /state, again and again (``mensa top``): the leader's HTTP
    address is found once and found again after a failed read, since the leader may have moved.

    ``fetch`` raises ValueError for a malformed ``--master`` or a /state that is not JSON, and
    MasterUnreachable (no leader, no answer, an HTTP error) otherwise, each with a message for
    the user."""

    def __init__(self, master: str, timeout: float = 5.0) -> None:
        self.master = master
        self.timeout = timeout
        self._base: str | None = None

    def fetch(self) -> dict[str, Any]:
        if self._base is None:
            self._base = leader_http(self.master, self.timeout)
        url = self._base + "/state"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                data = json.load(response)
        except urllib.error.HTTPError as exc:
            self._base = None
            raise MasterUnreachable(f"{url} answered {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            self._base = None
            raise MasterUnreachable(f"no answer from {url}: {exc.reason}") from None
        except OSError as exc:  # a timeout or reset while reading the body
            self._base = None
            raise MasterUnreachable(f"no answer from {url}: {exc}") from None
        except ValueError as exc:
            self._base = None
            raise ValueError(f"{url} did not answer with JSON: {exc}") from None
        if isinstance(data, dict):
            return data
        raise ValueError(f"{url} did not answer with a JSON object")


def fetch_state(master: str, timeout: float = 5.0) -> dict[str, Any]:
    """Returns the leading master's /state document (see ``leader_http`` and ``StateSource``)."""
    return StateSource(master, timeout).fetch()


def render_view(view: str, state: dict[str, Any], args: argparse.Namespace, now: float,
                task_filter: TaskFilter | None = None) -> str:
    """Returns what ``mensa VIEW`` prints for a /state document: a table, or JSON with ``--json``.
    Raises ValueError for a filter that matches no framework or agent."""
    if view == "state":
        return json.dumps(state, indent=2) if args.json else render_state(state, args.completed)
    index = StateIndex.build(state)
    if view == "agents":
        agents = agent_rows(index)
        return _json(agents) if args.json else agents_table(agents, now)
    if view == "frameworks":
        frameworks = framework_rows(index, args.completed)
        return _json(frameworks) if args.json else frameworks_table(frameworks, index.totals)
    tasks = select_tasks(index, task_filter or TaskFilter())
    return _json(tasks) if args.json else tasks_table(tasks, now)


def _json(rows: Any) -> str:
    return json.dumps([r.to_json() for r in rows], indent=2)


def _task_filter(args: argparse.Namespace) -> TaskFilter | None:
    if getattr(args, "_view", "state") != "tasks":
        return None
    return TaskFilter(states=parse_states(args.state) if args.state else frozenset(),
                      framework=args.framework, agent=args.agent, completed=args.completed)


def silence_stdout() -> None:
    """After a reader went away (``| head``): Python flushes stdout again at exit, so point it
    at /dev/null to keep that quiet too."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def write_stdout(text: str) -> None:
    """Prints ``text``; a reader that went away ends the output quietly."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def run(args: argparse.Namespace) -> int:
    quiet_kazoo()
    view = getattr(args, "_view", "state")
    try:
        task_filter = _task_filter(args)
        state = fetch_state(args.master, args.timeout)
        text = render_view(view, state, args, time.time(), task_filter)
    except (MasterUnreachable, OSError, ValueError) as exc:
        print(f"mensa {view}: {exc}", file=sys.stderr)
        return 1
    write_stdout(text)
    return 0
