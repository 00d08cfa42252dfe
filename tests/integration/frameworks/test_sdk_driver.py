"""SchedulerDriver against a scripted master (a real ZeroMQ ROUTER on 127.0.0.1).

Each test plays the master's side of the wire protocol step by step and asserts what the
driver sends and which callbacks it makes. No timings are asserted: waits are bounded, and
"silence" uses a small min_master_silence.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from sdk_fake_master import Call, Envelope, Event, FakeMaster, Recorder, offer, status

from mensa.frameworks import DriverStatus, SchedulerDriver
from mensa.proto import internal_pb2, mensa_pb2

pytestmark = pytest.mark.integration


@pytest.fixture
def make_driver(drivers: Callable[..., SchedulerDriver]) -> Callable[..., SchedulerDriver]:
    def make(scheduler: Any, address: str, **options: Any) -> SchedulerDriver:
        return drivers(scheduler, address, **{"min_master_silence": 0.3, "backoff_initial": 0.2,
                                               "backoff_max": 0.5, **options})
    return make


def test_subscribe_launch_acknowledge_heartbeat_teardown(
    master: FakeMaster, make_driver: Any
) -> None:
    class Launcher(Recorder):
        def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
            super().resource_offers(driver, offers)
            task = {"name": "t1", "task_id": {"value": "t1"}, "command": {"value": "true"}}
            driver.launch_tasks(offers[0].id.value, [task])  # no agent_id: the driver fills it
            driver.decline_offer(offers[1].id, filters=7.0)

    scheduler = Launcher()
    driver = make_driver(scheduler, master.address)
    assert driver.start() is DriverStatus.RUNNING

    identity, subscribe = master.subscribe()
    info = subscribe.subscribe.framework_info
    assert info.name == "test-fw" and info.user and info.hostname == socket.gethostname()
    assert not subscribe.HasField("framework_id") and not info.HasField("id")
    framework_id, master_info = scheduler.wait("registered")
    assert framework_id.value == "fw-1" and master_info.id == "master-1"
    assert driver.framework_id == "fw-1"

    # One OFFERS event carries both offers.
    offers = [offer("o1", "a1"), offer("o2", "a2")]
    master.send_event(identity, type=Event.OFFERS, offers=Event.Offers(offers=offers))
    _, accept = master.next_call(Call.ACCEPT)
    assert accept.framework_id.value == "fw-1"
    assert [o.value for o in accept.accept.offer_ids] == ["o1"]
    (operation,) = accept.accept.operations
    assert operation.type == mensa_pb2.Offer.Operation.LAUNCH
    (task,) = operation.launch.task_infos
    assert task.task_id.value == "t1" and task.agent_id.value == "a1"
    _, decline = master.next_call(Call.DECLINE)
    assert [o.value for o in decline.decline.offer_ids] == ["o2"]
    assert decline.decline.filters.refuse_seconds == 7.0
    assert driver.connected

    # An update with a uuid is acknowledged after the callback.
    update = status("t1", mensa_pb2.TASK_RUNNING, agent_id="a1", uuid=b"uuid-1")
    master.send_event(identity, type=Event.UPDATE, update=Event.Update(status=update))
    (seen,) = scheduler.wait("status_update")
    assert seen.task_id.value == "t1"
    _, ack = master.next_call(Call.ACKNOWLEDGE)
    assert ack.framework_id.value == "fw-1"
    assert (ack.acknowledge.agent_id.value, ack.acknowledge.task_id.value) == ("a1", "t1")
    assert ack.acknowledge.uuid == b"uuid-1"

    # One without a uuid is not; a HEARTBEAT is answered with a pong (and nothing else first).
    master.send_event(
        identity,
        type=Event.UPDATE,
        update=Event.Update(status=status("t1", mensa_pb2.TASK_RUNNING)),
    )
    master.send_event(identity, type=Event.HEARTBEAT)
    _, envelope = master.next_message(skip_pongs=False)
    assert envelope.HasField("pong"), envelope

    assert driver.stop() is DriverStatus.STOPPED
    _, teardown = master.next_call(Call.TEARDOWN)
    assert teardown.framework_id.value == "fw-1"
    assert driver.join(timeout=5) is DriverStatus.STOPPED


def test_calls_made_before_subscribed_are_sent_after(master: FakeMaster, make_driver: Any) -> None:
    driver = make_driver(Recorder(), master.address)
    driver.suppress_offers("dev")  # before start()
    driver.start()
    identity, envelope = master.next_message()
    assert envelope.call.type == Call.SUBSCRIBE  # first, before anything queued
    driver.reconcile_tasks([("t1", "a1")])  # after start, before SUBSCRIBED
    master.send_event(
        identity,
        type=Event.SUBSCRIBED,
        subscribed=Event.Subscribed(framework_id=mensa_pb2.FrameworkID(value="fw-9")),
    )
    _, suppress = master.next_call(Call.SUPPRESS)
    assert list(suppress.suppress.roles) == ["dev"] and suppress.framework_id.value == "fw-9"
    _, reconcile = master.next_call(Call.RECONCILE)
    assert reconcile.framework_id.value == "fw-9"
    assert [(t.task_id.value, t.agent_id.value) for t in reconcile.reconcile.tasks] == [
        ("t1", "a1")
    ]


def test_error_event_aborts_without_teardown(master: FakeMaster, make_driver: Any) -> None:
    scheduler = Recorder()
    driver = make_driver(scheduler, master.address)
    driver.start()
    identity, _ = master.subscribe()
    scheduler.wait("registered")
    master.send_event(identity, type=Event.ERROR, error=Event.Error(message="framework removed"))
    assert scheduler.wait("error") == ("framework removed",)
    assert driver.join(timeout=5) is DriverStatus.ABORTED
    assert driver.launch_tasks("o1", []) is DriverStatus.ABORTED  # dropped, not sent
    # The socket is closed by now: anything the driver sent has arrived.
    got = master.recv(timeout=0.2)
    assert got is None or not got[1].HasField("call"), got


def test_silent_master_is_lost_and_resubscribed_with_framework_id(
    master: FakeMaster, make_driver: Any
) -> None:
    scheduler = Recorder()
    driver = make_driver(scheduler, master.address)
    driver.start()
    first_identity, _ = master.subscribe(heartbeat=0.05)
    scheduler.wait("registered")
    # The master says nothing more: after max(3 x 0.05, 0.3)s the driver gives up on it.
    scheduler.wait("disconnected")
    identity, resubscribe = master.next_call(Call.SUBSCRIBE)
    assert identity != first_identity  # a fresh socket
    assert resubscribe.framework_id.value == "fw-1"
    assert resubscribe.subscribe.framework_info.id.value == "fw-1"
    master.subscribed(identity)
    scheduler.wait("reregistered")
    assert driver.connected and driver.framework_id == "fw-1"


def test_not_subscribed_error_triggers_resubscribe(master: FakeMaster, make_driver: Any) -> None:
    scheduler = Recorder()
    driver = make_driver(scheduler, master.address)
    driver.start()
    identity, _ = master.subscribe()
    scheduler.wait("registered")
    error = internal_pb2.Error(
        code=internal_pb2.Error.NOT_SUBSCRIBED, message="who are you", refused="call:REVIVE"
    )
    master.send(identity, Envelope(error=error))
    scheduler.wait("disconnected")
    identity, resubscribe = master.next_call(Call.SUBSCRIBE)
    assert resubscribe.framework_id.value == "fw-1"
    assert resubscribe.subscribe.framework_info.id.value == "fw-1"
    master.subscribed(identity)
    scheduler.wait("reregistered")
    assert driver.connected


def test_master_restarting_on_the_same_address_gets_a_resubscribe(make_driver: Any) -> None:
    first = FakeMaster()
    scheduler = Recorder()
    # Silence detection is off the table: the dropped connection alone must do it.
    driver = make_driver(scheduler, first.address, min_master_silence=60.0)
    driver.start()
    first.subscribe()
    scheduler.wait("registered")
    port = first.port
    first.close()
    scheduler.wait("disconnected")
    second = FakeMaster(port)
    try:
        _, resubscribe = second.next_call(Call.SUBSCRIBE)
        assert resubscribe.framework_id.value == "fw-1"
        second.subscribe()
        scheduler.wait("reregistered")
        assert driver.connected
    finally:
        driver.abort()
        driver.join(timeout=5)
        second.close()


def test_update_whose_callback_raised_is_not_acknowledged_and_comes_again(
    master: FakeMaster, make_driver: Any
) -> None:
    class BrokenOnce(Recorder):
        failures = 1

        def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
            super().status_update(driver, status)
            if self.failures:
                self.failures -= 1
                raise RuntimeError("scheduler bug")

    scheduler = BrokenOnce()
    driver = make_driver(scheduler, master.address)
    driver.start()
    identity, _ = master.subscribe()
    update = status("t1", mensa_pb2.TASK_FAILED, uuid=b"uuid-2")
    master.send_event(identity, type=Event.UPDATE, update=Event.Update(status=update))
    scheduler.wait("status_update")
    # Still alive and answering; no ACKNOWLEDGE went out before the pong.
    master.send_event(identity, type=Event.HEARTBEAT)
    _, envelope = master.next_message(skip_pongs=False)
    assert envelope.HasField("pong"), envelope
    assert driver.status is DriverStatus.RUNNING
    # The agent's retry arrives; this time the callback succeeds and the update is acknowledged.
    master.send_event(identity, type=Event.UPDATE, update=Event.Update(status=update))
    _, ack = master.next_call(Call.ACKNOWLEDGE)
    assert ack.acknowledge.uuid == b"uuid-2"


def test_explicit_acknowledgements(master: FakeMaster, make_driver: Any) -> None:
    class Acker(Recorder):
        def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
            driver.kill_task(status.task_id, status.agent_id)
            driver.acknowledge_status_update(status)

    driver = make_driver(Acker(), master.address, implicit_acknowledgements=False)
    driver.start()
    identity, _ = master.subscribe()
    update = status("t1", mensa_pb2.TASK_RUNNING, uuid=b"uuid-3")
    master.send_event(identity, type=Event.UPDATE, update=Event.Update(status=update))
    _, kill = master.next_call(Call.KILL)
    assert (kill.kill.task_id.value, kill.kill.agent_id.value) == ("t1", "a1")
    _, ack = master.next_call(Call.ACKNOWLEDGE)  # exactly one: the scheduler's own
    assert ack.acknowledge.uuid == b"uuid-3"
    master.send_event(identity, type=Event.HEARTBEAT)
    _, envelope = master.next_message(skip_pongs=False)
    assert envelope.HasField("pong"), envelope


def test_stop_from_a_callback_with_failover_flushes_and_skips_teardown(
    master: FakeMaster, make_driver: Any
) -> None:
    class DeclineAndQuit(Recorder):
        def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
            driver.decline_offer([o.id for o in offers], filters={"refuse_seconds": 60})
            driver.stop(failover=True)
            super().resource_offers(driver, offers)

    driver = make_driver(DeclineAndQuit(), master.address)
    driver.start()
    identity, _ = master.subscribe()
    master.send_event(
        identity,
        type=Event.OFFERS,
        offers=Event.Offers(offers=[offer("o1", "a1"), offer("o2", "a1")]),
    )
    _, decline = master.next_call(Call.DECLINE)
    assert [o.value for o in decline.decline.offer_ids] == ["o1", "o2"]
    assert decline.decline.filters.refuse_seconds == 60
    assert driver.join(timeout=5) is DriverStatus.STOPPED
    got = master.recv(timeout=0.2)
    assert got is None or not got[1].HasField("call"), got  # no TEARDOWN on failover


def test_other_events_reach_their_callbacks(master: FakeMaster, make_driver: Any) -> None:
    scheduler = Recorder()
    driver = make_driver(scheduler, master.address)
    driver.start()
    identity, _ = master.subscribe()
    master.send_event(identity, type=Event.RESCIND, rescind=Event.Rescind(offer_id={"value": "o7"}))
    assert scheduler.wait("offer_rescinded")[0].value == "o7"
    master.send_event(
        identity,
        type=Event.MESSAGE,
        message=Event.Message(agent_id={"value": "a1"}, executor_id={"value": "e1"}, data=b"hi"),
    )
    executor_id, agent_id, data = scheduler.wait("framework_message")
    assert (executor_id.value, agent_id.value, data) == ("e1", "a1", b"hi")
    master.send_event(identity, type=Event.FAILURE, failure=Event.Failure(agent_id={"value": "a2"}))
    assert scheduler.wait("agent_lost")[0].value == "a2"
    master.send_event(
        identity,
        type=Event.FAILURE,
        failure=Event.Failure(agent_id={"value": "a2"}, executor_id={"value": "e2"}, status=137),
    )
    executor_id, agent_id, code = scheduler.wait("executor_lost")
    assert (executor_id.value, agent_id.value, code) == ("e2", "a2", 137)
    driver.send_framework_message("e1", "a1", "pong")
    _, message = master.next_call(Call.MESSAGE)
    assert message.message.data == b"pong" and message.message.executor_id.value == "e1"


def test_subscribes_pile_up_nowhere_while_the_master_is_down(make_driver: Any) -> None:
    placeholder = FakeMaster()  # reserve a port, then leave it with nobody listening
    port = placeholder.port
    placeholder.close()
    scheduler = Recorder()
    driver = make_driver(
        scheduler, f"127.0.0.1:{port}", backoff_initial=0.3, backoff_max=0.3, min_master_silence=60
    )
    driver.start()
    time.sleep(1.0)  # three retry periods with no master: retries must not queue up
    master = FakeMaster(port)
    try:
        master.subscribe()
        scheduler.wait("registered")
        more = []
        while (got := master.recv(timeout=0.1)) is not None:
            more.append(got[1])
        fresh = [e for e in more if e.HasField("call") and not e.call.HasField("framework_id")]
        # Each SUBSCRIBE without an id could register one more framework: at most a retry
        # racing SUBSCRIBED may follow the first, never the backlog of the outage.
        assert len(fresh) <= 1, fresh
    finally:
        driver.abort()
        driver.join(timeout=5)
        master.close()
