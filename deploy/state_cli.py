"""``mensa state``: print a cluster's agents, frameworks and tasks as tables.

``--master`` is a master's ZeroMQ address (as for agents) or ``zk://HOST:PORT,.../PATH``; the
CLI finds the leading master (a standby it asks names the leader; a zk:// URI is read in
ZooKeeper) and reads ``/state`` from the leader's HTTP port. An ``http://HOST:PORT`` address
reads ``/state`` there directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.request
from typing import Any

from mensa.proto.detector import MasterUnreachable, resolve_leader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", default="127.0.0.1:5050",
                        help="master ZeroMQ address HOST:PORT, zk://HOST:PORT,.../PATH, or "
                        "http://HOST:PORT (default 127.0.0.1:5050)")
    parser.add_argument("--json", action="store_true", help="print the raw /state JSON")
    parser.add_argument("--completed", action="store_true", help="also list completed tasks")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the master")


def leader_http(master: str, timeout: float = 5.0) -> str:
    """Returns ``http://HOST:PORT`` of the leading master for a ``--master`` value (an
    ``http://`` address as is). Raises MasterUnreachable (no leader, no answer, ZooKeeper
    unreachable) or ValueError (a malformed address), each with a message for the user."""
    if master.startswith(("http://", "https://")):
        return master.rstrip("/")
    try:
        leader = resolve_leader(master, timeout)
    except MasterUnreachable:
        raise
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


def fetch_state(master: str, timeout: float = 5.0) -> dict[str, Any]:
    """Returns the leading master's /state document (see ``leader_http``)."""
    url = leader_http(master, timeout) + "/state"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: dict[str, Any] = json.load(response)
        return data


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Formats rows as a plain text table with a header line."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _res(r: dict[str, Any]) -> str:
    return f"cpus={r.get('cpus', 0):g} mem={r.get('mem', 0):g} disk={r.get('disk', 0):g}"


def render(state: dict[str, Any], completed: bool = False) -> str:
    out = [f"master {state['id']} at {state['leader']} (version {state['version']})", ""]
    agents = state.get("agents", [])
    out.append(f"AGENTS ({len(agents)})")
    out.append(table(["ID", "HOSTNAME", "TOTAL", "USED", "TASKS"], [
        [a["id"], a["hostname"], _res(a["resources"]), _res(a["used_resources"]), a.get("tasks", 0)]
        for a in agents
    ]))
    frameworks = state.get("frameworks", [])
    out += ["", f"FRAMEWORKS ({len(frameworks)})"]
    out.append(table(["ID", "NAME", "CONNECTED", "ROLES", "USED", "TASKS"], [
        [f["id"], f["name"], f["connected"], ",".join(f["roles"]), _res(f["used_resources"]),
         len(f["tasks"])]
        for f in frameworks
    ]))
    rows = []
    for f in frameworks:
        tasks = f["tasks"] + (f["completed_tasks"] if completed else [])
        rows += [[t["id"], t["name"], f["name"], t["state"], t["agent_id"]] for t in tasks]
    out += ["", f"TASKS ({len(rows)})", table(["ID", "NAME", "FRAMEWORK", "STATE", "AGENT"], rows)]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    quiet_kazoo()
    try:
        state = fetch_state(args.master, args.timeout)
    except (MasterUnreachable, OSError, ValueError) as exc:
        print(f"mensa state: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(state, indent=2) if args.json else render(state, args.completed))
    return 0
