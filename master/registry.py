"""The registry: what a master persists so that it survives failover (pure).

Like Mesos's, it is small: the admitted agents, the agents marked unreachable, recently
removed agents, the frameworks (ids and infos), recently removed framework ids, role weights,
quota, and dynamic reservations per agent. Tasks and offers are soft state, rebuilt as agents
re-register and frameworks re-subscribe.

``snapshot(state)`` builds the Registry message from a MasterState, ``restore(state, registry,
now)`` seeds a freshly elected master with it; ``encode``/``decode`` turn it into the bytes a
store keeps (zlib-compressed protobuf behind a magic header, so a ZooKeeper znode holds tens of
thousands of agents). The stores (a file, a znode) live in ``master/stores.py`` and ``master/election.py``.

Usage::

    data = encode(snapshot(state, revision=7))
    registry = decode(data)          # ValueError when the bytes are not a registry
    restore(new_state, registry, now)
"""

from __future__ import annotations

import zlib

import structlog
from google.protobuf.message import DecodeError

from mensa.master.records import FrameworkRecord
from mensa.master.state import MasterState
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources

log = structlog.get_logger(__name__)

MAGIC = b"MREG1\n"
MAX_REGISTRY_BYTES = 64 * 1024 * 1024  # decompressed; guards against a zlib bomb
Registry = internal_pb2.Registry


def snapshot(state: MasterState, revision: int = 0) -> internal_pb2.Registry:
    """Returns the registry describing ``state`` now (admitted agents include the agents known
    from a previous registry that have not re-registered yet)."""
    registry = Registry(revision=revision)
    for agent in state.agents.values():
        entry = registry.agents.add(admitted_at=agent.registered_at, http_port=agent.http_port,
                                    advertise_ip=agent.ip)
        entry.info.CopyFrom(agent.info)
    for entry in state.recovering_agents.values():
        registry.agents.add().CopyFrom(entry)
    for agent_id, (since, info) in state.unreachable_agents.items():
        unreachable = registry.unreachable.add(since=since)
        unreachable.info.CopyFrom(info)
        unreachable.info.id.value = agent_id
    for agent_id, removed_at in state.removed_agents.items():
        registry.removed_agents.add(removed_at=removed_at).id.value = agent_id
    for framework in state.frameworks.values():
        saved = registry.frameworks.add(registered_at=framework.registered_at)
        saved.info.CopyFrom(framework.info)
        if framework.disconnected_at is not None:
            saved.disconnected_at = framework.disconnected_at
    for role, weight in sorted(state.allocator.weights().items()):
        registry.weights.add(role=role, weight=weight)
    for role, quota in sorted(state.allocator.quotas().items()):
        saved_quota = registry.quotas.add(role=role, has_limit=quota.limit is not None,
                                          zero_limits=sorted(quota.zero_limits))
        saved_quota.guarantee.extend(quota.guarantee.to_proto())
        if quota.limit is not None:
            saved_quota.limit.extend(quota.limit.to_proto())
    for agent_id, reserved in sorted(state.reservations.items()):
        saved_reservations = registry.reservations.add()
        saved_reservations.agent_id.value = agent_id
        saved_reservations.resources.extend(reserved.to_proto())
    for framework_id, record in state.completed_frameworks.items():
        removed = registry.removed_frameworks.add(removed_at=record.disconnected_at or 0.0)
        removed.id.value = framework_id
    return registry


def restore(state: MasterState, registry: internal_pb2.Registry, now: float) -> None:
    """Seeds a fresh MasterState from a registry: admitted agents wait to re-register (until
    ``agent_reregister_timeout``), frameworks wait to re-subscribe (recovered, disconnected),
    unreachable and removed agents and removed frameworks are remembered."""
    for entry in registry.agents:
        agent_id = entry.info.id.value
        if agent_id:
            state.recovering_agents[agent_id] = entry
    for unreachable in registry.unreachable:
        agent_id = unreachable.info.id.value
        if agent_id:
            state.unreachable_agents[agent_id] = (unreachable.since, unreachable.info)
    for removed in registry.removed_agents:
        state.removed_agents[removed.id.value] = removed.removed_at
    for saved in registry.frameworks:
        framework_id = saved.info.id.value
        if not framework_id or framework_id in state.frameworks:
            continue
        info = mensa_pb2.FrameworkInfo()
        info.CopyFrom(saved.info)
        record = FrameworkRecord(framework_id, info, None, registered_at=saved.registered_at,
                                 connected=False, recovered=True, last_seen=now)
        if saved.HasField("disconnected_at"):
            record.disconnected_at = saved.disconnected_at
        state.frameworks[framework_id] = record
        state.allocator.add_framework(framework_id, record.roles, active=False)
    for removed in registry.removed_frameworks:
        framework_id = removed.id.value
        record = FrameworkRecord(framework_id, mensa_pb2.FrameworkInfo(), None, registered_at=0.0,
                                 connected=False, disconnected_at=removed.removed_at)
        record.info.id.value = framework_id
        state.completed_frameworks[framework_id] = record
    for weight in registry.weights:
        try:
            state.allocator.set_weight(weight.role, weight.weight)
        except ValueError as exc:
            log.error("registry_weight_skipped", role=weight.role, error=str(exc))
    for quota in registry.quotas:
        try:
            state.allocator.set_quota(quota.role, Resources.from_proto(quota.guarantee),
                                      Resources.from_proto(quota.limit) if quota.has_limit else None,
                                      list(quota.zero_limits))
        except ValueError as exc:
            log.error("registry_quota_skipped", role=quota.role, error=str(exc))
    for saved_reservations in registry.reservations:
        try:
            reserved = Resources.from_proto(saved_reservations.resources)
        except ValueError as exc:
            log.error("registry_reservations_skipped", agent_id=saved_reservations.agent_id.value,
                      error=str(exc))
            continue
        state.reservations[saved_reservations.agent_id.value] = reserved
    state.registry_dirty = False
    log.info("registry_restored", revision=registry.revision, agents=len(registry.agents),
             unreachable=len(registry.unreachable), frameworks=len(registry.frameworks),
             removed_frameworks=len(registry.removed_frameworks))


def encode(registry: internal_pb2.Registry) -> bytes:
    """Returns the stored form of a registry."""
    return MAGIC + zlib.compress(registry.SerializeToString(), 6)


def decode(data: bytes | None) -> internal_pb2.Registry:
    """Parses the stored form (empty or None: an empty registry); ValueError on anything else."""
    if not data:
        return Registry()
    if not data.startswith(MAGIC):
        raise ValueError("not a Mensa registry (bad magic)")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data[len(MAGIC):], MAX_REGISTRY_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"registry larger than {MAX_REGISTRY_BYTES} bytes")
    except zlib.error as exc:
        raise ValueError(f"registry is not valid zlib data: {exc}") from None
    registry = Registry()
    try:
        registry.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(f"registry is not a valid Registry message: {exc}") from None
    return registry
