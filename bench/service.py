"""``mensa bench service``: the service framework's launch time and app listing latency.

Two phases, each against the real code:

1. launch (real agents): a standalone master, ``--agents`` agents (process containerizer,
   rlimits and no PID namespace unless ``--isolation``) and ``mensa service``, each a separate
   process on loopback. One app of ``--instances`` instances of ``sleep 3600`` (cpus 0.01,
   mem 8) is created with ``POST /v2/apps``; every ``TASK_RUNNING`` is timed as it arrives on
   the event stream (``GET /v2/events?event_type=status_update_event``), with ``GET /v2/apps``
   polled beside it in case the stream falls behind. It prints the time from the POST to the
   first and to the last instance RUNNING and the spread of each instance's POST -> RUNNING;
   then the app is deleted and the time until its tasks are gone is printed.
2. listing (in process): ``--apps`` apps of ``--tasks-per-app`` instances are too many
   processes for one machine, so a ``ServiceEngine`` is filled through its real interface
   (``update_app``, synthetic offers to ``offers``, a ``TASK_RUNNING`` to ``status_update`` per
   launched task, ``--fill-batch`` apps at a time), then served by the real REST API (a
   ``ServiceService`` holding that engine, without a driver) on 127.0.0.1 in a thread of this
   process. One keep-alive client in the main thread times ``--requests`` sequential
   ``GET /v2/apps?embed=apps.tasks`` (and, for context, ``GET /v2/apps`` and ``GET /v2/tasks``):
   p50/p99/max and the answer's size. ``--profile`` (or a missed target) prints where the
   server's time went (cProfile of the serving thread).

The targets of issue 6 are printed beside the figures, with Marathon 0.15's: under 3 s for 500
instances RUNNING (Marathon: 14.2 s on 189 agents) and under 200 ms for the listing (Marathon:
12 s for one app of 1,000 tasks). Figures are printed, never asserted; the exit code is 1 when a
phase did not complete. Everything started is stopped by pid, on Ctrl-C too. Outside the CLI:
``python -m mensa.bench.service --instances 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import http.client
import io
import json
import os
import platform
import pstats
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mensa.bench import standalone
from mensa.bench.batch import (
    BENCH_FAILURES,
    Api,
    add_cluster_arguments,
    clean_up,
    interrupt,
    report_failure,
    spread,
    start_cluster,
)
from mensa.bench.launch import percentile
from mensa.deploy.processes import ManagedProcess
from mensa.deploy.runtime import configure_logging
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

LAUNCH_APP = "/bench/sleepers"
TASK = {"cmd": "sleep 3600", "cpus": 0.01, "mem": 8}
POLL = 0.25  # GET /v2/apps beside the event stream
TARGET_LAUNCH = 3.0
TARGET_LISTING = 0.200
MARATHON_LAUNCH = "14.2 s for 500 instances on 189 agents"
MARATHON_LISTING = "12 s for one app of 1,000 tasks"
OFFER_AGENTS = 20  # synthetic agents offering in the in-process phase
OFFER_RESOURCES = "cpus:256;mem:1048576;disk:100000;ports:[31000-32999]"
PROFILE_LINES = 18


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instances", type=int, default=500,
                        help="instances of the app launched on real agents (default 500; 0 skips the phase)")
    parser.add_argument("--agents", type=int, default=4, help="agents to start (default 4)")
    add_cluster_arguments(parser)
    parser.add_argument("--apps", type=int, default=1000,
                        help="apps in the in-process listing phase (default 1000; 0 skips the phase)")
    parser.add_argument("--tasks-per-app", type=int, default=10, help="instances per app there (default 10)")
    parser.add_argument("--fill-batch", type=int, default=10,
                        help="apps deployed (and their tasks run) per step of the fill (default 10)")
    parser.add_argument("--requests", type=int, default=50,
                        help="sequential GETs timed per endpoint (default 50)")
    parser.add_argument("--profile", action="store_true",
                        help="print where the server's time went in the listing phase (always printed "
                        "when the target is missed)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="give up on any one phase after this many seconds (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark outside the CLI (``python -m mensa.bench.service --instances 500``)."""
    return standalone("service", __doc__ or "", add_arguments, run, argv)


# -- phase 1: launch on real agents ---------------------------------------------------------------


@dataclass(slots=True)
class Launch:
    """What the launch phase saw; times are epoch seconds on this machine's clock."""

    instances: int
    posted: float = 0.0  # just before the POST was sent
    answered: float = 0.0  # the POST's answer read
    running_at: dict[str, float] = field(default_factory=dict)  # task id -> first RUNNING seen
    terminal: dict[str, str] = field(default_factory=dict)  # task id -> terminal state seen before the DELETE
    seen: dict[str, list[float]] = field(default_factory=dict)  # task state -> when each update came
    deployed_at: float | None = None  # deployment_success of the app seen on the stream
    polled_running: int = 0
    polled_all_at: float | None = None  # when GET /v2/apps first showed every instance running
    stream_error: str | None = None
    complete: bool = False
    delete_seen: dict[str, list[float]] = field(default_factory=dict)  # state -> times, after the DELETE
    deleted_at: float = 0.0  # the DELETE sent
    deleted_in: float | None = None  # DELETE sent -> the app gone (404) and no task of it left

    def all_running_at(self) -> float | None:
        """When the last instance was seen RUNNING (the stream if it saw them all, else polling)."""
        if len(self.running_at) >= self.instances:
            return sorted(self.running_at.values())[self.instances - 1]
        return self.polled_all_at


class EventStream:
    """Reads ``GET /v2/events?event_type=status_update_event`` on a thread, noting when each of
    the app's tasks is first seen RUNNING (or terminal). ``open`` returns once the stream's
    headers are in, so nothing the POST causes is missed."""

    def __init__(self, port: int, app_id: str, figures: Launch) -> None:
        self.port = port
        self.app_id = app_id
        self.figures = figures
        self.lock = threading.Lock()
        self.conn: http.client.HTTPConnection | None = None
        self.response: http.client.HTTPResponse | None = None
        self.closing = False
        self.deleting = False  # terminal states from now on are the DELETE's
        self.thread = threading.Thread(target=self._read, name="sse", daemon=True)

    def open(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3600)
        self.conn.request("GET", "/v2/events?event_type=status_update_event,deployment_success",
                          headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"GET /v2/events answered {self.response.status}")
        self.thread.start()

    def _read(self) -> None:
        assert self.response is not None
        event: str | None = None
        try:
            while True:
                line = self.response.readline()
                if not line:
                    if not self.closing:
                        self.figures.stream_error = "the event stream ended"
                    return
                seen = time.time()
                text = line.decode().rstrip("\n")
                if text.startswith("event:"):
                    event = text[6:].strip()
                elif text.startswith("data:") and event == "status_update_event":
                    self._note(json.loads(text[5:]), seen)
                elif text.startswith("data:") and event == "deployment_success":
                    plan = json.loads(text[5:]).get("plan", {})
                    apps = {a.get("app") for s in plan.get("steps", []) for a in s.get("actions", [])}
                    if self.app_id in apps and self.figures.deployed_at is None:
                        self.figures.deployed_at = seen
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if not self.closing:
                self.figures.stream_error = repr(exc)

    def _note(self, doc: dict[str, Any], seen: float) -> None:
        if doc.get("appId") != self.app_id:
            return
        task_id, state = doc.get("taskId", ""), doc.get("taskStatus", "")
        with self.lock:
            if self.deleting:
                self.figures.delete_seen.setdefault(state, []).append(seen)
                return
            self.figures.seen.setdefault(state, []).append(seen)
            if state == "TASK_RUNNING":
                self.figures.running_at.setdefault(task_id, seen)
            elif state in ("TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE",
                           "TASK_FINISHED", "TASK_KILLED"):
                self.figures.terminal.setdefault(task_id, state)

    def running(self) -> int:
        with self.lock:
            return len(self.figures.running_at)

    def close(self) -> None:
        """Ends the stream: its socket is shut down, the reader sees the end and stops."""
        self.closing = True
        conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        if conn is not None:
            conn.close()


def tasks_running(api: Api, app_id: str) -> int:
    """The app's ``tasksRunning`` from ``GET /v2/apps?id=`` (counts only, no tasks)."""
    for app in api.expect("GET", f"/v2/apps?id={app_id}").get("apps", []):
        if app.get("id") == app_id:
            return int(app.get("tasksRunning", 0))
    return 0


def measure_launch(port: int, instances: int, timeout: float) -> Launch:
    """Phase 1: POST the app, wait for every instance RUNNING, then DELETE it and wait until it
    and its tasks are gone."""
    figures = Launch(instances=instances)
    stream = EventStream(port, LAUNCH_APP, figures)
    stream.open()
    api = Api(port)
    try:
        figures.posted = time.time()
        api.expect("POST", "/v2/apps", {"id": LAUNCH_APP, "instances": instances, **TASK}, status=201)
        figures.answered = time.time()
        deadline = time.monotonic() + timeout
        next_poll = 0.0
        while time.monotonic() < deadline:
            if stream.running() >= instances:
                break
            if time.monotonic() >= next_poll:
                figures.polled_running = tasks_running(api, LAUNCH_APP)
                if figures.polled_running >= instances and figures.polled_all_at is None:
                    figures.polled_all_at = time.time()
                if figures.polled_all_at is not None and stream.running() < instances and (
                        figures.stream_error or time.time() - figures.polled_all_at > 2.0):
                    break  # the stream missed some: polling has the answer
                next_poll = time.monotonic() + POLL
            time.sleep(0.01)
        figures.complete = figures.all_running_at() is not None
        figures.polled_running = tasks_running(api, LAUNCH_APP)
        with stream.lock:
            stream.deleting = True
        deleted = figures.deleted_at = time.time()
        api.expect("DELETE", f"/v2/apps{LAUNCH_APP}")
        while time.monotonic() < deadline + timeout:
            gone = api.call("GET", f"/v2/apps{LAUNCH_APP}")[0] == 404
            tasks = api.expect("GET", "/v2/tasks").get("tasks", [])
            left = [t for t in tasks if t.get("appId") == LAUNCH_APP]
            if gone and not left:
                figures.deleted_in = time.time() - deleted
                break
            time.sleep(POLL)
    finally:
        api.close()
        stream.close()
    return figures


def start_processes(root: Path, args: argparse.Namespace, procs: list[ManagedProcess]) -> int:
    """Starts the cluster with ``mensa service`` (``bench.batch.start_cluster``); returns the
    service's API port once it leads and is registered with the master."""
    _address, port = start_cluster(root, args, procs, "service")
    api = Api(port)
    deadline = time.monotonic() + 30
    while True:
        info = api.expect("GET", "/v2/info")
        if info.get("elected") and info.get("frameworkId"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the service framework did not lead and register within 30 s")
        time.sleep(0.2)
    api.close()
    return port


def report_launch(f: Launch, args: argparse.Namespace) -> None:
    print(f"  launch: POST /v2/apps of {LAUNCH_APP}, {args.instances} instances of `{TASK['cmd']}` "
          f"(cpus {TASK['cpus']}, mem {TASK['mem']}); RUNNING timed from /v2/events as it arrives")
    print(f"    POST answered in {(f.answered - f.posted) * 1000:.0f} ms")
    last = f.all_running_at()
    if last is not None:
        source = "the event stream" if len(f.running_at) >= f.instances else "polling GET /v2/apps"
        print(f"    all {f.instances} instances RUNNING: {last - f.posted:.2f} s after the POST "
              f"(from {source})")
    else:
        print(f"    all instances RUNNING: NOT within {args.timeout:g} s ({len(f.running_at)} seen on the "
              f"stream, {f.polled_running} by GET /v2/apps)")
    if f.running_at:
        times = [t - f.posted for t in f.running_at.values()]
        print(f"    first instance RUNNING: {min(times) * 1000:.0f} ms after the POST")
        print(f"    each instance, POST -> RUNNING: {spread(times)} ({len(times)} instances)")
    if f.seen:
        parts = [f"{state} {len(times)} (first {(min(times) - f.posted) * 1000:.0f} ms, last "
                 f"{(max(times) - f.posted) * 1000:.0f} ms)" for state, times in sorted(f.seen.items())]
        print(f"    status updates on the stream, after the POST: {'; '.join(parts)}", end="")
        print(f"; deployment_success {(f.deployed_at - f.posted) * 1000:.0f} ms" if f.deployed_at else "")
    if f.stream_error:
        print(f"    the event stream: {f.stream_error}")
    if f.terminal:
        states = sorted(set(f.terminal.values()))
        print(f"    {len(f.terminal)} tasks ended meanwhile ({', '.join(states)})")
    seen = "; ".join(f"{state} {len(times)} (first {times[0] - f.deleted_at:.2f} s, last "
                     f"{times[-1] - f.deleted_at:.2f} s)" for state, times in sorted(f.delete_seen.items()))
    if f.deleted_in is not None:
        tail = f"; on the stream: {seen}" if seen else ""
        print(f"    DELETE of the app -> app and tasks gone: {f.deleted_in:.2f} s{tail}")
    else:
        print("    DELETE of the app: its tasks were NOT gone in time" + (f" ({seen})" if seen else ""))


# -- phase 2: listing, in process -----------------------------------------------------------------


def synthetic_offers(round_no: int) -> list[mensa_pb2.Offer]:
    """One big offer from each of ``OFFER_AGENTS`` agents (addresses 10.0.0.x)."""
    resources = Resources.parse(OFFER_RESOURCES).to_proto()
    out = []
    for a in range(OFFER_AGENTS):
        offer = mensa_pb2.Offer(hostname=f"10.0.0.{a + 1}")
        offer.id.value = f"bench-{round_no}-{a}"
        offer.agent_id.value = f"bench-agent-{a}"
        offer.framework_id.value = "bench"
        offer.resources.extend(resources)
        out.append(offer)
    return out


def fill_engine(apps: int, per_app: int, batch: int, now: float) -> Any:
    """A ServiceEngine holding ``apps`` apps of ``per_app`` RUNNING instances each, reached
    through its real interface, ``batch`` apps (with their offers and updates) at a time."""
    from mensa.frameworks.service_fw.app_reading import parse_app
    from mensa.frameworks.service_fw.commands import Launch as LaunchCommand
    from mensa.frameworks.service_fw.engine import ServiceEngine

    engine = ServiceEngine(role="*")
    round_no = 0
    for start in range(0, apps, batch):
        for i in range(start, min(apps, start + batch)):
            spec = parse_app({"id": f"/bench/app-{i:05d}", "instances": per_app, "labels": {"tier": "bench"},
                              "portDefinitions": [{"port": 0, "name": "http"}], **TASK})
            engine.update_app(spec, now)
        waiting = True
        while waiting:
            round_no += 1
            tasks = [t for c in engine.offers(synthetic_offers(round_no), now) if isinstance(c, LaunchCommand)
                     for t in c.tasks]
            waiting = bool(tasks)
            for task in tasks:
                status = mensa_pb2.TaskStatus(state=mensa_pb2.TASK_RUNNING)
                status.task_id.CopyFrom(task.task_id)
                status.agent_id.CopyFrom(task.agent_id)
                engine.status_update(status, now)
            if engine.metrics()["instances_waiting"] == 0:
                break
    return engine


class InProcessApi:
    """The real REST API serving ``service`` on 127.0.0.1 (a free port) from its own thread and
    event loop; ``call_in_loop`` runs a function there (cProfile hooks the calling thread)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.server: Any = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="service-api", daemon=True)

    def start(self) -> InProcessApi:
        self.thread.start()
        if not self.ready.wait(30) or not self.port:
            raise RuntimeError("the in-process REST API did not start")
        return self

    def _serve(self) -> None:
        from mensa.frameworks.service_fw.api import start_http

        asyncio.set_event_loop(self.loop)
        try:
            self.server, self.port = start_http(self.service, "127.0.0.1", 0)
            self.service.address = f"127.0.0.1:{self.port}"
        finally:
            self.ready.set()
        self.loop.run_forever()

    def call_in_loop(self, fn: Callable[[], Any]) -> None:
        done = threading.Event()

        def go() -> None:
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(go)
        done.wait(10)

    def stop(self) -> None:
        if self.server is not None:
            self.call_in_loop(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass(slots=True)
class Endpoint:
    """Sequential GETs of one path: seconds each, and the answer's size."""

    path: str
    seconds: list[float] = field(default_factory=list)
    size: int = 0
    status: int = 0


@dataclass(slots=True)
class Listing:
    apps: int
    tasks: int
    fill_seconds: float = 0.0
    seen_apps: int = 0  # in one answer of the embed request
    seen_tasks: int = 0
    endpoints: list[Endpoint] = field(default_factory=list)
    profile: str = ""

    @property
    def target(self) -> Endpoint:
        return self.endpoints[0]

    @property
    def complete(self) -> bool:
        return (self.seen_apps == self.apps and self.seen_tasks == self.tasks
                and all(e.status == 200 and e.seconds for e in self.endpoints))


EMBED_PATH = "/v2/apps?embed=apps.tasks"
CONTEXT_PATHS = ("/v2/apps", "/v2/tasks")


def time_gets(port: int, path: str, requests: int) -> Endpoint:
    """``requests`` sequential GETs on one keep-alive connection (after two untimed ones)."""
    out = Endpoint(path)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for i in range(requests + 2):
            started = time.perf_counter()
            conn.request("GET", path, headers={"Accept": "application/json"})
            response = conn.getresponse()
            body = response.read()
            took = time.perf_counter() - started
            out.status, out.size = response.status, len(body)
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
            if i >= 2:
                out.seconds.append(took)
    finally:
        conn.close()
    return out


def measure_listing(root: Path, args: argparse.Namespace) -> Listing:
    """Phase 2: fill an engine, serve it with the real API in a thread, time the GETs."""
    from mensa.frameworks.service_fw.service import ServiceOptions, ServiceService

    figures = Listing(apps=args.apps, tasks=args.apps * args.tasks_per_app)
    started = time.perf_counter()
    engine = fill_engine(args.apps, args.tasks_per_app, args.fill_batch, time.time())
    figures.fill_seconds = time.perf_counter() - started
    service = ServiceService(ServiceOptions(master="127.0.0.1:0", work_dir=root / "in-process", http_port=0))
    service.engine = engine  # leading, without a driver: the GETs only read the engine
    server = InProcessApi(service).start()
    try:
        doc = json.loads(_get(server.port, EMBED_PATH))
        figures.seen_apps = len(doc.get("apps", []))
        figures.seen_tasks = sum(len(a.get("tasks", [])) for a in doc["apps"])
        figures.endpoints.append(time_gets(server.port, EMBED_PATH, args.requests))
        if args.profile or percentile(figures.target.seconds, 0.99) >= TARGET_LISTING:
            profiler = cProfile.Profile()  # timed apart: the profiler slows what it watches
            server.call_in_loop(profiler.enable)
            time_gets(server.port, EMBED_PATH, max(5, args.requests // 5))
            server.call_in_loop(profiler.disable)
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(PROFILE_LINES)
            figures.profile = text.getvalue()
        for path in CONTEXT_PATHS:
            figures.endpoints.append(time_gets(server.port, path, args.requests))
    finally:
        server.stop()
    return figures


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def report_listing(f: Listing, args: argparse.Namespace) -> None:
    print(f"  listing, in process (not on real agents: {f.tasks:,} tasks would be as many processes on "
          f"this machine): {f.apps:,} apps x {args.tasks_per_app} instances, a ServiceEngine filled through "
          f"update_app / offers / status_update in {f.fill_seconds:.1f} s ({args.fill_batch} apps at a "
          f"time), served by the real REST API on 127.0.0.1 in a thread of this process; "
          f"{args.requests} sequential GETs each, one keep-alive client in another thread")
    print(f"    one answer of {EMBED_PATH}: {f.seen_apps:,} apps, {f.seen_tasks:,} tasks")
    for e in f.endpoints:
        print(f"    GET {e.path}: {spread(e.seconds)}; {e.size / 1e6:.2f} MB")
    if f.profile:
        print("    where the serving thread's time went in further GETs of the first (cProfile, cumulative):")
        for line in f.profile.strip().splitlines():
            print(f"      {line}")


# -- the report ------------------------------------------------------------------------------------


def report_targets(launch: Launch | None, listing: Listing | None) -> None:
    print("  targets (issue 6):")
    rows: list[tuple[str, str, str, str]] = []
    if launch is not None:
        last = launch.all_running_at()
        measured = f"{last - launch.posted:.2f} s" if last is not None else "did not complete"
        verdict = "met" if last is not None and last - launch.posted < TARGET_LAUNCH else "MISSED"
        if launch.instances != 500:
            verdict += f" (for {launch.instances}, not 500)"
        rows.append((f"{launch.instances} instances POST -> all RUNNING", measured,
                     f"< {TARGET_LAUNCH:g} s: {verdict}", MARATHON_LAUNCH))
    else:
        rows.append(("POST -> all RUNNING", "not measured", f"< {TARGET_LAUNCH:g} s", MARATHON_LAUNCH))
    if listing is not None and listing.endpoints:
        p99 = percentile(listing.target.seconds, 0.99)
        verdict = "met" if p99 < TARGET_LISTING else "MISSED"
        if listing.apps != 1000 or listing.tasks != 10000:
            verdict += f" (for {listing.apps:,} apps / {listing.tasks:,} tasks)"
        rows.append((f"GET {EMBED_PATH} p99", f"{p99 * 1000:.0f} ms",
                     f"< {TARGET_LISTING * 1000:.0f} ms: {verdict}", MARATHON_LISTING))
    else:
        rows.append((f"GET {EMBED_PATH}", "not measured", f"< {TARGET_LISTING * 1000:.0f} ms",
                     MARATHON_LISTING))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for figure, measured, target, marathon in rows:
        print(f"    {figure:<{widths[0]}}  {measured:>{widths[1]}}  {target:<{widths[2]}}  (Marathon 0.15: "
              f"{marathon})")


# -- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    configure_logging(getattr(args, "log_format", "console"), "warning", component="bench")
    if (args.instances < 0 or args.agents < 1 or args.apps < 0 or args.tasks_per_app < 1
            or args.fill_batch < 1 or args.requests < 1):
        print("need --instances >= 0, --agents >= 1, --apps >= 0, --tasks-per-app >= 1, --fill-batch >= 1, "
              "--requests >= 1")
        return 2
    root = Path(tempfile.mkdtemp(prefix="mensa-bench-service-"))
    procs: list[ManagedProcess] = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main else None
    ok = True
    try:
        print("mensa bench service")
        isolation = "default isolation" if args.isolation else "rlimits, no PID namespace"
        launch_conditions = (
            f"; launch phase: {args.agents} real agents ({args.agent_resources} each, process containerizer, "
            f"{isolation}), 1 standalone master (--allocation-interval {args.allocation_interval:g}), "
            f"1 `mensa service` (file store), all on loopback with the HTTP clients in this process"
        ) if args.instances else ""
        print(f"  conditions: {os.cpu_count()} cores, Python {platform.python_version()}{launch_conditions}",
              flush=True)
        launch = listing = None
        if args.instances:
            port = start_processes(root, args, procs)
            launch = measure_launch(port, args.instances, args.timeout)
            report_launch(launch, args)
            ok = launch.complete and launch.deleted_in is not None
            for proc in reversed(procs):
                proc.stop()
            procs.clear()
        if args.apps:
            listing = measure_listing(root, args)
            report_listing(listing, args)
            ok = ok and listing.complete
        report_targets(launch, listing)
        return 0 if ok else 1
    except BENCH_FAILURES as exc:
        return report_failure("service", exc, procs)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        clean_up(procs, root, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
