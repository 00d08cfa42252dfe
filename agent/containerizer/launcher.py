"""Spawning task processes: the launcher command line, output files, process groups (I/O).

``launcher_argv`` builds the ``/bin/sh`` command that puts a new process into its cgroups (and
PID namespace, user, rlimits) before it execs the task, so no ``preexec_fn`` is needed and
``subprocess`` keeps using vfork. ``Child`` learns of a spawned process's exit through a pidfd
on the event loop (a thread where pidfds are missing). The rest are small process-group helpers.

The waiter (``waiter_argv``): so that a task outlives an agent killed with SIGKILL *and* its
exit status is not lost with the agent, the agent's child is a small ``/bin/sh`` waiter
(``mensa-wait``, in its own session) that forks a subshell for the task with a pipe to the agent
as fd 3. The subshell takes the launcher's steps (joins the task's cgroups, lowers RLIMIT_AS),
says ``ready`` on fd 3, and execs ``setsid`` (the task gets its own session and process group,
so signals to the task's group or cgroup never reach the waiter; the waiter never joins the
task's cgroups), which execs the task (through unshare/setpriv/bash as ``launcher_argv`` would).
The waiter prints ``pid <pid>`` (the subshell's, hence the task's pid) on the same pipe (with
SIGPIPE ignored, set after the subshell is forked: an agent that died during the launch must not
take the waiter with it; a restarted agent finds it by its command line), waits for the task,
writes ``$?`` and a newline to ``<runtime dir>/exit_status`` (one short write of a fresh file: a
reader sees nothing, or the whole status with its newline), and then exits the way the task did:
with the same code, or killed by the same signal (the shell reports a signal N as 128+N; the
waiter re-raises it with core dumps off, unless N is a signal whose default action does not end
a process, such as STOP or CHLD: 128+N is then the task's own exit code and the waiter exits
with it; ``checkpoint_records.parse_exit_status`` reads the file the same way), so the agent
sees the waiter's end as it used to see the task's. The task's chain starts with ``env
--default-signal=INT,QUIT`` where env(1) has it (``default_signals_prefix``): the subshell, a
background job of a shell without job control, starts with SIGINT and SIGQUIT ignored, and the
task must not inherit that. The agent counts the task launched once it has read both lines (so a
kill right after the launch reaches it through its cgroup; without cgroups a kill that finds no
process group yet, the ``setsid`` exec being under way, signals the pid itself). Cost: a fork of
``/bin/sh`` and one ``setsid`` (and one ``env``) exec per launch, all in the children.
``WaitedTask`` is such a task while the agent runs; ``AdoptedTask`` one found again after a
restart (no longer the agent's descendant): its end is learnt from the waiter's exit (a pidfd)
and its exit_status file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from mensa.agent.checkpoint_records import NON_TERMINATING_SIGNALS
from mensa.agent.containerizer.base import LaunchError, LaunchSpec

SHELL = "/bin/sh"
LAUNCHER_NAME = "mensa-launch"
WAITER_NAME = "mensa-wait"
EXIT_STATUS_FILE = "exit_status"
ADOPTED_POLL_SECONDS = 0.5
# $1 the exit status file, $2 the task's stdout, then setsid and the task's chain; {steps} are
# the launcher's steps, each followed by " && ".
WAITER_SCRIPT = (
    'f=$1; o=$2; shift 2; ({steps}echo ready >&3 && exec "$@" 3>&-) 3>&1 >>"$o" & p=$!; '
    "trap '' PIPE; echo pid $p; exec >/dev/null; "
    'wait $p; c=$?; echo $c >"$f"; '
    'if [ $c -gt 128 ] && [ $c -lt 193 ]; then case $((c - 128)) in {keep}) ;; '
    "*) ulimit -c 0; trap - PIPE; kill -$((c - 128)) $$;; esac; fi; exit $c"
)
# A status of 128+N for a signal N in NON_TERMINATING_SIGNALS is an exit code: never re-raised
# (raising STOP would stop the waiter for good).
WAITER_SCRIPT = WAITER_SCRIPT.replace("{keep}", "|".join(map(str, sorted(NON_TERMINATING_SIGNALS))))
# Prefixed to the task's chain (when env(1) supports it): a background job of a shell without
# job control starts with SIGINT and SIGQUIT ignored; the task gets them back at their default.
DEFAULT_SIGNALS_ARGS = ("--default-signal=INT,QUIT",)
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




class WaitedTask:
    """A task started under a waiter (see the module docstring): ``pid`` is the task's (its
    process group id), ``returncode`` and ``wait()`` the waiter's, which mirror the task's."""

    def __init__(self, waiter: Child, pid: int) -> None:
        self.waiter = waiter
        self.pid: int | None = pid
        self.waiter_pid = waiter.pid
        self.pid_start = start_time(pid)

    @property
    def returncode(self) -> int | None:
        return self.waiter.returncode

    async def wait(self) -> int | None:
        return await self.waiter.wait()


class AdoptedTask:
    """A task process found again after an agent restart; ``wait`` returns its exit code (or
    minus the signal that killed it) as its waiter recorded it, or None when that is lost (the
    waiter vanished without recording it, once nothing of the task is left).

    Without a live waiter, what is left of the task is ``members()`` (its cgroup's pids) when
    given, else the process group of ``pid``, provided ``pid`` is still the process that was
    checkpointed (its start time is ``pid_start``; a pid reused by another process is not the
    task, and Linux never reuses a pid while a process group of that id exists)."""

    def __init__(self, pid: int | None, waiter_pid: int | None, status_path: str,
                 pid_start: int | None = None,
                 members: Callable[[], list[int]] | None = None) -> None:
        self.pid = pid
        self.waiter_pid = waiter_pid
        self.status_path = status_path
        self.pid_start = pid_start
        self.members = members
        self.returncode: int | None = None
        self.ended = False

    def pid_is_ours(self) -> bool:
        """False when ``pid`` names no process of the task's any more: None, or reused by
        another process (a different start time)."""
        if self.pid is None:
            return False
        if self.pid_start is None:
            return True  # not checkpointed (an older agent): trust the pid
        started = start_time(self.pid)
        return started is None or started == self.pid_start

    def task_members(self) -> list[int]:
        """The task's live processes as far as they can be known (see the class docstring)."""
        if self.members is not None:
            return self.members()
        if self.pid is None or not self.pid_is_ours():
            return []
        return group_members(self.pid)

    def recorded(self) -> tuple[int | None, int | None] | None:
        """Returns (exit code, signal) from the exit status file, None while it is not there."""
        from mensa.agent.checkpoint_records import parse_exit_status

        if not self.status_path:
            return None
        try:
            with open(self.status_path) as f:
                return parse_exit_status(f.read(64))
        except OSError:
            return None

    def waiter_alive(self) -> bool:
        """True while the recorded waiter runs (checked by its command line, not just its pid)."""
        if self.waiter_pid is None or not self.status_path:
            return False
        try:
            with open(f"/proc/{self.waiter_pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{self.waiter_pid}/stat") as f:
                stat = f.read()
        except OSError:
            return False
        state = stat[stat.rfind(")") + 2 :].split()[:1]
        return self.status_path.encode() in cmdline and state not in (["Z"], ["X"])

    async def wait(self) -> int | None:
        while True:
            found = self.recorded()
            if found is not None:
                code, sig = found
                self.returncode = -sig if sig is not None else code
                self.ended = True
                return self.returncode
            if self.waiter_alive():
                await _exit_of(self.waiter_pid)
                continue
            # No waiter, no status: wait for the task itself to go, then give up on its code.
            if self.task_members():
                await asyncio.sleep(ADOPTED_POLL_SECONDS)
                continue
            found = self.recorded()
            if found is None:
                self.ended = True
                return None


def find_waiter(status_path: str) -> int | None:
    """Returns the pid of the live waiter recording ``status_path`` (found by its command line,
    unique per task: ``... mensa-wait <status_path> ...``), None when there is none. For a task
    whose waiter pid never reached the checkpoint (the agent died during the launch)."""
    if not status_path:
        return None
    needle = f"\0{WAITER_NAME}\0{status_path}\0".encode()
    for pid, stat in _proc_stats():
        if stat[0] in ("Z", "X"):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if needle in cmdline:
            return pid
    return None


def children_of(pid: int) -> list[int]:
    """Returns the live children of process ``pid`` (from /proc)."""
    return [p for p, stat in _proc_stats() if len(stat) > 1 and stat[1] == str(pid)
            and stat[0] not in ("Z", "X")]


def start_time(pid: int) -> int | None:
    """Returns process ``pid``'s start time (field 22 of /proc/<pid>/stat, in clock ticks since
    boot), None when there is no such process; with the pid it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    # Field 3 (state) is fields[0], so field 22 is fields[19].
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _proc_stats() -> list[tuple[int, list[str]]]:
    """Returns (pid, fields after comm: state, ppid, pgrp, ...) for every process in /proc."""
    out: list[tuple[int, list[str]]] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        out.append((int(name), stat[stat.rfind(")") + 2 :].split()))
    return out


async def _exit_of(pid: int | None) -> None:
    """Returns once process ``pid`` (not necessarily a child) has exited, or after a poll
    interval where pidfds are missing."""
    if pid is None:
        return
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        await asyncio.sleep(ADOPTED_POLL_SECONDS)
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(pidfd, exited)
    try:
        await asyncio.wait_for(gone, ADOPTED_POLL_SECONDS * 10)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def waiter_argv(steps: Sequence[str], chain: Sequence[str], status_path: str, stdout_path: str,
                setsid: str) -> list[str]:
    """Returns the argv of a waiter (see the module docstring) that takes ``steps`` (from
    ``launcher_steps``) in a subshell and execs ``setsid`` then ``chain`` (from
    ``launcher_chain``) in it, with its stdout appended to ``stdout_path``, and records its
    exit status in ``status_path``. Its stdout says ``pid <pid>`` and ``ready``."""
    script = WAITER_SCRIPT.replace("{steps}", "".join(f"{step} && " for step in steps))
    return [SHELL, "-c", script, WAITER_NAME, status_path, stdout_path, setsid, *chain]


async def read_task_pid(popen: subprocess.Popen[bytes]) -> int:
    """Reads the task pid a waiter prints on its stdout (a pipe) once the task is ready;
    LaunchError if it does not say both."""
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    data = b""
    ready: asyncio.Event = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        while True:
            await ready.wait()
            ready.clear()
            try:
                chunk = os.read(fd, 64)
            except BlockingIOError:
                continue
            if not chunk:
                break
            data += chunk
    finally:
        loop.remove_reader(fd)
        popen.stdout.close()
    lines = data.split(b"\n")
    pids = [line[4:] for line in lines if line.startswith(b"pid ")]
    if b"ready" not in lines or len(pids) != 1 or not pids[0].isdigit():
        raise LaunchError(f"the task's waiter did not start it (said {data!r})")
    return int(pids[0])


def launcher_steps(procs_files: Sequence[str] = (), rlimit_as: int | None = None) -> list[str]:
    """Returns the shell steps that join the cgroups whose ``procs_files`` are given and lower
    RLIMIT_AS to ``rlimit_as`` bytes."""
    steps = [f"echo 0 > {shlex.quote(f)}" for f in procs_files]
    if rlimit_as is not None:
        steps.append(f"ulimit -v {max(1, rlimit_as // 1024)}")
    return steps


def launcher_chain(
    argv: Sequence[str],
    executable: str,
    unshare: str | None = None,
    setpriv: Sequence[str] = (),
    bash: str | None = None,
) -> list[str]:
    """Returns the argv that runs ``argv`` (executing ``executable``) inside a new PID namespace
    when ``unshare`` (its path) is given and as another user when ``setpriv`` (its path and
    options) is given."""
    chain: list[str] = []
    if unshare:
        chain += [unshare, *UNSHARE_ARGS, "--"]
    if setpriv:
        chain += [*setpriv, "--"]
    if argv and argv[0] != executable and bash:
        chain += [bash, "-c", 'e=$1; shift; exec -a "$0" "$e" "$@"', argv[0], executable, *argv[1:]]
    else:
        chain += [executable, *argv[1:]]
    return chain


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
    steps = launcher_steps(procs_files, rlimit_as)
    steps.append('exec "$@"')
    chain = launcher_chain(argv, executable, unshare, setpriv, bash)
    return [SHELL, "-c", " && ".join(steps), LAUNCHER_NAME, *chain]


def default_signals_prefix(env: str | None) -> list[str]:
    """Returns ``[env, --default-signal=INT,QUIT]`` when ``env`` (its path) accepts that option
    (coreutils 8.31 and later; probed once by running it), else [] (the task then inherits
    SIGINT and SIGQUIT ignored, as it did before)."""
    if env is None:
        return []
    try:
        done = subprocess.run(
            [env, *DEFAULT_SIGNALS_ARGS, "true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [env, *DEFAULT_SIGNALS_ARGS] if done.returncode == 0 else []


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
