"""Scheduler calls about tasks: KILL, ACKNOWLEDGE, RECONCILE, MESSAGE (pure).

Split from ``calls.py`` (which dispatches every call): what the master answers about tasks it
knows, and, for tasks it does not, the Mesos table (``unknown_task_state``), with no answer
while the task's agent may still re-register with a newly elected master.
"""

from __future__ import annotations

import structlog

from mensa.master.records import FrameworkRecord, TaskRecord, TaskState, is_terminal
from mensa.master.state import ErrorCode, Event, MasterState, Send, master_status
from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2

log = structlog.get_logger(__name__)

Status = mensa_pb2.TaskStatus


def kill(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """KILL: asks the task's agent to kill it; an unknown task is reported lost."""
    task_id = call.kill.task_id.value
    task = framework.tasks.get(task_id)
    if task is None:
        done = framework.find_completed(task_id)
        if done is not None and done.latest is not None:
            return _update(framework, done.latest)
        agent_id = call.kill.agent_id.value
        if agent_id in state.recovering_agents or (not agent_id and state.recovering(now)):
            # Its agent may still re-register with this new master (and report the task): no
            # answer, as Mesos does; the framework kills again after reconciling.
            log.info("kill_deferred", framework_id=framework.framework_id, task_id=task_id)
            return []
        status = master_status(task_id, _unknown_task_state(state, framework, agent_id), now,
                               reason=Status.REASON_TASK_UNKNOWN,
                               message="task is unknown to the master", agent_id=agent_id or None)
        return _update(framework, status)
    if is_terminal(task.state):
        return []
    agent = state.agents.get(task.agent_id)
    if agent is None:
        return []
    msg = internal_pb2.KillTask()
    msg.framework_id.value = framework.framework_id
    msg.task_id.value = task_id
    if call.kill.HasField("kill_policy"):
        msg.kill_policy.CopyFrom(call.kill.kill_policy)
    log.info("task_kill_requested", framework_id=framework.framework_id, task_id=task_id,
             agent_id=agent.agent_id)
    return [Send(agent.peer, internal_pb2.Envelope(kill_task=msg))]


def acknowledge(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """ACKNOWLEDGE: passes the acknowledgement to the agent that sent the update."""
    ack = call.acknowledge
    agent = state.agents.get(ack.agent_id.value)
    if not ack.uuid:
        return [state.reject(framework.peer, "ACKNOWLEDGE without a uuid", refused="call:ACKNOWLEDGE")]
    if agent is None:
        return [state.reject(framework.peer, f"ACKNOWLEDGE for unknown agent {ack.agent_id.value!r}",
                             refused="call:ACKNOWLEDGE", code=ErrorCode.STALE)]
    task = framework.tasks.get(ack.task_id.value)
    if task is not None and task.terminal_uuid == ack.uuid and is_terminal(task.state):
        framework.complete(task)
    msg = internal_pb2.StatusUpdateAcknowledgement(uuid=ack.uuid)
    msg.agent_id.value = agent.agent_id
    msg.framework_id.value = framework.framework_id
    msg.task_id.CopyFrom(ack.task_id)
    return [Send(agent.peer, internal_pb2.Envelope(status_update_acknowledgement=msg))]


def reconcile(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """RECONCILE: the latest state of the named tasks, or of all live tasks when none are named."""
    sends: list[Send] = []
    if not call.reconcile.tasks:
        for task in framework.tasks.values():
            sends += _update(framework, _reconciled(task, now))
        for task in framework.completed:
            # Tasks of agents that are unreachable now: still the framework's, as in Mesos.
            if task.agent_id in state.unreachable_agents and task.state in (
                    mensa_pb2.TASK_UNREACHABLE, mensa_pb2.TASK_LOST):
                sends += _update(framework, _reconciled(task, now))
        return sends
    for item in call.reconcile.tasks:
        task_id = item.task_id.value
        known = framework.tasks.get(task_id) or framework.find_completed(task_id)
        if known is not None:
            sends += _update(framework, _reconciled(known, now))
            continue
        agent_id = item.agent_id.value
        if agent_id in state.recovering_agents or (not agent_id and state.recovering(now)):
            # Its agent has not re-registered with this new master yet: no answer (as Mesos
            # does while it recovers agents); the framework asks again later.
            log.info("reconciliation_deferred", framework_id=framework.framework_id, task_id=task_id)
            continue
        state_ = _unknown_task_state(state, framework, agent_id)
        sends += _update(framework, master_status(task_id, state_, now,
                                                  reason=Status.REASON_RECONCILIATION,
                                                  message="task is unknown to the master",
                                                  agent_id=agent_id or None))
    return sends


def _unknown_task_state(state: MasterState, framework: FrameworkRecord, agent_id: str) -> TaskState:
    """What the master answers for a task it does not know, by what it knows of the agent (the
    Mesos table): LOST for frameworks that are not partition-aware; else UNREACHABLE on an
    unreachable agent, GONE on a registered one, GONE_BY_OPERATOR on one an operator removed,
    UNKNOWN otherwise."""
    if not framework.partition_aware:
        return mensa_pb2.TASK_LOST
    if agent_id and agent_id in state.unreachable_agents:
        return mensa_pb2.TASK_UNREACHABLE
    if agent_id and agent_id in state.removed_agents:
        return mensa_pb2.TASK_GONE_BY_OPERATOR
    if agent_id and agent_id in state.agents:
        return mensa_pb2.TASK_GONE
    return mensa_pb2.TASK_UNKNOWN


def _reconciled(task: TaskRecord, now: float) -> mensa_pb2.TaskStatus:
    status = master_status(task.task_id, task.state, now, reason=Status.REASON_RECONCILIATION,
                           message="reconciliation", agent_id=task.agent_id)
    latest = task.latest
    if latest is not None and latest.HasField("healthy"):
        status.healthy = latest.healthy
    return status


def _update(framework: FrameworkRecord, status: mensa_pb2.TaskStatus) -> list[Send]:
    event = Event(type=Event.UPDATE)
    event.update.status.CopyFrom(status)
    event.update.status.ClearField("uuid")
    return [Send(framework.peer, internal_pb2.Envelope(event=event))]


def message(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """MESSAGE: forwards opaque data towards an executor on an agent (no delivery guarantee)."""
    msg = call.message
    agent = state.agents.get(msg.agent_id.value)
    if agent is None:
        return [state.reject(framework.peer, f"MESSAGE for unknown agent {msg.agent_id.value!r}",
                             refused="call:MESSAGE", code=ErrorCode.STALE)]
    out = internal_pb2.FrameworkToExecutor(data=msg.data)
    out.agent_id.value = agent.agent_id
    out.framework_id.value = framework.framework_id
    out.executor_id.CopyFrom(msg.executor_id)
    return [Send(agent.peer, internal_pb2.Envelope(framework_to_executor=out))]
