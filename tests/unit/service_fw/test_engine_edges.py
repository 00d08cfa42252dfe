"""The service engine where Marathon users got hurt: restarts after downtime, changes that add
health checks, forced changes mid-rollout, scales beside sick instances, held apps."""

from __future__ import annotations

import dataclasses

import pytest

from mensa.frameworks.service_fw.app_reading import parse_app
from mensa.frameworks.service_fw.engine import Conflict
from mensa.proto import mensa_pb2

from .service_harness import Harness, app, killed, launched


def test_wiping_a_task_leaves_no_timer_behind() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    [task] = launched(h.offer("a1"))
    _found, _dep, commands = h.engine.kill_tasks([task.task_id.value], h.now, wipe=True)
    h.apply(commands)
    wake = h.engine.next_wakeup()
    assert wake is None or wake > h.now  # no timer due now, over and over


def test_a_framework_down_longer_than_the_launch_timeout_kills_nothing_on_its_return() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    ids = [t.task_id.value for t in launched(h.offer("a1"))]
    h.now += 360  # down for 6 minutes, its tasks started meanwhile
    h.restart()
    assert killed(h.tick(0)) == []
    h.apply(h.engine.subscribed(h.now))
    for task_id in ids:
        h.update(task_id, mensa_pb2.TASK_RUNNING)
    assert killed(h.tick(30)) == []
    assert sorted(i.task_id for i in h.live("/web")) == sorted(ids)


def test_an_unreachable_instance_is_not_expunged_on_the_first_tick_after_a_long_downtime() -> None:
    h = Harness()
    h.deploy(app(instances=1, unreachableStrategy={"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}))
    [task] = launched(h.offer("a1"))
    h.run_all("/web")
    h.update(task.task_id.value, mensa_pb2.TASK_UNREACHABLE)
    h.now += 700
    h.restart()
    h.tick(0)
    h.apply(h.engine.subscribed(h.now))
    assert task.task_id.value in h.engine.instances
    assert killed(h.update(task.task_id.value, mensa_pb2.TASK_RUNNING)) == []


def test_adding_a_health_check_replaces_old_instances_one_by_one() -> None:
    h = Harness()
    h.deploy(app(instances=4))
    h.offer("a1")
    h.run_all("/web")
    h.deploy(app(instances=4, healthChecks=[{"protocol": "HTTP", "portIndex": 0}]))
    # The old version has no checks: its running instances are healthy, minimumHealthCapacity 1
    # keeps all four until new ones pass their checks.
    assert killed(h.sent) == []


def test_a_scale_does_not_wait_for_an_instance_that_was_sick_before_it() -> None:
    h = Harness()
    checks = [{"protocol": "HTTP", "portIndex": 0, "maxConsecutiveFailures": 0}]
    h.deploy(app(instances=2, healthChecks=checks))
    h.offer("a1")
    h.run_all("/web", healthy=True)
    h.update(h.live("/web")[0].task_id, mensa_pb2.TASK_RUNNING, healthy=False)
    h.scale("/web", 4)
    h.offer("a1")
    h.run_all("/web", healthy=True)
    assert h.engine.deployments() == []


def test_a_forced_change_in_the_middle_of_a_rolling_restart_finishes_the_restart() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    h.offer("a1")
    h.run_all("/web")
    h.deploy(app(instances=2, cmd="sleep 2000"))
    h.offer("a1")
    h.scale("/web", 3, force=True)
    for _ in range(4):
        h.offer("a1")
        h.run_all("/web")
        h.finish_kills()
    record = h.engine.app_record("/web")
    assert {i.version for i in h.live("/web")} == {record.config_version}
    assert len(h.live("/web")) == 3
    assert h.engine.deployments() == []


def test_a_forced_change_does_not_bring_back_an_app_being_deleted() -> None:
    h = Harness()
    created, commands = h.engine.update_apps([parse_app(app("/a")), parse_app(app("/b"))], h.now)
    h.apply(commands)
    h.offer("a1")
    rollback, commands = h.engine.cancel_deployment(created.id, h.now)  # stops /a and /b
    h.apply(commands)
    assert rollback is not None
    h.deploy(app("/a", instances=2), force=True)  # while the kills are under way
    h.finish_kills()
    assert "/b" not in h.engine.apps
    assert not [i for i in h.engine.all_instances() if i.app_id == "/b"]
    tasks = launched(h.offer("a1"))
    assert tasks and all(t.task_id.value.startswith("a.") for t in tasks)


def test_killing_with_scale_under_another_deployment_needs_force_and_kills_nothing_without() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    h.offer("a1")
    victim = h.live("/web")[0].task_id
    with pytest.raises(Conflict):
        h.engine.kill_tasks([victim], h.now, scale=True)
    assert not h.engine.instance(victim).killing
    _found, dep, commands = h.engine.kill_tasks([victim], h.now, scale=True, force=True)
    h.apply(commands)
    assert killed(commands) == [victim] and dep is not None


def test_an_app_waiting_for_its_step_keeps_its_instances() -> None:
    h = Harness()
    h.deploy(app("/db", instances=1))
    h.deploy(app("/web", instances=2, dependencies=["/db"]))
    h.offer("a1")
    h.run_all("/db")
    h.run_all("/web")
    db, web = h.engine.app_record("/db").spec, h.engine.app_record("/web").spec
    _dep, commands = h.engine.update_apps([dataclasses.replace(db, cmd="false"),
                                           dataclasses.replace(web, cmd="sleep 3000")], h.now)
    h.apply(commands)
    # /db's new version never runs; /web waits for its step. A /web instance fails meanwhile:
    # it is replaced with the configuration /web runs now, not the one waiting.
    h.update(h.live("/web")[0].task_id, mensa_pb2.TASK_FAILED)
    h.tick(5)
    [replacement] = [t for t in launched(h.offer("a1")) if t.task_id.value.startswith("web.")]
    assert replacement.command.value == "sleep 1000"
