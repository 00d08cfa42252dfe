"""Turns what a framework author passes to the driver into scheduler ``Call`` messages (pure).

Every builder accepts protobuf messages, and for convenience plain dicts in Mesos JSON form
(parsed with ``google.protobuf.json_format.ParseDict``); ids may also be plain strings, and
where Mesos allows several of a thing, one may be passed alone or in a list. Bad input raises
``ValueError`` (or ``TypeError`` for a wrong kind of object) in the caller's thread, before
anything is sent. Builders never set ``Call.framework_id``: the driver stamps it at send time.

Usage::

    call = launch_call("offer-1", [{"name": "t", "task_id": {"value": "t"}, ...}], 5.0, {})
    call = decline_call(["offer-1", "offer-2"], filters={"refuse_seconds": 30})
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from mensa.proto import mensa_pb2, scheduler_pb2

Call = scheduler_pb2.Call
M = TypeVar("M", bound=Message)

OfferLike: TypeAlias = str | mensa_pb2.OfferID | mensa_pb2.Offer | Mapping[str, Any]
FiltersLike: TypeAlias = mensa_pb2.Filters | Mapping[str, Any] | float | int | None
KillPolicyLike: TypeAlias = mensa_pb2.KillPolicy | Mapping[str, Any] | float | int | None
RolesLike: TypeAlias = str | Iterable[str] | None


def parse(value: Any, cls: type[M]) -> M:
    """Returns ``value`` as a ``cls`` message: a copy of one, or one parsed from a Mesos JSON dict."""
    if isinstance(value, cls):
        out = cls()
        out.CopyFrom(value)
        return out
    if isinstance(value, Mapping):
        try:
            return json_format.ParseDict(dict(value), cls())
        except json_format.ParseError as exc:
            raise ValueError(f"invalid {cls.DESCRIPTOR.name}: {exc}") from None
    raise TypeError(f"expected {cls.DESCRIPTOR.name} or dict, got {type(value).__name__}")


def to_id(value: Any, cls: type[M]) -> M:
    """Returns an id message (OfferID, TaskID, AgentID, ...) from a string, message or dict."""
    if isinstance(value, str):
        if not value:
            raise ValueError(f"empty {cls.DESCRIPTOR.name}")
        return json_format.ParseDict({"value": value}, cls())
    out = parse(value, cls)
    if not getattr(out, "value", ""):
        raise ValueError(f"empty {cls.DESCRIPTOR.name}")
    return out


def many(value: Any) -> list[Any]:
    """Returns ``value`` as a list: one string, bytes, message or dict is a list of one."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Message, Mapping)):
        return [value]
    return list(value)


def offer_refs(offers: OfferLike | Iterable[OfferLike]) -> list[tuple[mensa_pb2.OfferID, str]]:
    """Returns ``(offer_id, agent_id)`` for each offer; the agent id is "" unless an Offer was given."""
    out: list[tuple[mensa_pb2.OfferID, str]] = []
    for item in many(offers):
        if isinstance(item, mensa_pb2.Offer):
            out.append((to_id(item.id, mensa_pb2.OfferID), item.agent_id.value))
        else:
            out.append((to_id(item, mensa_pb2.OfferID), ""))
    if not out:
        raise ValueError("no offer ids given")
    return out


def to_filters(value: FiltersLike) -> mensa_pb2.Filters | None:
    """Returns Filters from a message, a dict, or a number of refuse_seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"refuse_seconds must be a non-negative number, got {value!r}")
        return mensa_pb2.Filters(refuse_seconds=seconds)
    return parse(value, mensa_pb2.Filters)


def to_kill_policy(value: KillPolicyLike) -> mensa_pb2.KillPolicy | None:
    """Returns a KillPolicy from a message, a dict, or a grace period in seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isnan(value) or value < 0:
            raise ValueError(f"grace period must be a non-negative number, got {value!r}")
        policy = mensa_pb2.KillPolicy()
        policy.grace_period.nanoseconds = int(value * 1e9)
        return policy
    return parse(value, mensa_pb2.KillPolicy)


def to_roles(value: RolesLike) -> list[str]:
    """Returns a list of role names; one string is a list of one, None is empty (all roles)."""
    roles = many(value)
    for role in roles:
        if not isinstance(role, str) or not role:
            raise ValueError(f"bad role {role!r}")
    return roles


def to_data(value: bytes | str) -> bytes:
    """Returns message data as bytes (a str is UTF-8 encoded)."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected bytes or str, got {type(value).__name__}")


# -- Calls --------------------------------------------------------------------------------------


def subscribe_call(framework_info: mensa_pb2.FrameworkInfo) -> scheduler_pb2.Call:
    """SUBSCRIBE with this FrameworkInfo (its id set when re-subscribing)."""
    call = Call(type=Call.SUBSCRIBE)
    call.subscribe.framework_info.CopyFrom(framework_info)
    return call


def teardown_call() -> scheduler_pb2.Call:
    """TEARDOWN: the master kills all of the framework's tasks and forgets it."""
    return Call(type=Call.TEARDOWN)


def accept_call(
    offers: OfferLike | Iterable[OfferLike],
    operations: Any,
    filters: FiltersLike = None,
    known_agents: Mapping[str, str] | None = None,
) -> scheduler_pb2.Call:
    """ACCEPT the offers with these operations (Offer.Operation messages or dicts).

    A launched task without agent_id gets the agent of the offers: from an Offer passed in,
    else from ``known_agents`` (offer id -> agent id), as the master would fill it.
    """
    refs = offer_refs(offers)
    call = Call(type=Call.ACCEPT)
    call.accept.offer_ids.extend(oid for oid, _ in refs)
    call.accept.operations.extend(parse(op, mensa_pb2.Offer.Operation) for op in many(operations))
    agents = dict(known_agents or {})
    agents.update((oid.value, agent) for oid, agent in refs if agent)
    fill_task_agents(call, agents)
    parsed = to_filters(filters)
    if parsed is not None:
        call.accept.filters.CopyFrom(parsed)
    return call


def launch_call(
    offers: OfferLike | Iterable[OfferLike],
    tasks: Any,
    filters: FiltersLike,
    known_agents: Mapping[str, str],
) -> scheduler_pb2.Call:
    """ACCEPT the offers with one LAUNCH of ``tasks`` (none: a plain ACCEPT, i.e. a decline).

    A task without an agent_id gets the agent of the offers: from an Offer passed in, else
    from ``known_agents`` (offer id -> agent id, the driver's book of outstanding offers).
    """
    refs = offer_refs(offers)
    agent = next((a for _, a in refs if a), "")
    if not agent:
        agent = next((known_agents[o.value] for o, _ in refs if o.value in known_agents), "")
    infos = [parse(t, mensa_pb2.TaskInfo) for t in many(tasks)]
    for info in infos:
        if not info.task_id.value:
            raise ValueError(f"task {info.name!r} has no task_id")
        if not info.HasField("agent_id") and agent:
            info.agent_id.value = agent
    call = Call(type=Call.ACCEPT)
    call.accept.offer_ids.extend(oid for oid, _ in refs)
    if infos:
        op = call.accept.operations.add(type=mensa_pb2.Offer.Operation.LAUNCH)
        op.launch.task_infos.extend(infos)
    parsed = to_filters(filters)
    if parsed is not None:
        call.accept.filters.CopyFrom(parsed)
    return call


def fill_task_agents(call: scheduler_pb2.Call, known_agents: Mapping[str, str]) -> None:
    """Gives each task an ACCEPT launches without agent_id the agent of its offers (found in
    ``known_agents``, offer id -> agent id), as the master would."""
    offers = call.accept.offer_ids
    agent = next((known_agents[o.value] for o in offers if o.value in known_agents), "")
    for op in call.accept.operations:
        for info in op.launch.task_infos:
            if not info.agent_id.value and agent:
                info.agent_id.value = agent


def launched_tasks(call: scheduler_pb2.Call) -> list[tuple[str, str]]:
    """Returns the (task id, agent id) of every task an ACCEPT call launches (none for others)."""
    if call.type != Call.ACCEPT:
        return []
    return [
        (info.task_id.value, info.agent_id.value)
        for op in call.accept.operations
        if op.type == mensa_pb2.Offer.Operation.LAUNCH
        for info in op.launch.task_infos
    ]


def decline_call(
    offers: OfferLike | Iterable[OfferLike], filters: FiltersLike = None
) -> scheduler_pb2.Call:
    """DECLINE the offers; ``filters`` says how long not to re-offer the resources."""
    call = Call(type=Call.DECLINE)
    call.decline.offer_ids.extend(oid for oid, _ in offer_refs(offers))
    parsed = to_filters(filters)
    if parsed is not None:
        call.decline.filters.CopyFrom(parsed)
    return call


def revive_call(roles: RolesLike = None) -> scheduler_pb2.Call:
    """REVIVE: remove all filters (for these roles, or all of them) and resume offers."""
    call = Call(type=Call.REVIVE)
    call.revive.roles.extend(to_roles(roles))
    return call


def suppress_call(roles: RolesLike = None) -> scheduler_pb2.Call:
    """SUPPRESS: stop sending offers (for these roles, or all of them) until REVIVE."""
    call = Call(type=Call.SUPPRESS)
    call.suppress.roles.extend(to_roles(roles))
    return call


def kill_call(
    task_id: Any, agent_id: Any = None, kill_policy: KillPolicyLike = None
) -> scheduler_pb2.Call:
    """KILL a task (agent_id optional, as in Mesos)."""
    call = Call(type=Call.KILL)
    call.kill.task_id.CopyFrom(to_id(task_id, mensa_pb2.TaskID))
    if agent_id is not None:
        call.kill.agent_id.CopyFrom(to_id(agent_id, mensa_pb2.AgentID))
    policy = to_kill_policy(kill_policy)
    if policy is not None:
        call.kill.kill_policy.CopyFrom(policy)
    return call


def acknowledge_call(status: mensa_pb2.TaskStatus | Mapping[str, Any]) -> scheduler_pb2.Call | None:
    """ACKNOWLEDGE a status update; None when it carries no uuid (nothing to acknowledge)."""
    parsed = parse(status, mensa_pb2.TaskStatus)
    if not parsed.uuid:
        return None
    call = Call(type=Call.ACKNOWLEDGE)
    call.acknowledge.task_id.CopyFrom(parsed.task_id)
    call.acknowledge.agent_id.CopyFrom(parsed.agent_id)
    call.acknowledge.uuid = parsed.uuid
    return call


def _reconcile_task(item: Any) -> scheduler_pb2.Call.Reconcile.Task:
    task = Call.Reconcile.Task()
    if isinstance(item, mensa_pb2.TaskStatus):
        task.task_id.CopyFrom(item.task_id)
        if item.HasField("agent_id"):
            task.agent_id.CopyFrom(item.agent_id)
    elif isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError(f"expected (task_id, agent_id), got {item!r}")
        task.task_id.CopyFrom(to_id(item[0], mensa_pb2.TaskID))
        if item[1] is not None:
            task.agent_id.CopyFrom(to_id(item[1], mensa_pb2.AgentID))
    elif isinstance(item, Mapping):
        try:
            json_format.ParseDict(dict(item), task, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise ValueError(f"invalid reconcile task: {exc}") from None
    else:
        task.task_id.CopyFrom(to_id(item, mensa_pb2.TaskID))
    if not task.task_id.value:
        raise ValueError(f"reconcile entry without a task id: {item!r}")
    return task


def reconcile_call(tasks: Any = None) -> scheduler_pb2.Call:
    """RECONCILE these tasks (explicit), or with None/[] all of the framework's (implicit).

    Each entry is a TaskStatus, a ``(task_id, agent_id)`` pair (agent_id may be None), a task
    id alone, or a dict in Mesos JSON form.
    """
    call = Call(type=Call.RECONCILE)
    call.reconcile.SetInParent()
    call.reconcile.tasks.extend(_reconcile_task(t) for t in many(tasks))
    return call


def message_call(executor_id: Any, agent_id: Any, data: bytes | str) -> scheduler_pb2.Call:
    """MESSAGE: opaque data for an executor on an agent."""
    call = Call(type=Call.MESSAGE)
    call.message.executor_id.CopyFrom(to_id(executor_id, mensa_pb2.ExecutorID))
    call.message.agent_id.CopyFrom(to_id(agent_id, mensa_pb2.AgentID))
    call.message.data = to_data(data)
    return call


def call_name(call: scheduler_pb2.Call) -> str:
    """Returns the call's type name, e.g. "ACCEPT", for logs."""
    return Call.Type.Name(call.type)
