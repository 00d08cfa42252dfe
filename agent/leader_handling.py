"""How the agent registers with the leading master and follows it (pure; ``AgentState``
delegates here).

Registration (``registration.MasterLink``): RegisterAgent on the first Tick, retried with
backoff until AgentRegistered; again when the master falls silent for ``ping_timeout``, answers
NOT_REGISTERED, or the connection is re-established. It lists every task the agent still has.
A new leader (``LeaderChanged``) is registered with after a jittered delay; while none leads,
nothing is sent. A master that answers NOT_LEADER naming the leader makes the agent switch to it
(``SwitchMaster``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from mensa.agent.events import CheckpointAgent, LeaderChanged, SendToMaster, SwitchMaster
from mensa.agent.registration import register_envelope
from mensa.proto import internal_pb2

if TYPE_CHECKING:
    from mensa.agent.state import AgentState

log = structlog.get_logger("mensa.agent.state")

Error = internal_pb2.Error


def on_tick(state: AgentState) -> None:
    if state.stopping:
        return
    if state.link.master_silent(state._now):
        silent = round(state._now - state.link.last_heard, 3)
        log.warning("master_lost", agent_id=state.agent_id, silent_seconds=silent)
        state.link.lose()
    if state.link.registration_due(state._now):
        register(state)


def register_now(state: AgentState) -> None:
    """Registers again at once (unless one just went out while unregistered)."""
    if not state.stopping and state.link.may_register_now(state._now):
        state.link.lose()
        register(state)


def register(state: AgentState) -> None:
    records = [r for r in state.tasks.values() if not r.silent]
    frameworks = {r.framework_id: r.framework for r in records}
    tasks = [
        r.to_proto(state.agent_id, state.updates.head(*key))
        for key, r in state.tasks.items()
        if not r.silent
    ]
    envelope = register_envelope(
        hostname=state.config.hostname,
        resources=state.config.resources,
        attributes=state.config.attributes,
        http_port=state.config.http_port,
        advertise_ip=state.config.advertise_ip,
        version=state.config.version,
        agent_id=state.agent_id,
        tasks=tasks,
        frameworks=frameworks.values(),
    )
    state._out.append(SendToMaster(envelope))
    state.link.attempted(state._now)
    log.info("registration_sent", agent_id=state.agent_id, tasks=len(tasks))


def on_registered(state: AgentState, reply: internal_pb2.AgentRegistered) -> None:
    agent_id = reply.agent_id.value
    if not agent_id:
        log.warning("registration_reply_ignored", reason="no agent id")
        return
    if state.agent_id and state.agent_id != agent_id:
        log.warning("agent_id_changed", old_agent_id=state.agent_id, agent_id=agent_id)
    changed = agent_id != state.agent_id
    if not state.link.accept(reply, state._now):
        log.debug("duplicate_registration_reply", agent_id=agent_id)
        return
    if changed and state.config.checkpoint:
        state._out.append(CheckpointAgent(agent_id))
    log.info(
        "agent_registered",
        agent_id=agent_id,
        ping_timeout=state.link.ping_timeout,
        pending_updates=len(state.updates),
    )
    state.updates.retry_now(state._now)


def on_error(state: AgentState, error: internal_pb2.Error) -> None:
    if error.code == Error.NOT_REGISTERED:
        log.info("master_does_not_know_agent", agent_id=state.agent_id, message=error.message)
        register_now(state)
        return
    if error.code == Error.NOT_LEADER:
        on_not_leader(state, error)
        return
    code = Error.Code.Name(error.code) if error.code in Error.Code.values() else error.code
    # UNKNOWN_TASK answers a status update: it stays queued and is retried by backoff.
    log.warning(
        "master_reported_error", code=code, message=error.message, refused=error.refused
    )


def on_leader_changed(state: AgentState, event: LeaderChanged) -> None:
    if event.leader is None:
        state.link.leader_changed(False, state._now, 0.0)
        log.warning("leader_unknown", agent_id=state.agent_id, tasks=len(state.tasks),
                    pending_updates=len(state.updates), action="waiting for a leader")
        return
    delay = state.link.leader_changed(True, state._now, event.jitter)
    log.info("leader_changed", agent_id=state.agent_id, master_id=event.leader.id,
             leader=event.leader.zmq_endpoint or None, registration_delay=round(delay, 3))


def on_not_leader(state: AgentState, error: internal_pb2.Error) -> None:
    leader = error.leader if error.HasField("leader") else None
    log.warning("master_not_leading", agent_id=state.agent_id, message=error.message,
                leader=leader.zmq_endpoint if leader is not None else None)
    if state.link.registered:
        state.link.lose()
    else:
        # Asked a master that does not (yet) lead: try again soon, never after a longer and
        # longer backoff (the leader, or the detector's news of it, is about to be there).
        state.link.not_leader(state._now)
    if leader is not None and leader.zmq_endpoint:
        state._out.append(SwitchMaster(leader))
