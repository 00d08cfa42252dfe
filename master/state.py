"""The master's state machine: agents, frameworks, tasks and offers (pure).

``MasterState`` takes what arrives (``handle(Received(peer, envelope), now)``), the passage of
time (``tick(now)``) and allocation passes (``allocate(now)``), and returns the messages to send
as ``Send(peer, envelope)`` commands. It never touches a socket or reads the clock; the shell in
``master/service.py`` does both. Scheduler calls are handled in ``master/calls.py``.

Invariants (tests check them): every unit of an agent's resources is free, offered to exactly one
framework, or used by exactly one live task; an offer id is used at most once; task ids are unique
within a framework; only terminal updates release resources, and only once.

Usage::

    state = MasterState(MasterConfig(master_info=info))
    sends = state.handle(Received(peer, envelope), now=time.time())
    sends += state.allocate(now)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from mensa.master.allocator import Allocator
from mensa.master.metrics import MasterMetrics, message_kind
from mensa.master.offers import OfferBook, Retired
from mensa.master.records import (
    AgentRecord,
    ConnectionPeer,
    FrameworkRecord,
    Peer,
    Reason,
    TaskRecord,
    TaskState,
    is_terminal,
)
from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2
from mensa.proto.resources import Resources

log = structlog.get_logger(__name__)

Event = scheduler_pb2.Event
ErrorCode = internal_pb2.Error
MAX_REMOVED_AGENTS = 10_000


@dataclass(frozen=True, slots=True)
class Send:
    """Command: deliver ``envelope`` to ``peer``."""

    peer: Peer
    envelope: internal_pb2.Envelope


@dataclass(frozen=True, slots=True)
class Received:
    """Event: a decoded envelope arrived from ``peer``."""

    peer: Peer
    envelope: internal_pb2.Envelope


@dataclass(frozen=True, slots=True)
class PeerUnreachable:
    """Event: a message to ``peer`` could not be delivered (it is gone)."""

    peer: Peer


@dataclass(slots=True)
class MasterConfig:
    """Settings of the state machine (flags of ``mensa master``)."""

    master_info: mensa_pb2.MasterInfo
    agent_ping_timeout: float = 15.0
    max_agent_ping_timeouts: int = 5
    heartbeat_interval: float = 15.0
    # A framework silent for this many heartbeat intervals is considered disconnected.
    framework_silence_intervals: float = 3.0
    offer_timeout: float | None = None
    # When this master was elected (or started, standalone): agents known from the registry have
    # until `started_at + agent_reregister_timeout` to re-register before they are marked
    # unreachable, and recovered frameworks that long plus their failover timeout to re-subscribe.
    started_at: float = 0.0
    agent_reregister_timeout: float = 600.0

    @property
    def agent_silence_timeout(self) -> float:
        """Seconds an agent waits without hearing from the master before registering again."""
        return self.agent_ping_timeout * (self.max_agent_ping_timeouts + 1)

    @property
    def recovery_window(self) -> float:
        """Seconds after election within which agents of the previous leader re-register."""
        return self.agent_reregister_timeout


@dataclass(slots=True)
class Counters:
    """Monotonic counters for /metrics and logs."""

    offers_sent: int = 0
    offers_declined: int = 0
    offers_accepted: int = 0
    offers_rescinded: int = 0
    tasks_launched: int = 0
    tasks_invalid: int = 0
    status_updates: int = 0
    invalid_messages: int = 0
    agents_removed: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class MasterState:
    """All the master knows, and the rules for changing it."""

    def __init__(self, config: MasterConfig, allocator: Allocator | None = None) -> None:
        self.config = config
        self.master_id = config.master_info.id
        self.allocator = allocator or Allocator()
        self.offers = OfferBook()
        self.agents: dict[str, AgentRecord] = {}
        self.frameworks: dict[str, FrameworkRecord] = {}
        self.completed_frameworks: OrderedDict[str, FrameworkRecord] = OrderedDict()
        self.removed_agents: OrderedDict[str, float] = OrderedDict()
        # From the registry: admitted agents that have not re-registered with this master yet.
        self.recovering_agents: dict[str, internal_pb2.Registry.Agent] = {}
        # Agents marked unreachable (missed pings, or never re-registered): since when, and their
        # info. They may come back and are readmitted.
        self.unreachable_agents: OrderedDict[str, tuple[float, mensa_pb2.AgentInfo]] = OrderedDict()
        # Dynamic reservations per agent (RESERVE operations, /reserve), applied to the agent's
        # total whenever it registers.
        self.reservations: dict[str, Resources] = {}
        # Set when something the registry holds changed; the shell persists before it sends.
        self.registry_dirty = False
        self.peer_agent: dict[Peer, str] = {}
        self.peer_framework: dict[Peer, str] = {}
        self.counters = Counters()
        self.metrics = MasterMetrics()
        self.allocation_pending = False
        self._next = {"framework": 0, "agent": 0, "offer": 0}

    def recovering(self, now: float) -> bool:
        """True while agents known from the registry have still to re-register."""
        return bool(self.recovering_agents)

    # -- ids ---------------------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        n = self._next[kind]
        self._next[kind] = n + 1
        if kind == "framework":
            return f"{self.master_id}-{n:04d}"
        return f"{self.master_id}-{'S' if kind == 'agent' else 'O'}{n}"

    # -- entry points ------------------------------------------------------------------------

    def handle(self, event: Received | PeerUnreachable, now: float) -> list[Send]:
        """Applies one event; returns the messages to send."""
        if isinstance(event, PeerUnreachable):
            return self._peer_unreachable(event.peer, now)
        envelope = event.envelope
        self.metrics.message_received(message_kind(envelope))
        kind = envelope.WhichOneof("message")
        if kind == "call":
            from mensa.master.calls import handle_call

            return handle_call(self, event.peer, envelope.call, now)
        if kind == "pong":
            return self._pong(event.peer, now)
        if kind == "register_agent":
            from mensa.master.agents import register_agent

            return register_agent(self, event.peer, envelope.register_agent, now)
        if kind == "status_update":
            return self._status_update(event.peer, envelope.status_update, now)
        if kind == "master_info_request":
            reply = internal_pb2.MasterInfoResponse(leading=True)
            reply.master_info.CopyFrom(self.config.master_info)
            reply.leader.CopyFrom(self.config.master_info)
            return [Send(event.peer, internal_pb2.Envelope(master_info_response=reply))]
        if kind == "error":
            log.warning("peer_reported_error", code=envelope.error.code, message=envelope.error.message)
            return []
        return [self.reject(event.peer, f"a master does not take {kind} messages", refused=str(kind))]

    def reject(
        self,
        peer: Peer,
        message: str,
        *,
        code: internal_pb2.Error.Code = ErrorCode.BAD_REQUEST,
        refused: str = "",
    ) -> Send:
        """Returns the error reply for a refused message, and logs it."""
        self.counters.invalid_messages += 1
        log.warning("message_refused", reason=message, refused=refused, code=ErrorCode.Code.Name(code))
        err = internal_pb2.Error(code=code, message=message, refused=refused)
        return Send(peer, internal_pb2.Envelope(error=err))

    # -- agents ------------------------------------------------------------------------------

    def _pong(self, peer: Peer, now: float) -> list[Send]:
        agent_id = self.peer_agent.get(peer)
        if agent_id is not None:
            agent = self.agents[agent_id]
            agent.awaiting_pong = False
            agent.missed_pings = 0
            agent.last_seen = now
            return []
        framework_id = self.peer_framework.get(peer)
        if framework_id is not None:
            self.frameworks[framework_id].last_seen = now
            return []
        return [self.reject(peer, "pong from a peer that is neither a registered agent nor a "
                            "subscribed framework", code=ErrorCode.NOT_REGISTERED, refused="pong")]

    def rescind(self, offer_id: str, now: float, refuse_seconds: float | None = None) -> list[Send]:
        """Withdraws an outstanding offer, returns its resources, tells the framework."""
        offer = self.offers.retire(offer_id, Retired.RESCINDED)
        self.counters.offers_rescinded += 1
        self.allocator.recover(offer.agent_id, offer.framework_id, offer.resources, refuse_seconds, now,
                               role=offer.role)
        self.allocation_pending = True
        framework = self.frameworks.get(offer.framework_id)
        if framework is None or not framework.connected or framework.peer is None:
            return []
        event = Event(type=Event.RESCIND)
        event.rescind.offer_id.value = offer_id
        return [Send(framework.peer, internal_pb2.Envelope(event=event))]

    # -- status updates ----------------------------------------------------------------------

    def _status_update(self, peer: Peer, msg: internal_pb2.StatusUpdate, now: float) -> list[Send]:
        agent_id = self.peer_agent.get(peer)
        if agent_id is None:
            return [self.reject(peer, "status update from an agent that is not registered; "
                                "register first", code=ErrorCode.NOT_REGISTERED, refused="status_update")]
        status = msg.status
        framework_id, task_id = msg.framework_id.value, status.task_id.value
        if not status.uuid:
            return [self.reject(peer, f"status update for task {task_id!r} has no uuid",
                                refused="status_update")]
        framework = self.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework else None
        if framework is not None and task is None:
            task = framework.find_completed(task_id)
            if task is not None and task.agent_id == agent_id:
                # A retried update whose acknowledgement got lost: let the framework ack again.
                return self._forward(framework, status, agent_id)
        if framework is None or task is None:
            return [self.reject(peer, f"status update for unknown task {task_id!r} of framework "
                                f"{framework_id!r}", code=ErrorCode.UNKNOWN_TASK, refused="status_update")]
        if task.agent_id != agent_id:
            return [self.reject(peer, f"task {task_id!r} does not run on agent {agent_id}",
                                code=ErrorCode.UNKNOWN_TASK, refused="status_update")]
        self.counters.status_updates += 1
        status.agent_id.value = agent_id
        latest = msg.latest_state if msg.HasField("latest_state") else status.state
        if (task.running_at is None and mensa_pb2.TASK_RUNNING in (status.state, latest)
                and task.state != mensa_pb2.TASK_RUNNING):
            # The first word that a task this master launched runs (one it learned of running
            # from an agent's report is not timed).
            task.running_at = now
            self.metrics.launch_to_running.observe(now - task.launched_at)
        if not is_terminal(task.state):
            task.state = latest
        if not task.statuses or task.statuses[-1].uuid != status.uuid:
            task.statuses.append(status)
        if is_terminal(status.state):
            task.terminal_uuid = status.uuid
        if is_terminal(task.state):
            self._release(task, now)
        return self._forward(framework, status, agent_id)

    def _forward(self, framework: FrameworkRecord, status: mensa_pb2.TaskStatus, agent_id: str) -> list[Send]:
        if not framework.connected or framework.peer is None:
            return []  # The agent retries until the framework is back and acknowledges.
        event = Event(type=Event.UPDATE)
        event.update.status.CopyFrom(status)
        event.update.status.agent_id.value = agent_id
        return [Send(framework.peer, internal_pb2.Envelope(event=event))]

    def _release(self, task: TaskRecord, now: float) -> None:
        """Returns a terminal task's resources to the allocator (once)."""
        if task.released:
            return
        task.released = True
        self.metrics.task_completed(mensa_pb2.TaskState.Name(task.state))
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.discard((task.framework_id, task.task_id))
        if self.allocator.has_agent(task.agent_id):
            self.allocator.recover(task.agent_id, task.framework_id, task.resources, None, now,
                                   role=task.role)
            self.allocation_pending = True

    def transition(
        self,
        task: TaskRecord,
        state: TaskState,
        now: float,
        *,
        reason: Reason,
        message: str,
    ) -> list[Send]:
        """Moves a task to ``state`` on the master's own authority and tells its framework.

        Master-generated updates carry no uuid: they need no acknowledgement.
        """
        task.state = state
        status = master_status(task.task_id, state, now, reason=reason, message=message,
                               agent_id=task.agent_id)
        task.statuses.append(status)
        if is_terminal(state) or state == mensa_pb2.TASK_UNREACHABLE:
            self._release(task, now)
        framework = self.frameworks.get(task.framework_id)
        if framework is None:
            return []
        return self._forward(framework, status, task.agent_id)

    # -- time --------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Send]:
        """Pings agents, heartbeats frameworks, and applies every timeout that has passed."""
        sends: list[Send] = []
        cfg = self.config
        for agent in list(self.agents.values()):
            if now < agent.next_ping_at:
                continue
            if agent.awaiting_pong:
                agent.missed_pings += 1
                log.info("agent_ping_missed", agent_id=agent.agent_id, missed=agent.missed_pings)
                if agent.missed_pings >= cfg.max_agent_ping_timeouts:
                    from mensa.master.agents import mark_unreachable

                    sends += mark_unreachable(
                        self, agent, now, f"missed {agent.missed_pings} pings of {cfg.agent_ping_timeout}s"
                    )
                    continue
            agent.awaiting_pong = True
            agent.next_ping_at = now + cfg.agent_ping_timeout
            ping = internal_pb2.Ping(timeout_seconds=cfg.agent_silence_timeout)
            sends.append(Send(agent.peer, internal_pb2.Envelope(ping=ping)))
        if self.recovering_agents and now >= cfg.started_at + cfg.agent_reregister_timeout:
            from mensa.master.agents import recovery_timed_out

            sends += recovery_timed_out(self, now)
        silence = cfg.heartbeat_interval * cfg.framework_silence_intervals
        for framework in list(self.frameworks.values()):
            if framework.connected:
                if now - framework.last_seen > silence and not isinstance(framework.peer, ConnectionPeer):
                    sends += self.disconnect_framework(framework, now, f"silent for {silence:g}s")
                elif now >= framework.next_heartbeat_at and framework.peer is not None:
                    framework.next_heartbeat_at = now + cfg.heartbeat_interval
                    sends.append(Send(framework.peer, internal_pb2.Envelope(
                        event=Event(type=Event.HEARTBEAT))))
            elif framework.recovered:
                # Known only from agents' reports: it has the recovery window plus its own
                # failover timeout to re-subscribe.
                if framework.disconnected_at is not None:
                    # Disconnected before the failover: its timeout runs from then.
                    deadline = framework.disconnected_at + framework.info.failover_timeout
                else:
                    deadline = (max(framework.registered_at, self.config.started_at)
                                + cfg.recovery_window + framework.info.failover_timeout)
                if now >= deadline:
                    from mensa.master.calls import remove_framework

                    log.info("recovered_framework_timed_out", framework_id=framework.framework_id)
                    sends += remove_framework(self, framework, now, "did not re-subscribe")
            elif (framework.disconnected_at is not None
                  and now - framework.disconnected_at >= framework.info.failover_timeout):
                from mensa.master.calls import remove_framework

                log.info("framework_failover_timed_out", framework_id=framework.framework_id,
                         failover_timeout=framework.info.failover_timeout)
                sends += remove_framework(self, framework, now, "failover timeout expired")
        if cfg.offer_timeout is not None:
            for offer in self.offers.older_than(now - cfg.offer_timeout):
                log.info("offer_expired", offer_id=offer.offer_id, framework_id=offer.framework_id)
                sends += self.rescind(offer.offer_id, now)
        return sends

    def disconnect_framework(self, framework: FrameworkRecord, now: float, reason: str) -> list[Send]:
        """Marks a framework disconnected: its offers are rescinded, its failover timer starts."""
        log.warning("framework_disconnected", framework_id=framework.framework_id, reason=reason,
                    failover_timeout=framework.info.failover_timeout)
        sends = [s for offer in self.offers.for_framework(framework.framework_id)
                 for s in self.rescind(offer.offer_id, now)]
        framework.connected = False
        framework.disconnected_at = now
        self.registry_dirty = True  # its failover timeout must survive a failover
        if framework.peer is not None:
            self.peer_framework.pop(framework.peer, None)
        framework.peer = None
        self.allocator.deactivate_framework(framework.framework_id)
        return sends

    def _peer_unreachable(self, peer: Peer, now: float) -> list[Send]:
        framework_id = self.peer_framework.get(peer)
        if framework_id is not None:
            return self.disconnect_framework(self.frameworks[framework_id], now, "connection lost")
        return []  # Agents are judged by their pings alone.

    # -- allocation --------------------------------------------------------------------------

    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Send]:
        """Runs an allocation pass and returns one OFFERS event per framework that got offers."""
        self.allocation_pending = False
        by_framework: dict[str, scheduler_pb2.Event] = {}
        for allocation in self.allocator.allocate(now, agent_ids):
            framework = self.frameworks.get(allocation.framework_id)
            agent = self.agents.get(allocation.agent_id)
            if framework is None or agent is None or framework.peer is None:
                # Should not happen (inactive frameworks get nothing); give the resources back.
                self.allocator.recover(allocation.agent_id, allocation.framework_id,
                                       allocation.resources, None, now, role=allocation.role)
                continue
            offer_id = self._new_id("offer")
            self.offers.add(offer_id, framework_id=framework.framework_id, agent_id=agent.agent_id,
                            resources=allocation.resources, now=now, role=allocation.role)
            event = by_framework.get(framework.framework_id)
            if event is None:
                event = by_framework[framework.framework_id] = Event(type=Event.OFFERS)
            offer = event.offers.offers.add()
            offer.id.value = offer_id
            offer.framework_id.value = framework.framework_id
            offer.agent_id.value = agent.agent_id
            offer.hostname = agent.hostname
            offer.resources.extend(allocation.resources.to_proto(allocation_role=allocation.role))
            dynamic = self.reservations.get(agent.agent_id)
            if dynamic is not None:
                mark_dynamic(offer.resources, dynamic)
            offer.attributes.extend(agent.info.attributes)
            offer.allocation_info.role = allocation.role
            self.counters.offers_sent += 1
        sends = []
        for framework_id, event in by_framework.items():
            peer = self.frameworks[framework_id].peer
            log.debug("offers_sent", framework_id=framework_id, count=len(event.offers.offers))
            sends.append(Send(peer, internal_pb2.Envelope(event=event)))
        return sends


def master_status(
    task_id: str,
    state: TaskState,
    now: float,
    *,
    reason: Reason,
    message: str,
    agent_id: str | None = None,
) -> mensa_pb2.TaskStatus:
    """Returns a TaskStatus generated by the master (no uuid, source SOURCE_MASTER)."""
    status = mensa_pb2.TaskStatus(
        state=state,
        reason=reason,
        message=message,
        timestamp=now,
        source=mensa_pb2.TaskStatus.SOURCE_MASTER,
    )
    status.task_id.value = task_id
    if agent_id:
        status.agent_id.value = agent_id
    return status


def mark_dynamic(resources: Iterable[mensa_pb2.Resource], dynamic: Resources) -> None:
    """Marks as DYNAMIC the reservations of ``resources`` that ``dynamic`` (an agent's dynamic
    reservations) holds by name and role; the rest stay STATIC."""
    held = dynamic.keys()
    for resource in resources:
        for reservation in resource.reservations:
            if (resource.name, reservation.role) in held:
                reservation.type = mensa_pb2.Resource.ReservationInfo.DYNAMIC
