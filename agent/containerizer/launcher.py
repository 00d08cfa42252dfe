"""Spawning task processes: the launcher command line, output files, process groups (I/O).

``launcher_argv`` builds the ``/bin/sh`` command that puts a new process into its cgroups (and
PID namespace, user, rlimits) before it execs the task, so no ``preexec_fn`` is needed and
``subprocess`` keeps using vfork. ``Child`` learns of a spawned process's exit through a pidfd
on the event loop (a thread where pidfds are missing). The rest are small process-group helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from mensa.agent.containerizer.base import LaunchError, LaunchSpec

SHELL = "/bin/sh"
LAUNCHER_NAME = "mensa-launch"
UNSHARE_ARGS = ("--pid", "--fork", "--mount-proc", "--kill-child")


class Child:
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




def launcher_argv(
    argv: Sequence[str],
    executable: str,
    procs_files: Sequence[str] = (),
    rlimit_as: int | None = None,
    unshare: str | None = None,
    setpriv: Sequence[str] = (),
    bash: str | None = None,
) -> list[str]:
    """Returns the argv that runs ``argv`` (executing ``executable``) after joining the cgroups
    whose ``procs_files`` are given and lowering RLIMIT_AS to ``rlimit_as`` bytes, inside a new
    PID namespace when ``unshare`` (its path) is given and as another user when ``setpriv``
    (its path and options) is given. Executed with /bin/sh."""
    steps = [f"echo 0 > {shlex.quote(f)}" for f in procs_files]
    if rlimit_as is not None:
        steps.append(f"ulimit -v {max(1, rlimit_as // 1024)}")
    steps.append('exec "$@"')
    chain: list[str] = []
    if unshare:
        chain += [unshare, *UNSHARE_ARGS, "--"]
    if setpriv:
        chain += [*setpriv, "--"]
    if argv and argv[0] != executable and bash:
        chain += [bash, "-c", 'e=$1; shift; exec -a "$0" "$e" "$@"', argv[0], executable, *argv[1:]]
    else:
        chain += [executable, *argv[1:]]
    return [SHELL, "-c", " && ".join(steps), LAUNCHER_NAME, *chain]


def probe_pid_namespace(unshare: str | None) -> bool:
    """True when ``unshare --pid --fork --mount-proc true`` works here (root, kernel allows)."""
    if unshare is None or os.geteuid() != 0:
        return False
    try:
        done = subprocess.run(
            [unshare, "--pid", "--fork", "--mount-proc", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def open_outputs(spec: LaunchSpec) -> tuple[BinaryIO, BinaryIO]:
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


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int]:
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
