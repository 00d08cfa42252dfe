"""The service engine end to end in memory: deployments, replacement, restarts of the framework."""

from __future__ import annotations

import pytest

from mensa.frameworks.reading import SpecError
from mensa.frameworks.service_fw.engine import Conflict, NotFound
from mensa.proto import mensa_pb2

from .service_harness import Decline, Harness, Reconcile, Revive, Suppress, app, emitted, killed, launched


def test_a_new_app_launches_its_instances_and_its_deployment_succeeds() -> None:
    h = Harness()
    dep = h.deploy(app(instances=3))
    assert [d.id for d in h.engine.deployments()] == [dep.id]
    assert any(isinstance(c, Revive) for c in h.sent)
    tasks = launched(h.offer("a1"))
    assert len(tasks) == 3
    assert all(t.task_id.value.startswith("web.") for t in tasks)
    # Each instance was stored before its launch was sent.
    assert set(h.records["instance"]) == {t.task_id.value for t in tasks}
    h.run_all("/web")
    assert h.engine.deployments() == []
    assert emitted(h.sent, "deployment_success")
    # Nothing waits any more: offers are suppressed and declined.
    assert isinstance([c for c in h.sent if isinstance(c, (Revive, Suppress))][-1], Suppress)
    assert any(isinstance(c, Decline) for c in h.offer("a1"))


def test_scaling_down_kills_the_youngest_and_up_launches_more() -> None:
    h = Harness()
    h.deploy(app(instances=3))
    for _ in range(3):
        h.now += 1
        h.offer("a1", resources="cpus:0.5;mem:64;ports:[31000-31009]")
    h.run_all("/web")
    order = [i.task_id for i in sorted(h.live("/web"), key=lambda i: i.staged_at)]
    h.scale("/web", 1)
    assert set(killed(h.sent)) == set(order[1:])
    h.finish_kills()
    assert [i.task_id for i in h.live("/web")] == order[:1]
    assert h.engine.deployments() == []
    h.scale("/web", 2)
    assert len(launched(h.offer("a1"))) == 1


def test_a_conflicting_change_is_refused_unless_forced() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    with pytest.raises(Conflict) as info:
        h.scale("/web", 5)
    assert info.value.deployments == [h.engine.deployments()[0].id]
    dep = h.scale("/web", 5, force=True)
    assert [d.id for d in h.engine.deployments()] == [dep.id]


def test_a_rolling_restart_keeps_healthy_capacity_and_finishes() -> None:
    h = Harness()
    checks = [{"protocol": "HTTP", "portIndex": 0}]
    h.deploy(app(instances=2, portDefinitions=[{"port": 0}], healthChecks=checks))
    h.offer("a1")
    h.run_all("/web", healthy=True)
    old = {i.task_id for i in h.live("/web")}
    h.deploy(app(instances=2, portDefinitions=[{"port": 0}], healthChecks=checks, cmd="sleep 2000",
                 upgradeStrategy={"minimumHealthCapacity": 1, "maximumOverCapacity": 0.5}))
    assert killed(h.sent) == []  # nothing old goes before something new is healthy
    new = launched(h.offer("a1"))
    assert len(new) == 1  # 2 + floor(2 * 0.5) = 3 at most
    h.run_all("/web", healthy=True)
    assert len(set(killed(h.sent)) & old) == 1
    h.finish_kills()
    assert len(launched(h.offer("a1"))) == 1
    h.run_all("/web", healthy=True)
    h.finish_kills()
    assert {i.task_id for i in h.live("/web")}.isdisjoint(old)
    assert len(h.live("/web")) == 2
    assert h.engine.deployments() == []


def test_a_new_version_that_never_gets_healthy_leaves_the_old_one_running() -> None:
    h = Harness()
    checks = [{"protocol": "HTTP", "portIndex": 0}]
    h.deploy(app(instances=2, portDefinitions=[{"port": 0}], healthChecks=checks))
    h.offer("a1")
    h.run_all("/web", healthy=True)
    old = {i.task_id for i in h.live("/web")}
    h.deploy(app(instances=2, portDefinitions=[{"port": 0}], healthChecks=checks, cmd="false"))
    for _ in range(3):
        h.offer("a1")
        h.run_all("/web", healthy=False)
        h.tick(400)
    assert old <= {i.task_id for i in h.live("/web")}
    assert not set(killed(h.sent)) & old
    assert len(h.engine.deployments()) == 1


def test_a_failed_instance_is_replaced_after_the_backoff() -> None:
    h = Harness()
    h.deploy(app(instances=1, backoffSeconds=10))
    [task] = launched(h.offer("a1"))
    h.run_all("/web")
    h.update(task.task_id.value, mensa_pb2.TASK_FAILED, message="exit 1")
    assert h.engine.last_failure("/web")["taskId"] == task.task_id.value
    assert launched(h.offer("a1")) == []  # backing off
    [entry] = h.engine.queue(h.now)
    assert entry.delay_until == pytest.approx(h.now + 10)
    h.tick(10)
    assert len(launched(h.offer("a1"))) == 1


def test_cancelling_a_deployment_rolls_back_and_force_just_stops() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    h.offer("a1")
    h.run_all("/web")
    [old] = [i.task_id for i in h.live("/web")]
    dep = h.deploy(app(instances=1, cmd="sleep 2"))
    [new] = launched(h.offer("a1"))
    rollback, commands = h.engine.cancel_deployment(dep.id, h.now)
    h.apply(commands)
    assert rollback is not None and rollback.rollback_of == dep.id
    assert h.engine.app_record("/web").spec.cmd == "sleep 1000"
    # The rollback is stored, the new version's instance is killed, the old one kept.
    assert rollback.id in h.records["deployment"] and dep.id not in h.records["deployment"]
    assert killed(commands) == [new.task_id.value]
    h.finish_kills()
    assert [i.task_id for i in h.live("/web")] == [old]
    assert h.engine.deployments() == []
    with pytest.raises(NotFound):
        h.engine.cancel_deployment("nope", h.now)
    created = h.deploy(app("/other", instances=1))
    gone, commands = h.engine.cancel_deployment(created.id, h.now, force=True)
    h.apply(commands)
    assert gone is None and "/other" in h.engine.apps


def test_deleting_an_app_kills_its_instances_and_removes_it() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    h.offer("a1")
    h.run_all("/web")
    _dep, commands = h.engine.delete_app("/web", h.now)
    h.apply(commands)
    assert len(killed(commands)) == 2
    assert "/web" in h.engine.apps  # until its instances are gone
    h.finish_kills()
    assert "/web" not in h.engine.apps
    assert emitted(h.sent, "app_terminated_event")
    assert not h.records.get("app") and not h.records.get("instance")


def test_dependencies_are_checked_and_order_the_deployment() -> None:
    h = Harness()
    with pytest.raises(SpecError):
        h.deploy(app("/shop/web", dependencies=["/shop/db"]))
    h.deploy(app("/shop/db"))
    dep = h.deploy(app("/shop/web", dependencies=["/shop/db"]), force=True)
    assert dep.steps
    with pytest.raises(SpecError):
        h.engine.delete_app("/shop/db", h.now)


def test_a_restarted_engine_reconciles_and_never_launches_twice() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    tasks = launched(h.offer("a1"))
    first_version = h.engine.app_record("/web").version
    h.restart()
    commands = h.apply(h.engine.subscribed(h.now))
    [reconcile] = [c for c in commands if isinstance(c, Reconcile)]
    assert set(reconcile.task_ids) == {t.task_id.value for t in tasks}
    assert launched(h.offer("a1")) == []  # the two stored instances count
    # Versions come back (read when asked for), the deployment too, and it finishes.
    assert h.engine.app_version("/web", first_version).instances == 2
    assert len(h.engine.deployments()) == 1
    h.run_all("/web")
    assert h.engine.deployments() == []


def test_an_unreachable_instance_is_replaced_then_expunged() -> None:
    h = Harness()
    h.deploy(app(instances=1, unreachableStrategy={"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}))
    [task] = launched(h.offer("a1"))
    h.run_all("/web")
    h.update(task.task_id.value, mensa_pb2.TASK_UNREACHABLE)
    assert launched(h.offer("a2")) == []
    h.tick(61)
    assert len(launched(h.offer("a2"))) == 1
    h.tick(60)
    assert task.task_id.value not in h.engine.instances
    # It comes back: an unknown task, killed.
    assert killed(h.update(task.task_id.value, mensa_pb2.TASK_RUNNING, agent_id="a1")) == [task.task_id.value]


def test_the_queue_says_why_an_app_waits() -> None:
    h = Harness()
    h.deploy(app(instances=1, cpus=8))
    h.offer("a1")
    [entry] = h.engine.queue(h.now)
    assert entry.rejections == {"InsufficientCpus": 1}
    assert "cpus" in entry.message
    assert entry.recent[0]["reasons"] == ["InsufficientCpus"]


def test_unique_hostname_spreads_instances() -> None:
    h = Harness()
    h.deploy(app(instances=3, constraints=[["hostname", "UNIQUE"]]))
    assert len(launched(h.offer("a1"))) == 1
    assert len(launched(h.offer("a1"))) == 0
    assert len(launched(h.offer("a2"))) == 1
    assert len(launched(h.offer("a3"))) == 1
    assert len({i.hostname for i in h.live("/web")}) == 3


def test_killing_tasks_with_scale_lowers_the_instance_count() -> None:
    h = Harness()
    h.deploy(app(instances=2))
    h.offer("a1")
    h.run_all("/web")
    victim = h.live("/web")[0].task_id
    found, dep, commands = h.engine.kill_tasks([victim, "nope"], h.now, scale=True)
    h.apply(commands)
    assert [i.task_id for i in found] == [victim]
    assert killed(commands) == [victim]
    assert dep is not None and dep.id in h.records["deployment"]
    assert dep is not None and h.engine.app_record("/web").spec.instances == 1
    found, dep, commands = h.engine.kill_tasks([h.live("/web")[0].task_id], h.now)
    h.apply(commands)
    assert dep is None
    h.finish_kills()
    assert len(launched(h.offer("a1"))) == 1  # replaced


def test_an_unreadable_app_record_holds_its_instances_instead_of_killing_them() -> None:
    h = Harness()
    h.deploy(app(instances=1))
    [task] = launched(h.offer("a1"))
    h.run_all("/web")
    h.records["app"]["web"] = {"spec": {"id": 3}}
    h.restart()
    commands = h.apply(h.engine.subscribed(h.now))
    assert killed(commands) == []
    assert task.task_id.value in h.engine.instances
    h.deploy(app(instances=1))  # deploying it again takes it back
    assert launched(h.offer("a1")) == []
