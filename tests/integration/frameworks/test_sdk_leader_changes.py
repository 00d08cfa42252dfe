"""The SchedulerDriver follows the leading master: named by a standby's NOT_LEADER answer, or
reported by a detector (ZooKeeper's part, scripted here). Scripted masters on 127.0.0.1 play
the leader and the standbys; each test asserts what the driver sends to which master."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sdk_fake_master import Call, Event, FakeMaster, Recorder, ScriptedDetector, offer

from mensa.frameworks import DriverStatus, SchedulerDriver

pytestmark = pytest.mark.integration


@pytest.fixture
def masters() -> Iterator[Callable[[str], FakeMaster]]:
    made: list[FakeMaster] = []

    def make(master_id: str) -> FakeMaster:
        made.append(FakeMaster(master_id=master_id))
        return made[-1]

    yield make
    for m in made:
        m.close()


@pytest.fixture
def make_driver(drivers: Callable[..., SchedulerDriver]) -> Callable[..., SchedulerDriver]:
    def make(scheduler: Any, master: str | None = None, **options: Any) -> SchedulerDriver:
        return drivers(scheduler, master, name="ha-fw",
                       **{"min_master_silence": 30.0, **options})  # silence plays no part here
    return make


def test_a_standby_naming_the_leader_sends_the_driver_there(
    masters: Callable[[str], FakeMaster], make_driver: Any
) -> None:
    standby, leader = masters("m-standby"), masters("m-leader")
    scheduler = Recorder()
    driver = make_driver(scheduler, standby.address)
    driver.start()
    identity, first = standby.next_call(Call.SUBSCRIBE)
    assert not first.subscribe.framework_info.HasField("id")
    standby.not_leader(identity, leader)

    identity, subscribe = leader.next_call(Call.SUBSCRIBE)  # a fresh socket, to the leader
    assert not subscribe.subscribe.framework_info.HasField("id")
    leader.subscribed(identity)
    framework_id, master_info = scheduler.wait("registered")
    assert (framework_id.value, master_info.id) == ("fw-1", "m-leader")
    assert driver.master == leader.leader.zmq and driver.leader.master_id == "m-leader"

    # The leader steps down and names the old standby: the driver fails over, keeping its id.
    driver.revive_offers()
    leader.next_call(Call.REVIVE)
    leader.not_leader(identity, standby)
    scheduler.wait("disconnected")
    driver.suppress_offers()  # made while disconnected: sent once re-subscribed
    identity, resubscribe = standby.next_call(Call.SUBSCRIBE)
    assert resubscribe.framework_id.value == "fw-1"
    assert resubscribe.subscribe.framework_info.id.value == "fw-1"
    standby.subscribed(identity)
    (master_info,) = scheduler.wait("reregistered")
    assert master_info.id == "m-standby"
    _, suppress = standby.next_call(Call.SUPPRESS)
    assert suppress.framework_id.value == "fw-1"
    assert driver.connected and driver.master == standby.leader.zmq


def test_not_leader_without_a_leader_backs_off_and_retries_the_same_master(
    masters: Callable[[str], FakeMaster], make_driver: Any
) -> None:
    master = masters("m-1")
    scheduler = Recorder()
    driver = make_driver(scheduler, master.address)
    driver.start()
    identity, _ = master.subscribe()
    scheduler.wait("registered")
    master.not_leader(identity)  # e.g. its ZooKeeper session is in doubt
    scheduler.wait("disconnected")
    identity, again = master.next_call(Call.SUBSCRIBE)
    master.not_leader(identity)  # still in doubt: the driver tries again later
    identity, again = master.next_call(Call.SUBSCRIBE)
    assert again.subscribe.framework_info.id.value == "fw-1"
    master.subscribed(identity)
    scheduler.wait("reregistered")
    assert driver.connected


def test_leader_changes_from_the_detector_move_the_subscription(
    masters: Callable[[str], FakeMaster], make_driver: Any
) -> None:
    first, second = masters("m-first"), masters("m-second")
    detector = ScriptedDetector()
    scheduler = Recorder()
    driver = make_driver(scheduler, detector=detector)
    driver.reconcile_tasks()  # before any leader is known: queued
    driver.start()
    detector.announce(None)  # ZooKeeper answers, but no master leads yet
    assert first.recv(timeout=0.3) is None and second.recv(timeout=0.0) is None
    assert driver.master is None and not driver.connected

    detector.announce(first)
    identity, _ = first.subscribe()
    scheduler.wait("registered")
    first.next_call(Call.RECONCILE)  # the call queued while no leader was known
    first.send_event(identity, type=Event.OFFERS, offers=Event.Offers(offers=[offer("o1", "a1")]))
    scheduler.wait("resource_offers")

    detector.announce(second)
    scheduler.wait("disconnected")
    identity, resubscribe = second.next_call(Call.SUBSCRIBE)
    assert resubscribe.subscribe.framework_info.id.value == "fw-1"
    # The first master's offer is void: its agent is no longer filled in from the offer book.
    task = {"name": "t", "task_id": {"value": "t"}, "command": {"value": "true"}}
    driver.launch_tasks("o1", [task])
    second.subscribed(identity)
    scheduler.wait("reregistered")
    _, accept = second.next_call(Call.ACCEPT)
    assert not accept.accept.operations[0].launch.task_infos[0].HasField("agent_id")
    assert first.recv(timeout=0.2) is None  # the old leader hears nothing more

    # The same leader reported again changes nothing; losing it disconnects once.
    detector.announce(second)
    detector.announce(None)
    scheduler.wait("disconnected")
    detector.announce(first)
    identity, back = first.next_call(Call.SUBSCRIBE)
    assert back.framework_id.value == "fw-1"
    first.subscribed(identity)
    scheduler.wait("reregistered")
    assert driver.connected and driver.master == first.leader.zmq

    driver.stop(failover=True)
    assert driver.join(timeout=5) is DriverStatus.STOPPED
    assert detector.stopped.is_set()


def test_with_a_zookeeper_detector_a_standbys_hint_is_not_followed(
    masters: Callable[[str], FakeMaster], make_driver: Any
) -> None:
    reported, named = masters("m-reported"), masters("m-named")
    detector = ScriptedDetector()
    scheduler = Recorder()
    driver = make_driver(scheduler, detector=detector)
    driver.start()
    detector.announce(reported)
    identity, _ = reported.next_call(Call.SUBSCRIBE)
    # A standby may still name the leader that just died; the detector is the authority.
    reported.not_leader(identity, named)
    identity, _ = reported.subscribe()  # retried, with backoff, where the detector says
    scheduler.wait("registered")
    assert driver.master == reported.leader.zmq
