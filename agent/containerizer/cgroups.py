"""Control groups for the process containerizer: one cgroup per task, v1 or v2.

Returns what the kernel should enforce for a task (``limits_from_resources``), which hierarchy
this host can give us (``detect``), and the small I/O steps to create a task's cgroup, fill it
with limits, list, signal and count what runs in it, and remove it (``TaskCgroup``).

Layout (``<name>`` is ``mensa`` by default):

  * v2: ``<v2 mount>/<name>/<container_id>``; ``+memory +cpu +pids`` are written to the
    ``cgroup.subtree_control`` of the mount's root and of ``<name>``.
  * v1: ``<controller mount>/<name>/<container_id>`` for memory, cpu, cpuacct and pids (a
    co-mounted ``cpu,cpuacct`` is one directory).

v2 is chosen when a cgroup2 mount at the root (or at ``<root>/unified``) offers the memory and
cpu controllers; v1 when memory, cpu and cpuacct hierarchies are mounted; creating the
``<name>`` directories (and enabling v2 controllers) is the writability probe. Otherwise
``detect`` returns None and the containerizer falls back to rlimits.

The pure half (``parse_mountinfo``, ``find_mounts``, ``choose_version``,
``limits_from_resources``, ``v1_settings``, ``v2_settings``, ``parse_*``) has no I/O.

Usage::

    hierarchy, problems = detect("/sys/fs/cgroup")
    cg = TaskCgroup.create(hierarchy, container_id, limits_from_resources(resources, 4096))
    # start the task with cg.procs_files() joined first (see process.py), then:
    cg.signal_all(signal.SIGKILL); cg.try_remove()
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mensa.proto.resources import Resources

MB = 1024 * 1024
CFS_PERIOD_US = 100_000
CFS_MIN_QUOTA_US = 1_000
SHARES_PER_CPU = 1024
WEIGHT_PER_CPU = 100  # v2 cpu.weight 100 (the default) stands for one cpu, as shares 1024 do.
DEFAULT_PIDS_MAX = 4096
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
V1_REQUIRED = ("memory", "cpu", "cpuacct")
V2_REQUIRED = ("memory", "cpu")
V2_WANTED = ("memory", "cpu", "pids")


# -- pure: limits --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """What the kernel enforces for one task; None means unlimited / the default."""

    memory_bytes: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int = CFS_PERIOD_US
    cpu_shares: int | None = None
    cpu_weight: int | None = None
    pids_max: int | None = None

    @property
    def memory_mb(self) -> int | None:
        return None if self.memory_bytes is None else self.memory_bytes // MB


def limits_from_resources(resources: Resources, pids_max: int | None = DEFAULT_PIDS_MAX) -> Limits:
    """Returns the limits for a task's resources: ``mem`` (MB) caps memory, ``cpus`` sets a CFS
    quota of ``cpus`` periods (at least 1 ms) and shares/weight in proportion; zero or missing
    resources leave that limit unset."""
    mem = resources.scalar("mem")
    cpus = resources.scalar("cpus")
    memory_bytes = int(mem * MB) if mem > 0 else None
    if cpus > 0:
        quota = max(CFS_MIN_QUOTA_US, round(cpus * CFS_PERIOD_US))
        shares = max(2, round(cpus * SHARES_PER_CPU))
        weight = min(10_000, max(1, round(cpus * WEIGHT_PER_CPU)))
        return Limits(memory_bytes, quota, CFS_PERIOD_US, shares, weight, pids_max)
    return Limits(memory_bytes, None, CFS_PERIOD_US, None, None, pids_max)


def v1_settings(limits: Limits, available: Iterable[str]) -> list[tuple[str, str, str]]:
    """Returns ``(controller, file, value)`` writes for cgroup v1, in order; files named in
    ``available`` (``"memory.memsw.limit_in_bytes"``) are written only when present."""
    have = set(available)
    out: list[tuple[str, str, str]] = []
    if limits.memory_bytes is not None:
        out.append(("memory", "memory.limit_in_bytes", str(limits.memory_bytes)))
        if "memory.memsw.limit_in_bytes" in have:
            out.append(("memory", "memory.memsw.limit_in_bytes", str(limits.memory_bytes)))
    if limits.cpu_quota_us is not None:
        out.append(("cpu", "cpu.cfs_period_us", str(limits.cpu_period_us)))
        out.append(("cpu", "cpu.cfs_quota_us", str(limits.cpu_quota_us)))
    if limits.cpu_shares is not None:
        out.append(("cpu", "cpu.shares", str(limits.cpu_shares)))
    if limits.pids_max is not None and "pids" in have:
        out.append(("pids", "pids.max", str(limits.pids_max)))
    return out


def v2_settings(limits: Limits, available: Iterable[str]) -> list[tuple[str, str]]:
    """Returns ``(file, value)`` writes for cgroup v2, in order; ``memory.swap.max`` and
    ``pids.max`` only when named in ``available``."""
    have = set(available)
    out: list[tuple[str, str]] = []
    if limits.memory_bytes is not None:
        out.append(("memory.max", str(limits.memory_bytes)))
        if "memory.swap.max" in have:
            out.append(("memory.swap.max", "0"))
    if limits.cpu_quota_us is not None:
        out.append(("cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}"))
    if limits.cpu_weight is not None:
        out.append(("cpu.weight", str(limits.cpu_weight)))
    if limits.pids_max is not None and "pids.max" in have:
        out.append(("pids.max", str(limits.pids_max)))
    return out


def rlimit_as_bytes(memory_bytes: int) -> int:
    """Returns RLIMIT_AS for a task allowed ``memory_bytes`` of memory, in the rlimits fallback.

    Address space is not memory: a runtime reserves far more than it touches (thread stacks,
    malloc arenas, mapped libraries), so the task gets its memory plus the same again, and at
    least 256 MB, of headroom. It stops runaway allocation; it is not an exact limit."""
    return memory_bytes + max(memory_bytes, 256 * MB)


# -- pure: mounts and the choice of hierarchy ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of /proc/self/mountinfo that matters here."""

    mount_point: str
    fstype: str
    options: frozenset[str]  # mount options and super options together
    root: str = "/"

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _unescape(path: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def parse_mountinfo(text: str) -> list[Mount]:
    """Returns the mounts of a /proc/self/mountinfo text; malformed lines are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        parts = line.split()
        if "-" not in parts:
            continue
        sep = parts.index("-")
        if sep < 6 or len(parts) < sep + 3:
            continue
        options = set(parts[5].split(",")) | set(parts[sep + 3].split(",") if len(parts) > sep + 3 else [])
        mounts.append(Mount(_unescape(parts[4]), parts[sep + 1], frozenset(options), _unescape(parts[3])))
    return mounts


@dataclass(frozen=True, slots=True)
class CgroupMounts:
    """The cgroup mounts under a root: the v2 mount (if any) and v1 controller -> mount point."""

    v2: str | None = None
    v1: dict[str, str] = field(default_factory=dict)
    read_only: frozenset[str] = frozenset()  # mount points mounted read-only


def find_mounts(mounts: Iterable[Mount], root: str) -> CgroupMounts:
    """Returns the cgroup2 mount at ``root`` or ``root/unified`` and the v1 controller mounts
    directly under ``root`` (the first mount of each controller wins)."""
    root = root.rstrip("/") or "/"
    v2: str | None = None
    v1: dict[str, str] = {}
    read_only: set[str] = set()
    for m in mounts:
        parent = os.path.dirname(m.mount_point.rstrip("/"))
        if m.fstype == "cgroup2" and m.mount_point in (root, f"{root}/unified") and v2 is None:
            v2 = m.mount_point
        elif m.fstype == "cgroup" and parent == root:
            for controller in V1_CONTROLLERS:
                if controller in m.options:
                    v1.setdefault(controller, m.mount_point)
        else:
            continue
        if m.read_only:
            read_only.add(m.mount_point)
    return CgroupMounts(v2, v1, frozenset(read_only))


def choose_versions(mounts: CgroupMounts, v2_controllers: Iterable[str]) -> list[str]:
    """Returns the usable versions, best first: ``"v2"`` when the v2 mount offers memory and cpu
    (``v2_controllers`` is its cgroup.controllers), ``"v1"`` when memory, cpu and cpuacct are
    mounted; both only when not mounted read-only. Empty when neither can serve."""
    out: list[str] = []
    offered = set(v2_controllers)
    if mounts.v2 and mounts.v2 not in mounts.read_only and all(c in offered for c in V2_REQUIRED):
        out.append("v2")
    v1_ok = all(c in mounts.v1 and mounts.v1[c] not in mounts.read_only for c in V1_REQUIRED)
    if v1_ok:
        out.append("v1")
    return out


def missing_for(mounts: CgroupMounts, v2_controllers: Iterable[str]) -> list[str]:
    """Returns human-readable reasons why neither version is usable (for the degraded warning)."""
    offered = set(v2_controllers)
    problems: list[str] = []
    if mounts.v2 is None:
        problems.append("no cgroup2 mount")
    else:
        lacking = [c for c in V2_REQUIRED if c not in offered]
        if lacking:
            problems.append(f"cgroup2 at {mounts.v2} lacks {','.join(lacking)}")
        if mounts.v2 in mounts.read_only:
            problems.append(f"cgroup2 at {mounts.v2} is read-only")
    for c in V1_REQUIRED:
        if c not in mounts.v1:
            problems.append(f"no cgroup v1 {c} hierarchy")
        elif mounts.v1[c] in mounts.read_only:
            problems.append(f"cgroup v1 {c} at {mounts.v1[c]} is read-only")
    return problems


# -- pure: reading cgroup files -----------------------------------------------------------------


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parses ``key value`` lines (memory.events, cpu.stat, memory.oom_control); skips others."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_pids(text: str) -> list[int]:
    """Parses a cgroup.procs text into pids."""
    return [int(p) for p in text.split() if p.isdigit()]


@dataclass(frozen=True, slots=True)
class Usage:
    """A task's resource usage: cpu time in seconds and memory in bytes (None when unknown)."""

    cpu_seconds: float
    memory_bytes: int | None = None
    memory_max_bytes: int | None = None
    oom_kills: int = 0

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "cpu_seconds": round(self.cpu_seconds, 6),
            "memory_bytes": self.memory_bytes,
            "memory_max_bytes": self.memory_max_bytes,
            "oom_kills": self.oom_kills,
        }


# -- I/O: detection -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A usable cgroup hierarchy: ``version`` "v1" or "v2" and the ``<name>`` directories, one
    per v1 controller (``{"": dir}`` for v2)."""

    version: str
    bases: dict[str, Path]

    @property
    def isolation(self) -> str:
        return f"cgroups-{self.version}"


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _prepare_v2(mount: str, name: str) -> Hierarchy:
    base = Path(mount) / name
    base.mkdir(exist_ok=True)
    offered = set(_read(Path(mount) / "cgroup.controllers").split())
    enable = " ".join(f"+{c}" for c in V2_WANTED if c in offered)
    for directory in (Path(mount), base):
        current = set(_read(directory / "cgroup.subtree_control").split())
        if not all(c in current for c in V2_WANTED if c in offered):
            _write(directory / "cgroup.subtree_control", enable)
    return Hierarchy("v2", {"": base})


def _prepare_v1(mounts: dict[str, str], name: str) -> Hierarchy:
    bases: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        if controller not in mounts:
            continue
        base = Path(mounts[controller]) / name
        base.mkdir(exist_ok=True)
        bases[controller] = base
    # Probe that we may really create a task cgroup (a bind mount may be read-only).
    probe = bases["memory"] / f".probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    probe.rmdir()
    return Hierarchy("v1", bases)


def detect(root: str = "/sys/fs/cgroup", name: str = "mensa") -> tuple[Hierarchy | None, list[str]]:
    """Returns the hierarchy to use (None for none) and why the better ones could not be used."""
    try:
        mounts = find_mounts(parse_mountinfo(_read(Path("/proc/self/mountinfo"))), root)
    except OSError as exc:
        return None, [f"cannot read mountinfo: {exc}"]
    controllers: list[str] = []
    if mounts.v2:
        with contextlib.suppress(OSError):
            controllers = _read(Path(mounts.v2) / "cgroup.controllers").split()
    problems = missing_for(mounts, controllers)
    for version in choose_versions(mounts, controllers):
        try:
            if version == "v2":
                assert mounts.v2 is not None
                return _prepare_v2(mounts.v2, name), problems
            return _prepare_v1(mounts.v1, name), problems
        except OSError as exc:
            problems.append(f"cgroup {version} not writable: {exc}")
    return None, problems


def remove_stale(hierarchy: Hierarchy, older_than: float,
                 keep: Collection[str] = ()) -> list[str]:
    """Removes the empty task cgroups under the hierarchy's bases whose directory is older than
    ``older_than`` (a time.time() value: a fresh one may belong to a launch in progress of
    another agent on this host), except those of the container ids in ``keep`` (a checkpointed
    task's: its recovery reads it, e.g. an OOM kill while the agent was down); a cgroup with
    processes cannot be removed and is kept. Returns the container ids removed."""
    removed: list[str] = []
    kept = set(keep)
    for base in hierarchy.bases.values():
        with contextlib.suppress(OSError):
            for d in base.iterdir():
                if not d.is_dir() or d.name in kept:
                    continue
                try:
                    if d.stat().st_mtime < older_than:
                        d.rmdir()
                        removed.append(d.name)
                except OSError:
                    continue
    return sorted(set(removed))


# -- I/O: one task's cgroup ---------------------------------------------------------------------


@dataclass(slots=True)
class TaskCgroup:
    """One task's cgroup directories (one per v1 controller, one for v2) and its limits."""

    hierarchy: Hierarchy
    container_id: str
    limits: Limits
    dirs: dict[str, Path]

    @classmethod
    def create(cls, hierarchy: Hierarchy, container_id: str, limits: Limits) -> TaskCgroup:
        """Creates the cgroup and writes the limits; raises OSError (after removing what it
        made) when it cannot."""
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise OSError(errno.EINVAL, f"bad container id {container_id!r}")
        dirs = {c: base / container_id for c, base in hierarchy.bases.items()}
        cg = cls(hierarchy, container_id, limits, dirs)
        try:
            for d in cg.distinct_dirs():
                d.mkdir(exist_ok=True)
            if hierarchy.version == "v2":
                d = dirs[""]
                names = {p.name for p in d.iterdir()}
                for file, value in v2_settings(limits, names):
                    _write(d / file, value)
            else:
                names = {p.name for p in dirs["memory"].iterdir()}
                if "pids" in dirs:
                    names.add("pids")
                for controller, file, value in v1_settings(limits, names):
                    _write(dirs[controller] / file, value)
        except OSError:
            cg.try_remove()
            raise
        return cg

    @classmethod
    def existing(cls, hierarchy: Hierarchy, container_id: str, limits: Limits) -> TaskCgroup | None:
        """Returns the task's cgroup if an earlier run of the agent created it (None if gone)."""
        if not container_id or "/" in container_id or container_id in (".", ".."):
            return None
        dirs = {c: base / container_id for c, base in hierarchy.bases.items()}
        if not any(d.is_dir() for d in dirs.values()):
            return None
        return cls(hierarchy, container_id, limits, dirs)

    def distinct_dirs(self) -> list[Path]:
        seen: list[Path] = []
        for d in self.dirs.values():
            if d not in seen:
                seen.append(d)
        return seen

    def procs_files(self) -> list[str]:
        """The cgroup.procs files a process writes itself into to join this cgroup."""
        return [str(d / "cgroup.procs") for d in self.distinct_dirs()]

    def _members_dir(self) -> Path:
        return self.dirs.get("", self.dirs.get("pids", self.dirs.get("memory", Path("/nonexistent"))))

    def pids(self) -> list[int]:
        """Returns the processes in the cgroup (empty once it is gone)."""
        try:
            return parse_pids(_read(self._members_dir() / "cgroup.procs"))
        except OSError:
            return []

    def signal_all(self, sig: int) -> None:
        """Sends ``sig`` to every process in the cgroup (v2 SIGKILL uses cgroup.kill)."""
        d = self._members_dir()
        if sig == signal.SIGKILL and self.hierarchy.version == "v2" and (d / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(d / "cgroup.kill", "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def oom_kills(self) -> int | None:
        """Returns how many processes the kernel's OOM killer killed in this cgroup, or None
        when the kernel does not count them (v1 before Linux 4.13)."""
        try:
            if self.hierarchy.version == "v2":
                return parse_flat_keyed(_read(self.dirs[""] / "memory.events")).get("oom_kill")
            return parse_flat_keyed(_read(self.dirs["memory"] / "memory.oom_control")).get("oom_kill")
        except (OSError, KeyError):
            return None

    def oom_killed(self, died_of_sigkill: bool) -> bool:
        """True when the OOM killer struck in this cgroup; without an oom_kill counter, when the
        task died of SIGKILL after hitting its memory limit (v1 memory.failcnt)."""
        kills = self.oom_kills()
        if kills is not None:
            return kills > 0
        if not died_of_sigkill or "memory" not in self.dirs:
            return False
        try:
            return int(_read(self.dirs["memory"] / "memory.failcnt")) > 0
        except (OSError, ValueError):
            return False

    def usage(self) -> Usage | None:
        """Returns the cgroup's cpu time and memory, or None when it cannot be read."""
        try:
            if self.hierarchy.version == "v2":
                d = self.dirs[""]
                cpu = parse_flat_keyed(_read(d / "cpu.stat")).get("usage_usec", 0) / 1e6
                mem = int(_read(d / "memory.current"))
                peak: int | None = None
                with contextlib.suppress(OSError, ValueError):
                    peak = int(_read(d / "memory.peak"))
                return Usage(cpu, mem, peak, self.oom_kills() or 0)
            cpu = int(_read(self.dirs["cpuacct"] / "cpuacct.usage")) / 1e9
            m = self.dirs["memory"]
            mem = int(_read(m / "memory.usage_in_bytes"))
            peak = int(_read(m / "memory.max_usage_in_bytes"))
            return Usage(cpu, mem, peak, self.oom_kills() or 0)
        except (OSError, ValueError, KeyError):
            return None

    def try_remove(self) -> bool:
        """Removes the cgroup directories that are empty; True when none is left. Non-blocking:
        the caller retries (after killing stragglers) while it returns False."""
        left = False
        for d in self.distinct_dirs():
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left = True
        return not left
