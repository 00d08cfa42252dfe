"""The driver's automatic reconciliation (the Mesos docs' algorithm) against a scripted master:
after a re-subscription it sends RECONCILE naming its live tasks with their agents, asks again
(after a backoff) for those that got no answer, and stops once every task was answered; a
failover that knows no tasks asks implicitly. No timings are asserted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sdk_fake_master import Call, Event, FakeMaster, Recorder, offer, status
from structlog.testing import capture_logs

from mensa.frameworks import SchedulerDriver
from mensa.proto import mensa_pb2

pytestmark = pytest.mark.integration

RUNNING, LOST, FINISHED = mensa_pb2.TASK_RUNNING, mensa_pb2.TASK_LOST, mensa_pb2.TASK_FINISHED


@pytest.fixture
def make_driver(drivers: Callable[..., SchedulerDriver]) -> Callable[..., SchedulerDriver]:
    def make(scheduler: Any, master: FakeMaster, **options: Any) -> SchedulerDriver:
        return drivers(scheduler, master.address, name="rec-fw", **{
            "min_master_silence": 30.0,  # silence plays no part here
            "reconcile_backoff_initial": 0.2, "reconcile_backoff_max": 0.4, **options})
    return make


def calls_within(master: FakeMaster, seconds: float) -> list[int]:
    """The types of the calls the driver sends within ``seconds`` (pongs skipped)."""
    got: list[int] = []
    while (message := master.recv(timeout=seconds)) is not None:
        if message[1].HasField("call"):
            got.append(message[1].call.type)
    return got


def launch_three(master: FakeMaster, scheduler: Recorder, driver: SchedulerDriver) -> bytes:
    """Subscribes; launches t1 (launch_tasks, offer on a1), t2 (accept_offers, offer on a2)
    and t3 (a3), which finishes; t1 runs. Returns the driver's identity."""
    identity, _ = master.subscribe()
    scheduler.wait("registered")
    offers = [offer("o1", "a1"), offer("o2", "a2"), offer("o3", "a3")]
    master.send_event(identity, type=Event.OFFERS, offers=Event.Offers(offers=offers))
    scheduler.wait("resource_offers")
    task = {"name": "t", "command": {"value": "sleep 100"}}
    driver.launch_tasks("o1", [{**task, "task_id": {"value": "t1"}}])
    operation = {"type": "LAUNCH", "launch": {"task_infos": [{**task, "task_id": {"value": "t2"}}]}}
    driver.accept_offers("o2", [operation])
    driver.launch_tasks("o3", [{**task, "task_id": {"value": "t3"}}])
    for _ in range(3):
        master.next_call(Call.ACCEPT)
    master.update(identity, status("t1", RUNNING, "a1", uuid=b"u1"))
    master.update(identity, status("t3", FINISHED, "a3", uuid=b"u3"))
    for _ in range(2):
        _, ack = master.next_call(Call.ACKNOWLEDGE)
    assert ack.acknowledge.task_id.value == "t3"
    return identity


def test_resubscription_reconciles_until_every_task_answered(
    master: FakeMaster, make_driver: Any
) -> None:
    scheduler = Recorder()
    driver = make_driver(scheduler, master)
    driver.start()
    with capture_logs() as logs:
        identity = launch_three(master, scheduler, driver)

        master.not_subscribed(identity)  # a new leader that has not heard of the framework
        scheduler.wait("disconnected")
        identity, _ = master.subscribe()
        scheduler.wait("reregistered")
        # Every live task, with the agent of its offer; the finished t3 is forgotten.
        identity, asked = master.next_reconcile()
        assert asked == [("t1", "a1"), ("t2", "a2")]
        master.update(identity, status("t1", RUNNING, "a1"))  # an answer: no uuid
        assert scheduler.wait("status_update")[0].task_id.value == "t1"

        # t2's agent is still recovering: the master said nothing. Asked again, alone.
        identity, asked = master.next_reconcile()  # an ACKNOWLEDGE first would fail here
        assert asked == [("t2", "a2")]
        identity, asked = master.next_reconcile()  # and again, after a longer backoff
        assert asked == [("t2", "a2")]
        master.update(identity, status("t2", LOST, "a2"))  # the agent was marked unreachable
        (answer,) = scheduler.wait("status_update")
        assert (answer.task_id.value, answer.state) == ("t2", LOST)

        # Every task answered: no more RECONCILE (a retry would come within 0.4s), no ACK.
        assert calls_within(master, 1.0) == []
    events = [e for e in logs if e["event"].startswith("reconciliation_")]
    assert [(e["event"], e.get("tasks"), e.get("attempt")) for e in events] == [
        ("reconciliation_started", 2, None),
        ("reconciliation_retried", None, 2),
        ("reconciliation_retried", None, 3),
        ("reconciliation_completed", 1, None),  # t1 is still tracked; t2 was lost
    ]
    assert events[1]["unanswered"] == 1 and events[-1]["attempts"] == 3

    # The next re-subscription asks about t1 only (t2's TASK_LOST was delivered).
    master.not_subscribed(identity)
    identity, _ = master.subscribe()
    assert master.next_reconcile()[1] == [("t1", "a1")]


def test_a_new_resubscription_restarts_the_round(master: FakeMaster, make_driver: Any) -> None:
    scheduler = Recorder()
    driver = make_driver(scheduler, master, reconcile_backoff_initial=5.0,
                         reconcile_backoff_max=5.0)  # fmt: skip
    driver.start()
    identity = launch_three(master, scheduler, driver)
    master.not_subscribed(identity)
    identity, _ = master.subscribe()
    assert master.next_reconcile()[1] == [("t1", "a1"), ("t2", "a2")]
    master.update(identity, status("t1", RUNNING, "a1"))
    master.not_subscribed(identity)  # lost again before the retry was due
    identity, _ = master.subscribe()
    assert master.next_reconcile()[1] == [("t1", "a1"), ("t2", "a2")]  # asks everything anew


def test_a_fresh_failover_reconciles_implicitly_then_tracks_the_answers(
    master: FakeMaster, make_driver: Any, tmp_path: Path
) -> None:
    path = tmp_path / "framework_id"
    path.write_text("fw-1\n")
    scheduler = Recorder()
    driver = make_driver(scheduler, master, framework_id_file=path)
    driver.start()
    identity, subscribe = master.subscribe()
    assert subscribe.subscribe.framework_info.id.value == "fw-1"
    scheduler.wait("registered")
    identity, asked = master.next_reconcile()
    assert asked == []  # implicit: the master sends the latest state of every task
    master.update(identity, status("t9", RUNNING, "a9"))
    scheduler.wait("status_update")
    assert calls_within(master, 0.6) == []  # an implicit reconciliation is not repeated

    master.not_subscribed(identity)
    identity, _ = master.subscribe()
    assert master.next_reconcile()[1] == [("t9", "a9")]  # learned from the implicit answer


def test_a_first_registration_and_auto_reconcile_off_send_nothing(
    master: FakeMaster, make_driver: Any
) -> None:
    scheduler = Recorder()
    driver = make_driver(scheduler, master, auto_reconcile=False)
    driver.start()
    identity = launch_three(master, scheduler, driver)
    master.not_subscribed(identity)
    identity, _ = master.subscribe()
    scheduler.wait("reregistered")
    assert calls_within(master, 0.6) == []

    # On by default; a first registration (no framework id) has nothing to reconcile.
    other = FakeMaster()
    try:
        scheduler = Recorder()
        make_driver(scheduler, other).start()
        other.subscribe()
        scheduler.wait("registered")
        assert Call.RECONCILE not in calls_within(other, 0.6)
    finally:
        other.close()
