"""Framework failover in the SDK against a scripted master: the 7-day failover_timeout default,
and the framework id file (stored after SUBSCRIBED, used to re-subscribe, a removed framework
is a clear error, a TEARDOWN removes the file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sdk_fake_master import Call, Event, FakeMaster, Recorder
from structlog.testing import capture_logs

from mensa.frameworks import DriverStatus, SchedulerDriver
from mensa.proto import mensa_pb2

pytestmark = pytest.mark.integration


def driver_for(scheduler: Any, master: FakeMaster, **options: Any) -> SchedulerDriver:
    info = options.pop("info", mensa_pb2.FrameworkInfo(name="fo-fw"))
    return SchedulerDriver(
        scheduler, info, master.address, backoff_initial=0.1, backoff_max=0.3, flush_timeout=0.5,
        **options,
    )  # fmt: skip


def test_failover_timeout_is_a_week_unless_the_user_set_it(master: FakeMaster) -> None:
    driver = driver_for(Recorder(), master)
    driver.start()
    try:
        _, subscribe = master.subscribe()
        assert subscribe.subscribe.framework_info.failover_timeout == 604800.0
    finally:
        driver.abort()
        driver.join(timeout=5)
    info = mensa_pb2.FrameworkInfo(name="fo-fw", failover_timeout=0.0)
    driver = driver_for(Recorder(), master, info=info)
    driver.start()
    try:
        _, subscribe = master.next_call(Call.SUBSCRIBE)
        assert subscribe.subscribe.framework_info.HasField("failover_timeout")
        assert subscribe.subscribe.framework_info.failover_timeout == 0.0
    finally:
        driver.abort()
        driver.join(timeout=5)


def test_framework_id_file_round_trip(master: FakeMaster, tmp_path: Path) -> None:
    path = tmp_path / "sched" / "framework_id"
    scheduler = Recorder()
    driver = driver_for(scheduler, master, framework_id_file=path)
    driver.start()
    _, first = master.subscribe(framework_id="fw-42")
    assert not first.subscribe.framework_info.HasField("id")
    scheduler.wait("registered")
    assert path.read_text() == "fw-42\n"  # written before the callback ran
    driver.stop(failover=True)
    assert driver.join(timeout=5) is DriverStatus.STOPPED
    assert path.read_text() == "fw-42\n"  # a failover stop keeps it

    # A restarted scheduler fails over: it re-subscribes with the stored id.
    scheduler = Recorder()
    driver = driver_for(scheduler, master, framework_id_file=path)
    assert driver.framework_id == "fw-42"
    driver.start()
    identity, again = master.next_call(Call.SUBSCRIBE)
    assert again.framework_id.value == "fw-42"
    assert again.subscribe.framework_info.id.value == "fw-42"
    master.subscribed(identity, framework_id="fw-42")
    scheduler.wait("registered")

    # A stop without failover tears the framework down: the next run starts afresh.
    driver.stop()
    _, teardown = master.next_call(Call.TEARDOWN)
    assert teardown.framework_id.value == "fw-42"
    assert driver.join(timeout=5) is DriverStatus.STOPPED
    assert not path.exists()


def test_a_removed_framework_aborts_and_says_to_delete_the_file(
    master: FakeMaster, tmp_path: Path
) -> None:
    path = tmp_path / "framework_id"
    path.write_text("fw-gone\n")
    scheduler = Recorder()
    driver = driver_for(scheduler, master, framework_id_file=path)
    with capture_logs() as logs:
        driver.start()
        identity, subscribe = master.next_call(Call.SUBSCRIBE)
        assert subscribe.subscribe.framework_info.id.value == "fw-gone"
        message = "framework fw-gone has been removed; subscribe without an id"
        master.send_event(identity, type=Event.ERROR, error=Event.Error(message=message))
        assert scheduler.wait("error") == (message,)
        assert driver.join(timeout=5) is DriverStatus.ABORTED
    (removed,) = [e for e in logs if e["event"] == "framework_removed"]
    assert removed["log_level"] == "error" and f"delete {path}" in removed["hint"]
    assert path.read_text() == "fw-gone\n"  # the user decides
