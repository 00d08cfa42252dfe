"""pymesos (0.3.15, unmodified, in its own process) against a live Mensa master and agent, over
the Mesos v1 scheduler HTTP API: subscribe, offers, launch, updates and acknowledgements,
decline with filters, revive, kill, reconcile, scheduler failover and teardown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mensa_cluster import Cluster, wait_until
from pymesos_process import PymesosScheduler

pytest.importorskip("pymesos", reason="pymesos is installed by deploy/install_pymesos.sh")


@pytest.fixture
def live(cluster: Cluster) -> Cluster:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]")
    cluster.wait_agents(1)
    return cluster


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[list[PymesosScheduler]]:
    started: list[PymesosScheduler] = []
    yield started
    for sched in started:
        sched.stop()


def start(live: Cluster, schedulers: list[PymesosScheduler], name: str, *extra: str) -> PymesosScheduler:
    sched = PymesosScheduler(live.http.removeprefix("http://"), name, live.root, *extra)
    schedulers.append(sched)
    return sched


def framework(live: Cluster, framework_id: str) -> dict:
    for fw in live.state()["frameworks"]:
        if fw["id"] == framework_id:
            return fw
    raise KeyError(framework_id)


def test_subscribes_launches_and_sees_its_task_finish(live: Cluster, schedulers: list) -> None:
    sched = start(live, schedulers, "pm-launch")
    framework_id = sched.event("registered")["framework_id"]
    offers = sched.event("offers")["offers"]
    assert offers[0]["cpus"] == 2 and offers[0]["mem"] == 1024
    assert offers[0]["ports"] == [[{"begin": 31000, "end": 31009}]]  # numbers, as Mesos writes them

    sched.send(op="launch", tasks=[{"id": "hello", "cmd": "echo hello-from-pymesos", "cpus": 0.5,
                                    "mem": 64}])
    sched.event("launched")
    running = sched.event("update", task_id="hello", state="TASK_RUNNING")
    assert running["has_uuid"] and running["agent_id"]
    sched.event("update", task_id="hello", state="TASK_FINISHED")

    # The implicit acknowledgement of FINISHED completes the task on the master's books.
    def completed() -> list[dict]:
        return [t for t in framework(live, framework_id)["completed_tasks"] if t["id"] == "hello"]
    done = wait_until(completed, what="task completed")[0]
    assert done["state"] == "TASK_FINISHED"
    fw = framework(live, framework_id)
    assert fw["name"] == "pm-launch" and fw["active"]
    assert "PARTITION_AWARE" in fw["capabilities"]
    assert done["labels"] == [{"key": "origin", "value": "pymesos"}]


def test_explicit_acknowledgements_hold_back_the_next_update(live: Cluster, schedulers: list) -> None:
    sched = start(live, schedulers, "pm-acks", "--explicit-acks")
    sched.event("registered")
    first = sched.mark()
    sched.send(op="launch", tasks=[{"id": "acked", "cmd": "sleep 0.2", "cpus": 0.5, "mem": 64}])
    # Unacknowledged, the agent retries STARTING (0.3 s, then backing off) and holds the rest back.
    wait_until(lambda: sched.count("update", since=first) >= 2, what="STARTING retried")
    updates = [e for e in sched.events[first:] if e["event"] == "update"]
    assert {e["state"] for e in updates} == {"TASK_STARTING"}, updates
    for state, following in (("TASK_STARTING", "TASK_RUNNING"), ("TASK_RUNNING", "TASK_FINISHED")):
        sched.send(op="ack", task_id="acked", state=state)
        sched.event("update", task_id="acked", state=following)
    sched.send(op="ack", task_id="acked", state="TASK_FINISHED")
    sched.event("done", op="ack")


def test_decline_with_a_filter_then_revive(live: Cluster, schedulers: list) -> None:
    sched = start(live, schedulers, "pm-decline")
    sched.event("registered")
    sched.send(op="decline", refuse_seconds=3600)
    sched.event("declined", refuse_seconds=3600)
    quiet_from = sched.mark()
    time.sleep(2.0)  # ten allocation intervals: the filter holds the agent back
    assert sched.count("offers", since=quiet_from) == 0, sched.events[quiet_from:]
    sched.send(op="revive")
    sched.event("offers", since=quiet_from)


def test_kill_and_reconcile(live: Cluster, schedulers: list) -> None:
    sched = start(live, schedulers, "pm-kill")
    framework_id = sched.event("registered")["framework_id"]
    sched.send(op="launch", tasks=[{"id": "sleeper", "cmd": "sleep 60", "cpus": 0.5, "mem": 64}])
    sched.event("update", task_id="sleeper", state="TASK_RUNNING")

    mark = sched.mark()
    sched.send(op="reconcile", task_ids=["sleeper", "never-launched"])
    answer = sched.event("update", task_id="sleeper", since=mark)
    assert answer["state"] == "TASK_RUNNING" and answer["reason"] == "REASON_RECONCILIATION"
    assert not answer["has_uuid"]  # reconciliation answers are not acknowledged
    unknown = sched.event("update", task_id="never-launched", since=mark)
    assert unknown["state"] in ("TASK_UNKNOWN", "TASK_LOST")

    mark = sched.mark()
    sched.send(op="reconcile", task_ids=[])  # implicit: every task the master knows
    assert sched.event("update", since=mark, task_id="sleeper")["reason"] == "REASON_RECONCILIATION"

    sched.send(op="kill", task_id="sleeper")
    sched.event("update", task_id="sleeper", state="TASK_KILLED")
    wait_until(lambda: live.tasks(framework_id).get("sleeper") == "TASK_KILLED", what="task killed")


def test_scheduler_failover_keeps_the_task_and_teardown_ends_it(live: Cluster, schedulers: list) -> None:
    first = start(live, schedulers, "pm-failover")
    framework_id = first.event("registered")["framework_id"]
    first.send(op="launch", tasks=[{"id": "survivor", "cmd": "sleep 60", "cpus": 0.5, "mem": 64}])
    first.event("update", task_id="survivor", state="TASK_RUNNING")
    first.stop()  # SIGKILL: the stream breaks, the framework is disconnected, its task lives on
    wait_until(lambda: not framework(live, framework_id)["connected"], what="framework disconnected")
    assert live.tasks(framework_id)["survivor"] == "TASK_RUNNING"

    second = start(live, schedulers, "pm-failover", "--framework-id", framework_id)
    second.event("reregistered")
    second.send(op="reconcile", task_ids=["survivor"])
    assert second.event("update", task_id="survivor")["state"] == "TASK_RUNNING"
    assert framework(live, framework_id)["connected"]

    second.send(op="stop", failover=False)  # pymesos sends TEARDOWN
    second.event("stopped")
    def removed_framework() -> dict | None:
        return next((f for f in live.state()["completed_frameworks"] if f["id"] == framework_id), None)
    removed = wait_until(removed_framework, what="framework removed")
    assert [t["state"] for t in removed["completed_tasks"] if t["id"] == "survivor"] == ["TASK_KILLED"]
