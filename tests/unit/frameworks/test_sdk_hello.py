"""The hello example's decisions, driven with offers and updates and a recording driver."""

from __future__ import annotations

from typing import Any

import pytest

from mensa.frameworks.examples.hello import COMMAND, HelloScheduler
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources


class RecordingDriver:
    """Stands in for SchedulerDriver: records each call as (method, args, kwargs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


def make_offer(offer_id: str, resources: str) -> mensa_pb2.Offer:
    return mensa_pb2.Offer(
        id={"value": offer_id},
        agent_id={"value": f"agent-{offer_id}"},
        resources=Resources.parse(resources).to_proto(),
    )


def update(task_id: str, state: int) -> mensa_pb2.TaskStatus:
    return mensa_pb2.TaskStatus(task_id={"value": task_id}, state=state)


@pytest.fixture
def hello(monkeypatch: pytest.MonkeyPatch) -> HelloScheduler:
    monkeypatch.setenv("MENSA_HELLO_TASKS", "3")
    return HelloScheduler()


def test_packs_tasks_into_offers_and_declines_what_is_not_needed(hello: HelloScheduler) -> None:
    driver = RecordingDriver()
    offers = [
        make_offer("o1", "cpus:0.25;mem:1024"),  # two tasks fit
        make_offer("o2", "cpus:0.05;mem:1024"),  # none fits
        make_offer("o3", "cpus:4;mem:4096"),  # the third
        make_offer("o4", "cpus:4;mem:4096"),  # nothing left to launch
    ]
    hello.resource_offers(driver, offers)
    assert driver.names() == [
        "launch_tasks", "decline_offer", "launch_tasks", "suppress_offers", "decline_offer"
    ]  # fmt: skip
    _, (offer_id, tasks), kwargs = driver.calls[0]
    assert offer_id.value == "o1" and kwargs == {"filters": 5.0}
    assert [t.task_id.value for t in tasks] == ["hello-0", "hello-1"]
    assert all(t.agent_id.value == "agent-o1" and t.command.value == COMMAND for t in tasks)
    assert Resources.from_proto(tasks[0].resources) == Resources.parse("cpus:0.1;mem:32")
    assert [t.task_id.value for t in driver.calls[2][1][1]] == ["hello-2"]
    assert driver.calls[4][1][0].value == "o4"


def test_stops_once_every_task_ended_counting_duplicates_once(hello: HelloScheduler) -> None:
    driver = RecordingDriver()
    hello.resource_offers(driver, [make_offer("o1", "cpus:1;mem:1024")])
    hello.status_update(driver, update("hello-0", mensa_pb2.TASK_RUNNING))
    hello.status_update(driver, update("hello-0", mensa_pb2.TASK_FINISHED))
    hello.status_update(driver, update("hello-0", mensa_pb2.TASK_FINISHED))
    hello.status_update(driver, update("hello-1", mensa_pb2.TASK_FAILED))
    assert "stop" not in driver.names()
    hello.status_update(driver, update("hello-2", mensa_pb2.TASK_FINISHED))
    assert driver.names().count("stop") == 1
    assert sorted(hello.done.values()) == sorted(
        [mensa_pb2.TASK_FINISHED, mensa_pb2.TASK_FAILED, mensa_pb2.TASK_FINISHED]
    )
