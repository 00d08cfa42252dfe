"""frameworks.events: master Event -> Scheduler callback, and the driver's timing rules (pure)."""

from __future__ import annotations

import pytest

from mensa.frameworks.events import (
    Backoff,
    Callback,
    callback_for,
    heartbeat_interval,
    silence_timeout,
)
from mensa.frameworks.scheduler import Scheduler
from mensa.proto import mensa_pb2, scheduler_pb2

Event = scheduler_pb2.Event


def subscribed(hb: float = 0.0) -> scheduler_pb2.Event:
    return Event(
        type=Event.SUBSCRIBED,
        subscribed=Event.Subscribed(
            framework_id={"value": "fw"}, heartbeat_interval_seconds=hb, master_info={"id": "m"}
        ),
    )


def plain(arg: object) -> object:
    """An id message as its value, a TaskStatus as its task id, anything else as is."""
    if isinstance(arg, mensa_pb2.TaskStatus):
        return arg.task_id.value
    return getattr(arg, "value", arg)


def test_subscribed_is_registered_first_then_reregistered() -> None:
    first = callback_for(subscribed(), first_subscription=True)
    assert first is not None and first.name == "registered"
    framework_id, master_info = first.args
    assert framework_id.value == "fw" and master_info.id == "m"
    again = callback_for(subscribed(), first_subscription=False)
    assert again is not None and again.name == "reregistered" and again.args[0].id == "m"


def test_offers_are_passed_as_one_list() -> None:
    offers = [mensa_pb2.Offer(id={"value": f"o{i}"}) for i in range(3)]
    cb = callback_for(
        Event(type=Event.OFFERS, offers=Event.Offers(offers=offers)), first_subscription=False
    )
    assert cb is not None and cb.name == "resource_offers"
    assert [o.id.value for o in cb.args[0]] == ["o0", "o1", "o2"]


@pytest.mark.parametrize(
    ("event", "name", "values"),
    [
        (
            Event(type=Event.RESCIND, rescind=Event.Rescind(offer_id={"value": "o1"})),
            "offer_rescinded",
            ["o1"],
        ),
        (
            Event(type=Event.UPDATE, update=Event.Update(status={"task_id": {"value": "t1"}})),
            "status_update",
            ["t1"],
        ),
        (
            Event(
                type=Event.MESSAGE,
                message=Event.Message(
                    executor_id={"value": "e"}, agent_id={"value": "a"}, data=b"d"
                ),
            ),
            "framework_message",
            ["e", "a", b"d"],
        ),
        (
            Event(type=Event.FAILURE, failure=Event.Failure(agent_id={"value": "a"})),
            "agent_lost",
            ["a"],
        ),
        (
            Event(
                type=Event.FAILURE,
                failure=Event.Failure(
                    agent_id={"value": "a"}, executor_id={"value": "e"}, status=9
                ),
            ),
            "executor_lost",
            ["e", "a", 9],
        ),
        (Event(type=Event.ERROR, error=Event.Error(message="gone")), "error", ["gone"]),
    ],
)
def test_each_event_maps_to_its_callback(
    event: scheduler_pb2.Event, name: str, values: list[object]
) -> None:
    cb = callback_for(event, first_subscription=False)
    assert cb is not None and cb.name == name
    assert [plain(a) for a in cb.args] == values
    assert hasattr(Scheduler, name)  # every callback the driver may make exists, as a no-op


@pytest.mark.parametrize("kind", [Event.HEARTBEAT, Event.UNKNOWN])
def test_heartbeat_and_unknown_make_no_callback(kind: scheduler_pb2.Event.Type) -> None:
    assert callback_for(Event(type=kind), first_subscription=False) is None


def test_every_callback_is_a_no_op_by_default() -> None:
    cb = Callback("status_update", (mensa_pb2.TaskStatus(),))
    assert getattr(Scheduler(), cb.name)(None, *cb.args) is None


def test_heartbeat_interval_defaults_to_mesos_15s() -> None:
    assert heartbeat_interval(subscribed(0.0)) == 15.0
    assert heartbeat_interval(subscribed(2.0)) == 2.0


def test_silence_timeout_is_three_heartbeats_but_at_least_the_minimum() -> None:
    assert silence_timeout(15.0) == 45.0
    assert silence_timeout(1.0) == 5.0  # 3s would be below the 5s floor
    assert silence_timeout(0.05, factor=3.0, minimum=0.3) == 0.3


def test_backoff_doubles_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next() == 0.5
