"""The whole offer loop with real processes: a master, agents, and a scheduler using the SDK."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mensa_cluster import Cluster, wait_until

from mensa.deploy.processes import ManagedProcess, mensa_argv, processes_under
from mensa.frameworks import Scheduler, SchedulerDriver
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

S = mensa_pb2


def _value(x: Any) -> str:
    return x if isinstance(x, str) else x.value


def task(task_id: str, command: str, resources: str = "cpus:0.5;mem:64") -> mensa_pb2.TaskInfo:
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    info.resources.extend(Resources.parse(resources).to_proto())
    info.command.value = command
    return info


class Recorder(Scheduler):
    """Launches the tasks it is given on the first offer they fit in; records every callback."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.seen: list[tuple[Any, ...]] = []
        self.pending: list[tuple[mensa_pb2.TaskInfo, str | None]] = []
        self.lock = threading.Lock()
        self.agent_of: dict[str, str] = {}

    def submit(self, driver: SchedulerDriver, *tasks: mensa_pb2.TaskInfo,
               hostname: str | None = None) -> None:
        with self.lock:
            self.pending += [(t, hostname) for t in tasks]
        driver.revive_offers()

    def registered(self, driver: SchedulerDriver, framework_id: Any, master_info: Any) -> None:
        self.events.put(("registered", _value(framework_id)))

    def reregistered(self, driver: SchedulerDriver, master_info: Any) -> None:
        self.events.put(("reregistered",))

    def disconnected(self, driver: SchedulerDriver) -> None:
        self.events.put(("disconnected",))

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        for offer in offers:
            left = Resources.from_proto(offer.resources)
            chosen = []
            with self.lock:
                for item in list(self.pending):
                    info, hostname = item
                    need = Resources.from_proto(info.resources)
                    if (hostname is None or hostname == offer.hostname) and left.contains(need):
                        left = left - need
                        chosen.append(info)
                        self.pending.remove(item)
                        self.agent_of[info.task_id.value] = offer.agent_id.value
            if chosen:
                driver.launch_tasks([offer.id], chosen, 0.2)
            else:
                driver.decline_offer([offer.id], 0.2)

    def offer_rescinded(self, driver: SchedulerDriver, offer_id: Any) -> None:
        self.events.put(("rescinded", _value(offer_id)))

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        self.events.put(("update", status.task_id.value, S.TaskState.Name(status.state), status.message,
                         status.reason))

    def agent_lost(self, driver: SchedulerDriver, agent_id: Any) -> None:
        self.events.put(("agent_lost", _value(agent_id)))

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self.events.put(("error", message))

    def wait(self, check: Callable[[tuple[Any, ...]], bool], timeout: float = 30.0) -> tuple[Any, ...]:
        """Returns the first event (seen or coming) that passes ``check``."""
        for event in self.seen:
            if check(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(event)
            if check(event):
                return event
        raise AssertionError(f"no matching event within {timeout}s; seen: {self.seen}")

    def state_of(self, task_id: str, state: str, timeout: float = 30.0) -> tuple[Any, ...]:
        return self.wait(lambda e: e[0] == "update" and e[1] == task_id and e[2] == state, timeout)


def framework_info(name: str = "e2e", failover_timeout: float = 0.0) -> mensa_pb2.FrameworkInfo:
    return mensa_pb2.FrameworkInfo(name=name, user="root", failover_timeout=failover_timeout)


@pytest.fixture
def two_agents(cluster: Cluster) -> Cluster:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]")
    cluster.start_agent("agent2", "cpus:2;mem:1024;disk:100;ports:[32000-32009]")
    cluster.wait_agents(2)
    return cluster


def start(cluster: Cluster, sched: Recorder, **info: Any) -> tuple[SchedulerDriver, str]:
    driver = SchedulerDriver(sched, framework_info(**info), cluster.master_endpoint)
    driver.start()
    framework_id = sched.wait(lambda e: e[0] == "registered")[1]
    return driver, framework_id


def test_tasks_finish_fail_and_are_killed(two_agents: Cluster) -> None:
    cluster = two_agents
    sched = Recorder()
    driver, framework_id = start(cluster, sched)
    try:
        sched.submit(driver,
                     task("ok", 'echo "hello from $MESOS_TASK_ID on port $PORT0"',
                          "cpus:0.5;mem:64;ports:[31000-31000]"),
                     task("bad", "exit 3"),
                     task("long", "sleep 300"))
        for task_id in ("ok", "bad", "long"):
            sched.state_of(task_id, "TASK_STARTING")
        sched.state_of("ok", "TASK_FINISHED")
        failed = sched.state_of("bad", "TASK_FAILED")
        assert "3" in failed[3]
        sched.state_of("long", "TASK_RUNNING")
        driver.kill_task("long")
        sched.state_of("long", "TASK_KILLED")
        # The sandbox holds the task's output, with the Mesos-style variables filled in.
        stdout = wait_until(lambda: [p for p in cluster.root.glob("agent*/**/ok/**/stdout")], what="sandbox")
        assert stdout[0].read_text().strip() == "hello from ok on port 31000"
        # The master's /state has them all as completed, with the agents' resources free again.
        tasks = wait_until(lambda: cluster.tasks(framework_id)
                           if len(cluster.tasks(framework_id)) == 3 else None, what="3 tasks in /state")
        assert tasks == {"ok": "TASK_FINISHED", "bad": "TASK_FAILED", "long": "TASK_KILLED"}
        state = cluster.state()
        assert all(a["used_resources"]["cpus"] == 0 for a in state["agents"])
        assert state["slaves"] == state["agents"]
    finally:
        driver.stop()
        driver.join()


def test_invalid_tasks_get_errors_and_valid_ones_still_run(two_agents: Cluster) -> None:
    sched = Recorder()
    driver, _ = start(two_agents, sched)
    try:
        sched.submit(driver, task("../escape", "true"), task("fine", "true"))
        error = sched.state_of("../escape", "TASK_ERROR")
        assert "sandbox" in error[3]
        sched.state_of("fine", "TASK_FINISHED")
    finally:
        driver.stop()
        driver.join()


def test_tasks_inherit_only_stdin_stdout_and_stderr_from_the_agent(two_agents: Cluster) -> None:
    sched = Recorder()
    driver, _ = start(two_agents, sched)
    try:
        sched.submit(driver, task("fds", "ls /proc/$$/fd"))
        sched.state_of("fds", "TASK_FINISHED")
        [stdout] = list(two_agents.root.glob("agent*/**/fds/**/stdout"))
        assert stdout.read_text().split() == ["0", "1", "2"]
    finally:
        driver.stop()
        driver.join()


def test_scheduler_disconnects_and_resubscribes_keeping_its_tasks(two_agents: Cluster) -> None:
    cluster = two_agents
    first = Recorder()
    driver, framework_id = start(cluster, first, failover_timeout=60)
    first.submit(driver, task("survivor", "sleep 300"))
    first.state_of("survivor", "TASK_RUNNING")
    driver.stop(failover=True)
    driver.join()
    wait_until(lambda: not cluster.state()["frameworks"][0]["connected"], what="disconnection")

    second = Recorder()
    info = framework_info(failover_timeout=60)
    info.id.value = framework_id
    driver = SchedulerDriver(second, info, cluster.master_endpoint)
    driver.start()
    try:
        second.wait(lambda e: e[0] in ("registered", "reregistered"))
        assert cluster.tasks(framework_id) == {"survivor": "TASK_RUNNING"}
        driver.reconcile_tasks([])
        second.state_of("survivor", "TASK_RUNNING")
        driver.kill_task("survivor")
        second.state_of("survivor", "TASK_KILLED")
    finally:
        driver.stop()
        driver.join()


def test_agent_killed_with_sigkill_has_its_tasks_lost(two_agents: Cluster) -> None:
    cluster = two_agents
    sched = Recorder()
    driver, _ = start(cluster, sched)
    try:
        sched.submit(driver, task("doomed", "sleep 300"), hostname="agent1")
        sched.state_of("doomed", "TASK_RUNNING")
        agent1 = next(p for p in cluster.processes if p.name == "agent1")
        agent_id = sched.agent_of["doomed"]
        agent1.kill()
        lost = sched.state_of("doomed", "TASK_LOST", timeout=20)
        assert lost[4] == S.TaskStatus.REASON_AGENT_REMOVED
        assert sched.wait(lambda e: e[0] == "agent_lost")[1] == agent_id
        assert [a["hostname"] for a in cluster.state()["agents"]] == ["agent2"]
        # The cluster carries on with the agent that is left.
        sched.submit(driver, task("after", "true"))
        sched.state_of("after", "TASK_FINISHED")
    finally:
        driver.stop()
        driver.join()


def test_master_restart_agents_reregister_with_their_tasks(cluster: Cluster, tmp_path: Path) -> None:
    master = cluster.start_master()
    port = cluster.master_endpoint.split(":")[1]
    cluster.start_agent("agent1")
    cluster.wait_agents(1)
    sched = Recorder()
    driver, framework_id = start(cluster, sched, failover_timeout=60)
    try:
        sched.submit(driver, task("steady", "sleep 300"))
        sched.state_of("steady", "TASK_RUNNING")
        master.kill()
        cluster.processes.remove(master)
        cluster.start_master("--port", port, name="master2")
        assert cluster.master_endpoint.endswith(f":{port}")
        cluster.wait_agents(1)
        sched.wait(lambda e: e[0] == "reregistered", timeout=30)
        assert wait_until(lambda: cluster.tasks(framework_id).get("steady") == "TASK_RUNNING",
                          what="task back in /state")
        driver.kill_task("steady")
        sched.state_of("steady", "TASK_KILLED")
    finally:
        driver.stop()
        driver.join()


def test_local_cluster_command_runs_the_example_and_leaves_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "local"
    proc = ManagedProcess("local", mensa_argv(
        "local", "--work-dir", str(work), "--port", "0", "--http-port", "0", "--tasks", "4",
        "--exit-when-done"), tmp_path).start()
    try:
        assert proc.proc is not None
        assert proc.proc.wait(120) == 0, (tmp_path / "local.log").read_text()[-3000:]
    finally:
        proc.stop()
    log = (tmp_path / "local.log").read_text()
    assert "Stopped; no process left behind." in log
    assert processes_under(work) == []
    assert len(list(work.glob("agent*/**/stdout"))) == 4
