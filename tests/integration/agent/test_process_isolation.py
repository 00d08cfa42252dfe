"""ProcessContainerizer isolation against the real kernel: cgroup limits, OOM, kills that reach
children that left the process group, usage, the rlimits fallback, and PID namespaces.

Each test uses its own cgroup name (``mensa-test-<pid>-<n>``) and removes every cgroup it made
by path, and SIGKILLs whatever is left in them, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog

from mensa.agent.containerizer import cgroups
from mensa.agent.containerizer.base import LaunchSpec, Termination
from mensa.agent.containerizer.process import ProcessContainerizer, ProcessHandle
from mensa.agent.sandbox import command_line
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

T = TypeVar("T")
pytestmark = pytest.mark.integration
MB = 1024 * 1024

_HIERARCHY, _PROBLEMS = (None, ["not root"]) if os.geteuid() != 0 else cgroups.detect(
    "/sys/fs/cgroup", f"mensa-probe-{os.getpid()}"
)
if _HIERARCHY is not None:  # detect() made the probe's <name> directories: remove them.
    for _base in _HIERARCHY.bases.values():
        with contextlib.suppress(OSError):
            _base.rmdir()
needs_cgroups = pytest.mark.skipif(
    _HIERARCHY is None, reason=f"no writable cgroup hierarchy here: {'; '.join(_PROBLEMS)}"
)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def make_spec(sandbox: Path, value: str, resources: str = "", container_id: str = "c1") -> LaunchSpec:
    sandbox.mkdir(parents=True, exist_ok=True)
    command = mensa_pb2.CommandInfo(value=value)
    info = mensa_pb2.TaskInfo(name="t", command=command)
    info.task_id.value = "task-1"
    if resources:
        info.resources.extend(Resources.parse(resources).to_proto())
    executable, argv = command_line(command)
    return LaunchSpec(
        container_id=container_id, framework_id="fw", task_id="task-1", executable=executable,
        argv=argv, env={"PATH": os.environ["PATH"], "PY": sys.executable}, sandbox=str(sandbox),
        task_info=info,
    )


class Harness:
    """Makes containerizers with private cgroup names; cleans up their cgroups and processes."""

    def __init__(self) -> None:
        self.containerizers: list[ProcessContainerizer] = []
        self.pids: list[int] = []

    def make(self, **kwargs: Any) -> ProcessContainerizer:
        name = f"mensa-test-{os.getpid()}-{len(self.containerizers)}"
        c = ProcessContainerizer(cgroup_name=name, **kwargs)
        self.containerizers.append(c)
        return c

    def cleanup(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for c in self.containerizers:
            if c.hierarchy is None:
                continue
            for base in c.hierarchy.bases.values():
                for child in [p for p in base.glob("*") if p.is_dir()]:
                    for pid in cgroups.parse_pids((child / "cgroup.procs").read_text()):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    for _ in range(100):
                        try:
                            child.rmdir()
                            break
                        except OSError:
                            time.sleep(0.02)
                with contextlib.suppress(FileNotFoundError):
                    base.rmdir()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.cleanup()


def run(body: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
    async def main() -> T:
        return await asyncio.wait_for(body(), timeout=timeout)

    return asyncio.run(main())


async def wait_for_file(path: Path) -> str:
    for _ in range(400):
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def assert_cgroup_gone(handle: ProcessHandle) -> None:
    assert handle.cgroup is not None
    for d in handle.cgroup.distinct_dirs():
        assert not d.exists(), f"{d} left behind"


@needs_cgroups
@pytest.mark.parametrize("pid_namespace", [False, True], ids=["host-pids", "pid-namespace"])
def test_memory_limit_is_enforced_and_oom_reported(
    harness: Harness, tmp_path: Path, pid_namespace: bool
) -> None:
    if pid_namespace and not _pid_namespace_works():
        pytest.skip("unshare --pid --fork --mount-proc does not work here")
    c = harness.make(pid_namespace=pid_namespace)
    spec = make_spec(tmp_path / "sb", '"$PY" -c "b = bytearray(200*1024*1024); print(len(b))"',
                     "cpus:1;mem:32")

    async def body() -> tuple[Termination, ProcessHandle]:
        handle = await c.launch(spec)
        assert isinstance(handle, ProcessHandle) and handle.pid is not None
        harness.pids.append(handle.pid)
        return await c.wait(handle), handle

    term, handle = run(body)
    assert term.reason == mensa_pb2.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY
    assert term.message == "OOM-killed: memory limit of 32 MB exceeded"
    assert not term.killed_by_us
    assert (tmp_path / "sb" / "stdout").read_text() == ""  # it never got its 200 MB
    usage = c.usage(handle)
    assert usage is not None and usage.oom_kills >= 1
    assert usage.memory_max_bytes is not None and usage.memory_max_bytes <= 32 * MB
    assert_cgroup_gone(handle)


@needs_cgroups
def test_cpu_quota_is_enforced(harness: Harness, tmp_path: Path) -> None:
    c = harness.make()
    loop = '"$PY" -c "import time\nend = time.monotonic() + 1.2\nwhile time.monotonic() < end: pass"'
    spec = make_spec(tmp_path / "sb", loop, "cpus:0.2;mem:128")

    async def body() -> tuple[Termination, ProcessHandle, float]:
        started = time.monotonic()
        handle = await c.launch(spec)
        assert isinstance(handle, ProcessHandle) and handle.pid is not None
        harness.pids.append(handle.pid)
        term = await c.wait(handle)
        return term, handle, time.monotonic() - started

    term, handle, wall = run(body)
    assert term == Termination(exit_code=0)
    usage = c.usage(handle)
    assert usage is not None
    # A busy loop would use a whole core (ratio 1.0); the quota allows 0.2 of one.
    assert 0.02 < usage.cpu_seconds / wall < 0.5, (usage, wall)
    assert_cgroup_gone(handle)


@needs_cgroups
def test_pids_limit_stops_a_fork_storm(harness: Harness, tmp_path: Path) -> None:
    c = harness.make(pids_max=8)
    storm = 'i=0; while [ $i -lt 30 ]; do sleep 30 & i=$((i+1)); done; echo started $i'
    spec = make_spec(tmp_path / "sb", storm, "cpus:1;mem:64")

    async def body() -> Termination:
        handle = await c.launch(spec)
        assert isinstance(handle, ProcessHandle) and handle.pid is not None
        harness.pids.append(handle.pid)
        return await c.wait(handle)

    term = run(body)
    assert term.exit_code != 0
    assert "started 30" not in (tmp_path / "sb" / "stdout").read_text()
    assert "fork" in (tmp_path / "sb" / "stderr").read_text().lower()


@needs_cgroups
def test_children_that_left_the_process_group_die_with_the_task(
    harness: Harness, tmp_path: Path
) -> None:
    c = harness.make()
    sandbox = tmp_path / "sb"
    # setsid: the child is in another session and process group; only its cgroup holds it.
    spec = make_spec(sandbox, "setsid sleep 60 & echo $! > child.pid; exit 0", "cpus:1;mem:64")

    async def body() -> tuple[Termination, int, ProcessHandle]:
        handle = await c.launch(spec)
        assert isinstance(handle, ProcessHandle) and handle.pid is not None
        harness.pids.append(handle.pid)
        child = int(await wait_for_file(sandbox / "child.pid"))
        harness.pids.append(child)
        return await c.wait(handle), child, handle

    term, child, handle = run(body)
    assert term == Termination(exit_code=0)
    assert not alive(child)
    assert_cgroup_gone(handle)


@needs_cgroups
def test_kill_reaches_escaped_children_and_usage_is_reported(harness: Harness, tmp_path: Path) -> None:
    c = harness.make()
    sandbox = tmp_path / "sb"
    spec = make_spec(sandbox, "setsid sh -c 'trap \"\" TERM; sleep 60' & echo $! > child.pid; sleep 60",
                     "cpus:0.5;mem:64")

    async def body() -> tuple[Termination, int, ProcessHandle]:
        handle = await c.launch(spec)
        assert isinstance(handle, ProcessHandle) and handle.pid is not None
        harness.pids.append(handle.pid)
        child = int(await wait_for_file(sandbox / "child.pid"))
        harness.pids.append(child)
        usage = c.usage(handle)
        assert usage is not None and usage.cpu_seconds >= 0
        assert usage.memory_bytes is not None and usage.memory_bytes > 0
        assert usage.oom_kills == 0
        assert child in handle.cgroup.pids() if handle.cgroup else False
        waiter = asyncio.create_task(c.wait(handle))
        await c.kill(handle, grace_seconds=0.2)
        assert not alive(child)
        return await waiter, child, handle

    term, child, handle = run(body)
    assert term.killed_by_us and term.signal == signal.SIGTERM and term.reason is None
    assert not alive(child)
    assert_cgroup_gone(handle)


@needs_cgroups
def test_describe_names_the_hierarchy(harness: Harness) -> None:
    c = harness.make()
    info = c.describe()
    assert info["isolation"] in ("cgroups-v1", "cgroups-v2") and info["degraded"] == []
    assert info["pids_max"] == cgroups.DEFAULT_PIDS_MAX and info["pid_namespace"] is False


def test_rlimits_fallback_caps_address_space_and_says_so(harness: Harness, tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        c = harness.make(isolation="rlimits")
    assert any(e["event"] == "isolation_degraded" for e in logs)
    assert c.describe()["isolation"] == "rlimits" and c.describe()["degraded"]
    spec = make_spec(tmp_path / "sb", '"$PY" -c "b = bytearray(900*1024*1024)"', "cpus:1;mem:64")
    ok = make_spec(tmp_path / "sb2", "echo fine", "cpus:1;mem:64", container_id="c2")

    async def body() -> tuple[Termination, Termination]:
        terms = []
        for s in (spec, ok):
            handle = await c.launch(s)
            assert isinstance(handle, ProcessHandle) and handle.pid is not None
            assert handle.cgroup is None and c.usage(handle) is None
            harness.pids.append(handle.pid)
            terms.append(await c.wait(handle))
        return terms[0], terms[1]

    big, fine = run(body)
    assert big.exit_code not in (None, 0)
    assert "MemoryError" in (tmp_path / "sb" / "stderr").read_text()
    assert fine == Termination(exit_code=0)
    assert (tmp_path / "sb2" / "stdout").read_text() == "fine\n"


@pytest.fixture
def read_only_cgroup_root(tmp_path: Path) -> Iterator[Path]:
    """A root with the v1 memory, cpu, cpuacct and pids hierarchies bind-mounted read-only."""
    if os.geteuid() != 0 or _HIERARCHY is None or _HIERARCHY.version != "v1":
        pytest.skip("needs root and cgroup v1 hierarchies to bind-mount read-only")
    root = tmp_path / "cgroot"
    mounted: list[Path] = []
    try:
        for controller in ("memory", "cpu", "cpuacct", "pids"):
            target = root / controller
            target.mkdir(parents=True)
            source = _HIERARCHY.bases[controller].parent
            subprocess.run(["mount", "--bind", str(source), str(target)], check=True, capture_output=True)
            mounted.append(target)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True,
                           capture_output=True)
        yield root
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot bind-mount cgroups read-only here: {exc.stderr!r}")
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", str(target)], check=False, capture_output=True)


def test_read_only_hierarchy_falls_back_to_rlimits(
    harness: Harness, read_only_cgroup_root: Path, tmp_path: Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        c = harness.make(cgroup_root=str(read_only_cgroup_root))
    warning = next(e for e in logs if e["event"] == "isolation_degraded")
    assert any("read-only" in m for m in warning["missing"]), warning
    assert c.describe()["isolation"] == "rlimits"
    spec = make_spec(tmp_path / "sb", "echo still-runs", "cpus:1;mem:64")

    async def body() -> Termination:
        handle = await c.launch(spec)
        assert handle.pid is not None
        harness.pids.append(handle.pid)
        return await c.wait(handle)

    assert run(body) == Termination(exit_code=0)
    assert (tmp_path / "sb" / "stdout").read_text() == "still-runs\n"


def _pid_namespace_works() -> bool:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return False
    done = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], check=False,
                          capture_output=True, timeout=10)
    return done.returncode == 0


needs_pid_namespace = pytest.mark.skipif(
    not _pid_namespace_works(), reason="unshare --pid --fork --mount-proc does not work here"
)


@needs_cgroups
@needs_pid_namespace
def test_pid_namespace_gives_the_task_pid_1_and_its_own_proc(harness: Harness, tmp_path: Path) -> None:
    c = harness.make(pid_namespace=None)
    assert c.describe()["pid_namespace"] is True
    sandbox = tmp_path / "sb"
    spec = make_spec(sandbox, "echo $$; ls /proc | grep -c '^[0-9]'", "cpus:1;mem:64")

    async def body() -> Termination:
        handle = await c.launch(spec)
        assert handle.pid is not None
        harness.pids.append(handle.pid)
        return await c.wait(handle)

    assert run(body) == Termination(exit_code=0)
    pid, count = (sandbox / "stdout").read_text().split()
    assert pid == "1"
    assert int(count) < 5  # the shell and ls (the host has many more)


@needs_cgroups
@needs_pid_namespace
def test_kill_in_a_pid_namespace_ends_an_init_without_a_handler_and_its_children(
    harness: Harness, tmp_path: Path
) -> None:
    c = harness.make(pid_namespace=True)
    sandbox = tmp_path / "sb"
    spec = make_spec(sandbox, "sleep 60 & echo ready > ready; wait", "cpus:1;mem:64")

    async def body() -> tuple[Termination, ProcessHandle]:
        handle = await c.launch(spec)
        assert isinstance(handle, ProcessHandle) and handle.pid is not None
        harness.pids.append(handle.pid)
        await wait_for_file(sandbox / "ready")
        members = handle.cgroup.pids() if handle.cgroup else []
        assert len(members) >= 3  # unshare, the shell (pid 1 inside) and sleep
        waiter = asyncio.create_task(c.wait(handle))
        # A dropped SIGTERM would leave it to the 60 s grace, past the test's timeout.
        await c.kill(handle, grace_seconds=60)
        assert not any(alive(p) for p in members)
        return await waiter, handle

    term, handle = run(body, timeout=15)
    assert term.killed_by_us and term.signal is not None
    assert_cgroup_gone(handle)
