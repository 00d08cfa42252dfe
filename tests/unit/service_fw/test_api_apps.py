"""The /v2/apps endpoints against a real engine (a stand-in shell; no master, no agents)."""

from __future__ import annotations

from typing import Any

from .service_api_harness import ApiCase


class CreateAndReadTest(ApiCase):
    def test_post_creates_an_app_answering_as_marathon(self) -> None:
        seen = self.service.events.subscribe({"api_post_event"})
        status, headers, body = self.call("POST", "/v2/apps", {"id": "shop/web", "cmd": "sleep 9", "mem": 64})
        assert status == 201
        assert headers["Location"] == "/v2/apps/shop/web"
        assert body["id"] == "/shop/web" and body["mem"] == 64 and body["cpus"] == 1  # defaults filled in
        assert body["deployments"] == [{"id": headers["Marathon-Deployment-Id"]}]
        assert (body["tasksRunning"], body["tasksStaged"], body["tasks"]) == (0, 0, [])
        assert body["version"] == body["versionInfo"]["lastConfigChangeAt"]
        # an api_post_event names the definition, the client and the URI
        [chunk] = seen.take()
        assert b'"uri":"/v2/apps"' in chunk and b'"id":"/shop/web"' in chunk

        status, _h, shown = self.call("GET", "/v2/apps/shop/web")
        assert status == 200
        app = shown["app"]
        assert app["id"] == "/shop/web" and app["version"] == body["version"]
        assert {"tasks", "tasksRunning", "tasksHealthy", "deployments"} <= set(app)
        assert "lastTaskFailure" not in app  # none yet
        deployments = self.call("GET", "/v2/deployments")[2]
        assert [d["id"] for d in deployments] == [headers["Marathon-Deployment-Id"]]

    def test_bad_bodies_are_refused_in_marathons_shapes(self) -> None:
        status, _h, body = self.call("POST", "/v2/apps", raw=b'{"id": "x", ')
        assert status == 400 and body["message"] == "Invalid JSON"
        assert body["details"][0]["path"] == "/" and "not JSON" in body["details"][0]["errors"][0]
        assert self.call("POST", "/v2/apps", raw=b"")[0] == 400

        status, _h, body = self.call("POST", "/v2/apps", {"id": "/Bad_Id", "cmd": "x", "cpus": -1,
                                                          "instances": -2})
        assert status == 422 and body["message"] == "Object is not valid"
        assert {"/id", "/cpus", "/instances"} <= {d["path"] for d in body["details"]}
        assert all(d["errors"] for d in body["details"])
        assert self.call("POST", "/v2/apps", [{"id": "/a"}])[0] == 422
        assert self.call("GET", "/v2/apps")[2] == {"apps": []}  # nothing half-applied

    def test_duplicates_unknown_apps_and_bad_ids(self) -> None:
        self.app("/web")
        status, _h, body = self.call("POST", "/v2/apps", {"id": "/web", "cmd": "x"})
        assert status == 409 and body == {"message": "An app with id [/web] already exists."}
        status, _h, body = self.call("GET", "/v2/apps/nope")
        assert status == 404 and body == {"message": "App '/nope' does not exist"}
        assert self.call("DELETE", "/v2/apps/nope")[0] == 404
        assert self.call("POST", "/v2/apps/nope/restart")[0] == 404
        assert self.call("GET", "/v2/apps/nope/versions")[0] == 404
        status, _h, body = self.call("GET", "/v2/apps/Not_Valid")
        assert status == 422 and body["details"][0]["path"] == "/id"

    def test_ids_are_paths_and_keywords_route_to_their_endpoints(self) -> None:
        self.app("/shop/web")
        self.app("/shop/tasks-db")
        assert self.call("GET", "/v2/apps/shop/web/")[2]["app"]["id"] == "/shop/web"
        assert self.call("GET", "/v2/apps/%2Fshop%2Fweb")[2]["app"]["id"] == "/shop/web"
        assert self.call("GET", "/v2/apps/shop/tasks-db")[2]["app"]["id"] == "/shop/tasks-db"
        assert self.call("GET", "/v2/apps/shop/web/tasks")[2] == {"tasks": []}
        assert len(self.call("GET", "/v2/apps/shop/web/versions")[2]["versions"]) == 1
        assert self.call("GET", "/v2/apps/shop/web/tasks/shop_web.nope")[0] == 404
        # /v2/apps/{group}/* lists a group's apps
        status, _h, body = self.call("GET", "/v2/apps/shop/*")
        assert status == 200 and [a["id"] for a in body["*"]] == ["/shop/tasks-db", "/shop/web"]
        assert "tasks" in body["*"][0]
        assert self.call("GET", "/v2/apps/nowhere/*")[0] == 404


class ListTest(ApiCase):
    def setUp(self) -> None:
        super().setUp()
        self.app("/shop/web", labels={"tier": "web", "env": "prod"}, cmd="python3 -m http.server")
        self.app("/shop/db", labels={"tier": "db", "env": "qa"}, cmd="postgres")
        self.app("/ops/metrics", labels={"env": "dev"}, cmd="prometheus")

    def ids(self, query: str) -> list[str]:
        status, _h, body = self.call("GET", "/v2/apps" + query)
        assert status == 200, body
        return [a["id"] for a in body["apps"]]

    def test_filters_by_id_cmd_and_label(self) -> None:
        assert self.ids("") == ["/ops/metrics", "/shop/db", "/shop/web"]
        assert self.ids("?id=SHOP") == ["/shop/db", "/shop/web"]
        assert self.ids("?cmd=http") == ["/shop/web"]
        assert self.ids("?label=tier") == ["/shop/db", "/shop/web"]
        assert self.ids("?label=tier%3D%3Dweb") == ["/shop/web"]
        assert self.ids("?label=tier!%3Dweb") == ["/shop/db"]
        assert self.ids("?label=env+in+(prod,dev)") == ["/ops/metrics", "/shop/web"]
        assert self.ids("?label=env+notin+(prod,dev)") == ["/shop/db"]
        assert self.ids("?label=tier,env%3D%3Dqa&id=shop") == ["/shop/db"]
        status, _h, body = self.call("GET", "/v2/apps?label=env+in+prod")
        assert status == 400 and "label selector" in body["message"]

    def test_counts_and_deployments_always_tasks_when_asked(self) -> None:
        apps = self.call("GET", "/v2/apps")[2]["apps"]
        assert all("tasksRunning" in a and "deployments" in a and "tasks" not in a for a in apps)
        self.service.offer("o1")
        self.service.run_all("/shop/web")
        body = self.call("GET", "/v2/apps?embed=apps.tasks&id=/shop/web")[2]
        [web] = body["apps"]
        assert web["tasksRunning"] == 1 and [t["state"] for t in web["tasks"]] == ["TASK_RUNNING"]
        assert web["tasks"][0]["appId"] == "/shop/web"
        body = self.call("GET", "/v2/apps?embed=apps.lastTaskFailure&embed=apps.readiness")[2]
        assert all("tasks" not in a and a["readinessCheckResults"] == [] for a in body["apps"])

    def test_the_last_task_failure_is_shown_once_there_is_one(self) -> None:
        self.service.offer("o1")
        [task_id] = self.service.run_all("/shop/db")
        self.service.update(task_id, "TASK_FAILED", message="exit 3")
        [db] = self.call("GET", "/v2/apps?id=db&embed=apps.failures")[2]["apps"]
        assert db["lastTaskFailure"]["taskId"] == task_id and db["lastTaskFailure"]["state"] == "TASK_FAILED"
        assert "tasks" in db
        assert self.call("GET", "/v2/apps/shop/db")[2]["app"]["lastTaskFailure"]["message"] == "exit 3"


class UpdateTest(ApiCase):
    def settle(self, app_id: str) -> None:
        """Lets the app's deployment finish (its instances run)."""
        self.service.offer(f"o-{app_id}-{len(self.service.commands)}")
        self.service.run_all(app_id)
        assert self.service.engine is not None and not self.service.engine.deployments_of(app_id)

    def test_put_is_a_partial_update_by_default(self) -> None:
        first = self.app("/web", mem=64, env={"A": "1"})
        self.settle("/web")
        seen = self.service.events.subscribe({"api_post_event"})
        status, headers, body = self.call("PUT", "/v2/apps/web", {"cmd": "sleep 10"})
        assert status == 200 and set(body) == {"version", "deploymentId"}
        assert headers["Marathon-Deployment-Id"] == body["deploymentId"]
        app = self.call("GET", "/v2/apps/web")[2]["app"]
        assert (app["cmd"], app["mem"], app["env"]) == ("sleep 10", 64, {"A": "1"})
        assert app["version"] == body["version"] != first["version"]
        assert len(seen.take()) == 1

        versions = self.call("GET", "/v2/apps/web/versions")[2]["versions"]
        assert versions == [body["version"], first["version"]]  # newest first
        old = self.call("GET", f"/v2/apps/web/versions/{first['version']}")[2]
        assert old["cmd"] == first["cmd"] and old["version"] == first["version"]
        assert self.call("GET", "/v2/apps/web/versions/2001-01-01T00:00:00.000Z")[0] == 404

    def test_put_without_partial_update_replaces_and_creates_unknown_apps(self) -> None:
        self.app("/web", mem=64)
        self.settle("/web")
        status, _h, _body = self.call("PUT", "/v2/apps/web?partialUpdate=false", {"cmd": "sleep 10"})
        assert status == 200
        assert self.call("GET", "/v2/apps/web")[2]["app"]["mem"] == 128  # back to the default

        status, headers, body = self.call("PUT", "/v2/apps/shop/new", {"cmd": "sleep 1", "instances": 0})
        assert status == 201 and headers["Location"] == "/v2/apps/shop/new" and body["deploymentId"]
        assert self.call("GET", "/v2/apps/shop/new")[2]["app"]["instances"] == 0
        # PATCH changes existing apps only
        assert self.call("PATCH", "/v2/apps/shop/other", {"cmd": "x"})[0] == 404
        assert self.call("PATCH", "/v2/apps/shop/new", {"instances": 0, "mem": 32})[0] == 200
        status, _h, body = self.call("PUT", "/v2/apps/web", {"id": "/elsewhere"})
        assert status == 422 and body["details"][0]["path"] == "/id"
        assert self.call("PUT", "/v2/apps/web?partialUpdate=maybe", {"cmd": "x"})[0] == 400

    def test_a_locked_app_is_a_409_unless_forced(self) -> None:
        created = self.app("/web", instances=2)  # waits for offers: its deployment goes on
        [dep] = created["deployments"]
        status, _h, body = self.call("PUT", "/v2/apps/web", {"instances": 3})
        assert status == 409
        assert body["deployments"] == [dep] and "force=true" in body["message"]
        assert self.call("POST", "/v2/apps/web/restart")[0] == 409
        assert self.call("DELETE", "/v2/apps/web")[0] == 409
        status, _h, body = self.call("PUT", "/v2/apps/web?force=true", {"instances": 3})
        assert status == 200 and body["deploymentId"] != dep["id"]
        assert [d["id"] for d in self.call("GET", "/v2/deployments")[2]] == [body["deploymentId"]]

    def test_restart_and_delete_answer_with_their_deployments(self) -> None:
        self.app("/web")
        self.settle("/web")
        status, headers, body = self.call("POST", "/v2/apps/web/restart")
        assert status == 200 and headers["Marathon-Deployment-Id"] == body["deploymentId"]
        app = self.call("GET", "/v2/apps/web")[2]["app"]
        assert app["version"] == body["version"] and app["deployments"] == [{"id": body["deploymentId"]}]

        status, _h, body = self.call("DELETE", "/v2/apps/web?force=true")
        assert status == 200 and set(body) == {"version", "deploymentId"}
        assert [d["id"] for d in self.call("GET", "/v2/deployments")[2]] == [body["deploymentId"]]
        [task] = self.service.tasks("/web")
        self.service.update(task.task_id, "TASK_KILLED")
        assert self.call("GET", "/v2/apps/web")[0] == 404

    def test_bulk_put_changes_several_apps_in_one_deployment(self) -> None:
        self.app("/a", mem=64)
        self.settle("/a")
        changes: list[dict[str, Any]] = [{"id": "/a", "instances": 2}, {"id": "b", "cmd": "sleep 5"}]
        status, _h, body = self.call("PUT", "/v2/apps", changes)
        assert status == 200 and body["deploymentId"]
        apps = {a["id"]: a for a in self.call("GET", "/v2/apps")[2]["apps"]}
        assert (apps["/a"]["instances"], apps["/a"]["mem"]) == (2, 64)  # partial: mem kept
        assert apps["/b"]["cmd"] == "sleep 5"
        [dep] = self.call("GET", "/v2/deployments")[2]
        assert dep["id"] == body["deploymentId"] and dep["affectedApps"] == ["/a", "/b"]

        status, _h, body = self.call("PUT", "/v2/apps?force=true", [{"id": "/c", "cmd": "x"},
                                                                    {"id": "/d", "cmd": "x", "cpus": -1}, 7])
        assert status == 422
        assert [d["path"] for d in body["details"]] == ["/1/cpus", "/2"]
        assert self.call("GET", "/v2/apps/c")[0] == 404  # nothing half-applied
        assert self.call("PUT", "/v2/apps", {"id": "/c"})[0] == 422
        assert self.call("PUT", "/v2/apps?force=true", [{"cmd": "x"}])[2]["details"][0]["path"] == "/0/id"
        assert self.call("PATCH", "/v2/apps", [{"id": "/zzz", "cmd": "x"}])[0] == 404


class TasksOfAnAppTest(ApiCase):
    def setUp(self) -> None:
        super().setUp()
        self.app("/web", instances=2, healthChecks=[{"protocol": "TCP", "portIndex": 0}])
        self.service.offer("o1", hostname="h1", resources="cpus:0.5;mem:64;ports:[31000-31000]")
        self.service.offer("o2", hostname="h2", resources="cpus:0.5;mem:64;ports:[31000-31000]")
        self.h1, self.h2 = (t.task_id for t in sorted(self.service.tasks("/web"), key=lambda t: t.hostname))
        self.service.update(self.h1, "TASK_RUNNING", healthy=True)
        self.service.update(self.h2, "TASK_RUNNING", healthy=False)

    def test_tasks_carry_health_and_counts_add_up(self) -> None:
        tasks = {t["host"]: t for t in self.call("GET", "/v2/apps/web/tasks")[2]["tasks"]}
        assert tasks["h1"]["healthCheckResults"][0]["alive"] is True
        assert tasks["h2"]["healthCheckResults"][0]["alive"] is False
        assert tasks["h1"]["ports"] == [31000] and tasks["h1"]["state"] == "TASK_RUNNING"
        app = self.call("GET", "/v2/apps/web")[2]["app"]
        assert (app["tasksRunning"], app["tasksHealthy"], app["tasksUnhealthy"]) == (2, 1, 1)

    def test_the_text_form_lists_endpoints_per_service_port(self) -> None:
        status, headers, text = self.call("GET", "/v2/apps/web/tasks", headers={"Accept": "text/plain"})
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert text == "web\t10000\th1:31000\th2:31000\t\n"  # the service port assigned to port 0

    def test_killing_tasks_by_host_replaces_them(self) -> None:
        status, _h, body = self.call("DELETE", "/v2/apps/web/tasks?host=h2")
        assert status == 200 and [t["id"] for t in body["tasks"]] == [self.h2]
        assert self.call("GET", "/v2/apps/web")[2]["app"]["instances"] == 2
        assert self.service.require_engine().instance(self.h2).killing

    def test_killing_with_scale_lowers_the_instance_count(self) -> None:
        # The app is still under its first deployment: scaling needs force (Marathon's 409).
        status, _h, body = self.call("DELETE", f"/v2/apps/web/tasks/{self.h1}?scale=true")
        assert status == 409 and body["deployments"]
        assert self.call("GET", f"/v2/apps/web/tasks/{self.h1}")[2]["task"]["state"] != "TASK_KILLING"
        status, headers, body = self.call("DELETE", f"/v2/apps/web/tasks/{self.h1}?scale=true&force=true")
        assert status == 200 and headers["Marathon-Deployment-Id"] == body["deploymentId"]
        assert self.call("GET", "/v2/apps/web")[2]["app"]["instances"] == 1
        status, _h, body = self.call("DELETE", "/v2/apps/web/tasks?scale=true&force=true")
        assert status == 200 and body["deploymentId"]
        assert self.call("GET", "/v2/apps/web")[2]["app"]["instances"] == 0

    def test_one_task_is_killed_and_shown_and_mistakes_are_refused(self) -> None:
        status, _h, body = self.call("DELETE", f"/v2/apps/web/tasks/{self.h1}")
        assert status == 200 and body["task"]["id"] == self.h1
        status, _h, body = self.call("GET", f"/v2/apps/web/tasks/{self.h2}")
        assert status == 200 and body["task"]["host"] == "h2"
        status, _h, body = self.call("DELETE", "/v2/apps/web/tasks/web.nope")
        assert status == 404 and body == {"message": "Task 'web.nope' does not exist"}
        self.app("/other")
        assert self.call("DELETE", f"/v2/apps/other/tasks/{self.h2}")[0] == 404  # not that app's
        status, _h, body = self.call("DELETE", "/v2/apps/web/tasks?scale=true&wipe=true")
        assert status == 400 and body["message"] == "You cannot use scale and wipe at the same time."
        assert self.call("DELETE", "/v2/apps/nope/tasks")[0] == 404

    def test_wipe_forgets_the_tasks_at_once(self) -> None:
        status, _h, body = self.call("DELETE", "/v2/apps/web/tasks?host=h1&wipe=true")
        assert status == 200 and [t["id"] for t in body["tasks"]] == [self.h1]
        assert self.h1 not in {t["id"] for t in self.call("GET", "/v2/apps/web/tasks")[2]["tasks"]}
