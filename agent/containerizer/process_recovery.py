"""Adopting the process tasks an earlier run of the agent launched (after an agent restart).

Contract:

  * ``adopt(spec, pid, waiter_pid, pid_start, ...)`` returns a ``ProcessHandle`` for the task as
    checkpointed (``pid`` the task, ``waiter_pid`` its waiter, ``pid_start`` the task's start
    time), usable for ``wait``, ``kill``, ``usage`` and ``exec_in``; its end is read from the exit
    status its waiter records in ``<runtime_dir>/`` EXIT_STATUS_FILE. Its cgroup is picked up
    when it still exists. When the checkpoint lacks either pid (the agent died mid-launch), the
    waiter is found by its command line and the task as the waiter's only child. Never raises
    for a task that is gone: the handle then reports what is known.
  * ``abandon(handle)`` kills whatever is left of a recovered task that cannot be adopted (its
    waiter's process group and everything in its cgroup) and removes the cgroup.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

import structlog

from mensa.agent.containerizer import cgroups
from mensa.agent.containerizer.base import ContainerHandle, LaunchSpec
from mensa.agent.containerizer.launcher import (
    EXIT_STATUS_FILE,
    AdoptedTask,
    children_of,
    find_waiter,
    signal_group,
    start_time,
)
from mensa.agent.containerizer.process_tree import ProcessHandle, own, remove_cgroup
from mensa.proto.resources import ResourceError, Resources

log = structlog.get_logger(__name__)


def adopt(
    spec: LaunchSpec,
    pid: int | None,
    waiter_pid: int | None,
    pid_start: int | None,
    *,
    hierarchy: cgroups.Hierarchy | None,
    pids_max: int | None,
    setpriv: Sequence[str],
) -> ProcessHandle:
    """Returns a handle for a task an earlier run of the agent launched; see the module
    docstring. ``setpriv`` is how the task runs as its user (health checks run the same way)."""
    status_path = os.path.join(spec.runtime_dir, EXIT_STATUS_FILE) if spec.runtime_dir else ""
    try:
        limits = cgroups.limits_from_resources(Resources.from_proto(spec.task_info.resources), pids_max)
    except ResourceError:
        limits = cgroups.Limits()
    cgroup = None
    if hierarchy is not None:
        cgroup = cgroups.TaskCgroup.existing(hierarchy, spec.container_id, limits)
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


async def abandon(handle: ContainerHandle) -> None:
    """Kills whatever is left of a recovered task that cannot be adopted (no task pid and
    no waiter: its end could never be learnt): its waiter's process group and everything
    in its cgroup; removes the cgroup."""
    h = own(handle)
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
        await remove_cgroup(h)
