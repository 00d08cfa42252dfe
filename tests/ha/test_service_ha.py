"""The service framework with a real ZooKeeper ensemble: two ``mensa service --zk`` instances
elect a leader, the standby sends the API to it, and when the leader is SIGKILLed the standby
takes over the running app (reconciled, not relaunched) and deploys again."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from ha_cluster import HACluster, redirect_of
from mensa_cluster import wait_until

from mensa.deploy.processes import ManagedProcess, mensa_argv
from mensa.deploy.rest_client import RestClient

SERVE = f"exec {shlex.quote(sys.executable)} -m http.server $PORT0 --bind 127.0.0.1"
CHECK = {"protocol": "HTTP", "path": "/", "portIndex": 0, "delaySeconds": 0, "gracePeriodSeconds": 5,
         "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2}


def start_service(ha: HACluster, name: str, zk_uri: str) -> ManagedProcess:
    work = ha.root / name
    proc = ManagedProcess(name, mensa_argv(
        "service", "--master", ha.zk_uri, "--zk", f"{zk_uri}/service", "--zk-session-timeout",
        str(ha.session_timeout), "--work-dir", str(work), "--http-port", "0", "--log-level", "debug"),
        work).start()
    proc.endpoints()
    ha.processes.append(proc)
    return proc


def url_of(proc: ManagedProcess) -> str:
    return f"http://127.0.0.1:{proc.endpoints()['http_port']}"


def api_of(proc: ManagedProcess) -> RestClient:
    return RestClient(url_of(proc), what=proc.name)


def info(proc: ManagedProcess) -> dict[str, Any]:
    doc: dict[str, Any] = api_of(proc).call("GET", "/v2/info")
    return doc


def leading_service(procs: list[ManagedProcess]) -> ManagedProcess:
    def check() -> ManagedProcess | None:
        leaders = [p for p in procs if p.alive() and info(p)["elected"]]
        assert len(leaders) <= 1, "two service instances lead at once"
        return leaders[0] if leaders else None
    return wait_until(check, timeout=30, what="a leading service instance")


def app_of(api: RestClient, app_id: str) -> dict[str, Any]:
    app: dict[str, Any] = api.call("GET", f"/v2/apps{app_id}?embed=app.tasks")["app"]
    return app


def healthy_tasks(api: RestClient, app_id: str, count: int, timeout: float = 40) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        app = app_of(api, app_id)
        tasks = app["tasks"]
        ok = (not app["deployments"] and len(tasks) == count
              and all(t["state"] == "TASK_RUNNING" and t["healthCheckResults"]
                      and t["healthCheckResults"][0]["alive"] for t in tasks))
        return tasks if ok else None
    return wait_until(check, timeout=timeout, what=f"{count} healthy tasks of {app_id}")


def sandboxes(root: Path, app_key: str) -> list[str]:
    found = root.glob(f"agent*/agents/*/frameworks/*/executors/{app_key}.*")
    return sorted(p.name for p in found if p.is_dir())


def live_at_master(ha: HACluster, framework_id: str) -> list[str]:
    return sorted(t for t, s in ha.tasks(framework_id).items()
                  if s in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"))


@pytest.fixture
def service_ha(ha: HACluster) -> HACluster:
    ha.start_master("master1")
    ha.wait_leader()
    ha.start_agent("agent1", "cpus:2;mem:2048;disk:100;ports:[31000-31019]")
    ha.start_agent("agent2", "cpus:2;mem:2048;disk:100;ports:[31100-31119]")
    wait_until(lambda: len(ha.state()["agents"]) == 2, what="two agents")
    return ha


def test_the_standby_redirects_and_takes_the_app_over_without_relaunching_it(service_ha: HACluster,
                                                                              zk_uri: str) -> None:
    ha = service_ha
    procs = [start_service(ha, "service1", zk_uri), start_service(ha, "service2", zk_uri)]
    leader = leading_service(procs)
    [standby] = [p for p in procs if p is not leader]
    leader_address = info(leader)["leader"]

    # The standby sends /v2 to the leader (once it has read the election's znodes).
    def redirected() -> tuple[int, str | None] | None:
        answer = redirect_of(f"{url_of(standby)}/v2/apps")
        return answer if answer[0] == 307 else None
    _status, location = wait_until(redirected, what="the standby redirecting to the leader")
    assert location == f"http://{leader_address}/v2/apps"
    assert api_of(standby).call("GET", "/v2/leader") == {"leader": leader_address}
    assert info(standby)["elected"] is False

    # Deployed through the standby: the client follows its redirect.
    app = {"id": "/web", "cmd": SERVE, "instances": 2, "cpus": 0.05, "mem": 32,
           "portDefinitions": [{"port": 0}], "healthChecks": [CHECK]}
    api_of(standby).call("POST", "/v2/apps", app)
    before = sorted(t["id"] for t in healthy_tasks(api_of(leader), "/web", 2))
    framework_id = info(leader)["frameworkId"]
    assert live_at_master(ha, framework_id) == before

    leader.kill()  # SIGKILL: its ZooKeeper session lingers for the session timeout
    assert leading_service([standby]) is standby
    api = api_of(standby)
    assert info(standby)["frameworkId"] == framework_id

    after = sorted(t["id"] for t in healthy_tasks(api, "/web", 2))
    assert after == before  # reconciled, not relaunched
    assert live_at_master(ha, framework_id) == before
    assert sandboxes(ha.root, "web") == before

    # The new leader deploys: a scale-up adds one instance and keeps the two.
    api.call("PUT", "/v2/apps/web", {"instances": 3})
    scaled = sorted(t["id"] for t in healthy_tasks(api, "/web", 3))
    assert set(before) < set(scaled)
    assert live_at_master(ha, framework_id) == scaled
    assert len(sandboxes(ha.root, "web")) == 3
