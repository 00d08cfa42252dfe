"""The master state machine, driven through its pure interface (no sockets, no sleeps)."""

from __future__ import annotations

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

from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources

A1, A2, F1, F2 = b"agent-1", b"agent-2", b"fw-1", b"fw-2"
S = mensa_pb2


@pytest.fixture
def h() -> Harness:
    return Harness()


def offered(h: Harness, peer: bytes) -> list[mensa_pb2.Offer]:
    return h.offers_to(h.allocate(), peer)


# -- registration and offers ---------------------------------------------------------------------


def test_agent_gets_an_id_and_a_duplicate_registration_gets_the_same_one(h: Harness) -> None:
    first = h.register_agent(A1)
    again = h.register_agent(A1)
    assert first == again == "M-S0"
    assert list(h.state.agents) == ["M-S0"]


def test_agent_with_invalid_resources_is_refused(h: Harness) -> None:
    msg = internal_pb2.RegisterAgent()
    msg.agent_info.hostname = "h"
    r = msg.agent_info.resources.add(name="cpus", type=mensa_pb2.Value.SCALAR)
    r.scalar.value = -1
    sends = h.send(A1, envelope(register_agent=msg))
    assert "must not be negative" in errors_to(sends, A1)[0].message
    assert not h.state.agents


def test_subscribed_framework_is_offered_the_whole_agent(h: Harness) -> None:
    agent_id = h.register_agent(A1)
    framework_id = h.subscribe(F1)
    assert framework_id == "M-0000"
    offers = offered(h, F1)
    assert len(offers) == 1
    offer = offers[0]
    assert offer.agent_id.value == agent_id and offer.framework_id.value == framework_id
    assert Resources.from_proto(offer.resources) == Resources.parse("cpus:4;mem:4096;ports:[31000-31009]")
    # Offered resources are not offered again.
    assert h.offers_to(h.allocate(), F1) == []


def test_offers_alternate_between_frameworks_by_dominant_share(h: Harness) -> None:
    h.register_agent(A1, hostname="a1")
    h.register_agent(A2, hostname="a2")
    h.subscribe(F1, "one")
    h.subscribe(F2, "two")
    sends = h.allocate()
    # Two equal agents, two frameworks at share 0: each gets one agent.
    assert len(h.offers_to(sends, F1)) == 1
    assert len(h.offers_to(sends, F2)) == 1


# -- accept ---------------------------------------------------------------------------------------


def test_launch_sends_run_task_and_returns_the_rest_with_a_filter(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    offer = offered(h, F1)[0]
    sends = h.launch(F1, fid, [offer.id.value], [task("t1", "cpus:1;mem:128;ports:[31000-31000]")],
                     refuse_seconds=10)
    runs = messages_to(sends, A1, "run_task")
    assert len(runs) == 1
    assert runs[0].run_task.task.task_id.value == "t1"
    assert runs[0].run_task.task.agent_id.value == offer.agent_id.value
    assert runs[0].run_task.framework.id.value == fid
    assert h.state.frameworks[fid].tasks["t1"].state == S.TASK_STAGING
    # The remainder is filtered for this framework...
    assert h.offers_to(h.allocate(), F1) == []
    # ...until the filter expires.
    h.now += 11
    again = h.offers_to(h.allocate(), F1)
    assert len(again) == 1
    assert Resources.from_proto(again[0].resources) == Resources.parse(
        "cpus:3;mem:3968;ports:[31001-31009]")


def test_invalid_offers_drop_tasks_with_a_reason(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1, capabilities=(PA,))
    sends = h.launch(F1, fid, ["no-such-offer"], [task("t1")])
    [update] = updates_to(sends, F1)
    assert update.state == S.TASK_DROPPED
    assert update.reason == S.TaskStatus.REASON_INVALID_OFFERS
    assert "unknown" in update.message
    assert "unknown" in errors_to(sends, F1)[0].message


def test_used_offer_is_refused_and_tasks_are_lost_for_non_partition_aware(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    offer_id = offered(h, F1)[0].id.value
    h.launch(F1, fid, [offer_id], [task("t1")])
    sends = h.launch(F1, fid, [offer_id], [task("t2")])
    [update] = updates_to(sends, F1)
    assert update.state == S.TASK_LOST
    assert "was already used" in update.message
    assert "t2" not in h.state.frameworks[fid].tasks


def test_rescinded_offer_and_mixed_agents_are_refused(h: Harness) -> None:
    h.register_agent(A1, hostname="a1")
    h.register_agent(A2, hostname="a2")
    fid = h.subscribe(F1, capabilities=(PA,))
    offers = offered(h, F1)
    assert len(offers) == 2
    sends = h.launch(F1, fid, [o.id.value for o in offers], [task("t1")])
    [update] = updates_to(sends, F1)
    assert "more than one agent" in update.message
    # Both offers were consumed by the bad ACCEPT; their resources are free again.
    assert len(h.state.offers) == 0
    offers = h.offers_to(h.allocate(), F1)
    h.state.rescind(offers[0].id.value, h.now)
    sends = h.launch(F1, fid, [offers[0].id.value], [task("t2")])
    assert "was rescinded" in updates_to(sends, F1)[0].message


def test_offer_of_another_framework_is_refused_and_left_alone(h: Harness) -> None:
    h.register_agent(A1)
    fid1 = h.subscribe(F1)
    offer_id = offered(h, F1)[0].id.value
    fid2 = h.subscribe(F2, "two")
    sends = h.launch(F2, fid2, [offer_id], [task("t1")])
    assert "not made to this framework" in updates_to(sends, F2)[0].message
    assert h.state.offers.get(offer_id) is not None
    assert h.state.offers.get(offer_id).framework_id == fid1  # type: ignore[union-attr]


@pytest.mark.parametrize("bad, reason", [
    (task("big", "cpus:5;mem:128"), "but the offers have"),
    (task("ports", "cpus:1;mem:1;ports:[40000-40000]"), "but the offers have"),
    (task("empty", command="  "), "command is empty"),
    (task("noexe", command="", shell=False), "no executable"),
    (task("../escape"), "path separator"),
    (task(".."), "escape the sandbox"),
    (task(""), "must not be empty"),
    (task("none", resources=""), "uses no resources"),
])
def test_invalid_tasks_get_task_error_and_valid_ones_launch(h: Harness, bad: mensa_pb2.TaskInfo,
                                                             reason: str) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    offer_id = offered(h, F1)[0].id.value
    sends = h.launch(F1, fid, [offer_id], [bad, task("good")])
    [update] = updates_to(sends, F1)
    assert update.state == S.TASK_ERROR
    assert update.reason == S.TaskStatus.REASON_TASK_INVALID
    assert reason in update.message
    assert [r.run_task.task.task_id.value for r in messages_to(sends, A1, "run_task")] == ["good"]


@pytest.mark.parametrize("value", [float("nan"), -1.0, float("inf")])
def test_negative_or_nan_resources_are_task_errors(h: Harness, value: float) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    offer_id = offered(h, F1)[0].id.value
    bad = task("bad")
    bad.resources[0].scalar.value = value
    [update] = updates_to(h.launch(F1, fid, [offer_id], [bad]), F1)
    assert update.state == S.TASK_ERROR and "invalid resources" in update.message


def test_duplicate_task_ids_are_refused_within_an_accept_and_across(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    offer_id = offered(h, F1)[0].id.value
    sends = h.launch(F1, fid, [offer_id], [task("t"), task("t")], refuse_seconds=0)
    assert len(messages_to(sends, A1, "run_task")) == 1
    assert "already used" in updates_to(sends, F1)[0].message
    offer_id = h.offers_to(h.allocate(), F1)[0].id.value
    sends = h.launch(F1, fid, [offer_id], [task("t")])
    assert updates_to(sends, F1)[0].state == S.TASK_ERROR


def test_calls_from_a_framework_that_never_subscribed_are_refused(h: Harness) -> None:
    sends = h.call(F1, "made-up", Call(type=Call.REVIVE))
    [error] = errors_to(sends, F1)
    assert error.code == internal_pb2.Error.NOT_SUBSCRIBED
    fid = h.subscribe(F1)
    # The right id from the wrong connection is refused too.
    assert errors_to(h.call(F2, fid, Call(type=Call.REVIVE)), F2)[0].code == internal_pb2.Error.NOT_SUBSCRIBED


def test_unsupported_call_and_unknown_message_kinds_get_errors(h: Harness) -> None:
    fid = h.subscribe(F1)
    assert "not supported" in errors_to(h.call(F1, fid, Call(type=Call.SHUTDOWN)), F1)[0].message
    sends = h.send(F1, envelope(run_task=internal_pb2.RunTask()))
    assert "does not take run_task" in errors_to(sends, F1)[0].message


# -- status updates -------------------------------------------------------------------------------


def launched(h: Harness, task_id: str = "t1", caps: tuple[int, ...] = ()) -> tuple[str, str]:
    agent_id = h.register_agent(A1)
    fid = h.subscribe(F1, capabilities=caps)
    offer_id = offered(h, F1)[0].id.value
    h.launch(F1, fid, [offer_id], [task(task_id)], refuse_seconds=0)
    return agent_id, fid


def test_status_updates_flow_to_the_framework_and_acks_to_the_agent(h: Harness) -> None:
    agent_id, fid = launched(h)
    sends = h.status(A1, fid, "t1", S.TASK_RUNNING, b"u1")
    [update] = updates_to(sends, F1)
    assert update.state == S.TASK_RUNNING and update.uuid == b"u1" and update.agent_id.value == agent_id
    ack = Call(type=Call.ACKNOWLEDGE)
    ack.acknowledge.agent_id.value = agent_id
    ack.acknowledge.task_id.value = "t1"
    ack.acknowledge.uuid = b"u1"
    [fwd] = messages_to(h.call(F1, fid, ack), A1, "status_update_acknowledgement")
    assert fwd.status_update_acknowledgement.uuid == b"u1"
    assert fwd.status_update_acknowledgement.framework_id.value == fid


def test_terminal_update_frees_resources_once_and_ack_retires_the_task(h: Harness) -> None:
    agent_id, fid = launched(h)
    before = h.state.allocator.free(agent_id)
    h.status(A1, fid, "t1", S.TASK_FINISHED, b"u2")
    freed = h.state.allocator.free(agent_id)
    assert freed == before + Resources.parse("cpus:1;mem:128")
    # A duplicate of the terminal update is forwarded again but frees nothing more.
    sends = h.status(A1, fid, "t1", S.TASK_FINISHED, b"u2")
    assert len(updates_to(sends, F1)) == 1
    assert h.state.allocator.free(agent_id) == freed
    ack = Call(type=Call.ACKNOWLEDGE)
    ack.acknowledge.agent_id.value = agent_id
    ack.acknowledge.task_id.value = "t1"
    ack.acknowledge.uuid = b"u2"
    h.call(F1, fid, ack)
    framework = h.state.frameworks[fid]
    assert "t1" not in framework.tasks
    assert framework.find_completed("t1") is not None
    # A retry after the ack (the ack got lost on the way) still reaches the framework.
    assert len(updates_to(h.status(A1, fid, "t1", S.TASK_FINISHED, b"u2"), F1)) == 1


def test_latest_state_frees_resources_before_the_terminal_update_is_sent(h: Harness) -> None:
    agent_id, fid = launched(h)
    h.status(A1, fid, "t1", S.TASK_RUNNING, b"u1", latest=S.TASK_FAILED)
    assert h.state.frameworks[fid].tasks["t1"].released
    assert h.state.allocator.free(agent_id) == Resources.parse("cpus:4;mem:4096;ports:[31000-31009]")


def test_status_updates_from_strangers_and_for_unknown_tasks_are_refused(h: Harness) -> None:
    _agent_id, fid = launched(h)
    sends = h.status(b"stranger", fid, "t1", S.TASK_RUNNING, b"x")
    assert errors_to(sends, b"stranger")[0].code == internal_pb2.Error.NOT_REGISTERED
    sends = h.status(A1, fid, "nope", S.TASK_RUNNING, b"y")
    assert errors_to(sends, A1)[0].code == internal_pb2.Error.UNKNOWN_TASK
    sends = h.status(A1, "other-fw", "t1", S.TASK_RUNNING, b"z")
    assert errors_to(sends, A1)[0].code == internal_pb2.Error.UNKNOWN_TASK
    sends = h.status(A1, fid, "t1", S.TASK_RUNNING, b"")
    assert "no uuid" in errors_to(sends, A1)[0].message


# -- kill, reconcile, decline, suppress ---------------------------------------------------------------


def test_kill_goes_to_the_agent_and_an_unknown_task_is_reported_lost(h: Harness) -> None:
    _, fid = launched(h)
    kill = Call(type=Call.KILL)
    kill.kill.task_id.value = "t1"
    [msg] = messages_to(h.call(F1, fid, kill), A1, "kill_task")
    assert msg.kill_task.task_id.value == "t1"
    kill.kill.task_id.value = "ghost"
    [update] = updates_to(h.call(F1, fid, kill), F1)
    assert update.state == S.TASK_LOST and update.reason == S.TaskStatus.REASON_TASK_UNKNOWN


def test_reconcile_implicit_and_explicit(h: Harness) -> None:
    _agent_id, fid = launched(h)
    h.status(A1, fid, "t1", S.TASK_RUNNING, b"u1")
    [update] = updates_to(h.call(F1, fid, Call(type=Call.RECONCILE)), F1)
    assert update.state == S.TASK_RUNNING and update.reason == S.TaskStatus.REASON_RECONCILIATION
    assert not update.uuid
    call = Call(type=Call.RECONCILE)
    call.reconcile.tasks.add().task_id.value = "t1"
    call.reconcile.tasks.add().task_id.value = "gone"
    updates = updates_to(h.call(F1, fid, call), F1)
    assert [(u.task_id.value, u.state) for u in updates] == [("t1", S.TASK_RUNNING), ("gone", S.TASK_LOST)]


def test_decline_filters_only_the_declining_framework(h: Harness) -> None:
    h.register_agent(A1)
    fid1 = h.subscribe(F1)
    offer = offered(h, F1)[0]
    h.subscribe(F2, "two")
    decline = Call(type=Call.DECLINE)
    decline.decline.offer_ids.add().CopyFrom(offer.id)
    decline.decline.filters.refuse_seconds = 30
    assert h.call(F1, fid1, decline) == []
    sends = h.allocate()
    assert h.offers_to(sends, F1) == [] and len(h.offers_to(sends, F2)) == 1
    # Declining again (an id that is gone) is answered with why.
    assert "was declined" in errors_to(h.call(F1, fid1, decline), F1)[0].message


def test_suppress_and_revive(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    h.call(F1, fid, Call(type=Call.SUPPRESS))
    assert h.offers_to(h.allocate(), F1) == []
    h.call(F1, fid, Call(type=Call.REVIVE))
    assert len(h.offers_to(h.allocate(), F1)) == 1


# -- failures -------------------------------------------------------------------------------------------


def test_silent_agent_is_marked_unreachable_its_offers_rescinded_and_tasks_lost(h: Harness) -> None:
    agent_id, _fid = launched(h)
    h.register_agent(A2, hostname="other")
    offers = h.offers_to(h.allocate(), F1)
    on_a1 = [o for o in offers if o.agent_id.value == agent_id]
    sends: list = []
    for _ in range(5):
        sends += h.tick(1.0)
        h.send(A2, envelope(pong=internal_pb2.Pong()))  # A2 and the framework keep answering.
        h.send(F1, envelope(pong=internal_pb2.Pong()))
    assert agent_id not in h.state.agents
    assert len(h.state.agents) == 1
    assert [e.rescind.offer_id.value for e in events_to(sends, F1, Event.RESCIND)] == [
        o.id.value for o in on_a1]
    [lost] = updates_to(sends, F1)
    assert lost.task_id.value == "t1" and lost.state == S.TASK_LOST
    assert lost.reason == S.TaskStatus.REASON_AGENT_REMOVED
    [failure] = events_to(sends, F1, Event.FAILURE)
    assert failure.failure.agent_id.value == agent_id
    assert agent_id in h.state.unreachable_agents and h.state.registry_dirty
    # The agent comes back and is readmitted; the framework (not partition-aware) was told its
    # task is lost, so the task is killed (as Mesos does).
    msg = internal_pb2.RegisterAgent(version="test")
    msg.agent_info.hostname = "host"
    msg.agent_info.id.value = agent_id
    msg.tasks.append(reported("t1", _fid, S.TASK_RUNNING))
    sends = h.send(A1, envelope(register_agent=msg))
    assert messages_to(sends, A1, "agent_registered")
    assert agent_id in h.state.agents and agent_id not in h.state.unreachable_agents
    [kill] = messages_to(sends, A1, "kill_task")
    assert kill.kill_task.task_id.value == "t1"
    assert updates_to(sends, F1) == []


def test_removed_agent_coming_back_is_told_to_shut_down(h: Harness) -> None:
    h.state.removed_agents["gone-S0"] = h.now
    sends = h.send(A1, envelope(register_agent=internal_pb2.RegisterAgent(
        agent_info=mensa_pb2.AgentInfo(hostname="host", id=mensa_pb2.AgentID(value="gone-S0")))))
    assert messages_to(sends, A1, "shutdown_agent")


def test_teardown_kills_tasks_frees_everything_and_forgets_the_framework(h: Harness) -> None:
    agent_id, fid = launched(h)
    sends = h.call(F1, fid, Call(type=Call.TEARDOWN))
    [shutdown] = messages_to(sends, A1, "shutdown_framework")
    assert shutdown.shutdown_framework.framework_id.value == fid
    assert fid not in h.state.frameworks and fid in h.state.completed_frameworks
    assert h.state.allocator.free(agent_id) == h.state.agents[agent_id].total
    # Re-subscribing with a removed id is an error event.
    call = Call(type=Call.SUBSCRIBE)
    call.subscribe.framework_info.name = "fw"
    call.subscribe.framework_info.id.value = fid
    [event] = events_to(h.send(F1, envelope(call=call)), F1, Event.ERROR)
    assert "removed" in event.error.message


def test_silent_framework_disconnects_and_can_resubscribe_within_failover(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1, failover_timeout=10)
    offered(h, F1)
    for _ in range(5):
        h.tick(1.0)
        h.send(A1, envelope(pong=internal_pb2.Pong()))  # The agent stays; the framework is silent.
    framework = h.state.frameworks[fid]
    assert not framework.connected
    assert len(h.state.offers) == 0
    assert h.offers_to(h.allocate(), F1) == []
    # A new connection re-subscribes with the id: same framework, offers again.
    assert h.subscribe(b"fw-1-new", framework_id=fid) == fid
    assert len(h.offers_to(h.allocate(), b"fw-1-new")) == 1


def test_failover_timeout_removes_the_framework(h: Harness) -> None:
    launched(h)
    fid = next(iter(h.state.frameworks))
    for _ in range(6):
        h.tick(1.0)
    assert fid not in h.state.frameworks
    assert fid in h.state.completed_frameworks


def test_retried_subscribe_on_the_same_connection_gets_the_same_framework(h: Harness) -> None:
    fid = h.subscribe(F1)
    assert h.subscribe(F1) == fid
    assert list(h.state.frameworks) == [fid]
    # A connection that serves one framework cannot subscribe as another.
    h.subscribe(F2, "two")
    call = Call(type=Call.SUBSCRIBE)
    call.subscribe.framework_info.name = "two"
    call.subscribe.framework_info.id.value = fid
    call.framework_id.value = fid
    other = h.state.peer_framework[F2]
    assert other != fid
    assert "already serves" in errors_to(h.send(F2, envelope(call=call)), F2)[0].message


def test_failover_to_a_new_connection_tells_the_old_one(h: Harness) -> None:
    fid = h.subscribe(F1)
    call = Call(type=Call.SUBSCRIBE)
    call.subscribe.framework_info.name = "fw"
    call.subscribe.framework_info.id.value = fid
    sends = h.send(F2, envelope(call=call))
    assert events_to(sends, F1, Event.ERROR)
    assert events_to(sends, F2, Event.SUBSCRIBED)


def test_restarted_master_rebuilds_tasks_from_a_reregistering_agent(h: Harness) -> None:
    agent_id, fid = launched(h)
    h.status(A1, fid, "t1", S.TASK_RUNNING, b"u1")
    # A fresh master (new state) hears from the agent first, then from the framework.
    fresh = Harness()
    report = mensa_pb2.Task(name="t1", state=S.TASK_RUNNING)
    report.task_id.value = "t1"
    report.framework_id.value = fid
    report.agent_id.value = agent_id
    report.resources.extend(Resources.parse("cpus:1;mem:128").to_proto())
    info = mensa_pb2.FrameworkInfo(name="fw", user="root")
    info.id.value = fid
    assert fresh.register_agent(A1, agent_id=agent_id, tasks=[report], frameworks=[info]) == agent_id
    assert fresh.state.frameworks[fid].recovered
    assert fresh.subscribe(F1, framework_id=fid) == fid
    assert fresh.state.frameworks[fid].tasks["t1"].state == S.TASK_RUNNING
    offers = fresh.offers_to(fresh.allocate(), F1)
    assert Resources.from_proto(offers[0].resources) == Resources.parse(
        "cpus:3;mem:3968;ports:[31000-31009]")


def test_reregistering_agent_that_lost_a_running_task_reports_it_lost(h: Harness) -> None:
    agent_id, fid = launched(h)
    h.status(A1, fid, "t1", S.TASK_RUNNING, b"u1")
    msg = internal_pb2.RegisterAgent()
    msg.agent_info.hostname = "host"
    msg.agent_info.id.value = agent_id
    msg.agent_info.resources.extend(Resources.parse("cpus:4;mem:4096;ports:[31000-31009]").to_proto())
    sends = h.send(b"agent-1-again", envelope(register_agent=msg))
    [lost] = updates_to(sends, F1)
    assert lost.state == S.TASK_LOST and lost.task_id.value == "t1"


def test_staging_task_missing_from_a_reregistration_is_sent_again(h: Harness) -> None:
    agent_id, _fid = launched(h)
    msg = internal_pb2.RegisterAgent()
    msg.agent_info.hostname = "host"
    msg.agent_info.id.value = agent_id
    msg.agent_info.resources.extend(Resources.parse("cpus:4;mem:4096;ports:[31000-31009]").to_proto())
    sends = h.send(b"agent-1-again", envelope(register_agent=msg))
    [run] = messages_to(sends, b"agent-1-again", "run_task")
    assert run.run_task.task.task_id.value == "t1"
    assert updates_to(sends, F1) == []


def test_heartbeats_are_sent_and_pongs_keep_a_framework_connected(h: Harness) -> None:
    fid = h.subscribe(F1)
    beats = 0
    for _ in range(10):
        sends = h.tick(0.5)
        beats += len(events_to(sends, F1, Event.HEARTBEAT))
        h.send(F1, envelope(pong=internal_pb2.Pong()))
    assert beats >= 4
    assert h.state.frameworks[fid].connected


def test_master_info_request_is_answered(h: Harness) -> None:
    sends = h.send(b"cli", envelope(master_info_request=internal_pb2.MasterInfoRequest()))
    [reply] = messages_to(sends, b"cli", "master_info_response")
    assert reply.master_info_response.leading
    assert reply.master_info_response.master_info.id == "M"


# -- re-registration edge cases (found in review) ---------------------------------------------------


def reported(task_id: str, framework_id: str, state: int, agent_id: str = "") -> mensa_pb2.Task:
    t = mensa_pb2.Task(name=task_id, state=state)  # type: ignore[arg-type]
    t.task_id.value = task_id
    t.framework_id.value = framework_id
    if agent_id:
        t.agent_id.value = agent_id
    t.resources.extend(Resources.parse("cpus:1;mem:128").to_proto())
    return t


def reregister(h: Harness, peer: bytes, agent_id: str, tasks: list[mensa_pb2.Task]) -> list:
    msg = internal_pb2.RegisterAgent()
    msg.agent_info.hostname = "host"
    msg.agent_info.id.value = agent_id
    msg.agent_info.resources.extend(Resources.parse("cpus:4;mem:4096;ports:[31000-31009]").to_proto())
    msg.tasks.extend(tasks)
    return h.send(peer, envelope(register_agent=msg))


def test_finished_unacked_task_reported_after_a_restart_leaves_no_stale_books(h: Harness) -> None:
    info = mensa_pb2.FrameworkInfo(name="fw", user="root")
    info.id.value = "F"
    agent_id = h.register_agent(A1, agent_id="old-S0", tasks=[reported("t1", "F", S.TASK_FINISHED)],
                                frameworks=[info])
    assert h.state.agents[agent_id].tasks == set()
    h.subscribe(F1, framework_id="F")
    # The agent resends the unacknowledged FINISHED; the framework hears it and acknowledges.
    [update] = updates_to(h.status(A1, "F", "t1", S.TASK_FINISHED, b"u1"), F1)
    assert update.state == S.TASK_FINISHED
    ack = Call(type=Call.ACKNOWLEDGE)
    ack.acknowledge.agent_id.value = agent_id
    ack.acknowledge.task_id.value = "t1"
    ack.acknowledge.uuid = b"u1"
    assert messages_to(h.call(F1, "F", ack), A1, "status_update_acknowledgement")
    h.call(F1, "F", Call(type=Call.TEARDOWN))
    # The agent re-registers again (a reconnect): it must be admitted, with all of it free.
    sends = reregister(h, A1, agent_id, [])
    assert messages_to(sends, A1, "agent_registered")
    assert h.state.allocator.free(agent_id) == h.state.agents[agent_id].total


def test_reported_task_placed_elsewhere_by_the_master_is_not_taken_over(h: Harness) -> None:
    a1 = h.register_agent(A1, hostname="a1")
    a2 = h.register_agent(A2, hostname="a2")
    fid = h.subscribe(F1)
    offer = next(o for o in offered(h, F1) if o.agent_id.value == a2)
    h.launch(F1, fid, [offer.id.value], [task("t")], refuse_seconds=0)
    h.status(A2, fid, "t", S.TASK_RUNNING, b"u1")
    # Agent 1 claims a task with that id: finished, then running.
    reregister(h, A1, a1, [reported("t", fid, S.TASK_FINISHED)])
    assert h.state.frameworks[fid].tasks["t"].state == S.TASK_RUNNING
    assert h.state.frameworks[fid].tasks["t"].agent_id == a2
    sends = reregister(h, A1, a1, [reported("t", fid, S.TASK_RUNNING)])
    [kill] = messages_to(sends, A1, "kill_task")
    assert kill.kill_task.task_id.value == "t"
    assert h.state.agents[a1].tasks == set()


def test_completed_task_reported_again_is_not_brought_back(h: Harness) -> None:
    agent_id, fid = launched(h)
    h.status(A1, fid, "t1", S.TASK_FINISHED, b"u1")
    ack = Call(type=Call.ACKNOWLEDGE)
    ack.acknowledge.agent_id.value = agent_id
    ack.acknowledge.task_id.value = "t1"
    ack.acknowledge.uuid = b"u1"
    h.call(F1, fid, ack)
    reregister(h, A1, agent_id, [reported("t1", fid, S.TASK_FINISHED)])
    assert "t1" not in h.state.frameworks[fid].tasks
    # A task id reused after completion launches normally.
    offer_id = h.offers_to(h.allocate(), F1)[0].id.value
    assert messages_to(h.launch(F1, fid, [offer_id], [task("t1")]), A1, "run_task")


def test_acknowledging_a_terminal_update_of_a_task_still_running_keeps_it(h: Harness) -> None:
    agent_id, fid = launched(h)
    # A contradictory update (terminal, but the agent says the task runs) must not retire it.
    h.status(A1, fid, "t1", S.TASK_LOST, b"u1", latest=S.TASK_RUNNING)
    ack = Call(type=Call.ACKNOWLEDGE)
    ack.acknowledge.agent_id.value = agent_id
    ack.acknowledge.task_id.value = "t1"
    ack.acknowledge.uuid = b"u1"
    h.call(F1, fid, ack)
    assert h.state.frameworks[fid].tasks["t1"].state == S.TASK_RUNNING


def test_recovered_framework_that_never_returns_is_removed(h: Harness) -> None:
    info = mensa_pb2.FrameworkInfo(name="fw", user="root", failover_timeout=2)
    info.id.value = "F"
    agent_id = h.register_agent(A1, agent_id="old-S0", tasks=[reported("t1", "F", S.TASK_RUNNING)],
                                frameworks=[info])
    window = h.state.config.recovery_window
    for _ in range(int(window + 1)):
        h.tick(1.0)
        h.send(A1, envelope(pong=internal_pb2.Pong()))
    assert "F" in h.state.frameworks  # window + failover timeout not over yet
    sends: list = []
    for _ in range(3):
        sends += h.tick(1.0)
        h.send(A1, envelope(pong=internal_pb2.Pong()))
    assert "F" not in h.state.frameworks and "F" in h.state.completed_frameworks
    assert messages_to(sends, A1, "shutdown_framework")
    assert h.state.allocator.free(agent_id) == h.state.agents[agent_id].total


def test_pings_give_agents_a_silence_budget_of_several_periods(h: Harness) -> None:
    h.register_agent(A1)
    [ping] = messages_to(h.tick(1.0), A1, "ping")
    cfg = h.state.config
    assert ping.ping.timeout_seconds == cfg.agent_ping_timeout * (cfg.max_agent_ping_timeouts + 1)
    assert ping.ping.timeout_seconds > cfg.agent_ping_timeout
