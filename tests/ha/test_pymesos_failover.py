"""pymesos, unmodified, given a ``zk://`` master URI: it reads the leader's znode as it would
Mesos's, subscribes over HTTP, and after SIGKILL of the leading master follows the new leader
with its framework id, its task still running. Given a standby's address instead, it follows
the standby's 307 to the leader."""

from __future__ import annotations

import pytest
from ha_cluster import HACluster
from mensa_cluster import wait_until
from pymesos_process import PymesosScheduler

pytest.importorskip("pymesos", reason="pymesos is installed by deploy/install_pymesos.sh")


def test_pymesos_follows_the_leader_through_zookeeper(ha: HACluster) -> None:
    for name in ("m1", "m2"):
        ha.start_master(name)
    first = ha.wait_leader()
    ha.start_agent("a1")
    agent_id = wait_until(lambda: ha.state()["agents"], what="an agent")[0]["id"]

    sched = PymesosScheduler(ha.zk_uri, "pm-ha", ha.root)
    try:
        registered = sched.event("registered", timeout=30)
        framework_id = registered["framework_id"]
        assert registered["master"]["port"] == ha.masters[first].endpoints()["http_port"]
        sched.send(op="launch", tasks=[{"id": "long", "cmd": "sleep 300", "cpus": 0.5, "mem": 32}])
        sched.event("update", task_id="long", state="TASK_RUNNING")

        # Pointed at the standby's address instead, pymesos is redirected (307) to the leader.
        standby = next(n for n in ha.masters if n != first)
        redirected = PymesosScheduler(ha.http(standby).removeprefix("http://"), "pm-redirected", ha.root)
        try:
            got = redirected.event("registered", timeout=30)
            assert got["master"]["port"] == ha.masters[first].endpoints()["http_port"]
        finally:
            redirected.stop()

        ha.masters[first].kill()
        second = ha.wait_leader(other_than=first)
        mark = sched.mark()
        rereg = sched.event("reregistered", since=mark, timeout=30)
        assert rereg["master"]["port"] == ha.masters[second].endpoints()["http_port"]
        wait_until(lambda: [a["id"] for a in ha.state()["agents"]] == [agent_id], what="agent back")

        sched.send(op="reconcile", task_ids=["long"])
        assert sched.event("update", task_id="long", since=mark, timeout=30)["state"] == "TASK_RUNNING"
        sched.send(op="hold")
        sched.event("offers", since=mark, timeout=30)  # offers flow again from the new leader
        assert ha.tasks(framework_id) == {"long": "TASK_RUNNING"}
    finally:
        sched.stop()
