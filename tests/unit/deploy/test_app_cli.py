"""``mensa app`` and ``mensa deployments`` against a small fake Marathon /v2 served in-process
(tornado on 127.0.0.1:0, in a thread), plus the pure parts (app_views)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from mensa.deploy import app_cli
from mensa.deploy.app_views import (
    Counts,
    Target,
    Watch,
    apps_table,
    counts,
    deployments_table,
    order_for_deploy,
    resolve_id,
    step_text,
    tasks_table,
)
from mensa.deploy.cli import main
from mensa.deploy.rest_client import RestClient, Unreachable

CHECK = {"protocol": "HTTP", "path": "/health", "portIndex": 0}


# -- the fake service framework -----------------------------------------------------------------------

@dataclass
class FakeMarathon:
    """Marathon's /v2 in memory. Every GET /v2/deployments moves each deployment one change
    closer (replace an old-version task, add or remove a task, stage -> running, checks pass);
    a deployment with nothing left to do disappears. Knobs make it stall, fail a launch, lose
    the app, or roll a deployment back."""

    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    clock: int = 0
    serial: int = 0
    stuck: bool = False  # deployments never move
    fail_launches: int = 0  # this many tasks fail instead of running
    vanish: str | None = None  # this app is deleted on the next tick
    roll_back: bool = False  # the next tick cancels deployments, reverting the app's version
    redirect_to: str | None = None  # answer everything with a 307 there
    url: str = ""

    def now(self) -> str:
        self.clock += 1
        return f"2026-11-22T10:{self.clock // 60:02d}:{self.clock % 60:02d}.000Z"

    def app_json(self, app_id: str) -> dict[str, Any]:
        app = self.apps[app_id]
        tasks = self.tasks.get(app_id, [])
        checks = bool(app.get("healthChecks"))
        running = [t for t in tasks if t["state"] == "TASK_RUNNING"]
        healthy = [t for t in running if checks and all(r["alive"] for r in t["healthCheckResults"])
                   and t["healthCheckResults"]]
        deps = [{"id": d["id"]} for d in self.deployments.values() if app_id in d["affectedApps"]]
        return {**app, "tasksRunning": len(running), "tasksHealthy": len(healthy),
                "tasksStaged": len(tasks) - len(running), "tasksUnhealthy": 0, "deployments": deps,
                "tasks": tasks}

    def deploy(self, app_id: str, kind: str, version: str, force: bool) -> str | tuple[int, Any]:
        locked = [d for d in self.deployments.values() if app_id in d["affectedApps"]]
        if locked and not force:
            return 409, {"message": "App is locked by one or more deployments. Override with the option "
                                    "'?force=true'.", "deployments": [{"id": d["id"]} for d in locked]}
        for dep in locked:
            del self.deployments[dep["id"]]
        self.serial += 1
        dep_id = f"{self.serial:08x}-7c1e-4f0a-9b2d-3e5f6a7b8c9d"
        action = {"action": kind, "app": app_id}
        self.deployments[dep_id] = {"id": dep_id, "version": version, "affectedApps": [app_id],
                                    "steps": [{"actions": [action]}],
                                    "currentActions": [{**action, "readinessCheckResults": []}],
                                    "currentStep": 1, "totalSteps": 1}
        return dep_id

    def tick(self) -> None:
        if self.vanish:
            self.apps.pop(self.vanish, None)
            self.vanish = None
        for dep_id, dep in list(self.deployments.items()):
            app_id = dep["affectedApps"][0]
            if self.roll_back:
                del self.deployments[dep_id]
                self.apps[app_id]["version"] = "2026-01-01T00:00:00.000Z"
                continue
            if not self.stuck and app_id in self.apps and not self.step(app_id):
                del self.deployments[dep_id]
        self.roll_back = False

    def step(self, app_id: str) -> bool:
        """Makes one change toward the app's target; False when there is none left."""
        app = self.apps[app_id]
        tasks = self.tasks.setdefault(app_id, [])
        old = [t for t in tasks if t["version"] != app["version"]]
        if old:
            tasks.remove(old[0])
            tasks.append(self.new_task(app_id))
        elif len(tasks) < app["instances"]:
            tasks.append(self.new_task(app_id))
        elif len(tasks) > app["instances"]:
            tasks.pop()
        elif staged := [t for t in tasks if t["state"] != "TASK_RUNNING"]:
            task = staged[0]
            if self.fail_launches:
                self.fail_launches -= 1
                tasks.remove(task)
                app["lastTaskFailure"] = {"appId": app_id, "host": task["host"], "state": "TASK_FAILED",
                                          "message": "Command exited with status 1", "taskId": task["id"],
                                          "timestamp": self.now(), "version": task["version"]}
            else:
                task.update(state="TASK_RUNNING", startedAt=self.now())
        elif app.get("healthChecks") and (sick := [t for t in tasks if not t["healthCheckResults"]]):
            sick[0]["healthCheckResults"] = [{"alive": True, "taskId": sick[0]["id"]}]
        else:
            return False
        return True

    def new_task(self, app_id: str) -> dict[str, Any]:
        self.serial += 1
        return {"id": f"{app_id.strip('/').replace('/', '_')}.{self.serial:04d}", "appId": app_id,
                "host": f"agent{self.serial % 3 + 1}", "ports": [31000 + self.serial],
                "state": "TASK_STAGING",
                "stagedAt": self.now(), "startedAt": None, "version": self.apps[app_id]["version"],
                "healthCheckResults": []}


class Handler(tornado.web.RequestHandler):
    def initialize(self, fake: FakeMarathon) -> None:
        self.fake = fake

    def answer(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def missing(self, app_id: str) -> None:
        self.answer(404, {"message": f"App '{app_id}' does not exist"})

    def handle(self, method: str) -> None:
        fake = self.fake
        if fake.redirect_to:
            self.set_status(307)
            self.set_header("Location", fake.redirect_to + self.request.uri)
            self.finish()
            return
        body = json.loads(self.request.body) if self.request.body else None
        fake.requests.append((method, self.request.uri, body))
        path = self.request.path
        force = self.get_query_argument("force", "false") == "true"
        if path == "/v2/deployments":
            fake.tick()
            self.answer(200, list(fake.deployments.values()))
        elif path == "/v2/apps" and method == "GET":
            self.answer(200, {"apps": [fake.app_json(a) for a in sorted(fake.apps)]})
        elif path == "/v2/apps" and method == "POST":
            self.create(body or {})
        elif path.endswith("/restart") and method == "POST":
            self.change(path.removeprefix("/v2/apps").removesuffix("/restart"), None, force)
        elif path.endswith("/tasks"):
            app_id = path.removeprefix("/v2/apps").removesuffix("/tasks")
            if app_id in fake.apps:
                self.answer(200, {"tasks": fake.tasks.get(app_id, [])})
            else:
                self.missing(app_id)
        else:
            app_id = path.removeprefix("/v2/apps")
            if app_id not in fake.apps:
                self.missing(app_id)
            elif method == "GET":
                self.answer(200, {"app": fake.app_json(app_id)})
            elif method == "PUT":
                self.change(app_id, body, force)
            elif method == "DELETE":
                version = fake.now()
                dep_id = fake.deploy(app_id, "StopApplication", version, force)
                if isinstance(dep_id, tuple):
                    self.answer(*dep_id)
                    return
                del fake.apps[app_id]
                fake.tasks.pop(app_id, None)
                del fake.deployments[dep_id]
                self.answer(200, {"deploymentId": dep_id, "version": version})

    def create(self, body: dict[str, Any]) -> None:
        fake = self.fake
        if body.get("instances", 1) < 0:
            self.answer(422, {"message": "Object is not valid", "details": [
                {"path": "/instances", "errors": ["must be greater than or equal to 0"]}]})
            return
        if body["id"] in fake.apps:
            self.answer(409, {"message": f"An app with id [{body['id']}] already exists."})
            return
        version = fake.now()
        fake.apps[body["id"]] = {"instances": 1, "cpus": 1, "mem": 128, **body, "version": version}
        fake.deploy(body["id"], "ScaleApplication", version, False)
        self.answer(201, fake.app_json(body["id"]))

    def change(self, app_id: str, body: dict[str, Any] | None, force: bool) -> None:
        fake = self.fake
        if app_id not in fake.apps:
            self.missing(app_id)
            return
        version = fake.now()
        scale = body is not None and set(body) <= {"instances", "id"}
        kind = "ScaleApplication" if scale else "RestartApplication"
        dep_id = fake.deploy(app_id, kind, version, force)
        if isinstance(dep_id, tuple):
            self.answer(*dep_id)
            return
        fake.apps[app_id] = {**fake.apps[app_id], **(body or {}), "version": version}
        self.answer(200, {"deploymentId": dep_id, "version": version})

    def get(self) -> None:
        self.handle("GET")

    def post(self) -> None:
        self.handle("POST")

    def put(self) -> None:
        self.handle("PUT")

    def delete(self) -> None:
        self.handle("DELETE")


def serve(fake: FakeMarathon) -> Iterator[FakeMarathon]:
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def run() -> None:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/.*", Handler, {"fake": fake})]))
        server.add_sockets(sockets)
        fake.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await state["stop"].wait()
        server.stop()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield fake
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


@pytest.fixture
def marathon() -> Iterator[FakeMarathon]:
    yield from serve(FakeMarathon())


@pytest.fixture
def standby() -> Iterator[FakeMarathon]:
    yield from serve(FakeMarathon())


def mensa(fake: FakeMarathon, *argv: str) -> int:
    words = [a for a in argv if not a.startswith("-")][:2]
    where = ["--service", fake.url]
    fast = ["--poll-interval", "0.005"] if words[-1] in ("deploy", "scale", "restart") else []
    return main([*argv, *where, *fast])


def write(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def seed(fake: FakeMarathon, app_id: str = "/shop/web", instances: int = 2, **more: Any) -> None:
    fake.apps[app_id] = {"id": app_id, "instances": instances, "cpus": 0.5, "mem": 64,
                         "cmd": "python3 -m http.server $PORT0", "version": fake.now(), **more}
    while fake.step(app_id):
        pass


# -- deploy --------------------------------------------------------------------------------------------

def test_deploy_creates_an_app_and_follows_it_to_its_instances(
        marathon: FakeMarathon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path / "web.json", {"id": "shop/web", "cmd": "serve", "instances": 3})
    assert mensa(marathon, "app", "deploy", spec) == 0
    out = capsys.readouterr().out.splitlines()
    assert ("POST", "/v2/apps", {"id": "/shop/web", "cmd": "serve", "instances": 3}) in marathon.requests
    assert out[0] == "creating /shop/web: deployment 00000001-7c1e-4f0a-9b2d-3e5f6a7b8c9d, version " \
                     "2026-11-22T10:00:01.000Z"
    progress = [line for line in out if line.startswith("/shop/web: ")]
    assert "/shop/web: 0/3 running, 1 staged (deployment 00000001... step 1/1: ScaleApplication)" in progress
    assert "/shop/web: 2/3 running, 1 staged (deployment 00000001... step 1/1: ScaleApplication)" in progress
    assert progress[-1] == "/shop/web: 3/3 running"
    assert len(progress) == len(set(progress)), "a line is printed only when something changed"
    assert out[-1] == "done: /shop/web 3/3 running"
    assert marathon.deployments == {}


def test_deploy_updates_an_existing_app_from_yaml_and_waits_for_health(
        marathon: FakeMarathon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=2)
    spec = tmp_path / "web.yaml"
    spec.write_text("id: /shop/web\ncmd: serve --v2\ninstances: 2\nhealthChecks:\n"
                    "  - protocol: HTTP\n    path: /health\n")
    assert mensa(marathon, "app", "deploy", str(spec)) == 0
    out = capsys.readouterr().out.splitlines()
    method, uri, body = marathon.requests[1]
    assert (method, uri) == ("PUT", "/v2/apps/shop/web")
    assert body["healthChecks"] == [{"protocol": "HTTP", "path": "/health"}]
    assert out[0].startswith("updating /shop/web: deployment ")
    assert any("2/2 running, 1/2 healthy (deployment" in line and "RestartApplication" in line
               for line in out)
    assert out[-1] == "done: /shop/web 2/2 running, 2/2 healthy"
    assert {t["version"] for t in marathon.tasks["/shop/web"]} == {marathon.apps["/shop/web"]["version"]}


def test_deploy_of_a_list_puts_dependencies_first(
        marathon: FakeMarathon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path / "shop.json", {"apps": [
        {"id": "/shop/web", "instances": 1, "dependencies": ["db"]},
        {"id": "/shop/db", "instances": 1, "tasksRunning": 1, "version": "2020-01-01T00:00:00.000Z",
         "tasks": [], "deployments": []}]})
    assert mensa(marathon, "app", "deploy", spec) == 0
    posted = [body for method, _uri, body in marathon.requests if method == "POST"]
    assert posted == [{"id": "/shop/db", "instances": 1},
                      {"id": "/shop/web", "instances": 1, "dependencies": ["db"]}]
    assert capsys.readouterr().out.splitlines()[-1] == "done: /shop/db 1/1 running; /shop/web 1/1 running"


def test_no_wait_returns_once_the_change_is_accepted(
        marathon: FakeMarathon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path / "web.json", {"id": "/web", "instances": 3})
    assert mensa(marathon, "app", "deploy", spec, "--no-wait") == 0
    assert capsys.readouterr().out.startswith("creating /web: deployment 00000001-")
    assert [m for m, _u, _b in marathon.requests] == ["GET", "POST"]
    assert marathon.deployments, "still under way"


def test_a_refused_definition_prints_each_path_and_reason(
        marathon: FakeMarathon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path / "bad.json", {"id": "/web", "instances": -1})
    assert mensa(marathon, "app", "deploy", spec) == 1
    err = capsys.readouterr().err
    assert err == ("mensa app deploy: POST /v2/apps: 422 Object is not valid\n"
                   "  /instances: must be greater than or equal to 0\n")


def test_a_bad_file_is_an_error_before_any_request(
        marathon: FakeMarathon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: [unclosed\n")
    assert mensa(marathon, "app", "deploy", str(broken)) == 1
    assert "broken.yaml is not YAML" in capsys.readouterr().err
    assert mensa(marathon, "app", "deploy", write(tmp_path / "anon.json", [{"cmd": "x"}])) == 1
    assert "every app must be an object with an \"id\"" in capsys.readouterr().err
    assert marathon.requests == []


def test_a_task_failure_during_a_deployment_is_shown(
        marathon: FakeMarathon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marathon.fail_launches = 1
    spec = write(tmp_path / "web.json", {"id": "/web", "instances": 1})
    assert mensa(marathon, "app", "deploy", spec) == 0
    out = capsys.readouterr().out
    assert "/web: task failed: TASK_FAILED on agent" in out
    assert "Command exited with status 1 (task web.0002, version 2026-11-22T10:00:01.000Z)" in out
    assert out.count("task failed") == 1


# -- scale, restart, rm ------------------------------------------------------------------------------

def test_scale_follows_the_deployment_down(marathon: FakeMarathon,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=3)
    assert mensa(marathon, "app", "scale", "/shop/web", "1") == 0
    assert ("PUT", "/v2/apps/shop/web", {"instances": 1}) in marathon.requests
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("scaling to 1 /shop/web: deployment ")
    assert out[-1] == "done: /shop/web 1/1 running"
    assert len(marathon.tasks["/shop/web"]) == 1


def test_a_locked_app_needs_force(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=1)
    marathon.stuck = True
    assert mensa(marathon, "app", "restart", "/shop/web", "--no-wait") == 0
    locking = next(iter(marathon.deployments))
    assert mensa(marathon, "app", "scale", "/shop/web", "2") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mensa app scale: PUT /v2/apps/shop/web: 409 App is locked")
    assert err[1] == (f"  in the way: deployment {locking}; wait for it (mensa deployments) or give "
                      "--force to replace it")
    marathon.stuck = False
    assert mensa(marathon, "app", "scale", "/shop/web", "2", "--force") == 0
    assert ("PUT", "/v2/apps/shop/web?force=true", {"instances": 2}) in marathon.requests
    assert locking not in marathon.deployments


def test_restart_replaces_every_task(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=2, healthChecks=[CHECK])
    before = {t["id"] for t in marathon.tasks["/shop/web"]}
    assert mensa(marathon, "app", "restart", "shop/web") == 0
    assert ("POST", "/v2/apps/shop/web/restart", {}) in marathon.requests
    out = capsys.readouterr().out
    assert "step 1/1: RestartApplication)" in out
    assert out.splitlines()[-1] == "done: /shop/web 2/2 running, 2/2 healthy"
    assert before.isdisjoint(t["id"] for t in marathon.tasks["/shop/web"])


def test_rm(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon)
    assert mensa(marathon, "app", "rm", "/shop/web") == 0
    assert capsys.readouterr().out.startswith("removing /shop/web: deployment ")
    assert "/shop/web" not in marathon.apps
    assert mensa(marathon, "app", "rm", "/shop/web") == 1
    assert capsys.readouterr().err == ("mensa app rm: DELETE /v2/apps/shop/web: 404 App '/shop/web' "
                                       "does not exist\n")


# -- following: how it ends ----------------------------------------------------------------------------

def test_an_app_removed_while_deploying_fails_the_watch(
        marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=1)
    marathon.stuck = True
    marathon.vanish = "/shop/web"
    assert mensa(marathon, "app", "scale", "/shop/web", "3") == 1
    assert "/shop/web no longer exists (removed while it was being deployed)" in capsys.readouterr().err


def test_a_rolled_back_deployment_fails_the_watch(marathon: FakeMarathon,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=1)
    marathon.roll_back = True
    assert mensa(marathon, "app", "restart", "/shop/web") == 1
    err = capsys.readouterr().err
    assert "ended without /shop/web reaching version" in err
    assert "it is at version 2026-01-01T00:00:00.000Z" in err


def test_the_watch_gives_up_after_its_timeout(marathon: FakeMarathon,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=1)
    marathon.stuck = True
    assert mensa(marathon, "app", "scale", "/shop/web", "4", "--timeout", "0.2") == 1
    err = capsys.readouterr().err
    assert err.startswith("gave up after 0.2s (the deployment goes on; mensa deployments shows it): "
                          "/shop/web: 1/4 running (deployment 0000000")
    assert marathon.deployments, "giving up does not cancel"


def test_ctrl_c_stops_following_without_cancelling(marathon: FakeMarathon,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=1)
    marathon.stuck = True
    assert mensa(marathon, "app", "scale", "/shop/web", "2", "--no-wait") == 0
    dep_id = next(iter(marathon.deployments))

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    client = RestClient(marathon.url)
    code = app_cli.follow(client, [Target("/shop/web", dep_id)], 60, 0.01, sleep=interrupt)
    assert code == 130
    assert "stopped following; the deployment goes on" in capsys.readouterr().err
    assert not any(m == "DELETE" for m, _u, _b in marathon.requests)
    assert dep_id in marathon.deployments


def test_following_waits_out_a_framework_that_is_briefly_away(
        marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=1)
    assert mensa(marathon, "app", "scale", "/shop/web", "2", "--no-wait") == 0
    dep_id = next(iter(marathon.deployments))

    class Flaky(RestClient):
        outages = 3

        def call(self, method: str, path: str, body: Any = None, ok_404: bool = False) -> Any:
            if self.outages:
                self.outages -= 1
                raise Unreachable("cannot reach the service framework at x: refused")
            return super().call(method, path, body, ok_404)

    assert app_cli.follow(Flaky(marathon.url), [Target("/shop/web", dep_id)], 60, 0.001) == 0
    captured = capsys.readouterr()
    assert captured.err.count("refused; trying again") == 1
    assert captured.out.splitlines()[-1] == "done: /shop/web 2/2 running"


# -- reading -------------------------------------------------------------------------------------------

def test_list_shows_counts_resources_and_deployments(
        marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, "/shop/web", 2, healthChecks=[CHECK])
    seed(marathon, "/shop/db", 1)
    marathon.stuck = True
    assert mensa(marathon, "app", "scale", "/shop/db", "3", "--no-wait") == 0
    capsys.readouterr()
    assert mensa(marathon, "app", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "RUNNING", "HEALTHY", "WANTED", "CPUS", "MEM", "VERSION", "DEPLOYMENTS"]
    assert lines[1].split()[:7] == ["/shop/db", "1", "-", "3", "0.5", "64", "MiB"]
    assert lines[1].endswith(next(iter(marathon.deployments))[:8] + "...")
    assert lines[2].split()[:4] == ["/shop/web", "2", "2", "2"] and lines[2].endswith("-")
    assert mensa(marathon, "app", "list", "--json") == 0
    assert [a["id"] for a in json.loads(capsys.readouterr().out)] == ["/shop/db", "/shop/web"]


def test_show_has_state_deployments_failure_tasks_and_definition(
        marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=1, healthChecks=[CHECK])
    marathon.apps["/shop/web"]["lastTaskFailure"] = {
        "appId": "/shop/web", "host": "agent2", "state": "TASK_KILLED", "message": "health check failed",
        "taskId": "shop_web.0001", "timestamp": "2026-11-22T09:59:00.000Z", "version": "v1"}
    marathon.stuck = True
    assert mensa(marathon, "app", "restart", "/shop/web", "--no-wait") == 0
    capsys.readouterr()
    assert mensa(marathon, "app", "show", "shop/web") == 0
    out = capsys.readouterr().out
    assert "  instances    1/1 running, 1/1 healthy" in out
    assert "  command      python3 -m http.server $PORT0" in out
    assert "  resources    0.5 cpus, 64 MiB mem, 0 disk" in out
    assert "step 1/1: RestartApplication\n" in out
    assert ("Last task failure: TASK_KILLED on agent2 at 2026-11-22 09:59:00: health check failed "
            "(task shop_web.0001, version v1)") in out
    tasks = out.split("Tasks:\n", 1)[1].splitlines()
    assert tasks[1].split()[:5] == ["shop_web.0001", "agent2", "31001", "RUNNING", "healthy"]
    definition = json.loads(out.split("Definition:\n", 1)[1])
    assert definition["healthChecks"] == [CHECK] and "tasks" not in definition and "version" not in definition


def test_tasks_and_deployments_tables(marathon: FakeMarathon, capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon, instances=2)
    assert mensa(marathon, "app", "tasks", "/shop/web") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TASK", "HOST", "PORTS", "STATE", "HEALTH", "STARTED", "VERSION"]
    assert lines[1].split()[:5] == ["shop_web.0001", "agent2", "31001", "RUNNING", "-"]
    assert mensa(marathon, "deployments") == 0
    assert capsys.readouterr().out.splitlines() == ["ID  APPS  STEP  ACTIONS  VERSION"]
    marathon.stuck = True
    assert mensa(marathon, "app", "scale", "/shop/web", "5", "--no-wait") == 0
    capsys.readouterr()
    assert mensa(marathon, "deployments") == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[1:5] == ["/shop/web", "1/1", "ScaleApplication", "/shop/web"]
    assert mensa(marathon, "app", "tasks", "/nope") == 1
    assert "404 App '/nope' does not exist" in capsys.readouterr().err


# -- finding the service framework ---------------------------------------------------------------------

def test_the_framework_is_found_by_work_dir_env_or_flag(
        marathon: FakeMarathon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "service").mkdir()
    port = marathon.url.rsplit(":", 1)[1]
    (tmp_path / "service" / "endpoints.json").write_text(json.dumps({"pid": 1, "http_port": int(port)}))
    assert main(["deployments", "--work-dir", str(tmp_path)]) == 0
    assert main(["deployments", "--work-dir", str(tmp_path / "service")]) == 0
    monkeypatch.setenv("MENSA_SERVICE", marathon.url)
    assert main(["app", "list"]) == 0
    assert main(["app", "list", "--url", "http://127.0.0.1:1"]) == 1
    assert len(marathon.requests) == 3
    err = capsys.readouterr().err
    assert err.startswith("mensa app list: cannot reach the service framework at http://127.0.0.1:1: ")
    assert main(["deployments", "--work-dir", str(tmp_path / "nowhere")]) == 1
    assert "no endpoints.json with an http_port in" in capsys.readouterr().err
    monkeypatch.delenv("MENSA_SERVICE")
    assert app_cli.service_url(None, None, {}) == "http://127.0.0.1:8080"


def test_a_standby_redirects_to_the_leader(marathon: FakeMarathon, standby: FakeMarathon,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    seed(marathon)
    standby.redirect_to = marathon.url
    assert mensa(standby, "app", "scale", "/shop/web", "3") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "done: /shop/web 3/3 running"
    assert ("PUT", "/v2/apps/shop/web", {"instances": 3}) in marathon.requests


def test_bad_flags_exit_2(marathon: FakeMarathon) -> None:
    with pytest.raises(SystemExit) as exited:
        mensa(marathon, "app", "scale", "/shop/web", "-1")
    assert exited.value.code == 2


# -- the pure parts ------------------------------------------------------------------------------------

def test_ids_resolve_against_the_parent_group() -> None:
    assert resolve_id("web") == "/web"
    assert resolve_id("db", "/shop") == "/shop/db"
    assert resolve_id("../auth/db", "/shop/web") == "/shop/auth/db"
    assert resolve_id("/abs/./x/") == "/abs/x"
    ordered = order_for_deploy([{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["c"]},
                                {"id": "c"}, {"id": "d", "dependencies": ["/elsewhere"]}])
    assert [a["id"] for a in ordered] == ["/c", "/b", "/a", "/d"]
    cycle = order_for_deploy([{"id": "x", "dependencies": ["y"]}, {"id": "y", "dependencies": ["x"]}])
    assert [a["id"] for a in cycle] == ["/x", "/y"]


def test_counts_come_from_marathon_counts_or_from_tasks() -> None:
    given = counts({"instances": 3, "tasksRunning": 2, "tasksHealthy": 1, "tasksStaged": 1,
                    "healthChecks": [CHECK]})
    assert given == Counts(wanted=3, staged=1, running=2, healthy=1, has_checks=True)
    assert given.summary() == "2/3 running, 1/3 healthy, 1 staged" and not given.reached
    assert not Counts(wanted=2, running=2, healthy=1, has_checks=True).reached
    assert Counts(wanted=2, running=3, healthy=2, has_checks=True).reached
    tasks = [{"state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}]},
             {"state": "TASK_RUNNING", "healthCheckResults": [{"alive": False}]},
             {"state": "TASK_RUNNING"}, {"state": "TASK_STARTING"}]
    counted = counts({"instances": 3, "healthChecks": [CHECK], "tasks": tasks})
    assert counted == Counts(wanted=3, staged=1, running=3, healthy=1, unhealthy=1, has_checks=True)
    assert counts({"instances": 2, "tasks": tasks[:2]}).reached
    assert counts({"instances": 0}).reached


def test_tables_render_missing_fields() -> None:
    assert apps_table([{"id": "/x"}]).splitlines()[1].split() == ["/x", "0", "-", "0", "0", "0", "-", "-"]
    row = tasks_table([{"id": "t"}], has_checks=True).splitlines()[1].split()
    assert row == ["t", "-", "-", "?", "unknown", "-", "-"]
    assert deployments_table([{"id": "d"}]).splitlines()[1].split() == ["d", "-", "0/0", "-", "-"]
    waiting = {"currentStep": 1, "totalSteps": 2,
               "currentActions": [{"action": "StartApplication", "app": "/db"}]}
    assert step_text(waiting, "/web") == "step 1/2: StartApplication /db"
    assert step_text(waiting, "/db") == "step 1/2: StartApplication"


def app_doc(version: str, running: int, **more: Any) -> dict[str, Any]:
    return {"id": "/web", "instances": 2, "version": version, "tasksRunning": running, **more}


def test_watch_succeeds_only_when_the_deployment_is_gone_and_instances_are_there() -> None:
    watch = Watch([Target("/web", "dep-1", "v2")], started=100.0, timeout=10)
    dep = {"id": "dep-1", "currentStep": 1, "totalSteps": 1,
           "currentActions": [{"action": "ScaleApplication", "app": "/web"}]}
    first = watch.observe([dep], {"/web": app_doc("v2", 1)}, 101.0)
    assert first.lines == ["/web: 1/2 running (deployment dep-1 step 1/1: ScaleApplication)"]
    assert not first.done
    assert watch.observe([dep], {"/web": app_doc("v2", 1)}, 102.0).lines == []
    counts_there = watch.observe([dep], {"/web": app_doc("v2", 2)}, 103.0)
    assert not counts_there.done, "the deployment is still listed"
    gone_short = watch.observe([], {"/web": app_doc("v2", 1)}, 104.0)
    assert gone_short.lines == ["/web: 1/2 running"] and not gone_short.done
    done = watch.observe([], {"/web": app_doc("v2", 2)}, 105.0)
    assert (done.done, done.code, done.reason) == (True, 0, "done: /web 2/2 running")


def test_watch_fails_on_timeout_removal_and_another_version() -> None:
    late = Watch([Target("/web", "dep-1", "v2")], started=0.0, timeout=10)
    verdict = late.observe([{"id": "dep-1"}], {"/web": app_doc("v2", 0)}, 10.0)
    assert verdict.done and verdict.code == 1 and verdict.reason.startswith("gave up after 10s")
    assert verdict.lines == ["/web: 0/2 running (deployment dep-1 step 0/0)"]
    assert late.expired(10.0) is not None and late.expired(9.9) is None
    removed = Watch([Target("/web", "dep-1", "v2")], 0.0, 10).observe([{"id": "dep-1"}], {"/web": None}, 1.0)
    assert removed.done and removed.code == 1 and "no longer exists" in removed.reason
    other = Watch([Target("/web", "dep-1", "v2")], 0.0, 10).observe([], {"/web": app_doc("v1", 2)}, 1.0)
    assert other.done and other.code == 1 and "it is at version v1" in other.reason


def test_watch_reports_only_failures_newer_than_the_change() -> None:
    old = {"taskId": "web.1", "timestamp": "2026-01-01T00:00:00.000Z", "state": "TASK_FAILED"}
    new = {"taskId": "web.2", "timestamp": "2026-01-02T00:00:01.000Z", "state": "TASK_FAILED", "host": "h"}
    watch = Watch([Target("/web", "dep-1", "2026-01-02T00:00:00.000Z")], 0.0, 10)
    assert watch.observe([{"id": "dep-1"}], {"/web": app_doc("x", 0, lastTaskFailure=old)}, 1.0).lines == [
        "/web: 0/2 running (deployment dep-1 step 0/0)"]
    lines = watch.observe([{"id": "dep-1"}], {"/web": app_doc("x", 0, lastTaskFailure=new)}, 2.0).lines
    assert lines == ["/web: task failed: TASK_FAILED on h at 2026-01-02 00:00:01 (task web.2, version ?)"]
    assert watch.observe([{"id": "dep-1"}], {"/web": app_doc("x", 0, lastTaskFailure=new)}, 3.0).lines == []
    unversioned = Watch([Target("/web", None)], 0.0, 10)
    assert len(unversioned.observe([], {"/web": app_doc("x", 0, lastTaskFailure=old)}, 1.0).lines) == 1
    later = unversioned.observe([], {"/web": app_doc("x", 0, lastTaskFailure=new)}, 2.0)
    assert "task failed" in later.lines[0]
