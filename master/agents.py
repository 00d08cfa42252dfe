"""Agents joining and leaving: registration, re-registration, removal (pure).

``register_agent`` admits an agent, or re-attaches a known one, and merges the tasks it reports
with the master's books (``reconcile_agent_tasks``); ``remove_agent`` takes one out of the
cluster (its offers rescinded, its tasks lost, every framework told). Functions of the master's
state, like ``calls.py`` is for scheduler calls.
"""

from __future__ import annotations

import structlog

from mensa.master.operator import apply_reservations
from mensa.master.records import AgentRecord, FrameworkRecord, Peer, TaskRecord, is_terminal
from mensa.master.state import MAX_REMOVED_AGENTS, Event, MasterState, Send
from mensa.master.validation import validate_id
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import ResourceError, Resources

log = structlog.get_logger(__name__)


def register_agent(
    state: MasterState, peer: Peer, msg: internal_pb2.RegisterAgent, now: float
) -> list[Send]:
    info = msg.agent_info
    if not info.hostname:
        return [state.reject(peer, "agent_info.hostname must not be empty", refused="register_agent")]
    try:
        total = Resources.from_proto(info.resources)
    except ResourceError as exc:
        return [state.reject(peer, f"agent resources are invalid: {exc}", refused="register_agent")]
    requested_id = info.id.value if info.HasField("id") else ""
    if requested_id:
        error = validate_id("agent", requested_id)
        if error:
            return [state.reject(peer, error, refused="register_agent")]
        if requested_id in state.removed_agents:
            log.warning("removed_agent_refused", agent_id=requested_id)
            shutdown = internal_pb2.ShutdownAgent(
                message=f"agent {requested_id} was removed from the cluster; register anew"
            )
            return [Send(peer, internal_pb2.Envelope(shutdown_agent=shutdown))]
    elif peer in state.peer_agent:
        # A retried first registration whose reply crossed it: answer it again.
        return [registered_reply(state, state.agents[state.peer_agent[peer]])]

    if requested_id and requested_id in state.reservations:
        total, applied = apply_reservations(total, state.reservations[requested_id])
        if applied != state.reservations[requested_id]:
            log.warning("reservations_dropped", agent_id=requested_id,
                        dropped=str(state.reservations[requested_id] - applied),
                        reason="the agent no longer has the resources")
            state.reservations[requested_id] = applied
            state.registry_dirty = True
    sends: list[Send] = []
    agent = state.agents.get(requested_id) if requested_id else None
    if agent is not None and agent.peer != peer and agent.info.hostname != info.hostname \
            and agent.missed_pings == 0:
        # Two live agents claim one id: the one registered keeps it.
        log.warning("agent_id_conflict", agent_id=requested_id, hostname=info.hostname,
                    registered_hostname=agent.info.hostname)
        return [state.reject(peer, f"agent id {requested_id} belongs to a live agent on "
                             f"{agent.info.hostname}; an agent on {info.hostname} cannot claim it",
                             refused="register_agent")]
    if agent is not None:
        sends += rescind_agent_offers(state, agent, now)
        state.allocator.remove_agent(agent.agent_id)
        state.peer_agent.pop(agent.peer, None)
        agent.peer = peer
        if agent.info.hostname != info.hostname or list(agent.info.resources) != list(info.resources):
            state.registry_dirty = True
        agent.info.CopyFrom(info)
        agent.total = total
        agent.reregistered_at = now
        event = "agent_reregistered"
    else:
        agent_id = requested_id or state._new_id("agent")
        agent = AgentRecord(agent_id, peer, mensa_pb2.AgentInfo(), total, registered_at=now)
        agent.info.CopyFrom(info)
        state.agents[agent_id] = agent
        if not requested_id:
            event = "agent_registered"
            state.registry_dirty = True
        elif state.recovering_agents.pop(requested_id, None) is not None:
            event = "agent_reregistered"  # known from the registry: re-registered after failover
            agent.reregistered_at = now
        elif state.unreachable_agents.pop(requested_id, None) is not None:
            event = "agent_reregistered_after_unreachable"
            agent.reregistered_at = now
            state.registry_dirty = True
        else:
            event = "agent_readmitted"  # unknown to the registry (it was lost or reset)
            state.registry_dirty = True
    agent.info.id.value = agent.agent_id
    agent.http_port = msg.http_port or info.port
    agent.ip = msg.advertise_ip
    agent.version = msg.version
    agent.missed_pings = 0
    agent.awaiting_pong = False
    agent.last_seen = now
    agent.next_ping_at = now + state.config.agent_ping_timeout
    state.peer_agent[peer] = agent.agent_id

    sends += reconcile_agent_tasks(state, agent, msg, now)
    allocated: dict[str, Resources] = {}
    for framework_id, task_id in agent.tasks:
        task = state.frameworks[framework_id].tasks[task_id]  # Live by construction.
        if not task.released:
            allocated[framework_id] = allocated.get(framework_id, Resources.empty()) + task.resources
    state.allocator.add_agent(agent.agent_id, total, allocated)
    state.allocation_pending = True
    log.info(event, agent_id=agent.agent_id, hostname=info.hostname, resources=str(total),
             tasks=len(agent.tasks))
    sends.append(registered_reply(state, agent))
    return sends

def registered_reply(
    state: MasterState, agent: AgentRecord
) -> Send:
    reply = internal_pb2.AgentRegistered(
        ping_interval_seconds=state.config.agent_ping_timeout,
        ping_timeout_seconds=state.config.agent_silence_timeout,
    )
    reply.agent_id.value = agent.agent_id
    reply.master_info.CopyFrom(state.config.master_info)
    return Send(agent.peer, internal_pb2.Envelope(agent_registered=reply))

def reconcile_agent_tasks(
    state: MasterState, agent: AgentRecord, msg: internal_pb2.RegisterAgent, now: float
) -> list[Send]:
    """Merges the tasks an agent reports with what the master knows of that agent.

    Runs while the agent is out of the allocator (its books are rebuilt from ``agent.tasks``
    afterwards), so only live, unreleased tasks may stay in ``agent.tasks``.
    """
    sends: list[Send] = []
    infos = {f.id.value: f for f in msg.frameworks if f.HasField("id")}
    reported: set[tuple[str, str]] = set()
    shut_down: set[str] = set()
    for task in msg.tasks:
        framework_id, task_id = task.framework_id.value, task.task_id.value
        if not framework_id or validate_id("task", task_id):
            log.warning("reported_task_ignored", agent_id=agent.agent_id, task_id=task_id)
            continue
        framework = state.frameworks.get(framework_id)
        if framework is None:
            if framework_id in state.completed_frameworks:
                if framework_id not in shut_down:
                    shut_down.add(framework_id)
                    sd = internal_pb2.ShutdownFramework()
                    sd.framework_id.value = framework_id
                    sends.append(Send(agent.peer, internal_pb2.Envelope(shutdown_framework=sd)))
                continue
            framework = recover_framework(state, framework_id, infos.get(framework_id), now)
        record = framework.tasks.get(task_id)
        done = framework.find_completed(task_id) if record is None else None
        if (done is not None and done.agent_id == agent.agent_id
                and done.state == mensa_pb2.TASK_UNREACHABLE and not is_terminal(task.state)):
            # Its agent was unreachable and is back: a partition-aware framework gets it again.
            sends += revive_task(state, agent, framework, done, task, now)
            reported.add((framework_id, task_id))
            continue
        owner = record or done
        if (owner is not None and owner.agent_id != agent.agent_id) or (
                done is not None and not is_terminal(task.state)):
            # The master places this id elsewhere, or already told the framework it ended:
            # the agent's copy is not the framework's task.
            log.warning("reported_task_conflicts", agent_id=agent.agent_id, task_id=task_id,
                        framework_id=framework_id, state=mensa_pb2.TaskState.Name(task.state))
            if not is_terminal(task.state):
                sends.append(kill_message(state, agent, framework_id, task_id))
            continue
        if done is not None:
            continue  # Finished and known: its last update is forwarded from `completed`.
        key = (framework_id, task_id)
        if record is None:
            record = record_reported_task(state, agent, framework, task, now)
            if is_terminal(task.state):
                # Ended while the master was away; its final update is still unacknowledged
                # and will be resent by the agent and forwarded from `completed`.
                record.released = True
                framework.complete(record)
                continue
        elif not is_terminal(record.state) and is_terminal(task.state):
            record.state = task.state
            record.released = True
            agent.tasks.discard(key)
            continue
        elif not is_terminal(record.state):
            record.state = task.state
        if not record.released:
            reported.add(key)
            agent.tasks.add(key)
    # Tasks the master thinks run there but the agent does not report.
    for key in list(agent.tasks - reported):
        framework_id, task_id = key
        owner_fw = state.frameworks.get(framework_id)
        record = owner_fw.tasks.get(task_id) if owner_fw else None
        if owner_fw is None or record is None:
            agent.tasks.discard(key)
            continue
        if record.state == mensa_pb2.TASK_STAGING:
            # The RunTask may have crossed the registration; sending it again is harmless.
            run = internal_pb2.RunTask()
            run.framework.CopyFrom(owner_fw.info)
            run.task.CopyFrom(record.info)
            sends.append(Send(agent.peer, internal_pb2.Envelope(run_task=run)))
            continue
        sends += state.transition(
            record, mensa_pb2.TASK_LOST, now,
            reason=mensa_pb2.TaskStatus.REASON_AGENT_RESTARTED,
            message="task was not found on the re-registered agent",
        )
        owner_fw.complete(record)
    return sends

def record_reported_task(
    state: MasterState, agent: AgentRecord, framework: FrameworkRecord, task: mensa_pb2.Task, now: float
) -> TaskRecord:
    """Creates the master's record of a task it learns of from an agent's report."""
    try:
        resources = Resources.from_proto(task.resources)
    except ResourceError:
        resources = Resources.empty()
    info = mensa_pb2.TaskInfo(name=task.name)
    info.task_id.CopyFrom(task.task_id)
    info.agent_id.value = agent.agent_id
    info.resources.extend(task.resources)
    allocation_roles = {r.allocation_info.role for r in task.resources if r.HasField("allocation_info")}
    record = TaskRecord(task.task_id.value, framework.framework_id, agent.agent_id, info,
                        resources, state=task.state, launched_at=now,
                        role=next(iter(allocation_roles)) if len(allocation_roles) == 1 else None)
    record.statuses.extend(task.statuses)
    framework.tasks[record.task_id] = record
    return record

def kill_message(
    state: MasterState, agent: AgentRecord, framework_id: str, task_id: str
) -> Send:
    kill = internal_pb2.KillTask()
    kill.framework_id.value = framework_id
    kill.task_id.value = task_id
    return Send(agent.peer, internal_pb2.Envelope(kill_task=kill))

def recover_framework(
    state: MasterState, framework_id: str, info: mensa_pb2.FrameworkInfo | None, now: float
) -> FrameworkRecord:
    """Creates a placeholder for a framework known only from an agent's report."""
    framework_info = mensa_pb2.FrameworkInfo(name="(recovered)")
    if info is not None:
        framework_info.CopyFrom(info)
    framework_info.id.value = framework_id
    record = FrameworkRecord(framework_id, framework_info, None, registered_at=now,
                             connected=False, recovered=True, last_seen=now)
    state.frameworks[framework_id] = record
    state.allocator.add_framework(framework_id, record.roles, active=False)
    log.info("framework_recovered", framework_id=framework_id)
    return record

def mark_unreachable(
    state: MasterState, agent: AgentRecord, now: float, reason: str
) -> list[Send]:
    """Marks a silent agent unreachable: rescinds its offers, reports its tasks UNREACHABLE
    (partition-aware frameworks) or LOST, tells every framework. It may come back (readmitted;
    see ``reconcile_agent_tasks``)."""
    log.warning("agent_unreachable", agent_id=agent.agent_id, hostname=agent.hostname, reason=reason)
    state.counters.agents_removed += 1
    sends = rescind_agent_offers(state, agent, now)
    for framework_id, task_id in sorted(agent.tasks):
        framework = state.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework else None
        if task is None or framework is None:
            continue
        lost = mensa_pb2.TASK_UNREACHABLE if framework.partition_aware else mensa_pb2.TASK_LOST
        sends += state.transition(task, lost, now, reason=mensa_pb2.TaskStatus.REASON_AGENT_REMOVED,
                                 message=f"agent {agent.agent_id} is unreachable: {reason}")
        framework.complete(task)
    agent.tasks.clear()
    state.allocator.remove_agent(agent.agent_id)
    del state.agents[agent.agent_id]
    state.peer_agent.pop(agent.peer, None)
    remember_unreachable(state, agent.agent_id, agent.info, now)
    return sends + agent_lost_events(state, agent.agent_id)


def recovery_timed_out(state: MasterState, now: float) -> list[Send]:
    """Marks unreachable every agent of the registry that did not re-register in time."""
    sends: list[Send] = []
    for agent_id, entry in sorted(state.recovering_agents.items()):
        log.warning("agent_not_reregistered", agent_id=agent_id, hostname=entry.info.hostname,
                    timeout=state.config.agent_reregister_timeout)
        remember_unreachable(state, agent_id, entry.info, now)
        sends += agent_lost_events(state, agent_id)
    state.recovering_agents.clear()
    return sends


def remember_unreachable(state: MasterState, agent_id: str, info: mensa_pb2.AgentInfo, now: float) -> None:
    state.unreachable_agents[agent_id] = (now, info)
    while len(state.unreachable_agents) > MAX_REMOVED_AGENTS:
        state.unreachable_agents.popitem(last=False)
    state.registry_dirty = True


def agent_lost_events(state: MasterState, agent_id: str) -> list[Send]:
    """A FAILURE event about ``agent_id`` for every connected framework."""
    failure = Event(type=Event.FAILURE)
    failure.failure.agent_id.value = agent_id
    return [Send(framework.peer, internal_pb2.Envelope(event=failure))
            for framework in state.frameworks.values()
            if framework.connected and framework.peer is not None]


def revive_task(
    state: MasterState, agent: AgentRecord, framework: FrameworkRecord, done: TaskRecord,
    reported: mensa_pb2.Task, now: float
) -> list[Send]:
    """Brings back a task that was UNREACHABLE now that its agent re-registered with it."""
    framework.uncomplete(done.task_id)
    done.released = False
    done.terminal_uuid = None
    framework.tasks[done.task_id] = done
    agent.tasks.add((framework.framework_id, done.task_id))
    log.info("task_reachable_again", framework_id=framework.framework_id, task_id=done.task_id,
             agent_id=agent.agent_id, state=mensa_pb2.TaskState.Name(reported.state))
    return state.transition(done, reported.state, now,
                            reason=mensa_pb2.TaskStatus.REASON_AGENT_REREGISTERED,
                            message=f"agent {agent.agent_id} re-registered")


def rescind_agent_offers(
    state: MasterState, agent: AgentRecord, now: float
) -> list[Send]:
    return [s for offer in state.offers.for_agent(agent.agent_id)
            for s in state.rescind(offer.offer_id, now)]
