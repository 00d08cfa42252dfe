"""``mensa service`` as a subprocess of a test cluster, and its Marathon-style REST API.

``Service`` starts (and restarts, in the same work dir) one service framework process, calls its
``/v2`` API (``call`` follows a standby's redirect and raises ``ApiError``; ``raw`` answers the
status, headers and body of anything, however malformed the request), and waits for apps to
converge. ``three_agents`` starts a master and three agents with distinct hostnames, racks and
port ranges. ``http_app`` is the definition of a small HTTP server app with a quick HTTP health
check. ``EventStream`` reads ``/v2/events`` (Server-Sent Events) on a thread.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shlex
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from mensa_cluster import Cluster, wait_until

from mensa.deploy.processes import ManagedProcess, mensa_argv
from mensa.deploy.rest_client import RestClient

PYTHON = shlex.quote(sys.executable)
# Serves the task's sandbox on its first port, on loopback (where the agent's HTTP check probes).
SERVE = f"exec {PYTHON} -m http.server $PORT0 --bind 127.0.0.1"
# Serves on a port the health check does not probe (the OS picks one): every check fails.
SERVE_ELSEWHERE = f"exec {PYTHON} -m http.server 0 --bind 127.0.0.1"

QUICK_CHECK = {"protocol": "HTTP", "path": "/", "portIndex": 0, "delaySeconds": 0, "gracePeriodSeconds": 5,
               "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2}

# Port ranges below the kernel's ephemeral range (32768+): a port there may be the local end of
# an outgoing connection, and a task told to listen on it fails ("address already in use").
AGENTS = (("agent1", "ports:[31000-31019]", "rack:r1"),
          ("agent2", "ports:[31100-31119]", "rack:r2"),
          ("agent3", "ports:[31200-31219]", "rack:r3"))


def three_agents(cluster: Cluster) -> None:
    """A master and three agents named agent1..agent3 (their hostnames), on racks r1..r3, each
    with its own port range (they share the loopback interface)."""
    cluster.start_master()
    for name, ports, rack in AGENTS:
        cluster.start_agent(name, f"cpus:2;mem:2048;disk:200;{ports}", "--attributes", rack)
    cluster.wait_agents(len(AGENTS))


def http_app(app_id: str, instances: int = 3, cmd: str = SERVE, **extra: Any) -> dict[str, Any]:
    """A tiny HTTP server app with one port and a quick HTTP health check."""
    app: dict[str, Any] = {"id": app_id, "cmd": cmd, "instances": instances, "cpus": 0.05, "mem": 32,
                           "portDefinitions": [{"port": 0, "name": "http"}], "healthChecks": [QUICK_CHECK],
                           "backoffSeconds": 1, "backoffFactor": 1.0}
    app.update(extra)
    return app


class Service:
    """One ``mensa service`` process of a cluster, and its REST API."""

    def __init__(self, cluster: Cluster, name: str = "service", *extra: str) -> None:
        self.cluster = cluster
        self.name = name
        self.work = cluster.root / name
        self.proc = ManagedProcess(name, mensa_argv(
            "service", "--master", cluster.master_endpoint, "--work-dir", str(self.work),
            "--http-port", "0", "--log-level", "debug", *extra), self.work)
        self.url = ""
        self.api = RestClient("http://127.0.0.1:1", what="the service framework")

    def start(self) -> Service:
        """Starts the process (again, with the same work dir) and waits until it leads."""
        self.proc.start()
        if self.proc not in self.cluster.processes:
            self.cluster.processes.append(self.proc)
        self.url = f"http://127.0.0.1:{self.proc.endpoints()['http_port']}"
        self.api = RestClient(self.url, what="the service framework")
        wait_until(lambda: self.raw("GET", "/v2/apps")[0] == 200, what=f"{self.name} to lead")
        return self

    # -- the API ---------------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded answer; raises ``rest_client.ApiError`` for an error answer."""
        return self.api.call(method, path, body)

    def raw(self, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        """Status, headers and body (decoded JSON when it is JSON, else text), redirects not followed."""
        return request(self.url, method, path, body, headers)

    def info(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.call("GET", "/v2/info")
        return doc

    def framework_id(self) -> str:
        return str(wait_until(lambda: self.info().get("frameworkId"), what="the framework id"))

    def app(self, app_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.call("GET", f"/v2/apps{app_id}?embed=app.tasks&embed=app.lastTaskFailure")
        return doc["app"]

    def tasks(self, app_id: str) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = self.app(app_id)["tasks"]
        return tasks

    def deployments(self) -> list[dict[str, Any]]:
        deps: list[dict[str, Any]] = self.call("GET", "/v2/deployments")
        return deps

    def deploy(self, app: dict[str, Any]) -> str:
        """POSTs a new app; returns its deployment id."""
        created = self.call("POST", "/v2/apps", app)
        return str(created["deployments"][0]["id"])

    def put(self, app: dict[str, Any], force: bool = False) -> str:
        """PUTs an app's new definition; returns the deployment id."""
        query = "?force=true" if force else ""
        return str(self.call("PUT", f"/v2/apps{app['id']}{query}", app)["deploymentId"])

    def wait_deployment_gone(self, deployment_id: str, timeout: float = 40) -> None:
        wait_until(lambda: deployment_id not in {d["id"] for d in self.deployments()}, timeout=timeout,
                   what=f"deployment {deployment_id} to finish")

    def wait_healthy(self, app_id: str, count: int, timeout: float = 40,
                     version: str | None = None) -> list[dict[str, Any]]:
        """Waits until the app runs exactly ``count`` tasks, all RUNNING and healthy (of its
        current config version, or ``version``), and no deployment of it is under way."""
        def check() -> list[dict[str, Any]] | None:
            app = self.app(app_id)
            want = version or app["versionInfo"]["lastConfigChangeAt"]
            tasks = app["tasks"]
            if app["deployments"] or len(tasks) != count:
                return None
            ok = all(t["state"] == "TASK_RUNNING" and t["version"] == want and healthy(t) for t in tasks)
            return tasks if ok else None
        return wait_until(check, timeout=timeout, what=f"{count} healthy tasks of {app_id}")


def healthy(task: dict[str, Any]) -> bool:
    results = task.get("healthCheckResults") or []
    return bool(results) and all(r["alive"] for r in results)


def request(base: str, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], Any]:
    """One HTTP request, no redirects followed: (status, headers, JSON body or text)."""
    parsed = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        text = raw.decode(errors="replace")
        try:
            decoded: Any = json.loads(text) if text.strip() else None
        except ValueError:
            decoded = text
        return response.status, {k.lower(): v for k, v in response.getheaders()}, decoded
    finally:
        conn.close()


def running_tasks_at_master(cluster: Cluster, framework_id: str, app_key: str) -> list[str]:
    """The ids of the framework's tasks of one app (task ids start with ``<app key>.``) that the
    master knows as live and not being killed."""
    live = [t for t, state in cluster.tasks(framework_id).items()
            if t.startswith(f"{app_key}.") and state in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING")]
    return sorted(live)


def sandboxes(root: Path, app_key: str) -> list[str]:
    """The task ids of every sandbox of the app on every agent (one per launched task)."""
    found = root.glob(f"agent*/agents/*/frameworks/*/executors/{app_key}.*")
    return sorted(p.name for p in found if p.is_dir())


class EventStream:
    """Reads ``GET /v2/events`` on a thread; ``events`` collects (event type, decoded data)."""

    def __init__(self, base: str, query: str = "") -> None:
        parsed = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        self.conn.request("GET", f"/v2/events{query}", headers={"Accept": "text/event-stream"})
        self.sock = self.conn.sock  # kept: shutting it down ends the reading thread
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.content_type = self.response.getheader("Content-Type", "")
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event_type = ""
        data: list[str] = []
        try:
            while True:
                line = self.response.fp.readline()
                if not line:
                    return
                text = line.decode().rstrip("\r\n")
                if text.startswith("event:"):
                    event_type = text[len("event:"):].strip()
                elif text.startswith("data:"):
                    data.append(text[len("data:"):].strip())
                elif text == "" and data:
                    with self.lock:
                        self.events.append((event_type, json.loads("\n".join(data))))
                    event_type, data = "", []
        except (OSError, ValueError):
            return

    def seen(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.events)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.conn.close()


def until_stable(check: Any, seconds: float) -> None:
    """Asserts ``check()`` holds on every poll for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        time.sleep(0.2)
