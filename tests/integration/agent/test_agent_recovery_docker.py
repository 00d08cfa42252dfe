"""Docker tasks survive an agent killed with SIGKILL; the restarted agent tracks them again,
reports one that ended meanwhile with its exit code, and removes an orphan container."""

from __future__ import annotations

import time

from mensa_cluster import Cluster, wait_until
from mensa_recorder import running, task

from mensa.deploy.dockerd import IMAGE, Dockerd
from mensa.proto import mensa_pb2

AGENT_FLAGS = ("--containerizers", "docker,process")


def in_image(info: mensa_pb2.TaskInfo) -> mensa_pb2.TaskInfo:
    info.container.type = mensa_pb2.ContainerInfo.DOCKER
    info.container.docker.image = IMAGE
    info.container.docker.network = mensa_pb2.ContainerInfo.DockerInfo.NONE
    return info


def test_docker_tasks_are_recovered(cluster: Cluster, dockerd: Dockerd) -> None:
    cluster.start_master("--agent-ping-timeout", "10")
    flags = ("cpus:2;mem:1024;disk:100;ports:[31000-31009]", *AGENT_FLAGS,
             "--docker-socket", dockerd.socket)
    agent = cluster.start_agent("agent1", *flags)
    (registered,) = cluster.wait_agents(1)
    agent_id = registered["id"]
    client = dockerd.client()
    try:
        with running(cluster) as (sched, driver, framework_id):
            ender = in_image(task("d-ender", "while [ ! -e go ]; do sleep 0.05; done; exit 5",
                                  "cpus:0.1;mem:32"))
            sched.submit(driver, in_image(task("d-survivor", "sleep 300", "cpus:0.1;mem:32")),
                         ender)
            sched.state_of("d-survivor", "TASK_RUNNING")
            sched.state_of("d-ender", "TASK_RUNNING")
            agent.kill()
            # An orphan: created for this agent, owned by no task it checkpointed.
            orphan = client.containers.create(IMAGE, ["sleep", "300"], labels={
                "mensa.container_id": "orphan-1", "mensa.agent_id": agent_id,
                "mensa.framework_id": framework_id, "mensa.task_id": "nobody"})
            [box] = list(cluster.root.glob("agent1/**/d-ender/runs/latest"))
            (box / "go").touch()
            wait_until(lambda: any(c.status == "exited" for c in client.containers.list(
                all=True, filters={"label": "mensa.task_id=d-ender"})), what="d-ender to exit")
            [survivor] = client.containers.list(filters={"label": "mensa.task_id=d-survivor"})

            restarted = cluster.start_agent("agent1", *flags)
            wait_until(lambda: restarted.endpoints().get("agent_id") == agent_id,
                       what="the restarted agent to register with its old id")
            failed = sched.state_of("d-ender", "TASK_FAILED")
            assert failed[3] == "Command exited with status 5"
            wait_until(lambda: not client.containers.list(
                all=True, filters={"id": orphan.id}), what="the orphan to be removed")
            assert cluster.tasks(framework_id)["d-survivor"] == "TASK_RUNNING"
            survivor.reload()
            assert survivor.status == "running"
            driver.kill_task("d-survivor")
            sched.state_of("d-survivor", "TASK_KILLED")
            wait_until(lambda: not client.containers.list(
                filters={"label": "mensa.task_id=d-survivor"}), what="the survivor to stop")
    finally:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and dockerd.remove_mensa_containers():
            time.sleep(0.1)
        client.close()
