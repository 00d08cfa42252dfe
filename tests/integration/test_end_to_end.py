"""The whole offer loop with real processes: a master, agents, and a scheduler using the SDK."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from mensa_cluster import Cluster, wait_until
from mensa_recorder import Recorder, framework_info, running, start, task

from mensa.deploy.processes import ManagedProcess, mensa_argv, processes_under
from mensa.frameworks import SchedulerDriver
from mensa.proto import mensa_pb2

S = mensa_pb2


@pytest.fixture
def two_agents(cluster: Cluster) -> Cluster:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]")
    cluster.start_agent("agent2", "cpus:2;mem:1024;disk:100;ports:[32000-32009]")
    cluster.wait_agents(2)
    return cluster


def test_tasks_finish_fail_and_are_killed(two_agents: Cluster) -> None:
    cluster = two_agents
    with running(cluster) as (sched, driver, framework_id):
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


def test_invalid_tasks_get_errors_and_valid_ones_still_run(two_agents: Cluster) -> None:
    with running(two_agents) as (sched, driver, _):
        sched.submit(driver, task("../escape", "true"), task("fine", "true"))
        error = sched.state_of("../escape", "TASK_ERROR")
        assert "sandbox" in error[3]
        sched.state_of("fine", "TASK_FINISHED")


def test_tasks_inherit_only_stdin_stdout_and_stderr_from_the_agent(two_agents: Cluster) -> None:
    with running(two_agents) as (sched, driver, _):
        sched.submit(driver, task("fds", "ls /proc/$$/fd"))
        sched.state_of("fds", "TASK_FINISHED")
        [stdout] = list(two_agents.root.glob("agent*/**/fds/**/stdout"))
        assert stdout.read_text().split() == ["0", "1", "2"]


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
    with running(cluster) as (sched, driver, _):
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


def test_master_restart_agents_reregister_with_their_tasks(cluster: Cluster, tmp_path: Path) -> None:
    master = cluster.start_master()
    port = cluster.master_endpoint.split(":")[1]
    cluster.start_agent("agent1")
    cluster.wait_agents(1)
    with running(cluster, failover_timeout=60) as (sched, driver, framework_id):
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


def test_local_cluster_command_runs_the_example_and_leaves_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "local"
    proc = ManagedProcess("local", mensa_argv(
        "local", "--work-dir", str(work), "--port", "0", "--http-port", "0", "--batch-http-port", "0",
        "--service-http-port", "0", "--tasks", "4", "--exit-when-done"), tmp_path).start()
    try:
        assert proc.proc is not None
        assert proc.proc.wait(120) == 0, (tmp_path / "local.log").read_text()[-3000:]
    finally:
        proc.stop()
    log = (tmp_path / "local.log").read_text()
    assert "Stopped; no process left behind." in log
    assert processes_under(work) == []
    assert len(list(work.glob("agent*/**/executors/hello-[0-9]*/runs/latest/stdout"))) == 4
    # The batch framework ran its sample one-off job, once.
    sandboxes = list(work.glob("agent*/**/executors/hello-batch.*/runs/latest/stdout"))
    assert len(sandboxes) == 1 and "hello from a batch job" in sandboxes[0].read_text()
    # The service framework launched its sample app's two instances (each once).
    assert "Services (Marathon API)" in log
    assert len(list(work.glob("agent*/**/executors/hello_web.*/runs/latest"))) == 2


def test_finished_sandboxes_are_garbage_collected_live_ones_kept(cluster: Cluster) -> None:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]",
                        "--sandbox-gc-delay", "0", "--sandbox-gc-interval", "0.2")
    cluster.wait_agents(1)
    with running(cluster) as (sched, driver, _):
        sched.submit(driver, task("brief", "echo bye"), task("steady", "sleep 300"))
        sched.state_of("brief", "TASK_FINISHED")
        sched.state_of("steady", "TASK_RUNNING")
        executors = next(cluster.root.glob("agent1/agents/*/frameworks/*/executors"))
        wait_until(lambda: not (executors / "brief").exists(), what="the finished sandbox removed")
        time.sleep(0.5)
        assert (executors / "steady" / "runs" / "latest" / "stdout").exists()


def test_http_health_check_reaches_the_framework_and_both_states(two_agents: Cluster) -> None:
    cluster = two_agents
    with running(cluster) as (sched, driver, framework_id):
        web = task("web", "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
                   "cpus:0.5;mem:64;ports:[31005-31005]")
        web.health_check.type = mensa_pb2.HealthCheck.HTTP
        web.health_check.http.port = 31005
        web.health_check.delay_seconds = 0.2
        web.health_check.interval_seconds = 0.2
        web.health_check.grace_period_seconds = 10
        sched.submit(driver, web, hostname="agent1")
        healthy = sched.wait(lambda e: e[0] == "update" and e[1] == "web" and e[2] == "TASK_RUNNING"
                             and e[4] == S.TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED)
        assert healthy
        master_task = wait_until(lambda: next(
            (t for f in cluster.state()["frameworks"] if f["id"] == framework_id
             for t in f["tasks"] if t["statuses"] and t["statuses"][-1].get("healthy")), None),
            what="healthy in the master's /state")
        assert master_task["id"] == "web"
        agent = next(a for a in cluster.state()["agents"] if a["hostname"] == "agent1")
        with urllib.request.urlopen(f"http://127.0.0.1:{agent['port']}/state", timeout=5) as r:
            agent_state = json.load(r)
        [agent_task] = [t for t in agent_state["tasks"] if t["id"] == "web"] if "tasks" in agent_state \
            else [t for f in agent_state["frameworks"] for t in f["tasks"] if t["id"] == "web"]
        assert agent_task["healthy"] is True
        driver.kill_task("web")
        sched.state_of("web", "TASK_KILLED")
