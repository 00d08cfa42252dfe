"""``mensa bench launch``: launch trivial tasks through the SDK and time them.

Starts a standalone master and two agents on loopback (as separate processes), then runs a
scheduler in this process that launches ``--tasks`` tasks running ``true`` as fast as offers allow.
Prints tasks per second (ACCEPT sent to RUNNING received) and the p50/p99 of that latency, plus the
time until every task had FINISHED. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mensa.deploy.processes import ManagedProcess, agent_ports, kill_processes_under, mensa_argv
from mensa.deploy.runtime import configure_logging
from mensa.frameworks import Scheduler, SchedulerDriver, is_terminal
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

TASK = Resources.parse("cpus:0.01;mem:1")


def true_task(n: int) -> mensa_pb2.TaskInfo:
    """Returns task ``bench-N`` running ``true`` with the bench's tiny resources."""
    task = mensa_pb2.TaskInfo(name=f"bench-{n}")
    task.task_id.value = f"bench-{n}"
    task.resources.extend(TASK.to_proto())
    task.command.value = "true"
    return task


def start_cluster(
    root: Path, agents: int, agent_flags: tuple[str, ...] = ()
) -> tuple[list[ManagedProcess], str]:
    """Starts a master and ``agents`` agents under ``root``; returns them and the master address."""
    procs: list[ManagedProcess] = []
    master = ManagedProcess("master", mensa_argv(
        "master", "--work-dir", str(root / "master"), "--port", "0", "--http-port", "0",
        "--log-level", "warning"), root / "master").start()
    procs.append(master)
    address = f"127.0.0.1:{master.endpoints()['zmq_port']}"
    for i in range(agents):
        ports = agent_ports(i)
        agent = ManagedProcess(f"agent{i}", mensa_argv(
            "agent", "--master", address, "--work-dir", str(root / f"agent{i}"), "--http-port", "0",
            "--resources", f"cpus:64;mem:65536;disk:1000;{ports}", "--log-level", "warning",
            *agent_flags), root / f"agent{i}").start()
        procs.append(agent)
        agent.endpoints()
    return procs, address


class LaunchBench(Scheduler):
    """Launches ``total`` tasks (``true`` by default), packing each offer, and timestamps updates."""

    def __init__(self, total: int, batch: int,
                 make_task: Callable[[int], mensa_pb2.TaskInfo] = true_task) -> None:
        self.total = total
        self.batch = batch
        self.make_task = make_task
        self.next = 0
        self.accepted_at: dict[str, float] = {}
        self.running_at: dict[str, float] = {}
        self.finished_at: dict[str, float] = {}
        self.failed = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        for offer in offers:
            left = Resources.from_proto(offer.resources)
            tasks = []
            while self.next < self.total and len(tasks) < self.batch:
                task = self.make_task(self.next)
                need = Resources.from_proto(task.resources)
                if not left.contains(need):
                    break
                task.agent_id.CopyFrom(offer.agent_id)
                tasks.append(task)
                left = left - need
                self.next += 1
            if not tasks:
                driver.decline_offer(offer.id, 60.0)
                continue
            now = time.perf_counter()
            with self.lock:
                for task in tasks:
                    self.accepted_at[task.task_id.value] = now
            driver.launch_tasks(offer.id, tasks, 0.0)

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        now = time.perf_counter()
        task_id = status.task_id.value
        with self.lock:
            if status.state == mensa_pb2.TASK_RUNNING:
                self.running_at.setdefault(task_id, now)
            elif status.state == mensa_pb2.TASK_FINISHED:
                self.finished_at.setdefault(task_id, now)
            elif is_terminal(status.state):
                self.failed += 1
            if len(self.finished_at) + self.failed >= self.total:
                self.done.set()


class SerialLatency(Scheduler):
    """Launches ``total`` tasks one at a time, each after the previous one is RUNNING."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.launched = 0
        self.in_flight: tuple[str, float] | None = None
        self.latencies: list[float] = []
        self.done = threading.Event()

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        for offer in offers:
            if self.in_flight is not None or self.launched >= self.total:
                driver.decline_offer(offer.id, 3600.0)  # until the revive after RUNNING
                continue
            task = mensa_pb2.TaskInfo(name=f"serial-{self.launched}")
            task.task_id.value = f"serial-{self.launched}"
            task.agent_id.CopyFrom(offer.agent_id)
            task.resources.extend(TASK.to_proto())
            task.command.value = "true"
            self.launched += 1
            self.in_flight = (task.task_id.value, time.perf_counter())
            driver.launch_tasks(offer.id, [task], 0.0)

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        if (status.state == mensa_pb2.TASK_RUNNING and self.in_flight is not None
                and status.task_id.value == self.in_flight[0]):
            self.latencies.append(time.perf_counter() - self.in_flight[1])
            self.in_flight = None
            if len(self.latencies) >= self.total:
                self.done.set()
            else:
                driver.revive_offers()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=2000, help="tasks to launch (default 2000)")
    parser.add_argument("--agents", type=int, default=2, help="agents to start (default 2)")
    parser.add_argument("--batch", type=int, default=100,
                        help="most tasks launched per offer, so every agent gets work (default 100)")
    parser.add_argument("--serial", type=int, default=200,
                        help="tasks then launched one at a time, for the idle latency (default 200)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="agents without cgroups and PID namespaces (--isolation rlimits "
                        "--pid-namespace off), to see what isolation costs")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, "warning", component="bench")
    root = Path(tempfile.mkdtemp(prefix="mensa-bench-"))
    procs: list[ManagedProcess] = []
    try:
        flags = ("--isolation", "rlimits", "--pid-namespace", "off") if args.no_isolation else ()
        procs, address = start_cluster(root, args.agents, flags)
        bench = LaunchBench(args.tasks, args.batch)
        info = mensa_pb2.FrameworkInfo(name="launch-bench", user="root")
        driver = SchedulerDriver(bench, info, address)
        started = time.perf_counter()
        driver.start()
        finished = bench.done.wait(args.timeout)
        wall = time.perf_counter() - started
        driver.stop()
        driver.join()
        serial = SerialLatency(args.serial)
        if finished and args.serial > 0:
            info = mensa_pb2.FrameworkInfo(name="latency-bench", user="root")
            serial_driver = SchedulerDriver(serial, info, address)
            serial_driver.start()
            serial.done.wait(args.timeout)
            serial_driver.stop()
            serial_driver.join()
        if not finished:
            print(f"timed out after {args.timeout:g}s: {len(bench.running_at)} running, "
                  f"{len(bench.finished_at)} finished, {bench.failed} failed")
            return 1
        latencies = [bench.running_at[t] - bench.accepted_at[t] for t in bench.running_at]
        first = min(bench.accepted_at.values())
        last_running = max(bench.running_at.values())
        last_finished = max(bench.finished_at.values()) if bench.finished_at else last_running
        print("mensa bench launch")
        print(f"  conditions: {args.tasks} tasks of `true` (cpus:0.01;mem:1), {args.agents} agents, "
              f"at most {args.batch} per offer, "
              f"{'rlimits only' if args.no_isolation else 'cgroups and PID namespaces where allowed'}, "
              f"1 standalone master, 1 SDK scheduler, all on loopback; {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")
        print(f"  launch throughput (first ACCEPT -> last RUNNING): "
              f"{len(latencies) / (last_running - first):,.0f} tasks/s")
        print("  ACCEPT -> RUNNING latency under that burst (mostly queueing): "
              f"p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        print(f"  all {len(bench.finished_at)} tasks FINISHED after {last_finished - first:.2f} s "
              f"({len(bench.finished_at) / (last_finished - first):,.0f} tasks/s); failed: {bench.failed}; "
              f"wall {wall:.2f} s")
        if serial.latencies:
            lat = serial.latencies
            print(f"  ACCEPT -> RUNNING latency, {len(lat)} tasks launched one at a time: "
                  f"p50 {percentile(lat, 0.50) * 1000:.1f} ms, p99 {percentile(lat, 0.99) * 1000:.1f} ms")
        return 0 if bench.failed == 0 else 1
    finally:
        for proc in reversed(procs):
            proc.stop()
        kill_processes_under(root)
