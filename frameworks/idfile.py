"""FrameworkIdFile: where a scheduler keeps its FrameworkID between runs, so a restart fails over.

A scheduler that restarts and re-subscribes with its old FrameworkID (within the framework's
``failover_timeout``, 7 days by default in the SDK) takes its running tasks over; one that
subscribes without it registers a new framework and its old tasks are killed when the timeout
ends. ``SchedulerDriver(framework_id_file=PATH)`` reads the id here at start and writes it after
every SUBSCRIBED that changes it. The file holds the id and a newline; writes are atomic (a
temporary file in the same folder, fsync, rename), so a crash never leaves half an id.

Usage::

    store = FrameworkIdFile("/var/lib/my-framework/framework_id")
    framework_id = store.read()      # None the first time
    store.write("3f0c...-0001")
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DEFAULT_FAILOVER_TIMEOUT = 7 * 24 * 3600.0  # a week: Mesos's default of 0 kills on any restart
MAX_ID_BYTES = 1024


class FrameworkIdFile:
    """Reads, writes (atomically) and removes one framework id file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def read(self) -> str | None:
        """Returns the id stored, or None when the file does not exist or is empty.

        Raises ValueError, naming the file, when it cannot be read or does not hold an id.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"cannot read framework id file {self.path}: {exc.strerror}") from None
        if len(data) > MAX_ID_BYTES:
            raise ValueError(f"framework id file {self.path} holds {len(data)} bytes, not an id")
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"framework id file {self.path} does not hold text") from None
        if not text:
            return None
        if any(c.isspace() or not c.isprintable() for c in text):
            raise ValueError(f"framework id file {self.path} holds {text[:80]!r}, not one id")
        return text

    def write(self, framework_id: str) -> None:
        """Stores ``framework_id`` atomically (creating the folder); raises OSError on failure."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as out:
                out.write(framework_id + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def remove(self) -> None:
        """Deletes the file (no error when it is already gone); raises OSError on failure."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
