"""The registry and what a newly elected master does with it; partitions and reconciliation."""

from __future__ import annotations

import random

import pytest
from master_harness import (
    PA,
    Call,
    Event,
    Harness,
    envelope,
    errors_to,
    events_to,
    messages_to,
    task,
    updates_to,
)

from mensa.master import registry
from mensa.master.allocator import Allocator
from mensa.master.state import MasterConfig, MasterState
from mensa.master.stores import FileStore, RegistryConflict
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources

S = mensa_pb2
A1, A2, F1 = b"agent-1", b"agent-2", b"framework-1"


@pytest.fixture
def h() -> Harness:
    return Harness()


def failed_over(h: Harness, *, reregister_timeout: float = 30.0) -> Harness:
    """A new master elected after ``h``'s, seeded with the registry ``h`` wrote."""
    saved = registry.decode(registry.encode(registry.snapshot(h.state, revision=3)))
    new = Harness(now=h.now + 5)
    info = mensa_pb2.MasterInfo(id="M2", hostname="master2", port=5051)
    new.state = MasterState(
        MasterConfig(master_info=info, agent_ping_timeout=1.0, max_agent_ping_timeouts=3,
                     heartbeat_interval=1.0, started_at=new.now,
                     agent_reregister_timeout=reregister_timeout),
        allocator=Allocator(rng=random.Random(7)),
    )
    registry.restore(new.state, saved, new.now)
    return new


def reported(task_id: str, framework_id: str, state: int) -> mensa_pb2.Task:
    t = mensa_pb2.Task(name=task_id, state=state)  # type: ignore[arg-type]
    t.task_id.value = task_id
    t.framework_id.value = framework_id
    t.resources.extend(Resources.parse("cpus:1;mem:128").to_proto())
    return t


def reregister(h: Harness, peer: bytes, agent_id: str, tasks: list[mensa_pb2.Task],
               hostname: str = "host") -> list:
    msg = internal_pb2.RegisterAgent(version="test")
    msg.agent_info.hostname = hostname
    msg.agent_info.id.value = agent_id
    msg.agent_info.resources.extend(Resources.parse("cpus:4;mem:4096;ports:[31000-31009]").to_proto())
    msg.tasks.extend(tasks)
    return h.send(peer, envelope(register_agent=msg))


def running_task(h: Harness, caps: tuple[int, ...] = ()) -> tuple[str, str]:
    agent_id = h.register_agent(A1)
    fid = h.subscribe(F1, capabilities=caps, failover_timeout=3600)
    [offer] = h.offers_to(h.allocate(), F1)
    h.launch(F1, fid, [offer.id.value], [task("t1")])
    h.status(A1, fid, "t1", S.TASK_RUNNING, b"u1")
    return agent_id, fid


def test_admissions_and_subscriptions_mark_the_registry_dirty(h: Harness) -> None:
    assert not h.state.registry_dirty
    agent_id = h.register_agent(A1)
    assert h.state.registry_dirty
    h.state.registry_dirty = False
    h.register_agent(A1, agent_id=agent_id)  # the same agent again: nothing new to persist
    assert not h.state.registry_dirty
    h.subscribe(F1)
    assert h.state.registry_dirty


def test_registry_round_trips_agents_frameworks_and_removals(h: Harness) -> None:
    agent_id, fid = running_task(h)
    h.state.removed_agents["gone-S9"] = 12.0
    saved = registry.decode(registry.encode(registry.snapshot(h.state, revision=4)))
    assert saved.revision == 4
    assert [a.info.id.value for a in saved.agents] == [agent_id]
    assert [f.info.id.value for f in saved.frameworks] == [fid]
    assert saved.frameworks[0].info.failover_timeout == 3600
    assert [r.id.value for r in saved.removed_agents] == ["gone-S9"]


@pytest.mark.parametrize("data", [b"garbage", registry.MAGIC + b"not zlib", registry.MAGIC])
def test_undecodable_registries_are_errors_not_crashes(data: bytes) -> None:
    if data == registry.MAGIC:
        assert registry.decode(data) == registry.Registry()  # empty payload: an empty registry
        return
    with pytest.raises(ValueError, match="registry"):
        registry.decode(data)


def test_new_leader_keeps_tasks_of_agents_and_frameworks_that_come_back(h: Harness) -> None:
    agent_id, fid = running_task(h)
    new = failed_over(h)
    assert agent_id in new.state.recovering_agents
    assert new.state.frameworks[fid].recovered and not new.state.frameworks[fid].connected
    assert new.offers_to(new.allocate(), F1) == []  # no agent heard from yet: nothing offered
    sends = reregister(new, A1, agent_id, [reported("t1", fid, S.TASK_RUNNING)])
    assert messages_to(sends, A1, "agent_registered") and not messages_to(sends, A1, "kill_task")
    assert agent_id not in new.state.recovering_agents
    new.subscribe(F1, framework_id=fid, failover_timeout=3600)
    assert new.state.frameworks[fid].tasks["t1"].state == S.TASK_RUNNING
    [offer] = new.offers_to(new.allocate(), F1)
    assert Resources.from_proto(offer.resources) == Resources.parse(
        "cpus:3;mem:3968;ports:[31000-31009]")


def test_reconciliation_waits_for_recovering_agents_then_answers_by_partition_awareness(
        h: Harness) -> None:
    agent_id, fid = running_task(h, caps=(PA,))
    new = failed_over(h, reregister_timeout=3.0)
    new.subscribe(F1, framework_id=fid, capabilities=(PA,), failover_timeout=3600)
    call = Call(type=Call.RECONCILE)
    item = call.reconcile.tasks.add()
    item.task_id.value = "t1"
    item.agent_id.value = agent_id
    assert updates_to(new.call(F1, fid, call), F1) == []  # its agent may still come back
    implicit = Call(type=Call.RECONCILE)
    assert updates_to(new.call(F1, fid, implicit), F1) == []  # no live task known yet
    sends: list = []
    for _ in range(4):
        sends += new.tick(1.0)
        new.send(F1, envelope(pong=internal_pb2.Pong()))
    assert agent_id in new.state.unreachable_agents and new.state.registry_dirty
    [failure] = events_to(sends, F1, Event.FAILURE)
    assert failure.failure.agent_id.value == agent_id
    [update] = updates_to(new.call(F1, fid, call), F1)
    assert update.state == S.TASK_UNREACHABLE


@pytest.mark.parametrize(("known_agent", "partition_aware", "expected"), [
    ("registered", True, S.TASK_GONE),
    ("removed", True, S.TASK_GONE_BY_OPERATOR),
    ("unknown", True, S.TASK_UNKNOWN),
    ("unreachable", True, S.TASK_UNREACHABLE),
    ("registered", False, S.TASK_LOST),
    ("unreachable", False, S.TASK_LOST),
])
def test_unknown_tasks_are_answered_by_what_the_master_knows_of_their_agent(
        h: Harness, known_agent: str, partition_aware: bool, expected: int) -> None:
    agent_id = h.register_agent(A1)
    if known_agent == "removed":
        agent_id = "gone-S1"
        h.state.removed_agents[agent_id] = h.now
    elif known_agent == "unknown":
        agent_id = "never-S1"
    elif known_agent == "unreachable":
        agent_id = "far-S1"
        h.state.unreachable_agents[agent_id] = (h.now, mensa_pb2.AgentInfo(hostname="far"))
    fid = h.subscribe(F1, capabilities=(PA,) if partition_aware else ())
    call = Call(type=Call.RECONCILE)
    item = call.reconcile.tasks.add()
    item.task_id.value = "nope"
    item.agent_id.value = agent_id
    [update] = updates_to(h.call(F1, fid, call), F1)
    assert update.state == expected
    assert update.reason == S.TaskStatus.REASON_RECONCILIATION


def test_partition_aware_tasks_come_back_running_when_their_agent_returns(h: Harness) -> None:
    agent_id, fid = running_task(h, caps=(PA,))
    sends: list = []
    for _ in range(4):
        sends += h.tick(1.0)
        h.send(F1, envelope(pong=internal_pb2.Pong()))
    [unreachable] = updates_to(sends, F1)
    assert unreachable.state == S.TASK_UNREACHABLE
    assert h.state.allocator.has_agent(agent_id) is False
    sends = reregister(h, A1, agent_id, [reported("t1", fid, S.TASK_RUNNING)])
    assert not messages_to(sends, A1, "kill_task")
    [running] = updates_to(sends, F1)
    assert running.state == S.TASK_RUNNING
    assert running.reason == S.TaskStatus.REASON_AGENT_REREGISTERED
    record = h.state.frameworks[fid].tasks["t1"]
    assert record.state == S.TASK_RUNNING and not record.released
    # Its resources are in use again: the agent offers only the rest.
    [offer] = h.offers_to(h.allocate(), F1)
    assert Resources.from_proto(offer.resources).scalar("cpus") == 3


def test_a_second_live_agent_cannot_claim_an_agent_id(h: Harness) -> None:
    agent_id = h.register_agent(A1, hostname="host-a")
    sends = reregister(h, A2, agent_id, [], hostname="host-b")
    [error] = errors_to(sends, A2)
    assert agent_id in error.message and "host-a" in error.message
    assert h.state.agents[agent_id].peer == A1
    # The same host (a restarted agent) takes its id back.
    assert messages_to(reregister(h, A2, agent_id, [], hostname="host-a"), A2, "agent_registered")


def test_file_store_replaces_atomically_and_refuses_stale_versions(tmp_path) -> None:
    store = FileStore(tmp_path / "registry")
    assert store.load() == (None, 0)
    version = store.store(b"one", 0)
    assert store.load() == (b"one", version)
    with pytest.raises(RegistryConflict):
        store.store(b"two", 0)
    assert FileStore(tmp_path / "registry").load()[0] == b"one"  # a restarted master reads it
    assert not (tmp_path / "registry.tmp").exists()


def test_failover_timeout_defaults_to_a_week_when_the_framework_sets_none(h: Harness) -> None:
    call = Call(type=Call.SUBSCRIBE)
    call.subscribe.framework_info.name = "fw"
    h.send(F1, envelope(call=call))
    [framework] = h.state.frameworks.values()
    assert framework.info.failover_timeout == 7 * 24 * 3600
    fid = h.subscribe(b"framework-2", failover_timeout=0.0)  # an explicit 0 stays 0
    assert h.state.frameworks[fid].info.failover_timeout == 0.0


def test_kill_of_a_task_on_a_recovering_agent_waits_for_the_agent(h: Harness) -> None:
    agent_id, fid = running_task(h)
    new = failed_over(h)
    new.subscribe(F1, framework_id=fid, failover_timeout=3600)
    kill = Call(type=Call.KILL)
    kill.kill.task_id.value = "t1"
    kill.kill.agent_id.value = agent_id
    assert new.call(F1, fid, kill) == []  # not LOST: the agent may still bring it back
    reregister(new, A1, agent_id, [reported("t1", fid, S.TASK_RUNNING)])
    [sent] = messages_to(new.call(F1, fid, kill), A1, "kill_task")
    assert sent.kill_task.task_id.value == "t1"


def test_implicit_reconciliation_includes_tasks_of_unreachable_agents(h: Harness) -> None:
    _agent_id, fid = running_task(h, caps=(PA,))
    for _ in range(4):
        h.tick(1.0)
        h.send(F1, envelope(pong=internal_pb2.Pong()))
    [update] = updates_to(h.call(F1, fid, Call(type=Call.RECONCILE)), F1)
    assert (update.task_id.value, update.state) == ("t1", S.TASK_UNREACHABLE)


def test_a_disconnected_frameworks_failover_timeout_survives_a_failover(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1, failover_timeout=10)
    for _ in range(5):  # silent: disconnected at about t0 + 3
        h.tick(1.0)
    disconnected_at = h.state.frameworks[fid].disconnected_at
    assert disconnected_at is not None and h.state.registry_dirty
    new = failed_over(h, reregister_timeout=600)
    assert new.state.frameworks[fid].disconnected_at == disconnected_at
    while new.now < disconnected_at + 10 - 1:
        new.tick(1.0)
    assert fid in new.state.frameworks  # not a fresh 600 s + 10 s after the failover
    new.tick(2.0)
    assert fid not in new.state.frameworks and fid in new.state.completed_frameworks
