"""A Docker task and a process task side by side, through a real master, agent and the SDK."""

from __future__ import annotations

import json
import urllib.request

from mensa_cluster import Cluster
from mensa_recorder import running, task

from mensa.deploy.dockerd import IMAGE, Dockerd
from mensa.proto import mensa_pb2


def docker_agent(cluster: Cluster, dockerd: Dockerd) -> None:
    """A master and one agent with the Docker containerizer before the process one."""
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]",
                        "--containerizers", "docker,process", "--docker-socket", dockerd.socket)
    cluster.wait_agents(1)


def in_image(info: mensa_pb2.TaskInfo) -> mensa_pb2.TaskInfo:
    """The task, to run in the test busybox image with no network."""
    info.container.type = mensa_pb2.ContainerInfo.DOCKER
    info.container.docker.image = IMAGE
    info.container.docker.network = mensa_pb2.ContainerInfo.DockerInfo.NONE
    return info


def test_agent_runs_docker_and_process_tasks(cluster: Cluster, dockerd: Dockerd) -> None:
    docker_agent(cluster, dockerd)
    with running(cluster) as (sched, driver, _):
        boxed = in_image(task("boxed", 'echo "in a container, sandbox at $MESOS_SANDBOX"; exit 4'))
        sched.submit(driver, boxed, task("plain", "echo on the host"))
        failed = sched.state_of("boxed", "TASK_FAILED")
        assert "4" in failed[3]
        sched.state_of("plain", "TASK_FINISHED")
        [stdout] = list(cluster.root.glob("agent1/**/boxed/**/stdout"))
        assert stdout.read_text().strip() == "in a container, sandbox at /mnt/mesos/sandbox"
        agent = cluster.state()["agents"][0]
        with urllib.request.urlopen(f"http://127.0.0.1:{agent['port']}/state", timeout=5) as r:
            described = json.load(r)["containerizers"]
        assert [c["name"] for c in described] == ["docker", "process"]
        assert described[0]["docker"]["version"]


def test_command_health_check_runs_inside_the_container(cluster: Cluster, dockerd: Dockerd) -> None:
    docker_agent(cluster, dockerd)
    with running(cluster) as (sched, driver, _):
        boxed = in_image(task("boxed-check", "sleep 300"))
        check = boxed.health_check
        check.type = mensa_pb2.HealthCheck.COMMAND
        check.command.value = "test -d /mnt/mesos/sandbox"  # only inside the container
        check.delay_seconds, check.interval_seconds, check.grace_period_seconds = 0.1, 0.2, 0.0
        sched.submit(driver, boxed)
        healthy = sched.wait(lambda e: e[0] == "update" and e[1] == "boxed-check"
                             and e[4] == mensa_pb2.TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED)
        assert healthy[5] is True, healthy
        driver.kill_task("boxed-check")
        sched.state_of("boxed-check", "TASK_KILLED")
