"""Real Mensa processes on loopback for integration tests, cleaned up by pid.

``Cluster`` starts masters and agents as subprocesses (ports picked freely, found through each
process's endpoints.json), reads the master's /state, and at the end stops everything it started
and SIGKILLs any task process still working inside its temp dir.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import zmq

from mensa.deploy.processes import ManagedProcess, kill_processes_under, mensa_argv
from mensa.proto import internal_pb2
from mensa.proto.transport import Endpoint, connect_dealer, decode, encode

T = TypeVar("T")

FAST_MASTER = [
    "--port", "0", "--http-port", "0", "--allocation-interval", "0.2",
    "--agent-ping-timeout", "0.5", "--max-agent-ping-timeouts", "3",
    "--framework-heartbeat-interval", "1",
]


def wait_until(check: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Polls ``check`` until it returns something truthy; returns that, or fails after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[ManagedProcess] = []
        self.master_endpoint = ""
        self.http = ""
        self.sockets: list[zmq.Socket] = []  # type: ignore[type-arg]

    def start_master(self, *extra: str, name: str = "master") -> ManagedProcess:
        work = self.root / name
        proc = ManagedProcess(name, mensa_argv("master", "--work-dir", str(work), *FAST_MASTER, *extra,
                                               "--log-level", "debug"), work).start()
        self.processes.append(proc)
        ep = proc.endpoints()
        self.master_endpoint = f"127.0.0.1:{ep['zmq_port']}"
        self.http = f"http://127.0.0.1:{ep['http_port']}"
        return proc

    def start_agent(self, name: str, resources: str = "cpus:4;mem:4096;disk:1000;ports:[31000-31099]",
                    *extra: str) -> ManagedProcess:
        work = self.root / name
        proc = ManagedProcess(name, mensa_argv(
            "agent", "--master", self.master_endpoint, "--work-dir", str(work), "--http-port", "0",
            "--resources", resources, "--hostname", name, "--kill-grace-period", "1",
            "--status-update-retry-interval", "0.3", "--log-level", "debug", *extra), work).start()
        self.processes.append(proc)
        proc.endpoints()
        return proc

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/state", timeout=5) as response:
            data: dict[str, Any] = json.load(response)
            return data

    def wait_agents(self, count: int) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]]:
            agents = self.state()["agents"]
            return agents if len(agents) == count else []
        return wait_until(check, what=f"{count} agents")

    def tasks(self, framework_id: str) -> dict[str, str]:
        """Returns task id -> state for the framework's live and completed tasks."""
        for fw in self.state()["frameworks"]:
            if fw["id"] == framework_id:
                return {t["id"]: t["state"] for t in fw["tasks"] + fw["completed_tasks"]}
        return {}

    def dealer(self) -> zmq.Socket:  # type: ignore[type-arg]
        sock = connect_dealer(zmq.Context.instance(), Endpoint.parse(self.master_endpoint))
        self.sockets.append(sock)
        return sock

    def ask(self, sock: zmq.Socket, payload: bytes | list[bytes],  # type: ignore[type-arg]
            timeout: float = 5.0) -> internal_pb2.Envelope:
        """Sends raw frames to the master and returns its decoded answer."""
        if isinstance(payload, list):
            sock.send_multipart(payload)
        else:
            sock.send(payload)
        assert sock.poll(int(timeout * 1000)), "no answer from the master"
        return decode(sock.recv())

    def request(self, sock: zmq.Socket, envelope: internal_pb2.Envelope) -> internal_pb2.Envelope:  # type: ignore[type-arg]
        return self.ask(sock, encode(envelope))

    def shutdown(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        for proc in reversed(self.processes):
            proc.stop(grace=10)
        kill_processes_under(self.root)

    def dump_logs(self) -> str:
        out = []
        for proc in self.processes:
            if proc.log_path and proc.log_path.exists():
                out.append(f"===== {proc.name} =====\n" + proc.log_path.read_text()[-6000:])
        return "\n".join(out)
