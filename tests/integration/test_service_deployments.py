"""The service framework end to end, deployments: a real master, three agents (agent1..agent3),
``mensa service`` as a subprocess, driven through its Marathon-style REST API (and ``mensa app``);
the apps are small HTTP servers with an HTTP health check the agents run."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mensa_cluster import Cluster, wait_until
from service_fixture import (
    SERVE,
    SERVE_ELSEWHERE,
    Service,
    healthy,
    http_app,
    sandboxes,
    three_agents,
)

from mensa.deploy.processes import mensa_argv

AGENT_PORTS = {"agent1": range(31000, 31020), "agent2": range(31100, 31120), "agent3": range(31200, 31220)}


@pytest.fixture
def service(cluster: Cluster) -> Service:
    three_agents(cluster)
    return Service(cluster).start()


def answers(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return int(response.status)


def test_three_instances_become_healthy_and_serve(service: Service) -> None:
    created = service.call("POST", "/v2/apps", http_app("/web"))
    assert created["id"] == "/web" and created["instances"] == 3 and len(created["deployments"]) == 1

    tasks = service.wait_healthy("/web", 3)

    for task in tasks:
        assert task["appId"] == "/web" and task["id"].startswith("web.")
        assert task["host"] in AGENT_PORTS
        [port] = task["ports"]
        assert port in AGENT_PORTS[task["host"]]
        assert answers(port) == 200
        assert task["stagedAt"] and task["startedAt"]
    app = service.call("GET", "/v2/apps/web")["app"]
    counts = (app["tasksRunning"], app["tasksHealthy"], app["tasksUnhealthy"], app["tasksStaged"])
    assert counts == (3, 3, 0, 0)
    assert service.deployments() == []


def test_scaling_up_then_down_kills_by_kill_selection(service: Service) -> None:
    service.deploy(http_app("/young", killSelection="YOUNGEST_FIRST"))
    service.deploy(http_app("/old", killSelection="OLDEST_FIRST"))
    first = {app_id: {t["id"] for t in service.wait_healthy(app_id, 3)} for app_id in ("/young", "/old")}

    for app_id in ("/young", "/old"):
        service.call("PUT", f"/v2/apps{app_id}", {"instances": 5})
    five = {app_id: service.wait_healthy(app_id, 5) for app_id in ("/young", "/old")}
    for app_id, tasks in five.items():
        assert first[app_id] <= {t["id"] for t in tasks}  # scaling up keeps the first three
    for app_id in ("/young", "/old"):
        service.call("PUT", f"/v2/apps{app_id}", {"instances": 2})
    two = {app_id: {t["id"] for t in service.wait_healthy(app_id, 2)} for app_id in ("/young", "/old")}

    # OLDEST_FIRST: the three of the first wave go, the two added last stay.
    assert two["/old"] == {t["id"] for t in five["/old"]} - first["/old"]
    # YOUNGEST_FIRST: the two added last go, and the youngest of the first wave.
    assert two["/young"] <= first["/young"]
    staged = {t["id"]: t["stagedAt"] for t in five["/young"]}
    [killed] = first["/young"] - two["/young"]
    assert all(staged[kept] <= staged[killed] for kept in two["/young"])
    assert service.app("/young")["instances"] == 2


def healthy_count(service: Service, app_id: str) -> int:
    tasks: list[dict[str, Any]] = service.call("GET", f"/v2/apps{app_id}?embed=apps.tasks")["app"]["tasks"]
    return sum(1 for t in tasks if t["state"] == "TASK_RUNNING" and healthy(t))


def test_a_rolling_upgrade_replaces_every_instance_keeping_capacity(service: Service) -> None:
    half = {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}  # >= 2 of 3 healthy, at most 3
    service.deploy(http_app("/web", upgradeStrategy=half))
    v1 = {t["id"] for t in service.wait_healthy("/web", 3)}

    upgrade = service.put(http_app("/web", env={"GENERATION": "2"}, upgradeStrategy=half))
    samples = []
    while upgrade in {d["id"] for d in service.deployments()}:
        samples.append(healthy_count(service, "/web"))
    v2_tasks = service.wait_healthy("/web", 3)

    assert len(samples) > 3 and min(samples) >= 2, samples
    assert v1.isdisjoint({t["id"] for t in v2_tasks})  # every instance replaced
    app = service.app("/web")
    assert {t["version"] for t in v2_tasks} == {app["versionInfo"]["lastConfigChangeAt"]}
    assert app["env"] == {"GENERATION": "2"}
    assert all(answers(t["ports"][0]) == 200 for t in v2_tasks)


def start_a_failing_rollout(service: Service) -> tuple[set[str], str, str]:
    """Runs /web (3 healthy), then PUTs a version that serves on the wrong port, and waits until
    its instances fail their checks; returns the old task ids, the deployment id and the new
    version. With minimumHealthCapacity 1 nothing old may go before new instances are healthy."""
    keep_all = {"minimumHealthCapacity": 1, "maximumOverCapacity": 1}
    service.deploy(http_app("/web", upgradeStrategy=keep_all))
    old = {t["id"] for t in service.wait_healthy("/web", 3)}
    failing = service.put(http_app("/web", cmd=SERVE_ELSEWHERE, env={"GENERATION": "2"},
                                   upgradeStrategy=keep_all))
    version = service.app("/web")["versionInfo"]["lastConfigChangeAt"]

    def new_ones_fail() -> bool:
        app = service.app("/web")
        failure = app.get("lastTaskFailure") or {}
        unhealthy = [t for t in app["tasks"] if t["version"] == version and t["healthCheckResults"]
                     and not t["healthCheckResults"][0]["alive"]]
        return bool(unhealthy) or failure.get("version") == version
    wait_until(new_ones_fail, timeout=30, what="the new version's instances to fail their checks")
    return old, failing, version


def test_a_version_failing_its_checks_leaves_the_old_instances_serving(service: Service) -> None:
    old, failing, _version = start_a_failing_rollout(service)

    app = service.app("/web")
    running = [t for t in app["tasks"] if t["id"] in old]
    assert len(running) == 3 and all(t["state"] == "TASK_RUNNING" and healthy(t) for t in running)
    assert all(answers(t["ports"][0]) == 200 for t in running)
    assert [d["id"] for d in app["deployments"]] == [failing]
    assert [d["id"] for d in service.deployments()] == [failing]
    assert app["tasksHealthy"] == 3  # the new ones never are

    # Cancelling with force stops the deployment without a rollback: nothing is killed for it.
    status, _headers, _body = service.raw("DELETE", f"/v2/deployments/{failing}?force=true")
    assert status == 202
    assert service.deployments() == []
    assert old <= {t["id"] for t in service.tasks("/web")}


def test_cancelling_a_failing_deployment_rolls_back_to_the_old_version(service: Service) -> None:
    old, failing, version = start_a_failing_rollout(service)

    rollback = service.call("DELETE", f"/v2/deployments/{failing}")
    assert rollback["deploymentId"] != failing and rollback["version"]
    service.wait_deployment_gone(rollback["deploymentId"], timeout=20)
    back = service.wait_healthy("/web", 3)

    app = service.app("/web")
    assert app["cmd"] == SERVE and app["env"] == {}
    assert all(t["version"] != version for t in back)
    assert {t["id"] for t in back} == old  # the old instances run the version rolled back to: kept
    assert failing not in {d["id"] for d in service.deployments()}
    assert all(answers(t["ports"][0]) == 200 for t in back)


def test_a_killed_task_is_replaced(service: Service) -> None:
    service.deploy(http_app("/web"))
    before = {t["id"] for t in service.wait_healthy("/web", 3)}
    victim = sorted(before)[0]

    killed = service.call("DELETE", f"/v2/apps/web/tasks/{victim}")
    assert killed["task"]["id"] == victim

    def replaced() -> set[str] | None:
        ids = {t["id"] for t in service.wait_healthy("/web", 3)}
        return ids if victim not in ids else None
    after = wait_until(replaced, timeout=30, what="the killed task replaced")
    assert before - {victim} <= after and len(after - before) == 1
    assert service.app("/web")["instances"] == 3
    assert victim in sandboxes(service.cluster.root, "web")


def test_killing_a_task_with_scale_kills_it_at_once_and_lowers_the_count(service: Service) -> None:
    service.deploy(http_app("/web", instances=2))
    before = {t["id"] for t in service.wait_healthy("/web", 2)}
    victim = sorted(before)[0]

    scaled = service.call("POST", "/v2/tasks/delete?scale=true", {"ids": [victim]})

    # The agents' kill grace period is 1 s: the kill is done well within 5 s when it is sent.
    service.wait_deployment_gone(scaled["deploymentId"], timeout=5)
    assert {t["id"] for t in service.wait_healthy("/web", 1, timeout=5)} == before - {victim}
    assert service.app("/web")["instances"] == 1


def test_app_deploy_from_a_yaml_file_follows_the_deployment(service: Service, tmp_path: Path) -> None:
    spec = tmp_path / "apps.yaml"
    spec.write_text(f"""\
- id: /cli/web
  cmd: {SERVE}
  instances: 2
  cpus: 0.05
  mem: 32
  portDefinitions: [{{port: 0, name: http}}]
  healthChecks:
    - {{protocol: HTTP, path: /, portIndex: 0, delaySeconds: 0, gracePeriodSeconds: 5,
        intervalSeconds: 1, timeoutSeconds: 1, maxConsecutiveFailures: 2}}
""")
    deployed = subprocess.run(mensa_argv("app", "deploy", str(spec), "--service", service.url,
                                         "--poll-interval", "0.2", "--timeout", "60"),
                              capture_output=True, text=True, timeout=90, check=False)

    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    lines = deployed.stdout.splitlines()
    assert lines[0].startswith("creating /cli/web: deployment "), lines
    assert len(lines) >= 3 and lines[-1].startswith("done"), lines  # progress, then the verdict
    tasks = service.wait_healthy("/cli/web", 2, timeout=5)
    assert all(answers(t["ports"][0]) == 200 for t in tasks)
