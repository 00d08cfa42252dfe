"""A process task's tree of processes: its handle, and how it is signalled, awaited, measured and
cleaned up (the process containerizer's ``kill``, ``wait`` and ``usage``; see process.py).

Contract:

  * ``ProcessHandle`` is the process containerizer's ``ContainerHandle``; ``own`` refuses any
    other handle with TypeError.
  * The container's members are everything in its cgroup, else the task's process group (an
    adopted task's members as ``AdoptedTask.task_members`` reads them).
  * ``terminate(h, grace)`` sends SIGTERM to every member, SIGKILL after ``grace`` seconds to what
    is left, and waits up to REAP_TIMEOUT_SECONDS for them to go; concurrent calls join the first.
  * ``await_end(h)`` waits for the leader, then for (or forces) the end of the other members,
    reports an OOM kill, removes the cgroup and returns the ``Termination``.
  * ``read_usage(h)`` returns the cgroup's cpu time and memory (the last reading once the task
    ended), None without a cgroup.
  * A pid that may belong to another process now (a reaped leader, a recycled adopted pid) is
    never signalled: only the cgroup is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from mensa.agent.containerizer import cgroups
from mensa.agent.containerizer.base import ContainerHandle, Termination
from mensa.agent.containerizer.launcher import AdoptedTask, Child, WaitedTask, group_members
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.05
# How long to wait for SIGKILLed processes to disappear before giving up on them.
REAP_TIMEOUT_SECONDS = 5.0
SIGTERM_MASK = 1 << (signal.SIGTERM - 1)


@dataclass(slots=True)
class ProcessHandle:
    """A task process; ``pid`` is also its process group id; ``cgroup`` its cgroup, if any."""

    container_id: str
    process: Child | WaitedTask | AdoptedTask
    cgroup: cgroups.TaskCgroup | None = None
    killed_by_us: bool = False
    kill_done: asyncio.Event = field(default_factory=asyncio.Event)
    killing: bool = False
    last_usage: cgroups.Usage | None = None
    # How the task was made to run as its user (health checks run the same way).
    setpriv: Sequence[str] = ()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def waiter_pid(self) -> int | None:
        """The process recording the task's exit status (None without a waiter)."""
        return getattr(self.process, "waiter_pid", None)

    @property
    def pid_start(self) -> int | None:
        """The task process's start time (checkpointed to tell a reused pid apart)."""
        return getattr(self.process, "pid_start", None)


def own(handle: ContainerHandle) -> ProcessHandle:
    """Returns ``handle`` as a ProcessHandle; TypeError when it is another containerizer's."""
    if not isinstance(handle, ProcessHandle):
        raise TypeError(f"not a process container handle: {handle!r}")
    return handle


def oom_message(limits: cgroups.Limits) -> str:
    """Returns the status message of a task the OOM killer ended."""
    if limits.memory_mb is None:
        return "OOM-killed"
    return f"OOM-killed: memory limit of {limits.memory_mb} MB exceeded"


def read_usage(h: ProcessHandle) -> cgroups.Usage | None:
    """Returns the task's cpu time and memory (the last reading once it ended), or None
    without cgroups."""
    if h.cgroup is None:
        return None
    if h.process.returncode is None or h.last_usage is None:
        current = h.cgroup.usage()
        if current is not None:
            h.last_usage = current
    return h.last_usage


async def await_end(h: ProcessHandle) -> Termination:
    """Waits for the leader to exit, then for (or forces) the end of everything else in
    its cgroup (or group); reports an OOM kill; removes the cgroup."""
    returncode = await h.process.wait()
    if returncode is None:
        # A recovered task whose exit status was lost with its waiter.
        if h.cgroup is not None:
            await remove_cgroup(h)
        return Termination(
            killed_by_us=h.killed_by_us,
            reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
            message="the task ended while the agent was down and its exit status was lost",
        )
    if h.killing:
        # A kill is in progress: it SIGKILLs the rest after its grace period.
        await h.kill_done.wait()
    elif members(h):
        log.info("task_leftovers_killed", container_id=h.container_id)
        signal_container(h, signal.SIGKILL)
        await wait_gone(h, REAP_TIMEOUT_SECONDS)
    reason: int | None = None
    message = ""
    if h.cgroup is not None:
        read_usage(h)
        if not h.killed_by_us and h.cgroup.oom_killed(died_of_sigkill=returncode == -signal.SIGKILL):
            reason = mensa_pb2.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY
            message = oom_message(h.cgroup.limits)
            log.info("task_oom_killed", container_id=h.container_id, message=message)
        await remove_cgroup(h)
    if returncode < 0:
        return Termination(
            signal=-returncode, killed_by_us=h.killed_by_us, reason=reason, message=message
        )
    return Termination(
        exit_code=returncode, killed_by_us=h.killed_by_us, reason=reason, message=message
    )


async def terminate(h: ProcessHandle, grace_seconds: float) -> None:
    """SIGTERM to everything in the container, SIGKILL after ``grace_seconds`` to what is
    left. In a PID namespace, SIGTERM only reaches the namespace's init (the task) when it
    handles it; when the init leaves SIGTERM at its default, the container is SIGKILLed at
    once (what SIGTERM would have done outside a namespace; the task's signal reads 9).
    When the init itself is SIGKILLed (by the OOM killer, say), unshare exits with 1."""
    h.killed_by_us = True
    if h.killing:
        await h.kill_done.wait()
        return
    h.killing = True
    try:
        if not members(h) and h.process.returncode is not None:
            return
        log.info(
            "process_group_terminated", container_id=h.container_id, grace_seconds=grace_seconds
        )
        signal_container(h, signal.SIGTERM)
        if h.cgroup is not None and any(map(is_init_with_default_sigterm, h.cgroup.pids())):
            # The kernel drops SIGTERM to such an init; SIGTERM's default is to end it.
            signal_container(h, signal.SIGKILL)
        if await wait_gone(h, max(grace_seconds, 0.0)):
            return
        log.info("process_group_killed", container_id=h.container_id)
        signal_container(h, signal.SIGKILL)
        if not await wait_gone(h, REAP_TIMEOUT_SECONDS):
            log.warning("process_group_survived_sigkill", container_id=h.container_id)
    finally:
        if h.cgroup is not None and not h.cgroup.pids():
            # Gone: remove the cgroup now too, in case the agent stops before wait() does.
            read_usage(h)
            h.cgroup.try_remove()
        h.killing = False
        h.kill_done.set()


def members(h: ProcessHandle) -> list[int]:
    """Returns the pids still in the container (its cgroup, else its process group)."""
    if h.cgroup is not None:
        return h.cgroup.pids()
    if isinstance(h.process, AdoptedTask):
        return h.process.task_members()
    if h.process.pid is None:
        return []
    found = group_members(h.process.pid)
    if not found and _before_setsid(h):
        return [h.process.pid]
    return found


def _before_setsid(h: ProcessHandle) -> bool:
    """True while a waited task without a cgroup runs but has no process group of its own yet
    (its waiter's subshell is still exec'ing ``setsid``)."""
    pid = h.process.pid
    if not isinstance(h.process, WaitedTask) or h.process.returncode is not None or pid is None:
        return False
    try:
        return os.getpgid(pid) != pid
    except OSError:
        return False


def signal_container(h: ProcessHandle, sig: signal.Signals) -> None:
    """Signals everything in the container. SIGKILL goes to the leader first: in a PID
    namespace that is ``unshare``, which then dies of SIGKILL itself (were its child, the
    namespace's init, killed first, unshare 2.38 would exit 1 instead of re-raising SIGKILL)
    and takes the namespace with it (``--kill-child``)."""
    pid = h.process.pid
    if isinstance(h.process, AdoptedTask) and not h.process.pid_is_ours():
        pid = None  # The pid is another process's now: only the cgroup is signalled.
    ended = h.process.returncode is not None or getattr(h.process, "ended", False)
    if sig == signal.SIGKILL and not ended and pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    if h.cgroup is not None:
        h.cgroup.signal_all(sig)
        if ended:
            return  # The leader is reaped: its pid, hence the group id, may belong to another.
    if pid is not None and not (ended and h.cgroup is None and isinstance(h.process, AdoptedTask)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            if h.cgroup is None and isinstance(h.process, WaitedTask) and h.process.returncode is None:
                # No group of its own yet (still exec'ing setsid): it gets the signal itself.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        except PermissionError:
            pass


async def wait_gone(h: ProcessHandle, timeout: float) -> bool:
    """Waits up to ``timeout`` seconds for the container to be empty; True when it is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while members(h):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(POLL_SECONDS, remaining))
    return True


async def remove_cgroup(h: ProcessHandle) -> None:
    """Removes the task's cgroup, SIGKILLing stragglers, retrying for REAP_TIMEOUT_SECONDS."""
    assert h.cgroup is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REAP_TIMEOUT_SECONDS
    while not h.cgroup.try_remove():
        if loop.time() >= deadline:
            log.warning("cgroup_not_removed", container_id=h.container_id,
                        dirs=[str(d) for d in h.cgroup.distinct_dirs()])
            return
        h.cgroup.signal_all(signal.SIGKILL)
        await asyncio.sleep(0.02)


def is_init_with_default_sigterm(pid: int) -> bool:
    """True when ``pid`` is the init (pid 1) of a PID namespace below ours and neither catches
    nor ignores SIGTERM, so a SIGTERM from us would be dropped by the kernel."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    nspids = fields.get("NSpid", "").split()
    if len(nspids) < 2 or nspids[-1] != "1":
        return False
    try:
        caught = int(fields.get("SigCgt", "0").strip(), 16)
        ignored = int(fields.get("SigIgn", "0").strip(), 16)
    except ValueError:
        return False
    return not (caught | ignored) & SIGTERM_MASK
