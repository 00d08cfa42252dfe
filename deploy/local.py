"""``mensa local``: a whole cluster on this machine, with the example scheduler and both bundled
frameworks.

Starts one standalone master, N agents (each with its own port range), the service framework
(``mensa service``, deploying a sample app: two instances of a small HTTP server with an HTTP
health check), the batch framework (``mensa batch``, with a sample one-off job run at once and a
sample job scheduled every 10 seconds) and the example ``HelloScheduler``; shows the
scheduler's tasks completing; stops everything it started, by pid, on Ctrl-C (or when the
scheduler is done, with ``--exit-when-done``).
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from mensa.deploy.processes import ManagedProcess, agent_ports, mensa_argv

EXAMPLE = "mensa.frameworks.examples.hello:HelloScheduler"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="where the cluster keeps its files (default: a new temp dir)")
    parser.add_argument("--agents", type=int, default=2, help="how many agents (default 2)")
    parser.add_argument("--port", type=int, default=5050, help="master ZeroMQ port (0 = any free)")
    parser.add_argument("--http-port", type=int, default=5051, help="master HTTP port (0 = any free)")
    parser.add_argument("--agent-resources", default="cpus:2;mem:2048;disk:4096",
                        help="resources of each agent (ports are added, one range per agent)")
    parser.add_argument("--tasks", type=int, default=10, help="tasks the example scheduler runs")
    parser.add_argument("--scheduler", default=EXAMPLE,
                        help="MODULE:CLASS of the scheduler to run ('' for none)")
    parser.add_argument("--batch-http-port", type=int, default=9000,
                        help="the batch framework's REST API port (0 = any free; -1: no batch framework)")
    parser.add_argument("--service-http-port", type=int, default=8080,
                        help="the service framework's REST API port (0 = any free; -1: no service framework)")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="stop the cluster once the scheduler has finished")


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
        return data


def _wait_agents(http: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(_get(f"{http}/state")["agents"]) >= count:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{count} agents did not register within {timeout:g}s")


SAMPLE_JOBS: list[dict[str, Any]] = [
    {"id": "hello-batch", "description": "a one-off job, run when the cluster starts",
     "run": {"cmd": "echo hello from a batch job on $HOST", "cpus": 0.1, "mem": 32}},
    {"id": "every-ten-seconds", "description": "a scheduled job (six-field cron: seconds first)",
     "run": {"cmd": "date", "cpus": 0.1, "mem": 32},
     "schedules": [{"id": "tick", "cron": "*/10 * * * * *", "timezone": "UTC",
                    "concurrencyPolicy": "FORBID", "startingDeadlineSeconds": 30}]},
]


SAMPLE_APP: dict[str, Any] = {
    "id": "/hello/web", "instances": 2, "cpus": 0.1, "mem": 64,
    "cmd": "exec python3 -m http.server $PORT0 --bind 0.0.0.0",
    "portDefinitions": [{"port": 0, "name": "http"}],
    "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30,
                      "intervalSeconds": 5, "timeoutSeconds": 3, "maxConsecutiveFailures": 3}],
    "labels": {"sample": "true"},
}


def _post(url: str, body: Any = None, method: str = "POST") -> Any:
    data = json.dumps({} if body is None else body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _start_batch(root: Path, address: str, port: int, log_flags: list[str]) -> tuple[ManagedProcess, str]:
    """Starts the batch framework, submits the sample jobs and runs the one-off one."""
    batch = ManagedProcess("batch", mensa_argv(
        "batch", "--master", address, "--work-dir", str(root / "batch"), "--http-port", str(port),
        *log_flags), root / "batch").start()
    api = f"http://127.0.0.1:{batch.endpoints()['http_port']}"
    deadline = time.monotonic() + 30
    while True:
        try:
            for job in SAMPLE_JOBS:
                _post(f"{api}/v1/jobs", job)
            break
        except OSError:  # not serving yet (or not leading yet): retry for a while
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    _post(f"{api}/v1/jobs/hello-batch/runs")
    return batch, api


def _start_service(root: Path, address: str, port: int, log_flags: list[str]) -> tuple[ManagedProcess, str]:
    """Starts the service framework and deploys the sample app (PUT: created or kept as is)."""
    service = ManagedProcess("service", mensa_argv(
        "service", "--master", address, "--work-dir", str(root / "service"), "--http-port", str(port),
        *log_flags), root / "service").start()
    api = f"http://127.0.0.1:{service.endpoints()['http_port']}"
    deadline = time.monotonic() + 30
    while True:
        try:
            _post(f"{api}/v2/apps{SAMPLE_APP['id']}", SAMPLE_APP, method="PUT")
            return service, api
        except OSError:  # not serving yet (or not leading yet): retry for a while
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    try:
        for i in range(args.agents):
            agent_ports(i)  # each agent's ports must exist below the ephemeral range
    except ValueError as exc:
        raise SystemExit(f"mensa local: --agents: {exc}") from None
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="mensa-local-")).resolve()
    log_flags = ["--log-format", args.log_format, "--log-level", args.log_level]
    started: list[ManagedProcess] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        master = ManagedProcess("master", mensa_argv(
            "master", "--work-dir", str(root / "master"), "--port", str(args.port),
            "--http-port", str(args.http_port), *log_flags), root / "master").start()
        started.append(master)
        ep = master.endpoints()
        address = f"127.0.0.1:{ep['zmq_port']}"
        http = f"http://127.0.0.1:{ep['http_port']}"
        for i in range(args.agents):
            ports = agent_ports(i)
            agent_dir = root / f"agent{i + 1}"
            agent = ManagedProcess(f"agent{i + 1}", mensa_argv(
                "agent", "--master", address, "--work-dir", str(agent_dir), "--http-port", "0",
                "--resources", f"{args.agent_resources};{ports}", "--hostname", f"agent{i + 1}",
                *log_flags), agent_dir).start()
            started.append(agent)
        _wait_agents(http, args.agents)
        service_api = None
        if args.service_http_port >= 0:
            service, service_api = _start_service(root, address, args.service_http_port, log_flags)
            started.append(service)
        batch_api = None
        if args.batch_http_port >= 0:
            batch, batch_api = _start_batch(root, address, args.batch_http_port, log_flags)
            started.append(batch)
        print(f"\nMensa is up: master {address}, {args.agents} agents. Dashboard: {http}/")
        print(f"Mesos scheduler API: {http}/api/v1/scheduler   Metrics: {http}/metrics")
        if service_api:
            print(f"Services (Marathon API): {service_api}/v2/apps - {SAMPLE_APP['id']} runs "
                  f"{SAMPLE_APP['instances']} instances of a small HTTP server.")
            print(f"  Try: mensa app list --service {service_api};  mensa app scale {SAMPLE_APP['id']} 3 "
                  f"--service {service_api}")
        if batch_api:
            print(f"Batch jobs (Metronome API): {batch_api}/v1/jobs - hello-batch ran once, "
                  "every-ten-seconds runs every 10 s.")
            print(f"  Try: mensa job list --batch {batch_api};  mensa job run --batch {batch_api} "
                  f"--master {address} -- echo hi")
        print(f"Files and logs in {root}.  Try: mensa top --master {address}\n", flush=True)
        scheduler = None
        if args.scheduler:
            scheduler = ManagedProcess("scheduler", mensa_argv(
                "scheduler", "run", args.scheduler, "--master", address, *log_flags),
                root / "scheduler").start(env={"MENSA_HELLO_TASKS": str(args.tasks)},
                                          inherit_output=True)
            started.append(scheduler)
        while not stop.is_set():
            if scheduler is not None and not scheduler.alive():
                code = scheduler.proc.returncode if scheduler.proc else 1
                print(f"\nThe scheduler finished (exit code {code}).", flush=True)
                scheduler = None
                if args.exit_when_done:
                    break
                print("The cluster keeps running; Ctrl-C stops it.", flush=True)
            stop.wait(0.2)
    finally:
        print("Stopping the cluster...", flush=True)
        for process in reversed(started):
            process.stop()
        print("Stopped; no process left behind.", flush=True)
    return code
