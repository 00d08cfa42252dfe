"""The service framework end to end: a restart in the middle of a deployment, placement
constraints across three agents, and the ``/v2/events`` stream. A real master, three agents
(agent1..agent3 on racks r1..r3) and ``mensa service`` as a subprocess."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from mensa_cluster import Cluster, wait_until
from service_fixture import (
    SERVE,
    EventStream,
    Service,
    http_app,
    running_tasks_at_master,
    sandboxes,
    three_agents,
    until_stable,
)


@pytest.fixture
def service(cluster: Cluster) -> Service:
    three_agents(cluster)
    return Service(cluster).start()


def restart(service: Service, how: signal.Signals) -> None:
    """Stops the service framework with ``how`` (SIGTERM: an orderly stop; SIGKILL: a crash)
    and starts it again in the same work dir."""
    if how == signal.SIGKILL:
        service.proc.kill()
    else:
        assert service.proc.stop(grace=10) == 0
    service.start()


def launched(service: Service, framework_id: str, app_key: str, at_least: int) -> list[str]:
    def check() -> list[str] | None:
        ids = running_tasks_at_master(service.cluster, framework_id, app_key)
        return ids if len(ids) >= at_least else None
    return wait_until(check, what=f"{at_least} tasks of {app_key} launched")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_deployment_interrupted_by_a_restart_finishes_without_duplicates(service: Service,
                                                                           how: signal.Signals) -> None:
    # The servers start slowly, so the restart lands while the deployment waits for them.
    slow = http_app("/slow", cmd=f"sleep 2; {SERVE}")
    framework_id = service.framework_id()
    first = service.deploy(slow)
    launched(service, framework_id, "slow", 1)

    restart(service, how)

    assert service.framework_id() == framework_id
    service.wait_deployment_gone(first)
    v1 = service.wait_healthy("/slow", 3)
    v1_ids = sorted(t["id"] for t in v1)
    assert running_tasks_at_master(service.cluster, framework_id, "slow") == v1_ids
    assert sandboxes(service.cluster.root, "slow") == v1_ids  # each launched once

    # And again in the middle of a rolling restart (new instances start before old ones go).
    second = service.call("POST", "/v2/apps/slow/restart")["deploymentId"]
    launched(service, framework_id, "slow", 4)
    restart(service, how)

    service.wait_deployment_gone(second)
    v2 = service.wait_healthy("/slow", 3)
    v2_ids = sorted(t["id"] for t in v2)
    assert set(v1_ids).isdisjoint(v2_ids)
    assert running_tasks_at_master(service.cluster, framework_id, "slow") == v2_ids
    assert sandboxes(service.cluster.root, "slow") == sorted(v1_ids + v2_ids)
    until_stable(lambda: running_tasks_at_master(service.cluster, framework_id, "slow") == v2_ids, 1.5)


def queue_entry(service: Service, app_id: str) -> dict[str, Any] | None:
    for entry in service.call("GET", "/v2/queue")["queue"]:
        if entry["app"]["id"] == app_id:
            return dict(entry)
    return None


def declined_for(entry: dict[str, Any], reason: str) -> int:
    summary = entry["processedOffersSummary"]["rejectSummaryLastOffers"]
    return sum(int(r["declined"]) for r in summary if r["reason"] == reason)


def test_unique_hostname_places_one_instance_per_agent_and_the_fourth_waits(service: Service) -> None:
    app = {"id": "/uniq", "cmd": "sleep 600", "instances": 4, "cpus": 0.05, "mem": 32,
           "constraints": [["hostname", "UNIQUE"]]}
    deployment = service.deploy(app)

    def three_running() -> list[dict[str, Any]] | None:
        tasks = [t for t in service.tasks("/uniq") if t["state"] == "TASK_RUNNING"]
        return tasks if len(tasks) == 3 else None
    tasks = wait_until(three_running, what="three instances running")
    assert sorted(t["host"] for t in tasks) == ["agent1", "agent2", "agent3"]

    def why() -> dict[str, Any] | None:
        entry = queue_entry(service, "/uniq")
        return entry if entry and declined_for(entry, "UnfulfilledConstraint") > 0 else None
    entry = wait_until(why, what="the queue to say the fourth instance waits for the constraint")
    assert entry["count"] == 1
    why = entry["processedOffersSummary"]["message"]
    assert "UNIQUE" in why or "hostname" in why, why
    assert [d["id"] for d in service.deployments()] == [deployment]
    assert len(service.tasks("/uniq")) == 3

    # Lowering the count to what fits ends the wait (the deployment is replaced: force).
    scaled = service.call("PUT", "/v2/apps/uniq?force=true", {"instances": 3})
    service.wait_deployment_gone(scaled["deploymentId"])
    wait_until(lambda: queue_entry(service, "/uniq") is None, what="the queue entry gone")
    assert sorted(t["host"] for t in service.tasks("/uniq")) == ["agent1", "agent2", "agent3"]


def test_attribute_constraints_pick_the_agents(service: Service) -> None:
    service.deploy({"id": "/rack2", "cmd": "sleep 600", "instances": 2, "cpus": 0.05, "mem": 32,
                    "constraints": [["rack", "CLUSTER", "r2"]]})
    service.deploy({"id": "/spread", "cmd": "sleep 600", "instances": 4, "cpus": 0.05, "mem": 32,
                    "constraints": [["rack", "GROUP_BY", "2"], ["rack", "LIKE", "r[13]"]]})

    def hosts(app_id: str, count: int) -> list[str] | None:
        tasks = [t for t in service.tasks(app_id) if t["state"] == "TASK_RUNNING"]
        return sorted(t["host"] for t in tasks) if len(tasks) == count and not service.deployments() else None
    assert wait_until(lambda: hosts("/rack2", 2), what="/rack2 running") == ["agent2", "agent2"]
    spread = wait_until(lambda: hosts("/spread", 4), what="/spread running")
    assert spread == ["agent1", "agent1", "agent3", "agent3"]  # evenly over racks r1 and r3


def test_the_event_stream_delivers_status_updates_and_deployment_events(service: Service) -> None:
    stream = EventStream(service.url, "?event_type=status_update_event&event_type=deployment_success")
    try:
        assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
        deployment = service.deploy({"id": "/events", "cmd": "sleep 600", "instances": 2, "cpus": 0.05,
                                     "mem": 32})

        def succeeded() -> list[tuple[str, dict[str, Any]]] | None:
            seen = stream.seen()
            done = [d for t, d in seen if t == "deployment_success" and d.get("id") == deployment]
            return seen if done else None
        seen = wait_until(succeeded, what="deployment_success on the stream")
        updates = [d for t, d in seen if t == "status_update_event"]
        running = {d["taskId"] for d in updates if d["taskStatus"] == "TASK_RUNNING"}
        tasks = {t["id"] for t in service.tasks("/events")}
        assert running == tasks and len(tasks) == 2
        update = updates[0]
        assert update["eventType"] == "status_update_event" and update["appId"] == "/events"
        assert update["host"] in ("agent1", "agent2", "agent3") and update["timestamp"].endswith("Z")

        victim = sorted(tasks)[0]
        service.call("DELETE", f"/v2/apps/events/tasks/{victim}")
        wait_until(lambda: any(t == "status_update_event" and d["taskId"] == victim
                               and d["taskStatus"] == "TASK_KILLED" for t, d in stream.seen()),
                   what="the kill on the stream")
        # Only the asked-for types came (no deployment_info, api_post_event, attached events, ...).
        assert {t for t, _d in stream.seen()} == {"status_update_event", "deployment_success"}
    finally:
        stream.close()
