"""A running task's health checks as the agent state sees them (pure; ``AgentState``
delegates here).

A task's ``health_check`` is validated at RunTask (a wrong one is TASK_ERROR,
REASON_TASK_INVALID); once RUNNING, a Tick emits ``RunHealthCheck`` when a check is due, and each
``HealthCheckResult`` may emit a TASK_RUNNING update carrying ``healthy`` (reason
REASON_TASK_HEALTH_CHECK_STATUS_UPDATED; only when the health changes) and, after the
consecutive-failure limit, kill the task with its kill policy; its TASK_KILLED says why and
carries ``healthy: false``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mensa.agent.health import HealthCheckResult, RunHealthCheck
from mensa.agent.tasks import TaskRecord, task_log
from mensa.proto import mensa_pb2

if TYPE_CHECKING:
    from mensa.agent.state import AgentState

HEALTH_REASON = mensa_pb2.TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED


def health_kill(state: AgentState, record: TaskRecord) -> bool | None:
    """False when the task is being killed for failing its health check (its KILLING and
    KILLED updates say ``healthy: false``, as Mesos's do), else None (not stated)."""
    checker = state.health.get((record.framework_id, record.task_id))
    return False if checker is not None and checker.kill_message else None


def start_due_health_checks(state: AgentState) -> None:
    for (framework_id, task_id), checker in state.health.items():
        if checker.due(state._now):
            checker.check_started(state._now)
            state._out.append(RunHealthCheck(framework_id, task_id, checker.probe))


def on_health_check_result(state: AgentState, event: HealthCheckResult) -> None:
    key = (event.framework_id, event.task_id)
    tlog = task_log(*key)
    record, checker = state.tasks.get(key), state.health.get(key)
    if record is None or checker is None or record.kill_requested or record.terminal:
        tlog.debug("health_check_result_ignored", reason="task not running")
        return
    verdict = checker.result(event.healthy, event.message, state._now)
    if verdict.ignored:
        tlog.debug("health_check_result_ignored", healthy=event.healthy, error=event.message)
        return
    if not event.healthy:
        tlog.info(
            "health_check_failed",
            error=event.message,
            consecutive_failures=checker.consecutive_failures,
        )
    if verdict.report is not None:
        tlog.info("task_health_changed", healthy=verdict.report)
        text = "" if verdict.report else event.message
        record.latest_status = state._emit(
            *key, record.state, record, text, HEALTH_REASON, healthy=verdict.report
        )
    if verdict.kill:
        tlog.warning("task_killed_by_health_check", error=event.message)
        state._kill(record, message=verdict.kill_message)
