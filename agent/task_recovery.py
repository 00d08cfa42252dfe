"""How a restarted agent takes its checkpointed tasks back (pure; ``AgentState`` delegates
here).

``on_recovered`` rebuilds the agent from its checkpoint (its id, its tasks and their
unacknowledged updates, queued again with their uuids); tasks that ended or never launched are
completed, the others get a ``RecoverContainer`` so the shell finds their container again, and
``on_container_recovered`` marks such a task running again (its health checks restart). A kill
under way when the agent went down is finished.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import structlog

from mensa.agent.checkpoint_records import RecoveredAgent, RecoveredTask
from mensa.agent.containerizer.base import LaunchSpec
from mensa.agent.events import ContainerRecovered, RecoverContainer
from mensa.agent.health import health_checker
from mensa.agent.launch_specs import with_sandbox
from mensa.agent.sandbox import InvalidTask
from mensa.agent.tasks import TaskRecord, state_name, task_log
from mensa.proto import mensa_pb2

if TYPE_CHECKING:
    from mensa.agent.state import AgentState

log = structlog.get_logger("mensa.agent.state")

TaskStatus = mensa_pb2.TaskStatus


def on_recovered(state: AgentState, checkpoint: RecoveredAgent) -> None:
    """Rebuilds the agent from its checkpoint: its id, its tasks and their unacknowledged
    updates; asks the shell to find each task's container again."""
    if state.tasks or state.link.registered:
        log.warning("recovery_ignored", reason="the agent already has tasks or a master")
        return
    if checkpoint.agent_id:
        state.link.agent_id = checkpoint.agent_id
    for recovered in checkpoint.tasks:
        try:
            recover_task(state, recovered)
        except Exception as exc:
            # One task's bug must not leave the others unrecovered (RUNNING for ever).
            cp = recovered.checkpoint
            log.exception("task_recovery_failed", framework_id=cp.framework_id,
                          task_id=cp.task_id)
            fail_unrecoverable(state, recovered, f"the agent could not recover the task after "
                               f"it restarted: {exc!r}")
    log.info("agent_recovered", agent_id=state.agent_id, tasks=len(state.tasks),
             pending_updates=len(state.updates), skipped=len(checkpoint.skipped))


def fail_unrecoverable(state: AgentState, recovered: RecoveredTask, message: str) -> None:
    """Completes a task whose recovery raised as TASK_FAILED (REASON_AGENT_RESTARTED)."""
    cp = recovered.checkpoint
    key = (cp.framework_id, cp.task_id)
    record = state.tasks.get(key)
    if record is None:
        record = TaskRecord(cp.framework, cp.task_info, sandbox=cp.sandbox, pid=cp.pid,
                            silent=cp.silent, latest_status=recovered.latest,
                            container_id=cp.container_id, containerizer=cp.containerizer,
                            waiter_pid=cp.waiter_pid, pid_start=cp.pid_start)
        state.tasks[key] = record
    record.container_running = False
    state.health.pop(key, None)
    if not record.terminal:
        state._set_state(record, mensa_pb2.TASK_FAILED, message,
                         TaskStatus.REASON_AGENT_RESTARTED)
    state._maybe_complete(key)


def recover_task(state: AgentState, recovered: RecoveredTask) -> None:
    """Takes one checkpointed task back: queues its unacknowledged updates, completes it if it
    ended or never launched, else asks the shell to find its container."""
    cp = recovered.checkpoint
    key = (cp.framework_id, cp.task_id)
    record = TaskRecord(cp.framework, cp.task_info, sandbox=cp.sandbox, pid=cp.pid,
                        silent=cp.silent, latest_status=recovered.latest,
                        container_id=cp.container_id, containerizer=cp.containerizer,
                        waiter_pid=cp.waiter_pid, pid_start=cp.pid_start)
    if recovered.latest is not None:
        record.state = recovered.latest.state
    state.tasks[key] = record
    if not cp.silent:
        for status in recovered.pending:
            state.updates.enqueue(*key, status, state._now)
    tlog = task_log(*key)
    tlog.info("task_recovered", state=state_name(record.state),
              pending_updates=len(recovered.pending), container_id=cp.container_id)
    if record.terminal or not cp.container_id:
        if not record.terminal:
            state._set_state(record, mensa_pb2.TASK_FAILED,
                            "the agent restarted before the task was launched",
                            TaskStatus.REASON_AGENT_RESTARTED)
        state._maybe_complete(key)
        return
    recover_container(state, record, recovered.kill)


def recover_container(state: AgentState, record: TaskRecord,
                      kill: tuple[float, float] | None = None) -> None:
    """Asks the shell to find a task's container again; resumes a kill under way (``kill``:
    its recorded grace period and start, so only what is left of the grace is given)."""
    key = (record.framework_id, record.task_id)
    agent_id = state.agent_id or ""
    try:
        spec = state._launch_spec(record, agent_id, record.container_id)
    except InvalidTask as exc:  # It was valid when launched: the code changed since.
        task_log(*key).warning("task_not_recoverable", reason=str(exc))
        spec = LaunchSpec(record.container_id, *key, "", (), {}, record.sandbox,
                          record.task_info)
    if record.sandbox and spec.sandbox != record.sandbox:
        spec = with_sandbox(spec, record.sandbox)
    if record.task_info.HasField("health_check") and not record.silent:
        with contextlib.suppress(InvalidTask):
            state.health[key] = health_checker(record.task_info.health_check, env=spec.env,
                                              sandbox=spec.sandbox, user=spec.user)
    record.container_running = True
    state._out.append(RecoverContainer(*key, spec, record.containerizer, record.pid,
                                      record.waiter_pid, record.pid_start))
    if record.state == mensa_pb2.TASK_KILLING or record.silent or kill is not None:
        # A kill was under way when the agent went down: finish it.
        grace = None if kill is None else max(0.0, kill[1] + kill[0] - state._wall)
        task_log(*key).info("task_kill_resumed", grace_seconds=grace)
        state._kill(record, grace)


def on_container_recovered(state: AgentState, event: ContainerRecovered) -> None:
    record = state._running_record(event.framework_id, event.task_id, "container_recovery")
    if record is None:
        return
    if event.pid is not None:
        record.pid = event.pid
    task_log(event.framework_id, event.task_id).info("task_reattached", pid=record.pid)
    if record.kill_requested:
        return
    if record.state == mensa_pb2.TASK_STAGING:
        state._set_state(record, mensa_pb2.TASK_STARTING)
    if record.state == mensa_pb2.TASK_STARTING:
        state._set_state(record, mensa_pb2.TASK_RUNNING)
    checker = state.health.get((event.framework_id, event.task_id))
    if checker is not None:
        checker.start(state._now)
