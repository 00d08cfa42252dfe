"""Metrics with real processes: a master, an agent and a scheduler's tasks, read through the
master's and the agent's /metrics (parsed by prometheus-client's own parser), /metrics/snapshot
and /state-summary."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from mensa_cluster import Cluster, wait_until
from mensa_recorder import running, task
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from mensa.proto import mensa_pb2

S = mensa_pb2


def get(url: str, **headers: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
        return response.headers["Content-Type"], response.read()


def get_json(url: str) -> Any:
    content_type, body = get(url)
    assert content_type.startswith("application/json")
    return json.loads(body)


def json_when(url: str, check: Callable[[Any], bool]) -> Any:
    """Returns the JSON document at ``url`` when ``check`` holds for it, else None."""
    document = get_json(url)
    return document if check(document) else None


def prometheus(url: str) -> dict[str, Any]:
    """Returns the families of a /metrics page by name, checking its content type."""
    content_type, body = get(url)
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    # A scraper asking for OpenMetrics gets it, with the same families.
    content_type, body = get(url, Accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert {family.name for family in openmetrics_families(body.decode())} == set(families)
    return families


def value(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == (sample or family) and s.labels == labels:
            return float(s.value)
    raise KeyError(f"{sample or family}{labels}")


def check_histogram(families: dict[str, Any], name: str) -> int:
    """Checks a histogram family's shape (cumulative buckets ending at +Inf = count); returns its count."""
    family = families[name]
    assert family.type == "histogram"
    buckets = [(float(s.labels["le"]), s.value) for s in family.samples if s.name == f"{name}_bucket"]
    assert buckets == sorted(buckets), "buckets must be ordered and cumulative"
    assert buckets[-1][0] == math.inf
    count = value(families, name, f"{name}_count")
    assert buckets[-1][1] == count
    assert value(families, name, f"{name}_sum") >= 0
    return int(count)


def test_metrics_of_a_master_and_an_agent_running_tasks(cluster: Cluster) -> None:
    cluster.start_master()
    agent = cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]")
    [agent_info] = cluster.wait_agents(1)
    agent_http = f"http://127.0.0.1:{agent.endpoints()['http_port']}"

    with running(cluster) as (sched, driver, framework_id):
        sched.submit(driver, task("done", "true", "cpus:0.5;mem:64"),
                     task("long", "sleep 300", "cpus:0.5;mem:128"))
        sched.state_of("done", "TASK_FINISHED")
        sched.state_of("long", "TASK_RUNNING")

        # /metrics/snapshot: Mesos's names, the figures of this cluster.
        snap = wait_until(lambda: json_when(f"{cluster.http}/metrics/snapshot", lambda s: (
                              s["master/tasks_finished"] == 1 and s["master/tasks_running"] == 1)),
                          what="one finished and one running task in /metrics/snapshot")
        assert snap["master/elected"] == 1 and snap["master/uptime_secs"] > 0
        assert snap["master/agents_active"] == snap["master/slaves_active"] == 1
        assert snap["master/frameworks_active"] == 1
        assert snap["master/cpus_total"] == 2 and snap["master/mem_total"] == 1024
        assert snap["master/cpus_used"] == 0.5 and snap["master/mem_used"] == 128
        assert snap["master/cpus_percent"] == 0.25
        assert snap["master/tasks_launched"] == 2
        assert snap["allocator/mesos/allocation_runs"] >= 1
        assert snap["allocator/mesos/allocation_run_ms/count"] >= 1
        timer = "allocator/mesos/allocation_run_ms"
        assert snap[f"{timer}/max"] >= snap[f"{timer}/p99"] >= snap[f"{timer}/p50"] >= snap[f"{timer}/min"]
        assert snap["master/launch_to_running_ms/count"] == 2
        assert snap["master/offer_to_accept_ms/count"] >= 1

        # /metrics: the same figures and the three histograms, in Prometheus's text format.
        families = prometheus(f"{cluster.http}/metrics")
        assert value(families, "mensa_master_elected") == 1
        assert value(families, "mensa_master_cpus_total") == 2
        assert value(families, "mensa_master_tasks", state="running") == 1
        assert value(families, "mensa_master_tasks_completed", "mensa_master_tasks_completed_total",
                     state="finished") == 1
        assert check_histogram(families, "mensa_master_launch_to_running_seconds") == 2
        assert check_histogram(families, "mensa_master_offer_to_accept_seconds") >= 1
        assert check_histogram(families, "mensa_master_allocation_seconds") >= 1

        # /state-summary: counts only.
        summary = get_json(f"{cluster.http}/state-summary")
        assert get_json(f"{cluster.http}/master/state-summary")["slaves"][0]["id"] == agent_info["id"]
        [summary_agent] = summary["agents"]
        assert summary["slaves"] == summary["agents"]
        assert summary_agent["id"] == agent_info["id"] and summary_agent["hostname"] == "agent1"
        assert summary_agent["TASK_RUNNING"] == 1 and summary_agent["TASK_FINISHED"] == 1
        assert summary_agent["used_resources"]["cpus"] == 0.5
        assert summary_agent["framework_ids"] == [framework_id]
        [summary_framework] = summary["frameworks"]
        assert summary_framework["id"] == framework_id
        assert summary_framework["TASK_RUNNING"] == 1 and summary_framework["slave_ids"] == [agent_info["id"]]

        # The agent's own /metrics/snapshot and /metrics.
        agent_snap = wait_until(lambda: json_when(f"{agent_http}/metrics/snapshot",
                                                  lambda s: s["slave/tasks_finished"] == 1),
                                what="the finished task in the agent's /metrics/snapshot")
        assert agent_snap["slave/registered"] == 1 and agent_snap["slave/uptime_secs"] > 0
        assert agent_snap["slave/tasks_running"] == 1
        assert agent_snap["slave/cpus_total"] == 2 and agent_snap["slave/cpus_used"] == 0.5
        assert agent_snap["slave/containers_running"] == 1
        agent_families = prometheus(f"{agent_http}/metrics")
        assert value(agent_families, "mensa_agent_registered") == 1
        assert value(agent_families, "mensa_agent_tasks", state="running") == 1
        assert value(agent_families, "mensa_agent_tasks_completed", "mensa_agent_tasks_completed_total",
                     state="finished") == 1
        assert value(agent_families, "mensa_agent_mem_total") == 1024

        driver.kill_task("long")
        sched.state_of("long", "TASK_KILLED")
        wait_until(lambda: get_json(f"{cluster.http}/metrics/snapshot")["master/tasks_killed"] == 1,
                   what="the killed task counted")
        snap = get_json(f"{cluster.http}/metrics/snapshot")
        assert snap["master/tasks_running"] == 0 and snap["master/cpus_used"] == 0


def test_version_flags_redirect_roles_and_the_state_aliases(cluster: Cluster) -> None:
    """The small endpoints Mesos tools read, on a live master."""
    cluster.start_master("--zk-session-timeout", "7")
    cluster.start_agent("agent1", "cpus:1;mem:256;disk:10")
    cluster.wait_agents(1)

    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(f"{cluster.http}{path}", timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    status, _h, body = get("/version")
    assert status == 200 and json.loads(body)["version"]
    flags = json.loads(get("/flags")[2])["flags"]
    assert flags["zk_session_timeout"] == "7.0" and flags["allocation_interval"] == "0.2"
    status, headers, _ = get("/redirect")
    assert status == 307 and headers["Location"] == f"{cluster.http}/"  # it leads: itself
    assert get("/master/redirect")[0] == 307
    roles = json.loads(get("/roles")[2])["roles"]
    assert isinstance(roles, list)
    for alias in ("/master/state", "/state.json"):
        document = json.loads(get(alias)[2])
        assert [a["hostname"] for a in document["agents"]] == ["agent1"]
