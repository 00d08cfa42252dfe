"""Starting and stopping Mensa processes by pid (the local cluster and the tests use this).

Each process runs in its own session (so a terminal's Ctrl-C reaches only its parent, which then
stops its children in order), logs to a file, and is stopped by pid: SIGTERM, then SIGKILL after a
grace period. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def mensa_argv(*args: str) -> list[str]:
    """Returns the argv that runs ``mensa ARGS`` with this interpreter."""
    return [sys.executable, "-m", "mensa.deploy.cli", *args]


# Host ports handed to tasks must stay below Linux's ephemeral range (32768-60999 by default):
# a port in it may already be the local end of some outgoing connection, and a task told to
# listen there fails with "address already in use".
AGENT_PORTS_START = 31000
AGENT_PORTS_END = 32767
AGENT_PORTS_EACH = 100


def agent_ports(index: int) -> str:
    """The ``ports`` resource of the ``index``-th (from 0) agent of a local cluster: 100 ports
    each from 31000, all below the ephemeral range; ValueError past the 17th agent."""
    begin = AGENT_PORTS_START + index * AGENT_PORTS_EACH
    end = begin + AGENT_PORTS_EACH - 1
    if index < 0 or end > AGENT_PORTS_END:
        raise ValueError(f"at most {(AGENT_PORTS_END - AGENT_PORTS_START + 1) // AGENT_PORTS_EACH} "
                         "agents get ports below the ephemeral range (32768)")
    return f"ports:[{begin}-{end}]"


@dataclass
class ManagedProcess:
    """A child process with a log file and a work directory."""

    name: str
    argv: list[str]
    work_dir: Path
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str] | None = None, inherit_output: bool = False) -> ManagedProcess:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        out: Any = None
        if not inherit_output:
            self.log_path = self.log_path or self.work_dir / f"{self.name}.log"
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open while it runs)
            out = self._log
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def endpoints(self, timeout: float = 20.0) -> dict[str, Any]:
        """Waits until this process has written ``<work-dir>/endpoints.json``; returns it."""
        path = self.work_dir / "endpoints.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc and self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                data: dict[str, Any] = json.loads(path.read_text())
                if data.get("pid") == self.pid:
                    return data
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not write {path} within {timeout:g}s")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL now (as a crash would)."""
        if self.proc is not None and self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(5)


def processes_under(root: Path) -> list[int]:
    """Returns the pids of processes whose working directory is inside ``root``.

    Tasks run with their sandbox as working directory, so this finds the tasks an agent left
    behind when it was killed with SIGKILL.
    """
    root_text = str(root.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == root_text or cwd.startswith(root_text + os.sep):
            found.append(int(entry.name))
    return found


def kill_processes_under(root: Path) -> list[int]:
    """SIGKILLs every process working inside ``root`` (by pid), then removes the task cgroups
    they were in (an agent killed with SIGKILL cannot); returns the pids."""
    pids = processes_under(root)
    cgroups = {d for pid in pids for d in _mensa_cgroups(pid)}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while cgroups and time.monotonic() < deadline:
        for directory in list(cgroups):
            try:
                directory.rmdir()
                cgroups.discard(directory)
            except FileNotFoundError:
                cgroups.discard(directory)
            except OSError:
                pass  # Still holds a dying process.
        if cgroups:
            time.sleep(0.05)
    return pids


def _mensa_cgroups(pid: int, root: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """Returns the task cgroup directories (``.../mensa/<container_id>``) a process is in."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if "/mensa/" not in path:
            continue
        for controller in (controllers.split(",") if controllers else [""]):
            name = controller.removeprefix("name=")
            base = root / name if name else root
            if base.exists():
                found.append(base / path.lstrip("/"))
    return found
