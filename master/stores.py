"""Where the registry is kept: a file for a standalone master, a znode with ZooKeeper (I/O).

A store holds one blob and a version. ``load()`` returns ``(data, version)``; ``store(data,
version)`` replaces the blob only if it still has ``version`` (the one this master last read or
wrote) and returns the new version; otherwise it raises ``RegistryConflict`` (another master
wrote it: this one no longer leads). ``RegistryUnavailable`` means the write did not happen for
lack of a connection. The ZooKeeper store sits with the contender in ``election.py``, since both
use one ZooKeeper session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


class RegistryConflict(RuntimeError):
    """The registry changed under this master: another master leads now."""


class RegistryUnavailable(RuntimeError):
    """The registry could not be read or written (no connection, disk error)."""


class RegistryStore(Protocol):
    """One versioned blob; see the module docstring."""

    def load(self) -> tuple[bytes | None, int]: ...

    def store(self, data: bytes, version: int) -> int: ...

    def set_aside(self, suffix: str) -> object: ...


class FileStore:
    """The registry in ``path``, replaced atomically (write, fsync, rename, fsync the folder).

    Only one master uses a file, so the version is a counter kept in memory: a standalone
    master restarted with the same --work-dir reads back what it wrote.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._version = 0

    def load(self) -> tuple[bytes | None, int]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise RegistryUnavailable(f"cannot read {self.path}: {exc}") from None
        return data, self._version

    def store(self, data: bytes, version: int) -> int:
        if version != self._version:
            raise RegistryConflict(f"registry version {version} is stale (now {self._version})")
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise RegistryUnavailable(f"cannot write {self.path}: {exc}") from None
        self._version += 1
        return self._version

    def set_aside(self, suffix: str) -> Path | None:
        """Renames an unreadable registry file out of the way; returns where it went."""
        target = self.path.with_name(f"{self.path.name}.{suffix}")
        try:
            os.replace(self.path, target)
        except OSError:
            return None
        return target
