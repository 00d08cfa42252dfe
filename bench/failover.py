"""``mensa bench failover``: SIGKILL the leading master and time the failover, detection included.

Starts a 3-node ZooKeeper ensemble (Debian's zookeeper, deploy/zookeeper.py), ``--masters``
masters contending under ``zk://.../mensa``, ``--agents`` agents and, in this process, an SDK
scheduler that keeps ``--tasks`` tasks running (``sleep 3600``). Then it SIGKILLs the leading
master and prints, from the moment of the kill, the time until
(a) ZooKeeper names a new leader (as a detector following the znodes sees it),
(b) every agent has re-registered with the new leader (its /state lists the same agent ids),
(c) the scheduler has re-subscribed and receives offers again,
and the tasks lost (every task must still be TASK_RUNNING at the new leader), with the ZooKeeper
session timeout used. The target is (c) <= session timeout + 1 s with no task lost. Figures are
printed, never asserted; the exit code is 1 when the failover did not complete or lost tasks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mensa.bench import standalone
from mensa.deploy.processes import ManagedProcess, kill_processes_under, mensa_argv
from mensa.deploy.runtime import configure_logging
from mensa.deploy.zookeeper import ZooKeeperEnsemble
from mensa.frameworks import Scheduler, SchedulerDriver, is_terminal
from mensa.proto import mensa_pb2
from mensa.proto.detector import detector_for
from mensa.proto.resources import Resources
from mensa.proto.zk import Leader

TASK = Resources.parse("cpus:0.01;mem:1")
POLL = 0.02


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=10, help="agents to start (default 10)")
    parser.add_argument("--tasks", type=int, default=100,
                        help="long-running tasks (sleep 3600) kept by the scheduler (default 100)")
    parser.add_argument("--session-timeout", type=float, default=2.0,
                        help="ZooKeeper session timeout of masters, agents and scheduler, seconds "
                        "(default 2)")
    parser.add_argument("--masters", type=int, default=3, help="masters contending (default 3)")
    parser.add_argument("--allocation-interval", type=float, default=0.2,
                        help="the masters' --allocation-interval (default 0.2)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up on any one phase after this many seconds (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark outside the CLI (``python -m mensa.bench.failover --agents 10``)."""
    return standalone("failover", __doc__ or "", add_arguments, run, argv)


# -- the scheduler -------------------------------------------------------------------------------


@dataclass(slots=True)
class Timeline:
    """What the scheduler saw, with perf_counter times."""

    framework_id: str = ""
    subscribed_at: list[float] = field(default_factory=list)  # registered or reregistered
    disconnected_at: list[float] = field(default_factory=list)
    offers_at: list[float] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    bad_updates: list[tuple[float, str, str]] = field(default_factory=list)  # time, task, state


class KeepRunning(Scheduler):
    """Launches ``total`` ``sleep 3600`` tasks, at most ``batch`` per offer (so they spread over
    the agents); declines the rest of every offer for a second, so offers keep coming."""

    def __init__(self, total: int, batch: int) -> None:
        self.total = total
        self.batch = batch
        self.launched = 0
        self.timeline = Timeline()
        self.lock = threading.Lock()
        self.all_running = threading.Event()

    def registered(self, driver: SchedulerDriver, framework_id: mensa_pb2.FrameworkID,
                   master_info: mensa_pb2.MasterInfo) -> None:
        with self.lock:
            self.timeline.framework_id = framework_id.value
            self.timeline.subscribed_at.append(time.perf_counter())

    def reregistered(self, driver: SchedulerDriver, master_info: mensa_pb2.MasterInfo) -> None:
        with self.lock:
            self.timeline.subscribed_at.append(time.perf_counter())

    def disconnected(self, driver: SchedulerDriver) -> None:
        with self.lock:
            self.timeline.disconnected_at.append(time.perf_counter())

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        with self.lock:
            self.timeline.offers_at.append(time.perf_counter())
        for offer in offers:
            left = Resources.from_proto(offer.resources)
            tasks: list[mensa_pb2.TaskInfo] = []
            while self.launched < self.total and len(tasks) < self.batch and left.contains(TASK):
                task = mensa_pb2.TaskInfo(name=f"failover-{self.launched}")
                task.task_id.value = f"failover-{self.launched}"
                task.agent_id.CopyFrom(offer.agent_id)
                task.resources.extend(TASK.to_proto())
                task.command.value = "sleep 3600"
                tasks.append(task)
                left = left - TASK
                self.launched += 1
            if tasks:
                driver.launch_tasks(offer.id, tasks, 1.0)
            else:
                driver.decline_offer(offer.id, 1.0)

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        with self.lock:
            task_id = status.task_id.value
            self.timeline.states[task_id] = status.state
            if is_terminal(status.state) or status.state in (mensa_pb2.TASK_LOST, mensa_pb2.TASK_UNREACHABLE):
                self.timeline.bad_updates.append(
                    (time.perf_counter(), task_id, mensa_pb2.TaskState.Name(status.state)))
            running = sum(1 for s in self.timeline.states.values() if s == mensa_pb2.TASK_RUNNING)
        if running >= self.total:
            self.all_running.set()


# -- the cluster ---------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GETs JSON; None on any failure (a standby answers 307/503, a dead master nothing)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=timeout) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (OSError, ValueError, urllib.error.HTTPError):
        return None


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(POLL)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


class LeaderWatch:
    """Follows the leader znodes with the product's own ZkDetector; records each change."""

    def __init__(self, uri: str, session_timeout: float) -> None:
        self.changes: list[tuple[float, Leader | None]] = []
        self.lock = threading.Lock()
        self.detector = detector_for(uri, session_timeout=session_timeout)
        self.detector.start(self._on_change)

    def _on_change(self, leader: Leader | None) -> None:
        with self.lock:
            self.changes.append((time.perf_counter(), leader))

    def current(self) -> Leader | None:
        with self.lock:
            return self.changes[-1][1] if self.changes else None

    def first_other_than(self, zmq_port: int, since: float) -> tuple[float, Leader] | None:
        with self.lock:
            for at, leader in self.changes:
                if at >= since and leader is not None and leader.zmq.port != zmq_port:
                    return at, leader
        return None


def agent_supports(flag: str) -> bool:
    """Whether ``mensa agent`` has ``flag`` (agents following zk:// may lack the session flag)."""
    out = subprocess.run(mensa_argv("agent", "--help"), capture_output=True, text=True, timeout=60,
                         check=False)
    return flag in out.stdout


@dataclass(slots=True)
class Cluster:
    root: Path
    zk: ZooKeeperEnsemble
    uri: str
    masters: dict[str, ManagedProcess] = field(default_factory=dict)
    master_ports: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (zmq, http)
    agents: list[ManagedProcess] = field(default_factory=list)

    def start_masters(self, count: int, session_timeout: float, allocation_interval: float) -> None:
        for i in range(count):
            name = f"master{i + 1}"
            work = self.root / name
            proc = ManagedProcess(name, mensa_argv(
                "master", "--zk", self.uri, "--zk-session-timeout", f"{session_timeout:g}",
                "--work-dir", str(work), "--port", "0", "--http-port", "0",
                "--allocation-interval", f"{allocation_interval:g}", "--log-level", "warning"),
                work).start()
            self.masters[name] = proc
        for name, proc in self.masters.items():
            ep = proc.endpoints()
            self.master_ports[name] = (int(ep["zmq_port"]), int(ep["http_port"]))

    def start_agents(self, count: int, session_timeout: float, tasks_each: int) -> None:
        zk_flags = (["--zk-session-timeout", f"{session_timeout:g}"]
                    if agent_supports("--zk-session-timeout") else [])
        cpus = max(1.0, tasks_each * 0.01 + 1)
        mem = tasks_each + 256
        for i in range(count):
            name = f"agent{i + 1}"
            work = self.root / name
            self.agents.append(ManagedProcess(name, mensa_argv(
                "agent", "--master", self.uri, *zk_flags, "--work-dir", str(work), "--http-port", "0",
                "--resources", f"cpus:{cpus:g};mem:{mem};disk:1000", "--hostname", name,
                "--isolation", "rlimits", "--pid-namespace", "off", "--log-level", "warning"),
                work).start())
        for agent in self.agents:
            agent.endpoints()

    def name_of(self, leader: Leader) -> str | None:
        for name, (zmq_port, _http) in self.master_ports.items():
            if zmq_port == leader.zmq.port:
                return name
        return None

    def state(self, name: str) -> dict[str, Any] | None:
        return get_json(f"http://127.0.0.1:{self.master_ports[name][1]}/state")

    def stop(self) -> None:
        for proc in [*reversed(self.agents), *self.masters.values()]:
            proc.stop(grace=5)
        kill_processes_under(self.root)
        self.zk.stop()

    def logs(self) -> str:
        out = []
        for proc in [*self.masters.values(), *self.agents]:
            if proc.log_path and proc.log_path.exists():
                tail = proc.log_path.read_text(errors="replace")[-2000:]
                out.append(f"----- {proc.name} ({proc.log_path}) -----\n{tail}")
        return "\n".join(out)


def agent_ids(state: dict[str, Any] | None) -> set[str]:
    return {a["id"] for a in (state or {}).get("agents", [])}


def task_states(state: dict[str, Any] | None, framework_id: str) -> dict[str, str]:
    for fw in (state or {}).get("frameworks", []):
        if fw["id"] == framework_id:
            return {t["id"]: t["state"] for t in fw["tasks"] + fw["completed_tasks"]}
    return {}


@dataclass(slots=True)
class Figures:
    """Seconds from the SIGKILL to each milestone (None: not reached within --timeout)."""

    old_leader: str
    old_pid: int
    new_leader: str = "?"
    new_leader_at: float | None = None
    agents_at: float | None = None
    agents_seen: int = 0
    same_agents: bool = False
    resubscribed_at: float | None = None
    offers_at: float | None = None
    same_framework: bool = False
    running: int = 0
    lost: int = 0
    bad_updates: int = 0


def measure_failover(cluster: Cluster, watch: LeaderWatch, sched: KeepRunning, leader_name: str,
                     agents_before: set[str], args: argparse.Namespace) -> Figures:
    """SIGKILLs the leader and polls every POLL seconds for (a), (b) and (c) at once."""
    framework_id = sched.timeline.framework_id
    old = cluster.masters[leader_name]
    old_zmq = cluster.master_ports[leader_name][0]
    figures = Figures(leader_name, old.pid)
    killed_at = time.perf_counter()
    old.kill()  # SIGKILL by pid, then reaps it
    deadline = killed_at + args.timeout
    new_name: str | None = None
    while time.perf_counter() < deadline:
        if new_name is None and (change := watch.first_other_than(old_zmq, killed_at)) is not None:
            figures.new_leader_at = change[0] - killed_at
            new_name = cluster.name_of(change[1]) or str(change[1])
            figures.new_leader = new_name
        if new_name is not None and figures.agents_at is None:
            ids = agent_ids(cluster.state(new_name))
            figures.agents_seen = len(ids)
            if ids >= agents_before:
                figures.agents_at = time.perf_counter() - killed_at
                figures.same_agents = ids == agents_before
        with sched.lock:
            subscribed = [t for t in sched.timeline.subscribed_at if t > killed_at]
            if subscribed and figures.resubscribed_at is None:
                figures.resubscribed_at = subscribed[0] - killed_at
            offers = [t for t in sched.timeline.offers_at if subscribed and t > subscribed[0]]
            if offers and figures.offers_at is None:
                figures.offers_at = offers[0] - killed_at
        if None not in (figures.new_leader_at, figures.agents_at, figures.offers_at):
            break
        time.sleep(POLL)
    figures.same_framework = sched.timeline.framework_id == framework_id
    states: dict[str, str] = {}
    if new_name is not None:
        def all_running_again() -> bool:
            nonlocal states
            states = task_states(cluster.state(new_name), framework_id)
            return sum(1 for s in states.values() if s == "TASK_RUNNING") == args.tasks

        with contextlib.suppress(TimeoutError):
            wait_for(all_running_again, min(args.timeout, 10.0), "every task RUNNING at the new leader")
    figures.running = sum(1 for s in states.values() if s == "TASK_RUNNING")
    figures.lost = args.tasks - figures.running
    with sched.lock:
        figures.bad_updates = sum(1 for at, _task, _state in sched.timeline.bad_updates if at > killed_at)
    return figures


def report(f: Figures, args: argparse.Namespace) -> None:
    def secs(value: float | None) -> str:
        return f"{value:6.2f} s" if value is not None else f"not within {args.timeout:g} s"

    session = args.session_timeout
    print("mensa bench failover")
    print(f"  conditions: 3-node ZooKeeper ensemble, {args.masters} masters, {args.agents} agents, "
          f"{args.tasks} tasks (sleep 3600, cpus:0.01;mem:1), 1 SDK scheduler, all on loopback; "
          f"ZooKeeper session timeout {session:g} s; master --allocation-interval "
          f"{args.allocation_interval:g}; {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"  SIGKILL of the leading master {f.old_leader} (pid {f.old_pid}) at t = 0")
    print(f"  (a) new leader in ZooKeeper ({f.new_leader}): {secs(f.new_leader_at)}")
    print(f"  (b) all {args.agents} agents re-registered with it: {secs(f.agents_at)} "
          f"({f.agents_seen} seen; same agent ids: {'yes' if f.same_agents else 'NO'}; "
          f"polled every {POLL * 1000:.0f} ms)")
    print(f"  (c) scheduler re-subscribed: {secs(f.resubscribed_at)}; first offer after that: "
          f"{secs(f.offers_at)} (framework id kept: {'yes' if f.same_framework else 'NO'})")
    print(f"  tasks lost: {f.lost} of {args.tasks} ({f.running} TASK_RUNNING at the new leader; "
          f"{f.bad_updates} LOST/terminal updates to the scheduler after the kill)")
    met = f.offers_at is not None and f.offers_at <= session + 1.0 and f.lost == 0
    print(f"  target (c) <= session timeout + 1 s = {session + 1:g} s with no task lost: "
          f"{'met' if met else 'MISSED'}")


# -- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    configure_logging(getattr(args, "log_format", "console"), "warning", component="bench")
    if args.agents < 1 or args.tasks < 0 or args.masters < 2 or args.session_timeout <= 0:
        print("need --agents >= 1, --tasks >= 0, --masters >= 2 and --session-timeout > 0")
        return 2
    root = Path(tempfile.mkdtemp(prefix="mensa-bench-failover-"))
    cluster: Cluster | None = None
    driver: SchedulerDriver | None = None
    watch: LeaderWatch | None = None
    try:
        zk = ZooKeeperEnsemble(root / "zookeeper", size=3)
        cluster = Cluster(root, zk, zk.uri("/mensa"))
        cluster.start_masters(args.masters, args.session_timeout, args.allocation_interval)
        watch = LeaderWatch(cluster.uri, args.session_timeout)
        first = wait_for(watch.current, args.timeout, "a leading master")
        leader_name = cluster.name_of(first)
        if leader_name is None:
            raise RuntimeError(f"the leader {first} is none of the masters started")
        cluster.start_agents(args.agents, args.session_timeout, math.ceil(args.tasks / args.agents))

        def agents_registered() -> set[str] | None:
            ids = agent_ids(cluster.state(leader_name))
            return ids if len(ids) == args.agents else None

        agents_before: set[str] = wait_for(agents_registered, args.timeout,
                                           f"{args.agents} agents registered with {leader_name}")

        sched = KeepRunning(args.tasks, math.ceil(args.tasks / args.agents))
        info = mensa_pb2.FrameworkInfo(name="failover-bench", user="root", failover_timeout=3600.0)
        driver = SchedulerDriver(sched, info, cluster.uri, zk_session_timeout=args.session_timeout)
        driver.start()
        if args.tasks and not sched.all_running.wait(args.timeout):
            running_now = sum(1 for s in sched.timeline.states.values() if s == mensa_pb2.TASK_RUNNING)
            raise TimeoutError(f"only {running_now} of {args.tasks} tasks RUNNING after {args.timeout:g}s")
        framework_id = sched.timeline.framework_id
        wait_for(lambda: sum(1 for s in task_states(cluster.state(leader_name), framework_id).values()
                             if s == "TASK_RUNNING") == args.tasks,
                 args.timeout, f"{args.tasks} tasks RUNNING at {leader_name}")

        # -- the failover ----------------------------------------------------------------------
        figures = measure_failover(cluster, watch, sched, leader_name, agents_before, args)
        report(figures, args)
        complete = None not in (figures.new_leader_at, figures.agents_at, figures.offers_at)
        return 0 if complete and figures.lost == 0 and figures.same_agents else 1
    except (TimeoutError, RuntimeError) as exc:
        print(f"mensa bench failover: failed: {exc}")
        if cluster is not None:
            print(cluster.logs())
        return 1
    finally:
        if driver is not None:
            driver.stop()
            driver.join(10)
        if watch is not None:
            watch.detector.stop()
        if cluster is not None:
            cluster.stop()
        if args.keep:
            print(f"  work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
