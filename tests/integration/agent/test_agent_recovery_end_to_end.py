"""An agent killed with SIGKILL and restarted with the same --work-dir: its tasks keep running
and are tracked again, tasks that ended meanwhile are reported with their exit codes, and
updates it never got acknowledged are delivered (real master, agent, SDK and processes)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from mensa_cluster import Cluster, wait_until
from mensa_recorder import running, task

from mensa.agent.checkpoint_records import UPDATES_FILE, replay_updates, task_dir
from mensa.deploy.processes import processes_under
from mensa.proto import mensa_pb2

SLOW_MASTER = ("--agent-ping-timeout", "10")  # the agent is down for a while: not unreachable


def sandbox(work: Path, agent_id: str, framework_id: str, task_id: str) -> Path:
    return (work / "agents" / agent_id / "frameworks" / framework_id / "executors" / task_id /
            "runs" / "latest")


def alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
    return bool(pids)


def pending_states(work: Path, framework_id: str, task_id: str) -> list[str]:
    path = Path(task_dir(str(work), framework_id, task_id)) / UPDATES_FILE
    pending, _latest, _torn = replay_updates(path.read_bytes())
    return [mensa_pb2.TaskState.Name(s.state) for s in pending]


def test_agent_restart_recovers_its_tasks(cluster: Cluster) -> None:
    cluster.start_master(*SLOW_MASTER)
    agent = cluster.start_agent("agent1")
    work = agent.work_dir.resolve()
    (registered,) = cluster.wait_agents(1)
    agent_id = registered["id"]
    with running(cluster) as (sched, driver, framework_id):
        ender = task("ender", "while [ ! -e go ]; do sleep 0.05; done; exit 7", "cpus:0.1;mem:32")
        sched.submit(driver, task("survivor", "sleep 300", "cpus:0.1;mem:32"), ender,
                     task("victim", "sleep 300", "cpus:0.1;mem:32"))
        for name in ("survivor", "ender", "victim"):
            sched.state_of(name, "TASK_RUNNING")
        boxes = {n: sandbox(work, agent_id, framework_id, n) for n in ("survivor", "ender", "victim")}
        survivors = wait_until(lambda: processes_under(boxes["survivor"]), what="survivor's pids")
        # An update the master never acknowledges: the master is stopped when the victim dies.
        victims = processes_under(boxes["victim"])
        os.kill(cluster.processes[0].pid, signal.SIGSTOP)
        try:
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: "TASK_FAILED" in pending_states(work, framework_id, "victim"),
                       what="the victim's TASK_FAILED checkpointed")
            agent.kill()
        finally:
            os.kill(cluster.processes[0].pid, signal.SIGCONT)
        assert alive(survivors), "a task died with its agent"
        (boxes["ender"] / "go").touch()
        wait_until(lambda: not processes_under(boxes["ender"]), what="ender to exit")

        restarted = cluster.start_agent("agent1")
        assert restarted.endpoints().get("agent_id") in (None, agent_id)
        wait_until(lambda: restarted.endpoints().get("agent_id") == agent_id,
                   what="the restarted agent to register with its old id")
        assert [a["id"] for a in cluster.wait_agents(1)] == [agent_id]

        exited = sched.state_of("ender", "TASK_FAILED")
        assert exited[3] == "Command exited with status 7"
        victim = sched.state_of("victim", "TASK_FAILED")
        assert "SIGKILL" in victim[3]
        wait_until(lambda: not os.path.exists(task_dir(str(work), framework_id, "victim")),
                   what="the victim's update acknowledged and its checkpoint removed")
        assert cluster.tasks(framework_id)["survivor"] == "TASK_RUNNING"
        assert alive(survivors)

        driver.kill_task("survivor")
        sched.state_of("survivor", "TASK_KILLED")
        wait_until(lambda: not alive(survivors), what="the survivor's processes to be gone")


def test_health_checks_resume_after_recovery(cluster: Cluster) -> None:
    cluster.start_master(*SLOW_MASTER)
    agent = cluster.start_agent("agent1")
    work = agent.work_dir.resolve()
    (registered,) = cluster.wait_agents(1)
    with running(cluster) as (sched, driver, framework_id):
        checked = task("checked", "sleep 300", "cpus:0.1;mem:32")
        check = checked.health_check
        check.type = mensa_pb2.HealthCheck.COMMAND
        check.command.value = "test ! -e sick"
        check.delay_seconds, check.interval_seconds, check.grace_period_seconds = 0.1, 0.2, 0.0
        check.consecutive_failures = 1
        sched.submit(driver, checked)
        sched.wait(lambda e: e[0] == "update" and e[1] == "checked" and e[5] is True)
        box = sandbox(work, registered["id"], framework_id, "checked")
        agent.kill()
        pids = processes_under(box)
        assert alive(pids)
        restarted = cluster.start_agent("agent1")
        wait_until(lambda: restarted.endpoints().get("agent_id") == registered["id"],
                   what="the restarted agent to register with its old id")
        (box / "sick").touch()
        killed = sched.state_of("checked", "TASK_KILLED")
        assert killed[5] is False
        wait_until(lambda: not alive(pids), what="the unhealthy task's processes to be gone")


@pytest.mark.parametrize("isolation", ["rlimits"])
def test_rlimits_tasks_are_recovered_by_process_group(cluster: Cluster, isolation: str) -> None:
    cluster.start_master(*SLOW_MASTER)
    agent = cluster.start_agent("agent1", "cpus:1;mem:512;disk:100;ports:[31000-31009]",
                                "--isolation", isolation, "--pid-namespace", "off")
    work = agent.work_dir.resolve()
    (registered,) = cluster.wait_agents(1)
    with running(cluster) as (sched, driver, framework_id):
        sched.submit(driver, task("kept", "sleep 300; exit 0", "cpus:0.1;mem:32"))
        sched.state_of("kept", "TASK_RUNNING")
        pids = processes_under(sandbox(work, registered["id"], framework_id, "kept"))
        agent.kill()
        restarted = cluster.start_agent("agent1", "cpus:1;mem:512;disk:100;ports:[31000-31009]",
                                        "--isolation", isolation, "--pid-namespace", "off")
        wait_until(lambda: restarted.endpoints().get("agent_id") == registered["id"],
                   what="the restarted agent to register with its old id")
        assert alive(pids)
        driver.kill_task("kept")
        sched.state_of("kept", "TASK_KILLED")
        wait_until(lambda: not alive(pids), what="the task's process group to be gone")
