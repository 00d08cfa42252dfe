"""``mensa bench containerizers``: launch to RUNNING for tasks in each containerizer on one agent.

Starts a master and one agent with ``--containerizers docker,process`` (a private Docker Engine
with a local busybox image is started for it), then for each containerizer launches ``--tasks``
tasks running ``true`` (at most ``--batch`` per offer) and prints the ACCEPT -> RUNNING latency
(p50/p99) and tasks per second. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mensa.bench.launch import LaunchBench, percentile, start_cluster, true_task
from mensa.deploy.dockerd import IMAGE, Dockerd, missing
from mensa.deploy.processes import ManagedProcess, kill_processes_under
from mensa.deploy.runtime import configure_logging
from mensa.frameworks import SchedulerDriver
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

# The engine refuses memory limits under 6 MB.
DOCKER_TASK = Resources.parse("cpus:0.01;mem:16")


def docker_task(n: int) -> mensa_pb2.TaskInfo:
    task = true_task(n)
    del task.resources[:]
    task.resources.extend(DOCKER_TASK.to_proto())
    task.container.type = mensa_pb2.ContainerInfo.DOCKER
    task.container.docker.image = IMAGE
    task.container.docker.network = mensa_pb2.ContainerInfo.DockerInfo.NONE
    return task


def raw_engine_rate(engine: Dockerd, count: int = 20, concurrency: int = 4) -> float:
    """Containers per second the engine itself runs (create, start, wait, remove) via the SDK."""
    client = engine.client()

    def one(i: int) -> None:
        container = client.containers.create(IMAGE, ["true"], network_mode="none", mem_limit="16m",
                                             labels={"mensa.container_id": f"bench-raw-{i}"})
        container.start()
        container.wait()
        container.remove()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=100, help="tasks per containerizer (default 100)")
    parser.add_argument("--batch", type=int, default=10, help="most tasks per offer (default 10)")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")


def measure(address: str, name: str, args: argparse.Namespace,
            make_task: Callable[[int], mensa_pb2.TaskInfo], ceiling: float | None = None) -> str:
    bench = LaunchBench(args.tasks, args.batch, make_task)
    driver = SchedulerDriver(bench, mensa_pb2.FrameworkInfo(name=f"bench-{name}", user="root"), address)
    driver.start()
    done = bench.done.wait(args.timeout)
    driver.stop()
    driver.join()
    if not done or not bench.running_at:
        return f"  {name}: timed out ({len(bench.running_at)} running, {bench.failed} failed)"
    latencies = [bench.running_at[t] - bench.accepted_at[t] for t in bench.running_at]
    span = max(bench.running_at.values()) - min(bench.accepted_at.values())
    rate = len(latencies) / span
    ratio = f" ({rate / ceiling:.0%} of the engine's own {ceiling:.1f}/s)" if ceiling else ""
    return (f"  {name:8s} {len(latencies)} tasks: {rate:,.1f} tasks/s{ratio}, "
            f"ACCEPT -> RUNNING p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms; failed: {bench.failed}")


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, "warning", component="bench")
    root = Path(tempfile.mkdtemp(prefix="mensa-bench-"))
    engine: Dockerd | None = None
    procs: list[ManagedProcess] = []
    lines = []
    try:
        why = missing()
        flags: tuple[str, ...] = ()
        if why is None:
            engine = Dockerd.start(Path(tempfile.mkdtemp(prefix="mensa-dockerd-", dir="/tmp")))
            flags = ("--containerizers", "docker,process", "--docker-socket", engine.socket)
        procs, address = start_cluster(root, 1, flags)
        time.sleep(0.5)
        lines.append(measure(address, "process", args, true_task))
        if engine is not None:
            ceiling = raw_engine_rate(engine)
            lines.append(measure(address, "docker", args, docker_task, ceiling))
        else:
            lines.append(f"  docker: skipped ({why})")
    finally:
        for proc in reversed(procs):
            proc.stop()
        kill_processes_under(root)
        if engine is not None:
            engine.stop()
    print("mensa bench containerizers")
    print(f"  conditions: one agent, tasks of `true` at most {args.batch} per offer, all on "
          f"loopback; {os.cpu_count()} cores, Python {platform.python_version()}")
    print("\n".join(lines))
    return 0
