"""Quota, weights and reservations through the master: offer operations, operator calls, the
registry and /state."""

from __future__ import annotations

import random

import pytest
from master_harness import Call, Event, Harness, envelope, errors_to, events_to, messages_to, task

from mensa.master import operator, registry
from mensa.master.allocator import Allocator
from mensa.master.http.state_json import state_json
from mensa.master.operator import OperatorError, ResourcesUnavailable
from mensa.master.state import MasterConfig, MasterState, Received
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources

S = mensa_pb2
A1, F1, F2 = b"agent-1", b"framework-1", b"framework-2"
Operation = mensa_pb2.Offer.Operation


@pytest.fixture
def h() -> Harness:
    return Harness()


def subscribe_role(h: Harness, peer: bytes, role: str) -> str:
    call = Call(type=Call.SUBSCRIBE)
    info = call.subscribe.framework_info
    info.name, info.user = "fw", "root"
    info.roles.append(role)
    info.capabilities.add(type=mensa_pb2.FrameworkInfo.Capability.MULTI_ROLE)
    sends = h.send(peer, envelope(call=call))
    [event] = [s.envelope.event for s in sends if s.peer == peer and s.envelope.HasField("event")]
    return event.subscribed.framework_id.value


def accept(h: Harness, peer: bytes, fid: str, offer: mensa_pb2.Offer,
           *ops: mensa_pb2.Offer.Operation) -> list:
    call = Call(type=Call.ACCEPT)
    call.accept.offer_ids.add(value=offer.id.value)
    call.accept.operations.extend(ops)
    return h.call(peer, fid, call)


def reserve_op(text: str) -> mensa_pb2.Offer.Operation:
    op = Operation(type=Operation.RESERVE)
    op.reserve.resources.extend(Resources.parse(text).to_proto())
    return op


def unreserve_op(text: str) -> mensa_pb2.Offer.Operation:
    op = Operation(type=Operation.UNRESERVE)
    op.unreserve.resources.extend(Resources.parse(text).to_proto())
    return op


def launch_op(*tasks: mensa_pb2.TaskInfo) -> mensa_pb2.Offer.Operation:
    op = Operation(type=Operation.LAUNCH)
    op.launch.task_infos.extend(tasks)
    return op


def test_reserve_then_launch_on_the_reservation_in_one_accept(h: Harness) -> None:
    agent_id = h.register_agent(A1, resources="cpus:4;mem:4096")
    fid = subscribe_role(h, F1, "ml")
    [offer] = h.offers_to(h.allocate(), F1)
    assert offer.allocation_info.role == "ml"  # unreserved resources reach every role
    sends = accept(h, F1, fid, offer, reserve_op("cpus(ml):2;mem(ml):1024"),
                   launch_op(task("t1", resources="cpus(ml):1;mem(ml):128")))
    assert errors_to(sends, F1) == []
    assert messages_to(sends, A1, "run_task")
    assert h.state.reservations[agent_id] == Resources.parse("cpus(ml):2;mem(ml):1024")
    assert h.state.registry_dirty
    assert h.state.allocator.total(agent_id) == Resources.parse("cpus:2;mem:3072;cpus(ml):2;mem(ml):1024")


def test_reservation_operations_that_do_not_fit_are_refused_and_change_nothing(h: Harness) -> None:
    agent_id = h.register_agent(A1, resources="cpus:4;mem:4096")
    fid = subscribe_role(h, F1, "ml")
    [offer] = h.offers_to(h.allocate(), F1)
    h.state.registry_dirty = False
    sends = accept(h, F1, fid, offer, reserve_op("cpus(ml):8"), reserve_op("cpus(other):1"),
                   unreserve_op("cpus(ml):1"))
    errors = [e.message for e in errors_to(sends, F1)]
    assert any("RESERVE of cpus(ml):8" in m for m in errors)
    assert any("not roles of this framework" in m for m in errors)
    assert any("UNRESERVE" in m for m in errors)
    assert agent_id not in h.state.reservations and not h.state.registry_dirty
    assert h.state.allocator.total(agent_id) == Resources.parse("cpus:4;mem:4096")


def test_operator_reserve_rescinds_offers_and_unreserve_returns_the_resources(h: Harness) -> None:
    agent_id = h.register_agent(A1, resources="cpus:4;mem:4096")
    fid = subscribe_role(h, F1, "ml")
    h.offers_to(h.allocate(), F1)  # everything is offered
    sends = operator.reserve(h.state, agent_id, Resources.parse("cpus(ml):1"), h.now)
    assert events_to(sends, F1, Event.RESCIND)  # the offer held what was asked for
    assert h.state.reservations[agent_id] == Resources.parse("cpus(ml):1")
    with pytest.raises(ResourcesUnavailable):
        operator.reserve(h.state, agent_id, Resources.parse("cpus(ml):10"), h.now)
    with pytest.raises(OperatorError, match="name the role"):
        operator.reserve(h.state, agent_id, Resources.parse("cpus:1"), h.now)
    with pytest.raises(OperatorError, match="not registered"):
        operator.reserve(h.state, "nope", Resources.parse("cpus(ml):1"), h.now)
    operator.unreserve(h.state, agent_id, Resources.parse("cpus(ml):1"), h.now)
    assert agent_id not in h.state.reservations
    with pytest.raises(OperatorError, match="not dynamically reserved"):
        operator.unreserve(h.state, agent_id, Resources.parse("cpus(ml):1"), h.now)
    assert fid in h.state.frameworks


@pytest.mark.parametrize(("role", "weight"), [("ml", 0), ("ml", -1), ("ml", float("nan")),
                                              ("ml", float("inf")), ("/bad", 1), ("a b", 1),
                                              ("*", 2), ("..", 1)])
def test_bad_weights_and_roles_are_refused_and_change_nothing(h: Harness, role: str, weight: float) -> None:
    with pytest.raises(OperatorError):
        operator.set_weights(h.state, [("good", 2.0), (role, weight)])
    assert h.state.allocator.weights() == {} and not h.state.registry_dirty


def test_quota_validation(h: Harness) -> None:
    with pytest.raises(OperatorError, match="unreserved"):
        operator.set_quota(h.state, "ml", Resources.parse("cpus(ml):1"), None)
    with pytest.raises(OperatorError, match="scalar"):
        operator.set_quota(h.state, "ml", Resources.parse("ports:[1-2]"), None)
    with pytest.raises(OperatorError):
        operator.remove_quota(h.state, "ml")
    with pytest.raises(OperatorError, match="more than the cluster has"):
        operator.set_quota(h.state, "ml", Resources.parse("cpus:1"), None)  # no agents yet
    operator.set_quota(h.state, "ml", Resources.parse("cpus:1"), None, force=True)
    h.register_agent(A1, resources="cpus:4;mem:4096")
    operator.set_quota(h.state, "ml", Resources.parse("cpus:1"), Resources.parse("cpus:2"))
    assert set(h.state.allocator.quotas()) == {"ml"}


def test_weights_quota_and_reservations_survive_a_failover(h: Harness) -> None:
    agent_id = h.register_agent(A1, resources="cpus:4;mem:4096")  # before quota: it is checked
    operator.set_weights(h.state, [("ml", 3.0)])
    operator.set_quota(h.state, "ml", Resources.parse("cpus:1;mem:512"), Resources.parse("cpus:3"))
    operator.reserve(h.state, agent_id, Resources.parse("cpus(ml):2"), h.now)
    saved = registry.decode(registry.encode(registry.snapshot(h.state)))
    info = mensa_pb2.MasterInfo(id="M2", hostname="m2", port=5051)
    new = MasterState(MasterConfig(master_info=info, started_at=h.now + 1),
                      allocator=Allocator(rng=random.Random(1)))
    registry.restore(new, saved, h.now + 1)
    assert new.allocator.weights() == {"ml": 3.0}
    assert new.allocator.quotas()["ml"].limit == Resources.parse("cpus:3")
    assert new.reservations[agent_id] == Resources.parse("cpus(ml):2")
    # The agent re-registers with its plain resources; the reservation is applied again.
    msg = internal_pb2.RegisterAgent(version="test")
    msg.agent_info.hostname = "host"
    msg.agent_info.id.value = agent_id
    msg.agent_info.resources.extend(Resources.parse("cpus:4;mem:4096").to_proto())
    new.handle(Received(A1, envelope(register_agent=msg)), h.now + 2)
    assert new.allocator.total(agent_id) == Resources.parse("cpus:2;mem:4096;cpus(ml):2")


def test_state_shows_roles_shares_and_why_a_framework_gets_nothing(h: Harness) -> None:
    h.register_agent(A1, resources="cpus:4;mem:4096")
    fid = subscribe_role(h, F1, "ml")
    operator.set_weights(h.state, [("ml", 2.0)])
    h.allocate()
    h.call(F1, fid, Call(type=Call.SUPPRESS))
    doc = state_json(h.state, started_at=0.0, elected_at=0.0, now=h.now)
    [ml] = [r for r in doc["roles"] if r["name"] == "ml"]
    assert ml["weight"] == 2.0 and ml["frameworks"] == [fid]
    [framework] = doc["frameworks"]
    allocation = framework["allocation"]
    assert allocation["suppressed_roles"] == ["ml"]
    assert allocation["outstanding_offers"] == 1
    assert any("suppress" in reason for reason in allocation["why_no_offers"])


def test_an_offer_held_past_the_offer_timeout_is_rescinded_and_offered_again(h: Harness) -> None:
    h.state.config.offer_timeout = 5.0
    h.register_agent(A1, resources="cpus:4;mem:4096")
    fid = h.subscribe(F1)
    [offer] = h.offers_to(h.allocate(), F1)
    sends: list = []
    for _ in range(4):  # the agent and the framework stay, answering pings and heartbeats
        sends += h.tick(1.0)
        h.send(F1, envelope(pong=internal_pb2.Pong()))
        h.send(A1, envelope(pong=internal_pb2.Pong()))
    assert events_to(sends, F1, Event.RESCIND) == []
    [rescind] = events_to(h.tick(1.5), F1, Event.RESCIND)
    assert rescind.rescind.offer_id.value == offer.id.value
    [again] = h.offers_to(h.allocate(), F1)
    assert again.id.value != offer.id.value
    assert fid in h.state.frameworks


def test_a_framework_declining_everything_for_long_does_not_starve_another(h: Harness) -> None:
    h.register_agent(A1, resources="cpus:4;mem:4096")
    greedy = h.subscribe(F1)
    [offer] = h.offers_to(h.allocate(), F1)
    decline = Call(type=Call.DECLINE)
    decline.decline.offer_ids.add(value=offer.id.value)
    decline.decline.filters.refuse_seconds = 1e9  # clamped to a year
    h.call(F1, greedy, decline)
    h.subscribe(F2)
    [offer] = h.offers_to(h.allocate(), F2)
    assert Resources.from_proto(offer.resources) == Resources.parse("cpus:4;mem:4096")


def test_offers_show_dynamic_reservations_as_dynamic(h: Harness) -> None:
    agent_id = h.register_agent(A1, resources="cpus(ml):1;cpus:4;mem:4096")  # one static cpu
    operator.reserve(h.state, agent_id, Resources.parse("mem(ml):512"), h.now)
    subscribe_role(h, F1, "ml")
    [offer] = h.offers_to(h.allocate(), F1)
    kinds = {(r.name, r.reservations[-1].type) for r in offer.resources if len(r.reservations)}
    Info = mensa_pb2.Resource.ReservationInfo
    assert kinds == {("cpus", Info.STATIC), ("mem", Info.DYNAMIC)}


def test_a_zero_limit_from_json_or_text_is_kept_and_persisted(h: Harness) -> None:
    h.register_agent(A1, resources="cpus:4;mem:4096;gpus:1")
    for limit in ('cpus:2;gpus:0', [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}},
                                   {"name": "gpus", "type": "SCALAR", "scalar": {"value": 0}}]):
        operator.set_quota(h.state, "ml", Resources.empty(), operator.parse_resources(limit, "limit"),
                           zero_limits=operator.zero_names(limit))
        assert h.state.allocator.quotas()["ml"].zero_limits == {"gpus"}
    saved = registry.decode(registry.encode(registry.snapshot(h.state)))
    new = MasterState(MasterConfig(master_info=mensa_pb2.MasterInfo(id="M2")),
                      allocator=Allocator(rng=random.Random(1)))
    registry.restore(new, saved, h.now)
    assert new.allocator.quotas()["ml"].to_json()["limit"] == {"cpus": 2.0, "gpus": 0.0}
