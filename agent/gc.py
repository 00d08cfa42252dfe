"""Garbage collection of finished tasks' sandboxes, by age and by disk usage (Mesos's gc).

A sandbox is ``<work-dir>/agents/<agent>/frameworks/<framework>/executors/<task>/runs/<run>``.
A finished one is removed once it is older than ``max_age_seconds`` (Mesos's ``--gc_delay``,
one week by default), and sooner when the disk is filling up: while the disk's usage is above
``1 - disk_headroom``, finished sandboxes go oldest first until it would be under again. The
sandbox of a live task is never removed.

``select_for_removal`` is the pure policy; ``collect`` scans the work dir and removes what the
policy picks. Usage, every minute or so from the agent's loop::

    removed = collect(work_dir, {r.sandbox for r in state.tasks.values()}, time.time(), policy)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

ONE_WEEK = 7 * 24 * 3600.0
SANDBOX_PATTERN = ("agents", "*", "frameworks", "*", "executors", "*", "runs", "*")


@dataclass(slots=True, frozen=True)
class GcPolicy:
    """When sandboxes go: ``max_age_seconds`` after they finished, or sooner while more than
    ``1 - disk_headroom`` of the disk is used."""

    max_age_seconds: float = ONE_WEEK
    disk_headroom: float = 0.1


@dataclass(slots=True, frozen=True)
class SandboxInfo:
    """One sandbox on disk: when its task finished (None while the task is live) and its size."""

    path: str
    finished_at: float | None
    size_bytes: int


@dataclass(slots=True, frozen=True)
class DiskUsage:
    """The work dir's file system: total and used bytes."""

    total_bytes: int
    used_bytes: int


def select_for_removal(
    sandboxes: Sequence[SandboxInfo], now: float, policy: GcPolicy, disk: DiskUsage
) -> list[str]:
    """Returns the paths of the sandboxes to remove, oldest first.

    Every finished sandbox older than ``policy.max_age_seconds``; then, while the disk's used
    bytes (less what is already chosen) exceed ``(1 - disk_headroom) * total``, more finished
    sandboxes, oldest first. Live sandboxes (``finished_at is None``) are never chosen.
    """
    finished = sorted((s for s in sandboxes if s.finished_at is not None),
                      key=lambda s: (s.finished_at, s.path))
    budget = (1.0 - policy.disk_headroom) * disk.total_bytes
    used = disk.used_bytes
    chosen: list[str] = []
    for sandbox in finished:
        assert sandbox.finished_at is not None
        too_old = now - sandbox.finished_at >= policy.max_age_seconds
        if too_old or used > budget:
            chosen.append(sandbox.path)
            used -= sandbox.size_bytes
    return chosen


def _scan_tree(path: str) -> tuple[int, float]:
    """Returns the bytes under ``path`` and its newest mtime (symlinks not followed)."""
    size = 0
    newest = os.lstat(path).st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime)
    return size, newest


def _subdirs(parent: str, part: str) -> list[str]:
    """Returns ``parent/part`` (or, for ``*``, every child) that is a directory, not a symlink."""
    if part == "*":
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            return []
    else:
        names = [part]
    paths = [os.path.join(parent, n) for n in names]
    return [p for p in paths if os.path.isdir(p) and not os.path.islink(p)]


def scan_sandboxes(work_dir: str, active_sandboxes: Collection[str]) -> list[SandboxInfo]:
    """Returns every run directory under ``<work_dir>/agents``. A sandbox's ``finished_at`` is
    the newest mtime in it (its task's last write), or None when it is (or holds, or lies in)
    one of ``active_sandboxes``."""
    active = [os.path.realpath(p) for p in active_sandboxes]
    runs = [work_dir]
    for part in SANDBOX_PATTERN:
        runs = [child for parent in runs for child in _subdirs(parent, part)]
    out: list[SandboxInfo] = []
    for run in runs:
        real = os.path.realpath(run)
        live = any(os.path.commonpath([real, a]) in (real, a) for a in active)
        try:
            size, newest = _scan_tree(run)
        except OSError:
            continue
        out.append(SandboxInfo(path=run, finished_at=None if live else newest, size_bytes=size))
    return out


def disk_usage(path: str) -> DiskUsage:
    """Returns the usage of the file system holding ``path``."""
    usage = shutil.disk_usage(path)
    return DiskUsage(total_bytes=usage.total, used_bytes=usage.used)


def _prune_empty_parents(run: str) -> None:
    """Removes the run's ``runs`` and executor directories if they are now empty."""
    parent = os.path.dirname(run)
    for _ in range(2):  # runs/, executors/<task>/
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = os.path.dirname(parent)


def collect(
    work_dir: str,
    active_sandboxes: Collection[str],
    now: float,
    policy: GcPolicy,
    disk: DiskUsage | None = None,
) -> list[str]:
    """Removes the sandboxes ``policy`` picks under ``work_dir``; returns their paths.

    ``active_sandboxes`` are the sandboxes of live tasks, never touched. ``disk`` defaults to
    the work dir's file system as it is now. A sandbox that cannot be removed is logged and left.
    """
    if not os.path.isdir(os.path.join(work_dir, "agents")):
        return []
    sandboxes = scan_sandboxes(work_dir, active_sandboxes)
    chosen = select_for_removal(sandboxes, now, policy, disk or disk_usage(work_dir))
    ages = {s.path: s for s in sandboxes}
    removed: list[str] = []
    for path in chosen:
        info = ages[path]
        try:
            shutil.rmtree(path)
        except OSError as exc:
            log.warning("sandbox_gc_failed", path=path, error=str(exc))
            continue
        _prune_empty_parents(path)
        removed.append(path)
        log.info("sandbox_removed", path=path, size_bytes=info.size_bytes,
                 age_seconds=round(now - (info.finished_at or now), 1))
    return removed
