"""Several masters contending through a real ZooKeeper, agents and schedulers following them.

``HACluster`` starts ``mensa master --zk`` processes and ``mensa agent --master zk://...``
processes (ports picked freely, found through endpoints.json), finds the leader through each
master's /health, reads the leader's /state, and stops exactly what it started (by pid), then
SIGKILLs any task process still working under its temp dir.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mensa_cluster import wait_until

from mensa.deploy.processes import ManagedProcess, kill_processes_under, mensa_argv

FAST_MASTER = [
    "--port", "0", "--http-port", "0", "--allocation-interval", "0.2",
    "--agent-ping-timeout", "0.5", "--max-agent-ping-timeouts", "4",
    "--framework-heartbeat-interval", "1", "--agent-reregister-timeout", "10",
]


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
        return data


class NoLeader(ValueError):
    """No master leads right now."""


class HACluster:
    def __init__(self, root: Path, zk_uri: str, session_timeout: float = 2.0) -> None:
        self.root = root
        self.zk_uri = zk_uri
        self.session_timeout = session_timeout
        self.masters: dict[str, ManagedProcess] = {}
        self.agents: dict[str, ManagedProcess] = {}
        self.processes: list[ManagedProcess] = []

    def start_master(self, name: str) -> ManagedProcess:
        work = self.root / name
        proc = ManagedProcess(name, mensa_argv(
            "master", "--zk", self.zk_uri, "--zk-session-timeout", str(self.session_timeout),
            "--work-dir", str(work), *FAST_MASTER, "--log-level", "debug"), work).start()
        proc.endpoints()
        self.masters[name] = proc
        self.processes.append(proc)
        return proc

    def start_agent(self, name: str, resources: str = "cpus:4;mem:4096;disk:1000;ports:[31000-31099]",
                    *extra: str) -> ManagedProcess:
        work = self.root / name
        proc = ManagedProcess(name, mensa_argv(
            "agent", "--master", self.zk_uri, "--zk-session-timeout", str(self.session_timeout),
            "--work-dir", str(work), "--http-port", "0", "--resources", resources,
            "--hostname", name, "--kill-grace-period", "1", "--status-update-retry-interval", "0.3",
            "--isolation", "rlimits", "--pid-namespace", "off", "--log-level", "debug", *extra),
            work).start()
        proc.endpoints()
        self.agents[name] = proc
        self.processes.append(proc)
        return proc

    def http(self, name: str) -> str:
        return f"http://127.0.0.1:{self.masters[name].endpoints()['http_port']}"

    def health(self, name: str) -> dict[str, Any]:
        return get_json(f"{self.http(name)}/health")

    def leader(self) -> str | None:
        """The name of the live master whose /health says it leads, if exactly one does."""
        leading = []
        for name, proc in self.masters.items():
            if not proc.alive():
                continue
            try:
                if self.health(name)["leading"]:
                    leading.append(name)
            except OSError:
                continue
        assert len(leading) <= 1, f"two masters lead at once: {leading}"
        return leading[0] if leading else None

    def wait_leader(self, other_than: str | None = None, timeout: float = 30.0) -> str:
        def check() -> str | None:
            name = self.leader()
            return name if name is not None and name != other_than else None
        return wait_until(check, timeout, "a leading master")

    def state(self) -> dict[str, Any]:
        """The leader's /state (fails while no master leads)."""
        name = self.leader()
        if name is None:
            raise NoLeader("no master leads")  # a ValueError: wait_until polls on
        return get_json(f"{self.http(name)}/state")

    def wait_agents(self, ids: set[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]]:
            agents = self.state()["agents"]
            return agents if {a["id"] for a in agents} == ids else []
        return wait_until(check, timeout, f"agents {sorted(ids)} registered with the leader")

    def tasks(self, framework_id: str) -> dict[str, str]:
        """Task id -> state of a framework's live and completed tasks, at the leader."""
        for fw in self.state()["frameworks"]:
            if fw["id"] == framework_id:
                return {t["id"]: t["state"] for t in fw["tasks"] + fw["completed_tasks"]}
        return {}

    def shutdown(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(grace=10)
        kill_processes_under(self.root)

    def dump_logs(self) -> str:
        out = []
        for proc in self.processes:
            if proc.log_path and proc.log_path.exists():
                out.append(f"===== {proc.name} =====\n" + proc.log_path.read_text()[-8000:])
        return "\n".join(out)


def redirect_of(url: str) -> tuple[int, str | None]:
    """The status and Location of a GET, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.headers.get("Location")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location")
