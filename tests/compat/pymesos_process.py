"""Drives ``pymesos_scheduler.py`` (a framework on unmodified pymesos) in a child process.

The child prints one JSON object per pymesos callback; ``PymesosScheduler`` collects them in a
thread and lets a test wait for the one it expects, and writes commands to the child's stdin.
The child is stopped by pid at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

SCRIPT = Path(__file__).with_name("pymesos_scheduler.py")
Event = dict[str, Any]


class PymesosScheduler:
    def __init__(self, master: str, name: str, log_dir: Path, *extra: str) -> None:
        self.log_path = log_dir / f"pymesos-{name}.log"
        self._log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), master, name, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True,
        )
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def wait_for(self, match: Callable[[Event], bool], timeout: float = 20.0, what: str = "event",
                 since: int = 0) -> Event:
        """Returns the first event (from index ``since``) that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if match(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"pymesos scheduler: no {what} within {timeout:g}s; events: "
                                         f"{self.events[since:][-15:]}\n{self.log()}")
                self._cond.wait(min(left, 0.2))

    def event(self, kind: str, timeout: float = 20.0, since: int = 0, **fields: Any) -> Event:
        return self.wait_for(lambda e: e["event"] == kind and all(e.get(k) == v for k, v in fields.items()),
                             timeout, f"{kind} {fields or ''}", since)

    def mark(self) -> int:
        """The number of events so far, to wait for later ones only."""
        with self._cond:
            return len(self.events)

    def count(self, kind: str, since: int = 0) -> int:
        with self._cond:
            return sum(1 for e in self.events[since:] if e["event"] == kind)

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()
