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

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import structlog

from mensa.agent.containerizer import cgroups, process_recovery
from mensa.agent.containerizer.base import ContainerHandle, LaunchError, LaunchSpec, Termination
from mensa.agent.containerizer.launcher import (
    EXIT_STATUS_FILE,
    SHELL,
    Child,
    WaitedTask,
    default_signals_prefix,
    launcher_argv,
    launcher_chain,
    launcher_steps,
    open_outputs,
    probe_pid_namespace,
    read_task_pid,
    signal_group,
    waiter_argv,
)
from mensa.agent.containerizer.process_tree import (
    POLL_SECONDS,
    REAP_TIMEOUT_SECONDS,
    SIGTERM_MASK,
    ProcessHandle,
    await_end,
    oom_message,
    own,
    read_usage,
    terminate,
)
from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError, Resources

log = structlog.get_logger(__name__)

# The handle, its constants and oom_message live in process_tree.py; importable from here too.
__all__ = [
    "POLL_SECONDS",
    "REAP_TIMEOUT_SECONDS",
    "SIGTERM_MASK",
    "STALE_CGROUP_SECONDS",
    "ProcessContainerizer",
    "ProcessHandle",
    "oom_message",
]

# Empty task cgroups older than this (left by an agent that stopped mid-task) are removed at start.
STALE_CGROUP_SECONDS = 60.0


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
        h = own(handle)
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
        return read_usage(own(handle))

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
        try:
            setpriv = self._setpriv_args(spec.user)
        except LaunchError:
            setpriv = []
        return process_recovery.adopt(spec, pid, waiter_pid, pid_start, hierarchy=self.hierarchy,
                                      pids_max=self.pids_max, setpriv=setpriv)

    async def abandon(self, handle: ContainerHandle) -> None:
        """Kills whatever is left of a recovered task that cannot be adopted (no task pid and
        no waiter: its end could never be learnt): its waiter's process group and everything
        in its cgroup; removes the cgroup."""
        await process_recovery.abandon(handle)

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
        return await await_end(own(handle))

    async def kill(self, handle: ContainerHandle, grace_seconds: float) -> None:
        """SIGTERM to everything in the container, SIGKILL after ``grace_seconds`` to what is
        left. In a PID namespace, SIGTERM only reaches the namespace's init (the task) when it
        handles it; when the init leaves SIGTERM at its default, the container is SIGKILLed at
        once (what SIGTERM would have done outside a namespace; the task's signal reads 9).
        When the init itself is SIGKILLed (by the OOM killer, say), unshare exits with 1."""
        await terminate(own(handle), grace_seconds)


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

