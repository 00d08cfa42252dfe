"""What operators and offer operations change besides tasks: quota, weights, reservations (pure).

Quota and weights go to the allocator and the registry. Dynamic reservations (a RESERVE offer
operation, or the operator's ``/reserve``) turn unreserved resources on an agent into resources
reserved for a role; the master keeps them per agent (``MasterState.reservations``, persisted in
the registry) and applies them to the agent's total whenever it registers, so they survive agent
restarts and master failovers. Every function validates first and changes nothing on error:
it raises ``OperatorError`` (``ResourcesUnavailable`` when the resources are not there) with
the reason for the caller.

Usage::

    set_quota(state, "ml", Resources.parse("cpus:4;mem:8192"), None)
    sends = reserve(state, agent_id, Resources.parse("cpus(ml):2"), now)  # rescinds, if any
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import structlog

from mensa.master.state import MasterState, Send
from mensa.master.validation import validate_role
from mensa.proto import mensa_pb2
from mensa.proto.resources import UNRESERVED, ResourceError, Resources

log = structlog.get_logger(__name__)


class OperatorError(ValueError):
    """A request that cannot be carried out; ``str()`` is the reason for the caller."""


class ResourcesUnavailable(OperatorError):
    """The resources asked for are not there (in use, or not on the agent): a conflict."""


def with_role(resources: Resources, role: str) -> Resources:
    """Returns ``resources`` with every part reserved for ``role`` (``"*"``: unreserved)."""
    return resources.with_role(role)


def by_role(resources: Resources) -> dict[str, Resources]:
    """Splits reserved resources by the role they are reserved for."""
    return {role: resources.filter_roles([role]) for role in sorted(resources.roles())}


def apply_reservations(total: Resources, reserved: Resources) -> tuple[Resources, Resources]:
    """Returns the agent total with the dynamic reservations ``reserved`` applied, and those
    applied (a reservation whose unreserved resources the agent no longer has is dropped)."""
    applied = Resources.empty()
    for _role, part in by_role(reserved).items():
        plain = with_role(part, UNRESERVED)
        if total.contains(plain):
            total = total - plain + part
            applied = applied + part
    return total, applied


# -- quota and weights -----------------------------------------------------------------------------


def set_quota(state: MasterState, role: str, guarantee: Resources, limit: Resources | None,
              *, force: bool = False, zero_limits: Iterable[str] = ()) -> None:
    """Sets a role's quota; raises OperatorError when the role or the resources are invalid, or
    (unless ``force``, as in Mesos) when the guarantee is more than the cluster has."""
    _check_role(role)
    for name, resources in (("guarantee", guarantee), ("limit", limit)):
        if resources is None:
            continue
        if resources.roles() - {UNRESERVED}:
            raise OperatorError(f"quota {name} must be unreserved resources, got {resources}")
        if not resources.is_scalar_only():
            raise OperatorError(f"quota {name} may only name scalar resources, got {resources}")
    if not force:
        cluster = Resources.empty()
        for agent in state.agents.values():
            cluster = cluster + with_role(agent.total, UNRESERVED)
        over = {name: value for name, value in guarantee.scalar_totals().items()
                if value > cluster.scalar(name)}
        if over:
            raise OperatorError(
                f"quota guarantee {guarantee} is more than the cluster has ({cluster.scalar_totals()} "
                f"of {', '.join(sorted(over))}); set force to allow it")
    try:
        state.allocator.set_quota(role, guarantee, limit, zero_limits)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    state.registry_dirty = True
    state.allocation_pending = True
    log.info("quota_set", role=role, guarantee=str(guarantee), limit=str(limit) if limit else None)


def remove_quota(state: MasterState, role: str) -> None:
    """Removes a role's quota; raises OperatorError when the role has none."""
    if role not in state.allocator.quotas():
        raise OperatorError(f"role {role!r} has no quota")
    state.allocator.remove_quota(role)
    state.registry_dirty = True
    state.allocation_pending = True
    log.info("quota_removed", role=role)


def set_weights(state: MasterState, weights: Iterable[tuple[str, float]]) -> None:
    """Sets role weights, all or none; raises OperatorError naming the first bad one."""
    items = list(weights)
    if not items:
        raise OperatorError("no weights given")
    for role, weight in items:
        _check_role(role)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight <= 0:
            raise OperatorError(f"weight of role {role!r} must be a positive finite number, got {weight!r}")
    for role, weight in items:
        state.allocator.set_weight(role, float(weight))
    state.registry_dirty = True
    state.allocation_pending = True
    log.info("weights_set", weights=dict(items))


# -- reservations ------------------------------------------------------------------------------------


def reserve(state: MasterState, agent_id: str, resources: Resources, now: float) -> list[Send]:
    """The operator's /reserve: reserves free resources on an agent (outstanding offers on it are
    rescinded first when they hold what is asked for). Raises OperatorError."""
    _check_reserved(resources, "reserve")
    if agent_id not in state.agents:
        raise OperatorError(f"agent {agent_id!r} is not registered")
    plain = with_role(resources, UNRESERVED)
    sends: list[Send] = []
    if not state.allocator.free(agent_id).contains(plain):
        sends += _rescind_agent_offers(state, agent_id, now)
    if not state.allocator.free(agent_id).contains(plain):
        raise ResourcesUnavailable(f"agent {agent_id} does not have {plain} free to reserve "
                            f"(free: {state.allocator.free(agent_id)})")
    for role, part in by_role(resources).items():
        state.allocator.reserve(agent_id, with_role(part, UNRESERVED), role)
    record_reservation(state, agent_id, resources)
    log.info("resources_reserved", agent_id=agent_id, resources=str(resources), by="operator")
    return sends


def unreserve(state: MasterState, agent_id: str, resources: Resources, now: float) -> list[Send]:
    """The operator's /unreserve: returns dynamically reserved, unused resources to the pool.
    Raises OperatorError."""
    _check_reserved(resources, "unreserve")
    if agent_id not in state.agents:
        raise OperatorError(f"agent {agent_id!r} is not registered")
    if not state.reservations.get(agent_id, Resources.empty()).contains(resources):
        raise OperatorError(f"{resources} are not dynamically reserved on agent {agent_id}")
    sends: list[Send] = []
    if not state.allocator.free(agent_id).contains(resources):
        sends += _rescind_agent_offers(state, agent_id, now)
    if not state.allocator.free(agent_id).contains(resources):
        raise ResourcesUnavailable(f"{resources} on agent {agent_id} are in use by tasks")
    state.allocator.unreserve(agent_id, resources)
    forget_reservation(state, agent_id, resources)
    log.info("resources_unreserved", agent_id=agent_id, resources=str(resources), by="operator")
    return sends


def record_reservation(state: MasterState, agent_id: str, resources: Resources) -> None:
    """Books a dynamic reservation the allocator has made (the agent's total changed)."""
    state.reservations[agent_id] = state.reservations.get(agent_id, Resources.empty()) + resources
    _sync_total(state, agent_id)


def forget_reservation(state: MasterState, agent_id: str, resources: Resources) -> None:
    """Forgets a dynamic reservation the allocator has released."""
    left = state.reservations.get(agent_id, Resources.empty()) - resources
    if left.is_empty():
        state.reservations.pop(agent_id, None)
    else:
        state.reservations[agent_id] = left
    _sync_total(state, agent_id)


def _sync_total(state: MasterState, agent_id: str) -> None:
    agent = state.agents.get(agent_id)
    if agent is not None:
        agent.total = state.allocator.total(agent_id)
    state.registry_dirty = True
    state.allocation_pending = True


def zero_names(value: object) -> set[str]:
    """The resource names given as 0 in Mesos JSON or text (``Resources`` drops zeros)."""
    if isinstance(value, str):
        names = set()
        for part in value.split(";"):
            name, sep, amount = part.partition(":")
            try:
                if sep and float(amount) == 0:
                    names.add(name.strip())
            except ValueError:
                continue
        return names
    if isinstance(value, list):
        return {item["name"] for item in value if isinstance(item, dict) and "name" in item
                and isinstance(item.get("scalar"), dict) and item["scalar"].get("value") == 0}
    return set()


def parse_resources(value: object, what: str) -> Resources:
    """Resources from Mesos JSON (a list of Resource objects) or Mensa's text form."""
    from google.protobuf import json_format

    if isinstance(value, str):
        try:
            return Resources.parse(value)
        except ResourceError as exc:
            raise OperatorError(f"{what}: {exc}") from None
    if not isinstance(value, list):
        raise OperatorError(f"{what} must be a list of resources or a string like 'cpus:1;mem:128'")
    protos = []
    for item in value:
        r = mensa_pb2.Resource()
        try:
            json_format.ParseDict(item, r, ignore_unknown_fields=True)
        except (json_format.ParseError, TypeError, AttributeError) as exc:
            raise OperatorError(f"{what}: not a Resource: {exc}") from None
        protos.append(r)
    try:
        return Resources.from_proto(protos)
    except ResourceError as exc:
        raise OperatorError(f"{what}: {exc}") from None


def _check_role(role: str) -> None:
    error = validate_role(role)
    if error:
        raise OperatorError(error)
    if role == UNRESERVED:
        raise OperatorError("role '*' cannot have quota, weights or reservations set this way")


def _check_reserved(resources: Resources, action: str) -> None:
    if resources.is_empty():
        raise OperatorError(f"nothing to {action}")
    roles = resources.roles()
    if UNRESERVED in roles:
        raise OperatorError(f"resources to {action} must name the role they are reserved for, "
                            f"e.g. 'cpus(ml):1'; got {resources}")
    for role in roles:
        _check_role(role)


def _rescind_agent_offers(state: MasterState, agent_id: str, now: float) -> list[Send]:
    return [s for offer in state.offers.for_agent(agent_id) for s in state.rescind(offer.offer_id, now)]
