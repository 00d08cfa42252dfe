"""frameworks.convert: what a framework author passes -> scheduler Calls (pure)."""

from __future__ import annotations

import math

import pytest

from mensa.frameworks import convert
from mensa.proto import mensa_pb2, scheduler_pb2

Call = scheduler_pb2.Call
LAUNCH = mensa_pb2.Offer.Operation.LAUNCH

TASK_DICT = {
    "name": "web",
    "task_id": {"value": "web-1"},
    "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}}],
    "command": {"value": "python -m http.server"},
}


def make_offer(offer_id: str, agent_id: str) -> mensa_pb2.Offer:
    return mensa_pb2.Offer(id={"value": offer_id}, agent_id={"value": agent_id})


@pytest.mark.parametrize(
    "value",
    ["o1", mensa_pb2.OfferID(value="o1"), {"value": "o1"}, make_offer("o1", "a1"), ["o1"], ("o1",)],
)
def test_one_offer_id_in_any_form(value: object) -> None:
    call = convert.decline_call(value)
    assert call.type == Call.DECLINE
    assert [o.value for o in call.decline.offer_ids] == ["o1"]
    assert not call.decline.HasField("filters")


def test_several_offer_ids_and_filters_forms() -> None:
    call = convert.decline_call(["o1", mensa_pb2.OfferID(value="o2")], filters=30)
    assert [o.value for o in call.decline.offer_ids] == ["o1", "o2"]
    assert call.decline.filters.refuse_seconds == 30.0
    assert convert.to_filters({"refuse_seconds": 2.5}) == mensa_pb2.Filters(refuse_seconds=2.5)
    assert convert.to_filters(mensa_pb2.Filters(refuse_seconds=1)).refuse_seconds == 1
    assert convert.to_filters(None) is None


@pytest.mark.parametrize("bad", [-1.0, math.nan, True])
def test_bad_filters_are_refused(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        convert.to_filters(bad)


@pytest.mark.parametrize("bad", ["", [], {"value": ""}, {"valu": "x"}, 42])
def test_bad_offer_ids_are_refused(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        convert.decline_call(bad)


def test_launch_fills_agent_from_the_offer_book() -> None:
    call = convert.launch_call("o1", [TASK_DICT], 5.0, {"o1": "agent-7"})
    assert call.type == Call.ACCEPT
    assert [o.value for o in call.accept.offer_ids] == ["o1"]
    assert call.accept.filters.refuse_seconds == 5.0
    (op,) = call.accept.operations
    assert op.type == LAUNCH
    (task,) = op.launch.task_infos
    assert task.task_id.value == "web-1" and task.agent_id.value == "agent-7"
    assert task.resources[0].scalar.value == 0.5
    assert not call.HasField("framework_id")  # stamped by the driver at send time


def test_launch_fills_agent_from_an_offer_object_and_keeps_explicit_agents() -> None:
    explicit = mensa_pb2.TaskInfo(name="x", task_id={"value": "x"}, agent_id={"value": "mine"})
    call = convert.launch_call(make_offer("o1", "a1"), [TASK_DICT, explicit], None, {})
    agents = [t.agent_id.value for t in call.accept.operations[0].launch.task_infos]
    assert agents == ["a1", "mine"]
    assert explicit.agent_id.value == "mine"  # the caller's message is not modified


def test_launch_with_unknown_offer_leaves_agent_unset() -> None:
    call = convert.launch_call("o9", TASK_DICT, None, {"o1": "a1"})
    (task,) = call.accept.operations[0].launch.task_infos
    assert not task.HasField("agent_id")


def test_launch_without_tasks_is_an_accept_without_operations() -> None:
    call = convert.launch_call("o1", [], None, {})
    assert call.type == Call.ACCEPT and len(call.accept.operations) == 0


def test_launch_refuses_tasks_without_id_and_bad_dicts() -> None:
    with pytest.raises(ValueError, match="no task_id"):
        convert.launch_call("o1", [{"name": "x"}], None, {})
    with pytest.raises(ValueError, match="invalid TaskInfo"):
        convert.launch_call("o1", [{"name": "x", "nonsense": 1}], None, {})


def test_accept_with_operations_as_dicts() -> None:
    op = {"type": "LAUNCH", "launch": {"task_infos": [TASK_DICT]}}
    call = convert.accept_call(["o1", "o2"], [op], {"refuse_seconds": 1})
    assert [o.value for o in call.accept.offer_ids] == ["o1", "o2"]
    assert call.accept.operations[0].launch.task_infos[0].name == "web"
    assert call.accept.filters.refuse_seconds == 1


def test_revive_and_suppress_roles() -> None:
    assert list(convert.revive_call().revive.roles) == []
    assert list(convert.revive_call("dev").revive.roles) == ["dev"]
    assert list(convert.suppress_call(["a", "b"]).suppress.roles) == ["a", "b"]
    assert convert.suppress_call().type == Call.SUPPRESS
    with pytest.raises(ValueError):
        convert.revive_call([""])


def test_kill_with_agent_and_grace_period() -> None:
    call = convert.kill_call("t1", mensa_pb2.AgentID(value="a1"), kill_policy=2.5)
    assert call.type == Call.KILL
    assert (call.kill.task_id.value, call.kill.agent_id.value) == ("t1", "a1")
    assert call.kill.kill_policy.grace_period.nanoseconds == 2_500_000_000
    bare = convert.kill_call({"value": "t2"})
    assert not bare.kill.HasField("agent_id") and not bare.kill.HasField("kill_policy")


def test_acknowledge_only_updates_with_a_uuid() -> None:
    status = mensa_pb2.TaskStatus(
        task_id={"value": "t1"}, agent_id={"value": "a1"}, state=mensa_pb2.TASK_RUNNING, uuid=b"u"
    )
    call = convert.acknowledge_call(status)
    assert call is not None and call.type == Call.ACKNOWLEDGE
    ack = call.acknowledge
    assert (ack.task_id.value, ack.agent_id.value, ack.uuid) == ("t1", "a1", b"u")
    status.ClearField("uuid")
    assert convert.acknowledge_call(status) is None


def test_reconcile_implicit_and_explicit() -> None:
    implicit: list[str] | None
    for implicit in (None, []):
        call = convert.reconcile_call(implicit)
        assert call.type == Call.RECONCILE and call.HasField("reconcile")
        assert len(call.reconcile.tasks) == 0
    status = mensa_pb2.TaskStatus(task_id={"value": "t1"}, agent_id={"value": "a1"})
    call = convert.reconcile_call(
        [
            status,
            ("t2", "a2"),
            ("t3", None),
            "t4",
            {"task_id": {"value": "t5"}, "state": "TASK_RUNNING"},
        ]
    )
    pairs = [(t.task_id.value, t.agent_id.value) for t in call.reconcile.tasks]
    assert pairs == [("t1", "a1"), ("t2", "a2"), ("t3", ""), ("t4", ""), ("t5", "")]
    with pytest.raises(ValueError):
        convert.reconcile_call([("t1", "a1", "extra")])


def test_framework_message_and_subscribe_and_teardown() -> None:
    call = convert.message_call("e1", "a1", "hello")
    assert (call.message.executor_id.value, call.message.agent_id.value) == ("e1", "a1")
    assert call.message.data == b"hello"
    assert convert.message_call("e1", "a1", b"\x00").message.data == b"\x00"
    info = mensa_pb2.FrameworkInfo(name="f", id={"value": "fw"})
    sub = convert.subscribe_call(info)
    assert sub.type == Call.SUBSCRIBE and sub.subscribe.framework_info.id.value == "fw"
    assert convert.teardown_call().type == Call.TEARDOWN
    assert convert.call_name(sub) == "SUBSCRIBE"
