"""The service framework's REST API refusing bad requests, end to end: Marathon's status codes and
error documents (422 with details, 400 for what is not JSON, 404, 409) from a real
``mensa service`` process, and nothing changed by a refused request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mensa_cluster import Cluster
from service_fixture import Service, http_app

from mensa.deploy.rest_client import ApiError


@pytest.fixture
def service(cluster: Cluster) -> Service:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:2048;disk:200;ports:[31000-31019]")
    cluster.wait_agents(1)
    return Service(cluster).start()


def details(body: dict[str, Any]) -> dict[str, list[str]]:
    return {d["path"]: [str(e) for e in d["errors"]] for d in body.get("details", [])}


def test_invalid_apps_are_refused_with_422_and_details(service: Service) -> None:
    status, _headers, body = service.raw("POST", "/v2/apps", '{"id": "/neg", "cmd": "true", "cpus": -1}')
    assert status == 422 and body["message"] == "Object is not valid"
    assert "/cpus" in details(body)

    check = {**http_app("/hc")["healthChecks"][0], "portIndex": 3}
    app = http_app("/hc", healthChecks=[check])
    status, _headers, body = service.raw("POST", "/v2/apps", json.dumps(app))
    assert status == 422
    [(path, errors)] = [(p, e) for p, e in details(body).items() if "portIndex" in p]
    assert path == "/healthChecks/0/portIndex" and "3" in " ".join(errors)

    cycle = [{"id": "/a", "cmd": "sleep 1", "dependencies": ["/b"]},
             {"id": "/b", "cmd": "sleep 1", "dependencies": ["/a"]}]
    status, _headers, body = service.raw("PUT", "/v2/apps", json.dumps(cycle))
    assert status == 422
    assert any("dependencies" in p and "cycle" in " ".join(e) for p, e in details(body).items()), body

    missing = {"id": "/x", "cmd": "true", "dependencies": ["/y"]}
    status, _headers, body = service.raw("POST", "/v2/apps", json.dumps(missing))
    assert status == 422 and any("/y" in " ".join(e) for e in details(body).values()), body

    assert service.call("GET", "/v2/apps") == {"apps": []}
    assert service.deployments() == []


def test_bodies_that_are_not_json_are_refused_with_400(service: Service) -> None:
    for body in ("{not json", "", "\xff\xfe"):
        status, _headers, answer = service.raw("POST", "/v2/apps", body)
        assert status == 400, (body, status, answer)
        assert isinstance(answer, dict) and answer["message"]
    status, _headers, _answer = service.raw("PUT", "/v2/apps/web", "[1, 2")
    assert status == 400
    assert service.call("GET", "/v2/apps") == {"apps": []}


def test_unknown_things_are_404(service: Service) -> None:
    status, _headers, body = service.raw("GET", "/v2/apps/nope")
    assert status == 404 and body["message"] == "App '/nope' does not exist"
    for method, path in (("GET", "/v2/apps/nope/tasks"), ("DELETE", "/v2/apps/nope"),
                         ("DELETE", "/v2/deployments/no-such-deployment"), ("GET", "/v2/apps/nope/versions")):
        status, _headers, body = service.raw(method, path)
        assert status == 404, (method, path, status, body)
        assert body["message"]


def test_a_locked_app_needs_force_and_an_existing_app_cannot_be_created_again(service: Service) -> None:
    # Needs more cpus than any agent has: its deployment waits, and holds the app.
    created = service.call("POST", "/v2/apps", http_app("/stuck", instances=1, cpus=16))
    [waiting] = created["deployments"]

    status, _headers, body = service.raw("PUT", "/v2/apps/stuck", '{"instances": 2}')
    assert status == 409 and "locked" in body["message"]
    assert body["deployments"] == [{"id": waiting["id"]}]
    status, _headers, body = service.raw("POST", "/v2/apps", json.dumps(http_app("/stuck")))
    assert status == 409 and "already exists" in body["message"]
    assert [d["id"] for d in service.deployments()] == [waiting["id"]]
    assert service.app("/stuck")["instances"] == 1

    forced = service.call("PUT", "/v2/apps/stuck?force=true", {"instances": 0})
    service.wait_deployment_gone(forced["deploymentId"])
    assert service.deployments() == []
    with pytest.raises(ApiError) as refused:
        service.call("GET", "/v2/apps/stuck/versions/1999-01-01T00:00:00.000Z")
    assert refused.value.status == 404
