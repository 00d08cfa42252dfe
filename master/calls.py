"""Scheduler calls: what the master does with each ``Call`` a framework sends (pure).

One function per call type, each taking the state, the caller and ``now`` and returning the
messages to send (the task calls, KILL, ACKNOWLEDGE, RECONCILE and MESSAGE, are in
``task_calls.py``). Both front doors (ZeroMQ today, the HTTP scheduler API later) end up here, so a
call gets the same validation and the same answer whichever way it came in.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from mensa.master.offers import OutstandingOffer, Retired
from mensa.master.operator import by_role, forget_reservation, record_reservation, with_role
from mensa.master.records import FrameworkRecord, Peer, Reason, TaskRecord, TaskState, is_terminal
from mensa.master.state import Event, MasterState, Send, master_status
from mensa.master.task_calls import acknowledge, kill, message, reconcile
from mensa.master.validation import validate_framework_info, validate_task
from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2
from mensa.proto.resources import UNRESERVED, ResourceError, Resources

log = structlog.get_logger(__name__)

Call = scheduler_pb2.Call
Operation = mensa_pb2.Offer.Operation
Status = mensa_pb2.TaskStatus
ErrorCode = internal_pb2.Error
DEFAULT_REFUSE_SECONDS = mensa_pb2.Filters().refuse_seconds
MAX_COMPLETED_FRAMEWORKS = 100
DEFAULT_FAILOVER_TIMEOUT = 7 * 24 * 3600.0


def call_name(call_type: int) -> str:
    try:
        return str(Call.Type.Name(call_type))
    except ValueError:
        return f"UNKNOWN({call_type})"


def handle_call(state: MasterState, peer: Peer, call: scheduler_pb2.Call, now: float) -> list[Send]:
    """Validates the caller and dispatches one scheduler call."""
    name = call_name(call.type)
    if call.type == Call.SUBSCRIBE:
        return subscribe(state, peer, call, now)
    framework_id = call.framework_id.value
    framework = state.frameworks.get(framework_id) if framework_id else None
    if framework is None or not framework.connected or framework.peer != peer:
        if not framework_id:
            why = "the call carries no framework_id; SUBSCRIBE first"
        elif framework_id in state.completed_frameworks:
            why = f"framework {framework_id} has been removed"
        else:
            why = f"framework {framework_id!r} is not subscribed on this connection; SUBSCRIBE first"
        return [state.reject(peer, why, code=ErrorCode.NOT_SUBSCRIBED, refused=f"call:{name}")]
    framework.last_seen = now
    handler = _HANDLERS.get(call.type)
    if handler is None:
        return [state.reject(peer, f"call type {name} is not supported", refused=f"call:{name}")]
    bound = log.bind(framework_id=framework_id, call=name)
    bound.debug("call_received")
    return handler(state, framework, call, now)


# -- subscription ------------------------------------------------------------------------------


def subscribe(state: MasterState, peer: Peer, call: scheduler_pb2.Call, now: float) -> list[Send]:
    """SUBSCRIBE: admits a new framework, or re-attaches a known one (failover)."""
    if not call.HasField("subscribe"):
        return [state.reject(peer, "SUBSCRIBE without a subscribe message", refused="call:SUBSCRIBE")]
    info = call.subscribe.framework_info
    if not info.HasField("failover_timeout"):
        # Mesos's default of 0 tears a framework down the moment its scheduler restarts.
        info.failover_timeout = DEFAULT_FAILOVER_TIMEOUT
    error = validate_framework_info(info)
    if error:
        return [state.reject(peer, error, refused="call:SUBSCRIBE")]
    requested = info.id.value if info.HasField("id") else ""
    if call.framework_id.value and requested and call.framework_id.value != requested:
        return [state.reject(peer, "Call.framework_id and framework_info.id differ",
                             refused="call:SUBSCRIBE")]
    requested = requested or call.framework_id.value
    if requested in state.completed_frameworks:
        return [_fatal(peer, f"framework {requested} has been removed; subscribe without an id")]
    serving = state.peer_framework.get(peer)
    if serving is not None and not requested:
        requested = serving  # A retried SUBSCRIBE whose SUBSCRIBED crossed it: same framework.
    if serving is not None and serving != requested:
        return [state.reject(peer, f"this connection already serves framework {serving}",
                             refused="call:SUBSCRIBE")]

    sends: list[Send] = []
    framework = state.frameworks.get(requested) if requested else None
    if framework is not None:
        if framework.peer is not None and framework.peer != peer:
            # Another instance takes over: the old one is told to stop, as Mesos does.
            sends.append(_fatal(framework.peer, "framework failed over to another scheduler"))
            state.peer_framework.pop(framework.peer, None)
        for offer in state.offers.for_framework(framework.framework_id):
            sends += state.rescind(offer.offer_id, now)
        old_roles = framework.roles
        framework.info.CopyFrom(info)
        framework.reregistered_at = now
        framework.recovered = False
        if framework.roles != old_roles:
            state.allocator.update_framework(framework.framework_id, framework.roles)
        state.allocator.activate_framework(framework.framework_id)
        event = "framework_resubscribed"
    else:
        framework_id = requested or state._new_id("framework")
        framework = FrameworkRecord(framework_id, mensa_pb2.FrameworkInfo(), peer, registered_at=now)
        framework.info.CopyFrom(info)
        state.frameworks[framework_id] = framework
        state.allocator.add_framework(framework_id, framework.roles)
        event = "framework_subscribed"
    framework.info.id.value = framework.framework_id
    framework.peer = peer
    framework.connected = True
    framework.disconnected_at = None
    framework.last_seen = now
    framework.next_heartbeat_at = now + state.config.heartbeat_interval
    state.peer_framework[peer] = framework.framework_id
    state.registry_dirty = True  # a new framework, or a re-subscription that may change its info
    if len(call.subscribe.suppressed_roles):
        state.allocator.suppress(framework.framework_id, list(call.subscribe.suppressed_roles))
    state.allocation_pending = True
    log.info(event, framework_id=framework.framework_id, name=info.name, roles=framework.roles,
             failover_timeout=info.failover_timeout)

    subscribed = Event(type=Event.SUBSCRIBED)
    subscribed.subscribed.framework_id.value = framework.framework_id
    subscribed.subscribed.heartbeat_interval_seconds = state.config.heartbeat_interval
    subscribed.subscribed.master_info.CopyFrom(state.config.master_info)
    sends.append(Send(peer, internal_pb2.Envelope(event=subscribed)))
    return sends


def _fatal(peer: Peer, message: str) -> Send:
    """An ERROR event: the scheduler on ``peer`` should stop."""
    event = Event(type=Event.ERROR)
    event.error.message = message
    return Send(peer, internal_pb2.Envelope(event=event))


def teardown(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """TEARDOWN: kills all the framework's tasks and forgets it."""
    return remove_framework(state, framework, now, "teardown requested")


def remove_framework(
    state: MasterState, framework: FrameworkRecord, now: float, reason: str
) -> list[Send]:
    """Removes a framework: its offers go, its tasks are killed, its resources are freed."""
    framework_id = framework.framework_id
    log.info("framework_removed", framework_id=framework_id, reason=reason,
             tasks=len(framework.tasks))
    for offer in state.offers.for_framework(framework_id):
        state.offers.retire(offer.offer_id, Retired.RESCINDED)
    agents: set[str] = set()
    for task in list(framework.tasks.values()):
        if not is_terminal(task.state):
            task.state = mensa_pb2.TASK_KILLED
            if not task.released:
                state.metrics.task_completed("killed")
            task.statuses.append(master_status(
                task.task_id, mensa_pb2.TASK_KILLED, now, reason=Status.REASON_FRAMEWORK_REMOVED,
                message=f"framework removed: {reason}", agent_id=task.agent_id))
        task.released = True  # The allocator frees all of the framework's resources at once.
        agent = state.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.discard((framework_id, task.task_id))
            agents.add(agent.agent_id)
        framework.complete(task)
    sends = []
    for agent_id in sorted(agents):
        shutdown = internal_pb2.ShutdownFramework()
        shutdown.framework_id.value = framework_id
        envelope = internal_pb2.Envelope(shutdown_framework=shutdown)
        sends.append(Send(state.agents[agent_id].peer, envelope))
    state.allocator.remove_framework(framework_id)
    del state.frameworks[framework_id]
    if framework.peer is not None:
        state.peer_framework.pop(framework.peer, None)
    framework.connected = False
    framework.peer = None
    state.completed_frameworks[framework_id] = framework
    framework.disconnected_at = now
    state.registry_dirty = True
    while len(state.completed_frameworks) > MAX_COMPLETED_FRAMEWORKS:
        state.completed_frameworks.popitem(last=False)
    state.allocation_pending = True
    return sends


# -- offers ------------------------------------------------------------------------------------


def _refuse_seconds(filters: mensa_pb2.Filters, has_filters: bool) -> float:
    return filters.refuse_seconds if has_filters else DEFAULT_REFUSE_SECONDS


def _owned_offers(
    state: MasterState, framework: FrameworkRecord, offer_ids: list[str]
) -> tuple[list[OutstandingOffer], list[str], bool]:
    """Splits offer ids into this framework's outstanding offers and errors about the rest;
    the flag says whether every error is only an offer that is gone (a race, not a mistake)."""
    offers: list[OutstandingOffer] = []
    errors: list[str] = []
    only_gone = True
    seen: set[str] = set()
    for offer_id in offer_ids:
        if offer_id in seen:
            errors.append(f"offer {offer_id} is named twice")
            only_gone = False
            continue
        seen.add(offer_id)
        offer = state.offers.get(offer_id)
        if offer is None:
            why = state.offers.why_gone(offer_id)
            errors.append(f"offer {offer_id} {why.value}" if why else f"offer {offer_id!r} is unknown")
        elif offer.framework_id != framework.framework_id:
            errors.append(f"offer {offer_id} was not made to this framework")
            only_gone = False
        else:
            offers.append(offer)
    return offers, errors, only_gone


def accept(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """ACCEPT: validates the offers and runs the operations (LAUNCH) against them."""
    acc = call.accept
    refuse = _refuse_seconds(acc.filters, acc.HasField("filters"))
    launches = [t for op in acc.operations if op.type == Operation.LAUNCH for t in op.launch.task_infos]
    offers, errors, stale = _owned_offers(state, framework, [o.value for o in acc.offer_ids])
    if not acc.offer_ids:
        errors.append("ACCEPT names no offers")
        stale = False
    agent_ids = {o.agent_id for o in offers}
    if len(agent_ids) > 1:
        errors.append(f"offers are from more than one agent ({', '.join(sorted(agent_ids))})")
        stale = False
    agent = state.agents.get(next(iter(agent_ids))) if len(agent_ids) == 1 else None
    if offers and agent is None and not errors:
        errors.append("the offers' agent is gone")

    sends: list[Send] = []
    for offer in offers:  # Valid offers named in an ACCEPT are used up, whatever else is wrong.
        state.offers.retire(offer.offer_id, Retired.USED)
        state.metrics.offer_to_accept.observe(now - offer.created_at)
    state.counters.offers_accepted += len(offers)
    if errors:
        message = "; ".join(errors)
        for offer in offers:
            state.allocator.recover(offer.agent_id, offer.framework_id, offer.resources, None, now,
                                    role=offer.role)
        state.allocation_pending = True
        dropped = mensa_pb2.TASK_DROPPED if framework.partition_aware else mensa_pb2.TASK_LOST
        for task in launches:
            sends += _task_refused(state, framework, task, dropped, Status.REASON_INVALID_OFFERS,
                                   f"invalid offers: {message}", now)
        sends.append(state.reject(framework.peer, f"ACCEPT refused: {message}", refused="call:ACCEPT",
                                  code=ErrorCode.STALE if stale else ErrorCode.BAD_REQUEST))
        return sends
    assert agent is not None
    offer_roles = {offer.role for offer in offers}
    offer_role = next(iter(offer_roles)) if len(offer_roles) == 1 else None
    remaining = Resources.empty()
    for offer in offers:
        remaining = remaining + offer.resources
    unsupported: list[str] = []
    refused: list[str] = []
    for op in acc.operations:
        if op.type == Operation.LAUNCH:
            for task in op.launch.task_infos:
                sends_for_task, remaining = _launch(state, framework, agent.agent_id, task, remaining, now,
                                                    offer_role)
                sends += sends_for_task
        elif op.type in (Operation.RESERVE, Operation.UNRESERVE):
            remaining, error = _reservation_operation(state, framework, agent.agent_id, op, remaining)
            if error:
                refused.append(error)
        else:
            unsupported.append(Operation.Type.Name(op.type) if op.type in Operation.Type.values()
                               else str(op.type))
    if unsupported:
        sends.append(state.reject(framework.peer, f"offer operations {', '.join(unsupported)} are not "
                                  "supported; they were skipped", refused="call:ACCEPT"))
    for error in refused:
        sends.append(state.reject(framework.peer, error, refused="call:ACCEPT"))
    if not remaining.is_empty():
        state.allocator.recover(agent.agent_id, framework.framework_id, remaining, refuse, now,
                                role=offer_role)
    state.allocation_pending = True
    return sends


def _launch(
    state: MasterState,
    framework: FrameworkRecord,
    agent_id: str,
    task: mensa_pb2.TaskInfo,
    remaining: Resources,
    now: float,
    role: str | None = None,
) -> tuple[list[Send], Resources]:
    """Launches one task from the offered ``remaining`` resources (allocated under ``role``);
    returns what is left."""
    resources, error = validate_task(task, agent_id)
    task_id = task.task_id.value
    if error is None and task_id in framework.tasks:
        error = f"task id {task_id!r} is already used by a live task of this framework"
    if error is None and resources is not None and not remaining.contains(resources):
        error = f"task needs {resources} but the offers have {remaining} left"
    if error is not None or resources is None:
        state.counters.tasks_invalid += 1
        return _task_refused(state, framework, task, mensa_pb2.TASK_ERROR, Status.REASON_TASK_INVALID,
                             error or "invalid task", now), remaining
    info = mensa_pb2.TaskInfo()
    info.CopyFrom(task)
    info.agent_id.value = agent_id
    if not info.name:
        info.name = task_id
    record = TaskRecord(task_id, framework.framework_id, agent_id, info, resources, launched_at=now,
                        role=role)
    framework.tasks[task_id] = record
    agent = state.agents[agent_id]
    agent.tasks.add((framework.framework_id, task_id))
    state.counters.tasks_launched += 1
    log.info("task_launched", framework_id=framework.framework_id, task_id=task_id, agent_id=agent_id,
             resources=str(resources))
    run = internal_pb2.RunTask()
    run.framework.CopyFrom(framework.info)
    run.task.CopyFrom(info)
    return [Send(agent.peer, internal_pb2.Envelope(run_task=run))], remaining - resources


def _reservation_operation(
    state: MasterState,
    framework: FrameworkRecord,
    agent_id: str,
    op: mensa_pb2.Offer.Operation,
    remaining: Resources,
) -> tuple[Resources, str | None]:
    """Applies a RESERVE or UNRESERVE operation to the offered ``remaining`` resources; returns
    what is left (with the conversion) and an error (nothing changed) when it is invalid."""
    name = Operation.Type.Name(op.type)
    protos = op.reserve.resources if op.type == Operation.RESERVE else op.unreserve.resources
    try:
        resources = Resources.from_proto(protos)
    except ResourceError as exc:
        return remaining, f"{name}: {exc}"
    if resources.is_empty() or UNRESERVED in resources.roles():
        return remaining, (f"{name} needs resources that name the role they are reserved for "
                           f"(reservations), got {resources or 'none'}")
    outside = [role for role in resources.roles() if role not in framework.roles]
    if outside:
        return remaining, f"{name}: role(s) {', '.join(outside)} are not roles of this framework"
    plain = with_role(resources, UNRESERVED)
    if op.type == Operation.RESERVE:
        if not remaining.contains(plain):
            return remaining, f"RESERVE of {resources}: the offers have {remaining} left"
        for role, part in by_role(resources).items():
            state.allocator.reserve(agent_id, with_role(part, UNRESERVED), role, framework.framework_id)
        record_reservation(state, agent_id, resources)
        log.info("resources_reserved", framework_id=framework.framework_id, agent_id=agent_id,
                 resources=str(resources))
        return remaining - plain + resources, None
    if not remaining.contains(resources):
        return remaining, f"UNRESERVE of {resources}: the offers have {remaining} left"
    if not state.reservations.get(agent_id, Resources.empty()).contains(resources):
        return remaining, f"UNRESERVE of {resources}: not dynamically reserved on agent {agent_id}"
    state.allocator.unreserve(agent_id, resources, framework.framework_id)
    forget_reservation(state, agent_id, resources)
    log.info("resources_unreserved", framework_id=framework.framework_id, agent_id=agent_id,
             resources=str(resources))
    return remaining - resources + plain, None


def _task_refused(
    state: MasterState,
    framework: FrameworkRecord,
    task: mensa_pb2.TaskInfo,
    task_state: TaskState,
    reason: Reason,
    message: str,
    now: float,
) -> list[Send]:
    log.warning("task_refused", framework_id=framework.framework_id, task_id=task.task_id.value,
                state=mensa_pb2.TaskState.Name(task_state), reason=message)
    state.metrics.task_completed(mensa_pb2.TaskState.Name(task_state))
    status = master_status(task.task_id.value, task_state, now, reason=reason, message=message,
                           agent_id=task.agent_id.value or None)
    event = Event(type=Event.UPDATE)
    event.update.status.CopyFrom(status)
    return [Send(framework.peer, internal_pb2.Envelope(event=event))]


def decline(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """DECLINE: returns the offers' resources, filtered from this framework for refuse_seconds."""
    dec = call.decline
    refuse = _refuse_seconds(dec.filters, dec.HasField("filters"))
    offers, errors, stale = _owned_offers(state, framework, [o.value for o in dec.offer_ids])
    for offer in offers:
        state.offers.retire(offer.offer_id, Retired.DECLINED)
        state.allocator.recover(offer.agent_id, offer.framework_id, offer.resources, refuse, now,
                                role=offer.role)
        state.counters.offers_declined += 1
    state.allocation_pending = True
    if errors:
        return [state.reject(framework.peer, "DECLINE: " + "; ".join(errors), refused="call:DECLINE",
                             code=ErrorCode.STALE if stale else ErrorCode.BAD_REQUEST)]
    return []


def revive(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """REVIVE: removes the framework's filters and lifts suppression."""
    roles = list(call.revive.roles) or None
    state.allocator.revive(framework.framework_id, roles)
    state.allocation_pending = True
    log.info("offers_revived", framework_id=framework.framework_id, roles=roles)
    return []


def suppress(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """SUPPRESS: stops offers to the framework until it revives."""
    roles = list(call.suppress.roles) or None
    state.allocator.suppress(framework.framework_id, roles)
    log.info("offers_suppressed", framework_id=framework.framework_id, roles=roles)
    return []


# -- tasks -------------------------------------------------------------------------------------


def request(
    state: MasterState, framework: FrameworkRecord, call: scheduler_pb2.Call, now: float
) -> list[Send]:
    """REQUEST: accepted and ignored, as Mesos's built-in allocator does."""
    return []


Handler = Callable[[MasterState, FrameworkRecord, scheduler_pb2.Call, float], list[Send]]

_HANDLERS: dict[int, Handler] = {
    Call.TEARDOWN: teardown,
    Call.ACCEPT: accept,
    Call.DECLINE: decline,
    Call.REVIVE: revive,
    Call.SUPPRESS: suppress,
    Call.KILL: kill,
    Call.ACKNOWLEDGE: acknowledge,
    Call.RECONCILE: reconcile,
    Call.MESSAGE: message,
    Call.REQUEST: request,
}
