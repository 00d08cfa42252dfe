"""/v2/tasks, /v2/deployments, /v2/queue, the instance's own endpoints, what a standby answers,
and how failures of the shell are answered."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tornado.web
from prometheus_client.parser import text_string_to_metric_families
from tornado.testing import AsyncHTTPTestCase, gen_test

from mensa.frameworks.hosting import NotLeading
from mensa.frameworks.service_fw.api import MAX_BODY_BYTES, make_app, start_http
from mensa.frameworks.service_fw.engine import ServiceEngine
from mensa.frameworks.service_fw.service import ServiceOptions, ServiceService
from mensa.frameworks.store import FileStore, StoreError

from .service_api_harness import ApiCase


class TasksTest(ApiCase):
    def setUp(self) -> None:
        super().setUp()
        self.app("/web", instances=2)
        self.app("/db")
        self.service.offer("o1", resources="cpus:8;mem:8192;ports:[31000-31099]")
        self.web = [t.task_id for t in self.service.tasks("/web")]
        self.db = [t.task_id for t in self.service.tasks("/db")]
        self.service.update(self.web[0], "TASK_RUNNING")
        self.service.update(self.db[0], "TASK_RUNNING")

    def ids(self, query: str = "") -> list[str]:
        status, _h, body = self.call("GET", "/v2/tasks" + query)
        assert status == 200, body
        return sorted(t["id"] for t in body["tasks"])

    def test_tasks_of_every_app_filtered_by_status(self) -> None:
        assert self.ids() == sorted(self.web + self.db)
        assert self.ids("?status=running") == sorted([self.web[0], self.db[0]])
        assert self.ids("?status=staging") == [self.web[1]]
        assert self.ids("?status[]=staging&status[]=TASK_RUNNING") == sorted(self.web + self.db)
        status, _h, body = self.call("GET", "/v2/tasks?status=sleeping")
        assert status == 400 and "sleeping" in body["message"]
        task = next(t for t in self.call("GET", "/v2/tasks")[2]["tasks"] if t["id"] == self.web[0])
        assert task["appId"] == "/web" and task["host"] == "h1" and task["state"] == "TASK_RUNNING"
        status, _h, text = self.call("GET", "/v2/tasks", headers={"Accept": "text/plain"})
        assert status == 200 and text.splitlines()[0].startswith("db\t10001\th1:")  # service ports

    def test_tasks_are_killed_by_id_with_or_without_scaling(self) -> None:
        status, _h, body = self.call("POST", "/v2/tasks/delete", {"ids": [self.db[0], "web.unknown"]})
        assert status == 200 and [t["id"] for t in body["tasks"]] == [self.db[0]]
        assert self.call("GET", "/v2/apps/db")[2]["app"]["instances"] == 1  # replaced, not scaled

        assert self.call("POST", "/v2/tasks/delete?scale=true", {"ids": self.web})[0] == 409  # deploying
        status, headers, body = self.call("POST", "/v2/tasks/delete?scale=true&force=true", {"ids": self.web})
        assert status == 200 and headers["Marathon-Deployment-Id"] == body["deploymentId"]
        assert self.call("GET", "/v2/apps/web")[2]["app"]["instances"] == 0

        assert self.call("POST", "/v2/tasks/delete", {"ids": "web.1"})[0] == 422
        assert self.call("POST", "/v2/tasks/delete", {"ids": [1]})[0] == 422
        assert self.call("POST", "/v2/tasks/delete?scale=1&wipe=1", {"ids": []})[0] == 400
        assert self.call("POST", "/v2/tasks/delete", {"ids": ["web.unknown"]})[2] == {"tasks": []}


class DeploymentsTest(ApiCase):
    def test_cancelling_rolls_back_and_force_just_stops(self) -> None:
        created = self.app("/web", instances=2)
        [dep] = self.call("GET", "/v2/deployments")[2]
        assert dep["id"] == created["deployments"][0]["id"]
        assert dep["affectedApps"] == ["/web"] and dep["totalSteps"] >= 1

        status, headers, body = self.call("DELETE", f"/v2/deployments/{dep['id']}")
        assert status == 200 and set(body) == {"deploymentId", "version"}
        assert body["deploymentId"] != dep["id"] and headers["Marathon-Deployment-Id"] == body["deploymentId"]
        # The rollback of a creation deletes the app (it has no instances, so at once).
        assert self.call("GET", "/v2/apps/web")[0] == 404

        self.app("/db", instances=2)
        [dep] = self.call("GET", "/v2/deployments")[2]
        status, _h, body = self.call("DELETE", f"/v2/deployments/{dep['id']}?force=true")
        assert status == 202 and body is None
        assert self.call("GET", "/v2/deployments")[2] == []
        assert self.call("GET", "/v2/apps/db")[2]["app"]["instances"] == 2  # stays as it was asked

        status, _h, body = self.call("DELETE", "/v2/deployments/nope")
        assert status == 404 and body == {"message": "DeploymentPlan nope does not exist"}


class QueueTest(ApiCase):
    def test_a_waiting_app_says_which_offers_it_refused_and_why(self) -> None:
        self.app("/big", cpus=16)
        self.service.offer("o1", hostname="h1", resources="cpus:8;mem:8192;ports:[31000-31099]")
        status, _h, body = self.call("GET", "/v2/queue")
        assert status == 200
        [entry] = body["queue"]
        assert entry["count"] == 1 and entry["app"]["id"] == "/big"
        assert entry["delay"] == {"timeLeftSeconds": 0, "overdue": True}
        summary = entry["processedOffersSummary"]
        assert (summary["processedOffersCount"], summary["unusedOffersCount"]) == (1, 1)
        cpus = next(r for r in summary["rejectSummaryLastOffers"] if r["reason"] == "InsufficientCpus")
        assert cpus == {"reason": "InsufficientCpus", "declined": 1, "processed": 1}
        assert "cpus" in summary["message"] and "lastUnusedOffers" not in entry and "message" not in entry
        [offer] = self.call("GET", "/v2/queue?embed=lastUnusedOffers")[2]["queue"][0]["lastUnusedOffers"]
        assert offer["offer"]["hostname"] == "h1" and offer["reason"] == ["InsufficientCpus"]

    def test_a_crash_loop_backs_off_until_the_delay_is_reset(self) -> None:
        self.app("/web", backoffSeconds=30)
        self.service.offer("o1")
        [task_id] = self.service.run_all("/web")
        self.service.update(task_id, "TASK_FAILED")
        [entry] = self.call("GET", "/v2/queue")[2]["queue"]
        assert entry["delay"] == {"timeLeftSeconds": 30, "overdue": False}
        assert "backoff" in entry["processedOffersSummary"]["message"]

        status, _h, body = self.call("DELETE", "/v2/queue/web/delay")
        assert status == 204 and body is None
        [entry] = self.call("GET", "/v2/queue")[2]["queue"]
        assert entry["delay"] == {"timeLeftSeconds": 0, "overdue": True}
        status, _h, body = self.call("DELETE", "/v2/queue/nope/delay")
        assert status == 404 and body == {"message": "Application /nope not found in tasks queue."}


class InstanceTest(ApiCase):
    def test_ping_info_leader_and_metrics(self) -> None:
        self.app("/web")
        self.service.offer("o1")
        status, headers, body = self.call("GET", "/ping")
        assert status == 200 and body == "pong" and headers["Content-Type"].startswith("text/plain")

        info = self.call("GET", "/v2/info")[2]
        assert info["name"] == "mensa-service" and info["elected"] is True and info["version"]
        assert info["leader"] == "127.0.0.1:8080" and info["frameworkId"] == "fw-1"
        assert info["marathon_config"]["master"] == "127.0.0.1:5050"
        assert info["http_config"]["http_port"] == 8080
        assert info["event_subscriber"]["type"] == "sse"
        # Marathon's fields only (the marathon client refuses others); the address is the web UI's.
        assert set(info) == {"name", "version", "buildref", "elected", "leader", "frameworkId",
                             "marathon_config", "zookeeper_config", "http_config", "event_subscriber"}
        assert info["marathon_config"]["webui_url"] == "http://127.0.0.1:8080"
        assert self.call("GET", "/v2/leader")[2] == {"leader": "127.0.0.1:8080"}

        metrics = self.call("GET", "/v2/metrics")[2]
        assert metrics["service/leading"] == 1.0
        assert metrics["service/uptime_secs"] == 62.0  # started 60 s before START; 2 changes since
        assert metrics["service/apps"] == 1.0 and metrics["service/launched"] == 1.0
        assert metrics["service/status_updates"] == 2.0  # the shell's; the engine's is renamed
        assert "service/engine_status_updates" in metrics
        status, headers, text = self.call("GET", "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["mensa_service_launched"].type == "counter"
        assert families["mensa_service_launched"].samples[0].value == 1.0
        assert families["mensa_service_apps"].type == "gauge"

    @gen_test
    async def test_start_http_serves_and_limits_bodies(self) -> None:
        server, port = start_http(self.service, "127.0.0.1", 0)  # type: ignore[arg-type]
        try:
            url = f"http://127.0.0.1:{port}"
            assert (await self.http_client.fetch(url + "/ping")).body == b"pong"
            big = json.dumps({"id": "/web", "cmd": "x" * MAX_BODY_BYTES})
            response = await self.http_client.fetch(url + "/v2/apps", method="POST", body=big,
                                                    raise_error=False)
            assert response.code not in (200, 201)
            assert self.service.require_engine().app_records() == []
        finally:
            server.stop()


class StandbyTest(ApiCase):
    leading = False
    leader = "10.0.0.7:8080"

    def test_a_standby_redirects_v2_to_the_leader_and_answers_for_itself(self) -> None:
        status, headers, body = self.call("GET", "/v2/apps?embed=apps.tasks")
        assert status == 307 and headers["Location"] == "http://10.0.0.7:8080/v2/apps?embed=apps.tasks"
        assert body["leader"] == "10.0.0.7:8080"
        assert self.call("POST", "/v2/apps", {"id": "/a", "cmd": "x"})[0] == 307
        assert self.call("DELETE", "/v2/deployments/x")[0] == 307
        assert self.call("GET", "/ping")[2] == "pong"
        assert self.call("GET", "/v2/leader")[2] == {"leader": "10.0.0.7:8080"}
        info = self.call("GET", "/v2/info")[2]
        assert info["elected"] is False and info["leader"] == "10.0.0.7:8080"
        assert self.call("GET", "/v2/metrics")[2]["service/leading"] == 0.0


class NoLeaderTest(ApiCase):
    leading = False

    def test_without_a_leader_v2_is_a_retry_safe_503(self) -> None:
        status, headers, body = self.call("GET", "/v2/apps")
        assert status == 503 and headers["Mensa-Retry-Safe"] == "true" and "retry" in body["message"]
        status, _h, body = self.call("GET", "/v2/leader")
        assert status == 404 and body == {"message": "There is no leader"}


class FailingShellTest(ApiCase):
    def fail_with(self, exc: Exception) -> None:
        async def failing(fn: Callable[[float], tuple[Any, Sequence[Any] | None]]) -> Any:
            raise exc
        self.service.apply_returning = failing  # type: ignore[method-assign]

    def test_a_failed_state_write_is_a_503_that_says_to_look_first(self) -> None:
        self.fail_with(StoreError("disk full"))
        status, headers, body = self.call("POST", "/v2/apps", {"id": "/web", "cmd": "x"})
        assert status == 503 and "Mensa-Retry-Safe" not in headers
        assert "may or may not have taken effect" in body["message"] and "disk full" in body["message"]

    def test_losing_the_lead_mid_request_is_a_retry_safe_503(self) -> None:
        self.fail_with(NotLeading("this instance does not lead"))
        status, headers, _body = self.call("POST", "/v2/apps", {"id": "/web", "cmd": "x"})
        assert status == 503 and headers["Mensa-Retry-Safe"] == "true"

    def test_a_bug_is_a_500_without_details(self) -> None:
        self.fail_with(RuntimeError("secret internals"))
        status, _h, body = self.call("POST", "/v2/apps", {"id": "/web", "cmd": "x"})
        assert status == 500 and "secret" not in body["message"]


class RealShellTest(AsyncHTTPTestCase):
    """The API on the real shell (``ServiceService``: its lock, refusals, state writes and event
    bus), leading with a file store and no driver."""

    def setUp(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="mensa-svc-api-"))
        self.service = ServiceService(ServiceOptions(master="127.0.0.1:5050", work_dir=self.work))
        self.service.engine = ServiceEngine()
        self.service.store = FileStore(self.work / "state")
        self.service.address = "127.0.0.1:8080"
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.work, ignore_errors=True)

    def get_app(self) -> tornado.web.Application:
        return make_app(self.service)

    def send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        response = self.fetch(path, method=method, body=json.dumps(body), raise_error=False)
        return response.code, json.loads(response.body)

    def test_changes_are_stored_before_the_answer_and_refusals_change_nothing(self) -> None:
        seen = self.service.events.subscribe()
        engine = self.service.engine
        status, body = self.send("POST", "/v2/apps", {"id": "/web", "cmd": "sleep 9", "instances": 2})
        assert status == 201
        stored = FileStore(self.work / "state").load()
        assert set(stored["app"]) == {"web"} and len(stored["deployment"]) == 1
        kinds = [chunk.split(b"\n")[0] for chunk in seen.take()]
        assert kinds[0] == b"event: deployment_info" and kinds[-1] == b"event: api_post_event"

        status, conflict = self.send("PUT", "/v2/apps/web", {"instances": 3})
        assert status == 409 and conflict["deployments"] == body["deployments"]
        status, invalid = self.send("PUT", "/v2/apps/web?force=true", {"cpus": -1})
        assert status == 422 and invalid["details"][0]["path"] == "/cpus"
        assert self.service.engine is engine  # refusals: no rebuild
        assert engine.app_record("/web").spec.instances == 2
