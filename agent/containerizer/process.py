"""The process containerizer: each task is a process tree in its own cgroup (Mesos style).

Isolation, chosen once at construction (``describe()`` says which, for the agent's /state):

  * ``cgroups-v2`` / ``cgroups-v1``: the task runs in ``<root>/mensa/<container_id>`` (see
    cgroups.py) with a memory limit from ``mem`` (swap off), a CFS quota and shares/weight from
    ``cpus`` and a pids limit. An OOM kill ends the task with reason
    REASON_CONTAINER_LIMITATION_MEMORY. Killing signals every process in the cgroup, so
    children that were forked and left behind die too; the cgroup is removed when the task ends.
  * ``rlimits`` (cgroups not writable: read-only hierarchy, not root, none mounted): RLIMIT_AS
    from ``mem`` (see cgroups.rlimit_as_bytes); RLIMIT_NPROC is per user, not per task, so it
    is not used. Killing falls back to the task's process group. Logged once as
    ``isolation_degraded``.
  * A PID namespace (``unshare --pid --fork --mount-proc --kill-child``) when asked for, or with
    ``pid_namespace=None`` (the agent's ``--pid-namespace auto``) when the host allows it (probed
    once): the task is pid 1 with its own /proc, and everything in it dies with it.

Empty cgroups left by earlier runs are removed at construction, or, with
``remove_stale=False`` (a checkpointing agent), by ``remove_stale_cgroups(keep)`` once the
checkpoint is read, sparing the checkpointed tasks' cgroups (an OOM kill while the agent was
down is read from them).

The task joins its cgroup before it executes, without ``preexec_fn`` (which disables vfork and
is not thread safe): it is started as ``/bin/sh -c 'echo 0 > <cgroup.procs>... && exec "$@"'
mensa-launch [unshare ...] [setpriv ...] <argv...>``, so the shell writes itself into each
cgroup (``0`` means the writer) and then becomes the task; a shell is cheap (about 1 ms) and
``unshare``/``setpriv`` need no Python in the child. ``ulimit -v`` in the same shell sets the
rlimits fallback. When ``argv[0]`` differs from the executable, ``bash -c 'exec -a'`` keeps it.
``user`` runs the task through ``setpriv`` after the cgroup is joined.

The task runs as the leader of a new session, with the sandbox as its working directory,
stdin from /dev/null, stdout and stderr appended to ``<sandbox>/stdout`` and
``<sandbox>/stderr``, and exactly the environment in the spec. When the leader exits on its
own, whatever it left behind is killed too, so no process outlives its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from mensa.agent.containerizer import cgroups
from mensa.agent.containerizer.base import ContainerHandle, LaunchError, LaunchSpec, Termination
from mensa.agent.containerizer.launcher import (
    EXIT_STATUS_FILE,
    SHELL,
    AdoptedTask,
    Child,
    WaitedTask,
    children_of,
    default_signals_prefix,
    find_waiter,
    group_members,
    launcher_argv,
    launcher_chain,
    launcher_steps,
    open_outputs,
    probe_pid_namespace,
    read_task_pid,
    signal_group,
    start_time,
    waiter_argv,
)
from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError, Resources

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.05
# How long to wait for SIGKILLed processes to disappear before giving up on them.
REAP_TIMEOUT_SECONDS = 5.0
# Empty task cgroups older than this (left by an agent that stopped mid-task) are removed at start.
STALE_CGROUP_SECONDS = 60.0
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


def oom_message(limits: cgroups.Limits) -> str:
    """Returns the status message of a task the OOM killer ended."""
    if limits.memory_mb is None:
        return "OOM-killed"
    return f"OOM-killed: memory limit of {limits.memory_mb} MB exceeded"


class ProcessContainerizer:
    """Runs command tasks (no container image) in cgroups; see the module docstring.

    ``isolation`` is "auto" (cgroups when writable, else rlimits), "cgroups" (the same, named
    for clarity), or "rlimits" (never touch cgroups). ``pid_namespace`` None probes the host
    (and uses one when it works), False (the default, so pids the task reports are host pids)
    never uses one, True always does.
    Construction does the (synchronous, quick) detection and logs ``isolation_degraded`` once
    when cgroups cannot be used.
    """

    name = "process"

    def __init__(
        self,
        *,
        isolation: str = "auto",
        cgroup_root: str = "/sys/fs/cgroup",
        cgroup_name: str = "mensa",
        pids_max: int | None = cgroups.DEFAULT_PIDS_MAX,
        pid_namespace: bool | None = False,
        remove_stale: bool = True,
    ) -> None:
        if isolation not in ("auto", "cgroups", "rlimits"):
            raise ValueError(f"unknown isolation {isolation!r}")
        self.pids_max = pids_max
        self.hierarchy: cgroups.Hierarchy | None = None
        self.problems: list[str] = []
        if isolation == "rlimits":
            self.problems = ["cgroups turned off"]
        elif os.geteuid() != 0:
            self.problems = ["not root: cannot write cgroups"]
        else:
            self.hierarchy, self.problems = cgroups.detect(cgroup_root, cgroup_name)
            if self.hierarchy is not None and remove_stale:
                cgroups.remove_stale(self.hierarchy, time.time() - STALE_CGROUP_SECONDS)
        self.cgroup_root = cgroup_root
        self._unshare = shutil.which("unshare")
        self._setpriv = shutil.which("setpriv")
        self._bash = shutil.which("bash")
        self._setsid = shutil.which("setsid")
        self._default_signals = default_signals_prefix(shutil.which("env"))
        # Called with the spec and the waiter's pid as soon as a waiter is spawned, before the
        # task's pid is known (the agent checkpoints it: a restart in between finds the task).
        self.on_spawned: Callable[[LaunchSpec, int], None] | None = None
        if pid_namespace is None:
            pid_namespace = probe_pid_namespace(self._unshare)
        elif pid_namespace and self._unshare is None:
            raise ValueError("pid_namespace requested but unshare(1) is not installed")
        self.pid_namespace = pid_namespace
        if self.hierarchy is None:
            log.warning(
                "isolation_degraded",
                isolation="rlimits",
                missing=self.problems,
                consequence="no memory/cpu/pids limits per task, only RLIMIT_AS; kills use "
                "process groups",
            )
        else:
            log.info(
                "isolation_detected",
                isolation=self.hierarchy.isolation,
                pid_namespace=self.pid_namespace,
                bases=[str(b) for b in self.hierarchy.bases.values()],
            )

    def remove_stale_cgroups(self, keep: Collection[str] = ()) -> list[str]:
        """Removes the empty cgroups left by tasks of earlier runs, except those of the
        container ids in ``keep`` (checkpointed tasks, whose recovery reads them: an agent that
        checkpoints constructs this with ``remove_stale=False`` and calls this once it has read
        its checkpoint). Returns the container ids removed."""
        if self.hierarchy is None:
            return []
        removed = cgroups.remove_stale(self.hierarchy, time.time() - STALE_CGROUP_SECONDS, keep)
        if removed:
            log.info("stale_cgroups_removed", container_ids=removed)
        return removed

    @property
    def isolation(self) -> str:
        return self.hierarchy.isolation if self.hierarchy else "rlimits"

    def describe(self) -> dict[str, Any]:
        """Returns how tasks are isolated, for the agent's /state."""
        return {
            "isolation": self.isolation,
            "pid_namespace": self.pid_namespace,
            "cgroup_bases": [str(b) for b in self.hierarchy.bases.values()] if self.hierarchy else [],
            "pids_max": self.pids_max,
            "degraded": [] if self.hierarchy else list(self.problems),
        }

    def can_run(self, task_info: mensa_pb2.TaskInfo) -> bool:
        """True for tasks with a command and no container, or a MESOS container without image."""
        if not task_info.HasField("command"):
            return False
        if not task_info.HasField("container"):
            return True
        return task_info.container.type == mensa_pb2.ContainerInfo.MESOS

    async def exec_in(
        self, handle: ContainerHandle, argv: Sequence[str], env: Mapping[str, str]
    ) -> int:
        """Runs ``argv`` (a COMMAND health check) in the task's cgroup, as the task's user;
        returns its exit status.

        It runs with ``env`` (the task's) and the task's working directory, in its own process
        group, which is SIGKILLed when the check ends or is cancelled (timed out).
        """
        h = _own(handle)
        if not argv:
            return 127
        procs = h.cgroup.procs_files() if h.cgroup is not None else ()
        env = dict(env)
        popen = subprocess.Popen(
            launcher_argv(list(argv), argv[0], procs_files=procs, setpriv=h.setpriv),
            cwd=env.get("MESOS_SANDBOX") or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=False,
        )
        try:
            return await Child(popen).wait()
        finally:
            signal_group(popen.pid, signal.SIGKILL)

    def usage(self, handle: ContainerHandle) -> cgroups.Usage | None:
        """Returns the task's cpu time and memory (the last reading once it ended), or None
        without cgroups."""
        h = _own(handle)
        if h.cgroup is None:
            return None
        if h.process.returncode is None or h.last_usage is None:
            current = h.cgroup.usage()
            if current is not None:
                h.last_usage = current
        return h.last_usage

    async def launch(self, spec: LaunchSpec) -> ContainerHandle:
        """Spawns the task's process in its cgroup; raises LaunchError when it cannot."""
        _check_executable(spec)
        try:
            limits = cgroups.limits_from_resources(
                Resources.from_proto(spec.task_info.resources), self.pids_max
            )
        except ResourceError as exc:
            raise LaunchError(f"invalid resources: {exc}") from None
        setpriv = self._setpriv_args(spec.user)
        cgroup: cgroups.TaskCgroup | None = None
        if self.hierarchy is not None:
            try:
                cgroup = cgroups.TaskCgroup.create(self.hierarchy, spec.container_id, limits)
            except OSError as exc:
                raise LaunchError(f"cannot create the task's cgroup: {exc}") from None
        procs_files = cgroup.procs_files() if cgroup else ()
        rlimit_as = (
            cgroups.rlimit_as_bytes(limits.memory_bytes)
            if cgroup is None and limits.memory_bytes is not None
            else None
        )
        unshare = self._unshare if self.pid_namespace else None
        waited = bool(spec.runtime_dir) and self._setsid is not None
        if waited:
            assert self._setsid is not None
            argv = waiter_argv(
                launcher_steps(procs_files, rlimit_as),
                [*self._default_signals,
                 *launcher_chain(spec.argv, spec.executable, unshare, setpriv, self._bash)],
                os.path.join(spec.runtime_dir, EXIT_STATUS_FILE),
                spec.stdout_path,
                self._setsid,
            )
        else:
            argv = launcher_argv(spec.argv, spec.executable, procs_files, rlimit_as, unshare,
                                 setpriv, self._bash)
        try:
            stdout, stderr = open_outputs(spec)
        except LaunchError:
            if cgroup is not None:
                cgroup.try_remove()
            raise
        try:
            popen = subprocess.Popen(
                argv,
                executable=SHELL,
                cwd=spec.sandbox,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if waited else stdout,
                stderr=stderr,
                start_new_session=True,
                # Every descriptor the agent holds is close-on-exec (Python, libzmq and tornado
                # create them so); skipping the close-all loop halves the cost of a spawn.
                close_fds=False,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            if cgroup is not None:
                cgroup.try_remove()
            raise LaunchError(f"failed to execute {spec.executable!r}: {exc}") from None
        finally:
            stdout.close()
            stderr.close()
        process: Child | WaitedTask = Child(popen)
        if waited and self.on_spawned is not None:
            try:
                self.on_spawned(spec, popen.pid)
            except Exception:  # A checkpoint problem must not orphan the process.
                log.exception("spawn_callback_failed", container_id=spec.container_id)
        if waited:
            try:
                process = WaitedTask(process, await read_task_pid(popen))
            except LaunchError:
                await process.wait()
                if cgroup is not None:
                    cgroup.try_remove()
                raise
        log.info(
            "process_spawned",
            container_id=spec.container_id,
            pid=process.pid,
            waiter_pid=popen.pid if waited else None,
            argv=list(spec.argv),
            isolation=self.isolation,
            pid_namespace=self.pid_namespace,
        )
        return ProcessHandle(spec.container_id, process, cgroup, setpriv=tuple(setpriv))

    def recover(self, spec: LaunchSpec, pid: int | None, waiter_pid: int | None,
                pid_start: int | None = None) -> ProcessHandle:
        """Returns a handle for a task an earlier run of the agent launched (``pid`` the task,
        ``waiter_pid`` its waiter, as checkpointed), for ``wait``, ``kill``, ``usage`` and
        ``exec_in``; its end is read from the exit status its waiter records."""
        status_path = os.path.join(spec.runtime_dir, EXIT_STATUS_FILE) if spec.runtime_dir else ""
        try:
            limits = cgroups.limits_from_resources(
                Resources.from_proto(spec.task_info.resources), self.pids_max
            )
        except ResourceError:
            limits = cgroups.Limits()
        cgroup = None
        if self.hierarchy is not None:
            cgroup = cgroups.TaskCgroup.existing(self.hierarchy, spec.container_id, limits)
        try:
            setpriv = self._setpriv_args(spec.user)
        except LaunchError:
            setpriv = []
        process = AdoptedTask(pid, waiter_pid, status_path, pid_start,
                              members=cgroup.pids if cgroup is not None else None)
        searched = pid is None or waiter_pid is None
        if searched:
            # The agent died before it checkpointed the whole launch: find the waiter by its
            # command line, and the task as its child (one subshell, exec'ing into the task).
            if not process.waiter_alive():
                process.waiter_pid = find_waiter(status_path)
            if process.pid is None and process.waiter_alive():
                assert process.waiter_pid is not None
                children = children_of(process.waiter_pid)
                process.pid = children[0] if len(children) == 1 else None
                if process.pid is not None:
                    process.pid_start = start_time(process.pid)
        log.info("process_recovered", container_id=spec.container_id, pid=process.pid,
                 waiter_pid=process.waiter_pid, waiter_alive=process.waiter_alive(),
                 cgroup=cgroup is not None, searched=searched)
        return ProcessHandle(spec.container_id, process, cgroup, setpriv=tuple(setpriv))

    async def abandon(self, handle: ContainerHandle) -> None:
        """Kills whatever is left of a recovered task that cannot be adopted (no task pid and
        no waiter: its end could never be learnt): its waiter's process group and everything
        in its cgroup; removes the cgroup."""
        h = _own(handle)
        h.killed_by_us = True
        process = h.process
        if isinstance(process, AdoptedTask) and process.waiter_alive():
            assert process.waiter_pid is not None
            signal_group(process.waiter_pid, signal.SIGKILL)
        if h.cgroup is not None:
            left = h.cgroup.pids()
            if left:
                log.warning("unadoptable_task_killed", container_id=h.container_id, pids=left)
            h.cgroup.signal_all(signal.SIGKILL)
            await _remove_cgroup(h)

    def _setpriv_args(self, user: str | None) -> list[str]:
        if not user or os.geteuid() != 0:
            return []
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise LaunchError(f"no such user {user!r}") from None
        if self._setpriv is None:
            raise LaunchError("cannot run as another user: setpriv(1) is not installed")
        return [
            self._setpriv,
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--init-groups",
            "--inh-caps=-all",
        ]

    async def wait(self, handle: ContainerHandle) -> Termination:
        """Waits for the leader to exit, then for (or forces) the end of everything else in
        its cgroup (or group); reports an OOM kill; removes the cgroup."""
        h = _own(handle)
        returncode = await h.process.wait()
        if returncode is None:
            # A recovered task whose exit status was lost with its waiter.
            if h.cgroup is not None:
                await _remove_cgroup(h)
            return Termination(
                killed_by_us=h.killed_by_us,
                reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
                message="the task ended while the agent was down and its exit status was lost",
            )
        if h.killing:
            # A kill is in progress: it SIGKILLs the rest after its grace period.
            await h.kill_done.wait()
        elif _members(h):
            log.info("task_leftovers_killed", container_id=h.container_id)
            _signal(h, signal.SIGKILL)
            await _wait_gone(h, REAP_TIMEOUT_SECONDS)
        reason: int | None = None
        message = ""
        if h.cgroup is not None:
            self.usage(h)
            if not h.killed_by_us and h.cgroup.oom_killed(died_of_sigkill=returncode == -signal.SIGKILL):
                reason = mensa_pb2.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY
                message = oom_message(h.cgroup.limits)
                log.info("task_oom_killed", container_id=h.container_id, message=message)
            await _remove_cgroup(h)
        if returncode < 0:
            return Termination(
                signal=-returncode, killed_by_us=h.killed_by_us, reason=reason, message=message
            )
        return Termination(
            exit_code=returncode, killed_by_us=h.killed_by_us, reason=reason, message=message
        )

    async def kill(self, handle: ContainerHandle, grace_seconds: float) -> None:
        """SIGTERM to everything in the container, SIGKILL after ``grace_seconds`` to what is
        left. In a PID namespace, SIGTERM only reaches the namespace's init (the task) when it
        handles it; when the init leaves SIGTERM at its default, the container is SIGKILLed at
        once (what SIGTERM would have done outside a namespace; the task's signal reads 9).
        When the init itself is SIGKILLed (by the OOM killer, say), unshare exits with 1."""
        h = _own(handle)
        h.killed_by_us = True
        if h.killing:
            await h.kill_done.wait()
            return
        h.killing = True
        try:
            if not _members(h) and h.process.returncode is not None:
                return
            log.info(
                "process_group_terminated", container_id=h.container_id, grace_seconds=grace_seconds
            )
            _signal(h, signal.SIGTERM)
            if h.cgroup is not None and any(map(_is_init_with_default_sigterm, h.cgroup.pids())):
                # The kernel drops SIGTERM to such an init; SIGTERM's default is to end it.
                _signal(h, signal.SIGKILL)
            if await _wait_gone(h, max(grace_seconds, 0.0)):
                return
            log.info("process_group_killed", container_id=h.container_id)
            _signal(h, signal.SIGKILL)
            if not await _wait_gone(h, REAP_TIMEOUT_SECONDS):
                log.warning("process_group_survived_sigkill", container_id=h.container_id)
        finally:
            if h.cgroup is not None and not h.cgroup.pids():
                # Gone: remove the cgroup now too, in case the agent stops before wait() does.
                self.usage(h)
                h.cgroup.try_remove()
            h.killing = False
            h.kill_done.set()


def _check_executable(spec: LaunchSpec) -> None:
    """Raises LaunchError when the task's program cannot be found or executed (the launcher
    shell would only report it in the task's stderr)."""
    exe = spec.executable
    if "/" in exe:
        path = exe if os.path.isabs(exe) else os.path.join(spec.sandbox, exe)
        ok = os.path.isfile(path) and os.access(path, os.X_OK)
    else:
        ok = shutil.which(exe, path=spec.env.get("PATH", os.defpath)) is not None
    if not ok:
        raise LaunchError(f"failed to execute {exe!r}: not found or not executable")


def _members(h: ProcessHandle) -> list[int]:
    if h.cgroup is not None:
        return h.cgroup.pids()
    if isinstance(h.process, AdoptedTask):
        return h.process.task_members()
    if h.process.pid is None:
        return []
    members = group_members(h.process.pid)
    if not members and _before_setsid(h):
        return [h.process.pid]
    return members


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


def _signal(h: ProcessHandle, sig: signal.Signals) -> None:
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


async def _wait_gone(h: ProcessHandle, timeout: float) -> bool:
    """Waits up to ``timeout`` seconds for the container to be empty; True when it is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _members(h):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(POLL_SECONDS, remaining))
    return True


async def _remove_cgroup(h: ProcessHandle) -> None:
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


def _is_init_with_default_sigterm(pid: int) -> bool:
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


def _own(handle: ContainerHandle) -> ProcessHandle:
    if not isinstance(handle, ProcessHandle):
        raise TypeError(f"not a process container handle: {handle!r}")
    return handle
