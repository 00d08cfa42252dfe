"""Process isolation through a real master, agent and the SDK: OOM reported, usage in /state."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from mensa_cluster import Cluster, wait_until
from mensa_recorder import running, task

from mensa.agent.containerizer.cgroups import detect
from mensa.proto import mensa_pb2


def agent_state(cluster: Cluster) -> dict:  # type: ignore[type-arg]
    agent = cluster.state()["agents"][0]
    with urllib.request.urlopen(f"http://127.0.0.1:{agent['port']}/state", timeout=5) as r:
        return json.load(r)  # type: ignore[no-any-return]


def test_oom_is_reported_and_usage_is_shown(cluster: Cluster) -> None:
    hierarchy, problems = detect("/sys/fs/cgroup")
    if hierarchy is None:
        pytest.skip(f"cgroups cannot be written here: {'; '.join(problems)}")
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]")
    cluster.wait_agents(1)
    with running(cluster) as (sched, driver, _):
        hog = task("hog", "python3 -c 'b = bytearray(300 * 1024 * 1024); print(len(b))'",
                   "cpus:0.5;mem:48")
        sched.submit(driver, hog, task("idle", "sleep 300"))
        failed = sched.state_of("hog", "TASK_FAILED")
        assert failed[4] == mensa_pb2.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY
        assert "OOM" in failed[3]
        sched.state_of("idle", "TASK_RUNNING")
        state = wait_until(lambda: (s := agent_state(cluster)) and
                           any("usage" in t for t in s["tasks"]) and s, what="usage in /state")
        [idle] = [t for t in state["tasks"] if t["id"] == "idle"]
        assert idle["usage"]["memory_bytes"] > 0
        assert state["containerizers"][-1]["isolation"].startswith("cgroups")


def test_command_health_check_runs_in_the_tasks_cgroup(cluster: Cluster) -> None:
    hierarchy, problems = detect("/sys/fs/cgroup")
    if hierarchy is None:
        pytest.skip(f"cgroups cannot be written here: {'; '.join(problems)}")
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]")
    cluster.wait_agents(1)
    with running(cluster) as (sched, driver, _):
        watched = task("watched", "sleep 300")
        check = watched.health_check
        check.type = mensa_pb2.HealthCheck.COMMAND
        # Healthy only where the check runs: inside the task's own cgroup, not the agent's.
        check.command.value = 'grep -q "/mensa/" /proc/self/cgroup'
        check.delay_seconds, check.interval_seconds, check.grace_period_seconds = 0.1, 0.2, 0.0
        sched.submit(driver, watched)
        update = sched.wait(lambda e: e[0] == "update" and e[1] == "watched" and e[2] == "TASK_RUNNING"
                            and e[4] == mensa_pb2.TaskStatus.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED)
        assert update[5] is True, update
        state = wait_until(lambda: (s := agent_state(cluster)) and s["tasks"] and s,
                           what="the task in /state")
        assert state["tasks"][0]["healthy"] is True


def test_a_launch_that_fails_late_leaves_no_cgroup(tmp_path: Path) -> None:
    import asyncio
    import uuid

    from mensa.agent.containerizer.base import LaunchError, LaunchSpec
    from mensa.agent.containerizer.process import ProcessContainerizer
    from mensa.proto.resources import Resources

    hierarchy, problems = detect("/sys/fs/cgroup")
    if hierarchy is None:
        pytest.skip(f"cgroups cannot be written here: {'; '.join(problems)}")
    sandbox = tmp_path / "sb"
    (sandbox / "stdout").mkdir(parents=True)  # The output file cannot be opened.
    info = mensa_pb2.TaskInfo(name="t")
    info.resources.extend(Resources.parse("cpus:0.1;mem:32").to_proto())
    container_id = f"late-{uuid.uuid4().hex[:12]}"
    spec = LaunchSpec(container_id=container_id, framework_id="f", task_id="t",
                      executable="/bin/sh", argv=("/bin/sh", "-c", "true"), env={"PATH": "/bin"},
                      sandbox=str(sandbox), task_info=info)
    with pytest.raises(LaunchError):
        asyncio.run(ProcessContainerizer().launch(spec))
    assert not [p for p in Path("/sys/fs/cgroup").glob(f"*/mensa/{container_id}")]
