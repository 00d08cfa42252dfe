"""The process containerizer: each task is a plain process in its own session.

The task runs as the leader of a new session (so a new process group), with the sandbox as its
working directory, stdin from /dev/null, stdout and stderr appended to ``<sandbox>/stdout`` and
``<sandbox>/stderr``, and exactly the environment in the spec. Killing signals the whole process
group: SIGTERM, then SIGKILL after the grace period for anything still alive (a process that
ignores SIGTERM, or a child that outlived its parent). When the leader exits on its own,
whatever it left behind in its group is killed too, so no process outlives its task.

There is no resource isolation here; cgroups and Docker containerizers implement the same
``Containerizer`` protocol and come later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import structlog

from mensa.agent.containerizer.base import ContainerHandle, LaunchError, LaunchSpec, Termination
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.05
# How long to wait for SIGKILLed processes to disappear before giving up on them.
REAP_TIMEOUT_SECONDS = 5.0


class _Child:
    """A spawned process whose exit the event loop learns of through a pidfd (no thread).

    Falls back to a waiting thread where pidfds are not available (Linux before 5.3).
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        try:
            self._pidfd: int | None = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            self._pidfd = None
            waiter = loop.run_in_executor(None, popen.wait)
            waiter.add_done_callback(lambda f: self._done(f.result()))
        else:
            loop.add_reader(self._pidfd, self._readable)

    def _readable(self) -> None:
        code = self.popen.poll()
        if code is not None:
            self._done(code)

    def _done(self, code: int) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self.returncode = code
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


@dataclass(slots=True)
class ProcessHandle:
    """A task process; ``pid`` is also its process group id."""

    container_id: str
    process: _Child
    killed_by_us: bool = False
    kill_done: asyncio.Event = field(default_factory=asyncio.Event)
    killing: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid


class ProcessContainerizer:
    """Runs command tasks (no container image) as process groups; see the module docstring."""

    name = "process"

    def can_run(self, task_info: mensa_pb2.TaskInfo) -> bool:
        """True for tasks with a command and no container, or a MESOS container without image."""
        if not task_info.HasField("command"):
            return False
        if not task_info.HasField("container"):
            return True
        return task_info.container.type == mensa_pb2.ContainerInfo.MESOS

    async def launch(self, spec: LaunchSpec) -> ContainerHandle:
        """Spawns the task's process; raises LaunchError when it cannot be executed."""
        stdout, stderr = _open_outputs(spec)
        kwargs: dict[str, object] = {}
        if spec.user and os.geteuid() == 0:
            kwargs["user"] = spec.user
        try:
            popen = subprocess.Popen(
                list(spec.argv),
                executable=spec.executable,
                cwd=spec.sandbox,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                # Every descriptor the agent holds is close-on-exec (Python, libzmq and tornado
                # create them so); skipping the close-all loop halves the cost of a spawn.
                close_fds=False,
                **kwargs,  # type: ignore[arg-type]
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            raise LaunchError(f"failed to execute {spec.executable!r}: {exc}") from None
        finally:
            stdout.close()
            stderr.close()
        log.info(
            "process_spawned", container_id=spec.container_id, pid=popen.pid, argv=list(spec.argv)
        )
        return ProcessHandle(spec.container_id, _Child(popen))

    async def wait(self, handle: ContainerHandle) -> Termination:
        """Waits for the leader to exit, then for (or forces) the end of its whole group."""
        h = _own(handle)
        returncode = await h.process.wait()
        if h.killing:
            # A kill is in progress: it SIGKILLs the rest of the group after its grace period.
            await h.kill_done.wait()
        else:
            pgid = h.process.pid
            if _group_members(pgid):
                log.info("process_group_leftovers_killed", container_id=h.container_id, pgid=pgid)
                _signal_group(pgid, signal.SIGKILL)
                await _wait_group_gone(pgid, REAP_TIMEOUT_SECONDS)
        if returncode < 0:
            return Termination(signal=-returncode, killed_by_us=h.killed_by_us)
        return Termination(exit_code=returncode, killed_by_us=h.killed_by_us)

    async def kill(self, handle: ContainerHandle, grace_seconds: float) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace_seconds`` to what is left."""
        h = _own(handle)
        h.killed_by_us = True
        pgid = h.process.pid
        if h.killing:
            await h.kill_done.wait()
            return
        h.killing = True
        try:
            if not _group_members(pgid) and h.process.returncode is not None:
                return
            log.info(
                "process_group_terminated",
                container_id=h.container_id,
                pgid=pgid,
                grace_seconds=grace_seconds,
            )
            _signal_group(pgid, signal.SIGTERM)
            if await _wait_group_gone(pgid, max(grace_seconds, 0.0)):
                return
            log.info("process_group_killed", container_id=h.container_id, pgid=pgid)
            _signal_group(pgid, signal.SIGKILL)
            if not await _wait_group_gone(pgid, REAP_TIMEOUT_SECONDS):
                log.warning(
                    "process_group_survived_sigkill", container_id=h.container_id, pgid=pgid
                )
        finally:
            h.killing = False
            h.kill_done.set()


def _open_outputs(spec: LaunchSpec) -> tuple[BinaryIO, BinaryIO]:
    """Opens ``<sandbox>/stdout`` and ``<sandbox>/stderr`` for appending; LaunchError if not."""
    opened: list[BinaryIO] = []
    try:
        for path in (spec.stdout_path, spec.stderr_path):
            opened.append(open(path, "ab"))  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        for f in opened:
            f.close()
        raise LaunchError(f"cannot open the task's output file: {exc}") from None
    return opened[0], opened[1]


def _own(handle: ContainerHandle) -> ProcessHandle:
    if not isinstance(handle, ProcessHandle):
        raise TypeError(f"not a process container handle: {handle!r}")
    return handle


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_members(pgid: int) -> list[int]:
    """Returns the live (non-zombie) processes of group ``pgid``.

    Reads /proc, because a zombie still answers ``kill(0)`` and an orphaned zombie may never be
    reaped if nothing reaps orphans; falls back to ``killpg(pgid, 0)`` without /proc.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # The common case: the group is gone (its leader already reaped).
    except PermissionError:
        pass
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def _wait_group_gone(pgid: int, timeout: float) -> bool:
    """Waits up to ``timeout`` seconds for group ``pgid`` to be empty; True when it is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _group_members(pgid):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(POLL_SECONDS, remaining))
    return True
