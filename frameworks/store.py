"""Where a bundled framework (batch, service) keeps what must survive a restart: one JSON document per record.

The engine names each record by ``(kind, key)`` (a job, a run, an app, a deployment, ...) and says what
to write through ``Persist``/``Forget`` commands; a store writes them, and ``load()`` gives
them all back as ``{kind: {key: doc}}`` for the engine's ``restore``. Two stores:

- ``FileStore(dir)``: ``dir/<kind>/<key>.json``, each replaced atomically (a temporary file in
  the same folder, fsync, rename, then fsync of the folder), so a crash leaves either the old
  record or the new one, never half of one. Leftover temporary files are ignored (and removed)
  on load; a record that does not parse is reported (``state_record_unreadable``, and in
  ``FileStore.unreadable``) and skipped, so one bad file cannot stop the framework.
- ``ZkStore(client, path)``: one znode per record, ``PATH/<kind>/<key>``, written in ZooKeeper
  transactions. With a ``fence`` znode (the leader's own election znode) every transaction first
  checks that it still exists, so an instance that lost its session (and with it leadership)
  can write nothing more: its successor's state is safe from it.

``commit(changes)`` writes a batch (puts and forgets, in order); ``put`` and ``forget`` are
one-change commits. Both raise ``StoreError`` when the change may not have happened.

Usage::

    store = FileStore("/var/lib/mensa-batch/state")
    store.commit([Put("job", "nightly", {...}), Drop("run", "nightly.20240101")])
    records = store.load()          # {"job": {"nightly": {...}}}
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

Records = dict[str, dict[str, dict[str, Any]]]

MAX_NAME_BYTES = 200  # a key is a file name (with ".json"): stay well under NAME_MAX (255)
# ZooKeeper's default jute.maxbuffer is 1 MiB for a request; transactions stay under this.
MAX_TXN_BYTES = 512 * 1024
MAX_RECORD_BYTES = 900 * 1024


class StoreError(RuntimeError):
    """A write (or read) did not happen, or may not have: no connection, a disk error, a
    fenced-off writer; ``str()`` says why."""


def check_name(what: str, name: str) -> str:
    """Returns ``name`` if it can name a record's kind or key; raises ValueError otherwise.

    A name is 1..200 bytes of printable characters other than ``/`` and ``\\``, does not start
    with ``.`` (temporary files do) and is not ``..``: it is a file name and a znode name as is.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a record's {what} must be a non-empty string, not {name!r}")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"a record's {what} is over {MAX_NAME_BYTES} bytes: {name[:40]!r}...")
    if name.startswith(".") or any(c in "/\\" or not c.isprintable() for c in name):
        raise ValueError(f"a record's {what} {name!r} holds a path separator, a control "
                         "character or a leading '.'")
    return name


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``doc`` (a JSON object) as the record ``kind/key``."""

    kind: str
    key: str
    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Drop:
    """Remove the record ``kind/key`` (no error when it does not exist)."""

    kind: str
    key: str


Change = Put | Drop


class StateStore(Protocol):
    """What the service needs of a store; see the module docstring."""

    def load(self) -> Records: ...

    def commit(self, changes: Sequence[Change]) -> None: ...


def encode(doc: dict[str, Any]) -> bytes:
    """The bytes stored for a document (compact, keys sorted: equal documents, equal bytes)."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False,
                      ensure_ascii=False).encode()


def decode(data: bytes) -> dict[str, Any]:
    """Parses a stored document; raises ValueError saying why it is not a JSON object."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON {type(doc).__name__}, not an object")  # noqa: TRY004
    return doc


def _validated(changes: Iterable[Change]) -> list[tuple[Change, bytes | None]]:
    """Checks every name and encodes every document before anything is written, so a bad
    change fails the batch without touching the store."""
    out: list[tuple[Change, bytes | None]] = []
    for change in changes:
        check_name("kind", change.kind)
        check_name("key", change.key)
        if isinstance(change, Put):
            try:
                data = encode(change.doc)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"record {change.kind}/{change.key} is not JSON: {exc}") from None
            if len(data) > MAX_RECORD_BYTES:
                raise ValueError(f"record {change.kind}/{change.key} is {len(data)} bytes, over "
                                 f"{MAX_RECORD_BYTES}")
            out.append((change, data))
        else:
            out.append((change, None))
    return out


class FileStore:
    """Records as files under ``root``; see the module docstring."""

    SUFFIX = ".json"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.unreadable: list[tuple[str, str]] = []  # (path, why) of records skipped by load()

    def __str__(self) -> str:
        return str(self.root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / check_name("kind", kind) / (check_name("key", key) + self.SUFFIX)

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self.commit([Put(kind, key, doc)])

    def forget(self, kind: str, key: str) -> None:
        self.commit([Drop(kind, key)])

    def commit(self, changes: Sequence[Change]) -> None:
        """Writes the batch: every new file is written and synced first, then the renames and
        removals happen in order, each kind's folder synced before the next kind's renames (the
        engine lists run records before job records, and a job record must never reach the disk
        before the runs it refers to), and the store's root once when a kind's folder is new."""
        validated = _validated(changes)
        if not validated:
            return
        staged: list[tuple[Path, Path | None]] = []  # (target, temp file or None to remove)
        folders: set[Path] = set()
        try:
            for n, (change, data) in enumerate(validated):
                target = self.path(change.kind, change.key)
                folders.add(target.parent)
                if data is None:
                    staged.append((target, None))
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.{n}.tmp")
                with open(tmp, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                staged.append((target, tmp))
            new_folders = any(f.parent == self.root for f in folders)
            if new_folders and self.root.exists():
                _fsync_dir(self.root)
            pending: Path | None = None
            for final, written in staged:
                if pending is not None and final.parent != pending:
                    _fsync_dir(pending)  # this kind's renames are durable before the next kind's
                if written is None:
                    with contextlib.suppress(FileNotFoundError):
                        final.unlink()
                else:
                    os.replace(written, final)
                pending = final.parent
            if pending is not None and pending.exists():
                _fsync_dir(pending)
        except OSError as exc:
            for _final, written in staged:
                if written is not None:
                    with contextlib.suppress(OSError):
                        written.unlink()
            raise StoreError(f"cannot write the framework state under {self.root}: {exc}") from None

    def load(self) -> Records:
        """Returns every readable record; skips (and reports) unreadable ones and removes
        temporary files a crash left behind."""
        self.unreadable = []
        records: Records = {}
        try:
            kinds = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except FileNotFoundError:
            return records
        except OSError as exc:
            raise StoreError(f"cannot read the framework state under {self.root}: {exc}") from None
        for folder in kinds:
            found: dict[str, dict[str, Any]] = {}
            for path in sorted(folder.iterdir()):
                name = path.name
                if name.startswith("."):
                    if name.endswith(".tmp"):
                        log.info("state_temp_file_removed", path=str(path))
                        with contextlib.suppress(OSError):
                            path.unlink()
                    continue
                if not name.endswith(self.SUFFIX) or not path.is_file():
                    continue
                try:
                    found[name[: -len(self.SUFFIX)]] = decode(path.read_bytes())
                except (OSError, ValueError) as exc:
                    self.unreadable.append((str(path), str(exc)))
                    log.error("state_record_unreadable", path=str(path), error=str(exc))
            records[folder.name] = found
        return records


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ZkStore:
    """Records as znodes under ``path`` on a started kazoo ``client``; see the module docstring.

    ``fence`` returns the full path of a znode that must exist for a write to happen (the
    leader's election znode), or None to write unfenced. The store remembers which records
    exist (from load() and its own writes: it is the only writer while it leads), so a put is
    a create or a set without asking first.
    """

    def __init__(self, client: Any, path: str, fence: Callable[[], str | None] | None = None) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(f"a ZooKeeper path must start with '/' and not end with it: {path!r}")
        self.client = client
        self.path = path
        self.fence = fence
        self.unreadable: list[tuple[str, str]] = []
        self._known: set[tuple[str, str]] = set()
        self._kinds: set[str] = set()

    def __str__(self) -> str:
        return f"zk:{self.path}"

    def node(self, kind: str, key: str) -> str:
        return f"{self.path}/{check_name('kind', kind)}/{check_name('key', key)}"

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self.commit([Put(kind, key, doc)])

    def forget(self, kind: str, key: str) -> None:
        self.commit([Drop(kind, key)])

    def load(self) -> Records:
        """Returns every readable record (an unreadable one is reported and skipped)."""
        from kazoo.exceptions import KazooException, NoNodeError

        self.unreadable = []
        records: Records = {}
        known: set[tuple[str, str]] = set()
        try:
            self.client.ensure_path(self.path)
            kinds = sorted(self.client.get_children(self.path))
            for kind in kinds:
                found: dict[str, dict[str, Any]] = {}
                children = self.client.get_children(f"{self.path}/{kind}")
                asks = [(key, self.client.get_async(f"{self.path}/{kind}/{key}")) for key in children]
                for key, ask in sorted(asks):
                    try:
                        data, _stat = ask.get()
                    except NoNodeError:
                        continue
                    known.add((kind, key))
                    try:
                        found[key] = decode(data or b"")
                    except ValueError as exc:
                        where = f"{self.path}/{kind}/{key}"
                        self.unreadable.append((where, str(exc)))
                        log.error("state_record_unreadable", path=where, error=str(exc))
                records[kind] = found
        except KazooException as exc:
            raise StoreError(f"cannot read the framework state under {self.path}: {exc!r}") from None
        self._known = known
        self._kinds = set(records)
        return records

    def commit(self, changes: Sequence[Change]) -> None:
        """Writes the batch in transactions of at most MAX_TXN_BYTES, each fenced; a
        transaction that fails because the store's idea of which records exist was wrong is
        retried once with the truth read back."""
        from kazoo.exceptions import KazooException

        validated = _validated(changes)
        if not validated:
            return
        try:
            self._ensure_kinds({change.kind for change, _data in validated})
            for chunk in _chunks(validated):
                if not self._transact(chunk):
                    self._refresh(chunk)
                    if not self._transact(chunk):
                        raise StoreError("a ZooKeeper transaction failed twice: the fence znode is "
                                         "gone (this instance no longer leads) or the state changed "
                                         "under it")
        except KazooException as exc:
            raise StoreError(f"cannot write the framework state under {self.path}: {exc!r}") from None

    def _ensure_kinds(self, kinds: set[str]) -> None:
        for kind in sorted(kinds - self._kinds):
            self.client.ensure_path(f"{self.path}/{kind}")
            self._kinds.add(kind)

    def _transact(self, chunk: list[tuple[Change, bytes | None]]) -> bool:
        """Runs one transaction; returns False when ZooKeeper refused it (a check failed)."""
        txn = self.client.transaction()
        fence = self.fence() if self.fence is not None else None
        if self.fence is not None:
            if fence is None:
                raise StoreError("this instance holds no leadership znode: it may not write")
            txn.check(fence, 0)
        known = set(self._known)
        for change, data in chunk:
            ident = (change.kind, change.key)
            node = self.node(change.kind, change.key)
            if data is not None:
                if ident in known:
                    txn.set_data(node, data)
                else:
                    txn.create(node, data)
                    known.add(ident)
            elif ident in known:
                txn.delete(node)
                known.discard(ident)
        results = txn.commit()
        if any(isinstance(result, Exception) for result in results):
            log.warning("state_store_transaction_refused",
                        errors=[type(r).__name__ for r in results if isinstance(r, Exception)])
            return False
        self._known = known
        return True

    def _refresh(self, chunk: list[tuple[Change, bytes | None]]) -> None:
        """Reads back which of the chunk's records exist."""
        for change, _data in chunk:
            ident = (change.kind, change.key)
            if self.client.exists(self.node(change.kind, change.key)) is None:
                self._known.discard(ident)
            else:
                self._known.add(ident)


def _chunks(items: list[tuple[Change, bytes | None]]) -> list[list[tuple[Change, bytes | None]]]:
    chunks: list[list[tuple[Change, bytes | None]]] = [[]]
    size = 0
    for item in items:
        weight = len(item[1] or b"") + 256
        if chunks[-1] and size + weight > MAX_TXN_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += weight
    return chunks


class ZkText:
    """One short text value in a znode (the framework id with ``--zk``), with the interface of
    ``FrameworkIdFile``: ``read()`` (None when missing or empty) and ``write(value)``."""

    def __init__(self, client: Any, path: str) -> None:
        self.client = client
        self.path = path

    def __str__(self) -> str:
        return f"zk:{self.path}"

    def read(self) -> str | None:
        from kazoo.exceptions import KazooException, NoNodeError

        try:
            data, _stat = self.client.get(self.path)
        except NoNodeError:
            return None
        except KazooException as exc:
            raise StoreError(f"cannot read {self.path}: {exc!r}") from None
        text = (data or b"").decode(errors="replace").strip()
        return text or None

    def write(self, value: str) -> None:
        from kazoo.exceptions import KazooException, NoNodeError

        try:
            try:
                self.client.set(self.path, value.encode())
            except NoNodeError:
                self.client.create(self.path, value.encode(), makepath=True)
        except KazooException as exc:
            raise StoreError(f"cannot write {self.path}: {exc!r}") from None
