"""Quota, weights and dynamic reservations through a live master: the CLI, the HTTP endpoints,
offers to a framework in the role, and persistence across a master restart."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from mensa_cluster import Cluster, wait_until
from mensa_recorder import Recorder, task

from mensa.deploy.processes import mensa_argv
from mensa.frameworks import SchedulerDriver
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources


def mensa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mensa_argv(*args), capture_output=True, text=True, timeout=30, check=False)


def nonzero(resources: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in resources.items() if value}


class OfferLog(Recorder):
    """A Recorder that also keeps every offer's resources."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[tuple[str, Resources]] = []

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        for offer in offers:
            self.offered.append((offer.allocation_info.role, Resources.from_proto(offer.resources)))
        super().resource_offers(driver, offers)


def test_quota_weights_and_reservations_through_a_live_master(cluster: Cluster) -> None:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:4;mem:2048;disk:100")
    [agent] = cluster.wait_agents(1)
    master = ["--master", cluster.master_endpoint]
    assert mensa("weights", "set", "ml=2", *master).returncode == 0
    out = mensa("quota", "set", "ml", "--guarantee", "cpus:1;mem:256", "--limit", "cpus:3", *master)
    assert out.returncode == 0, out.stderr
    assert "ml\tguarantee cpus:1;mem:256\tlimit cpus:3" in mensa("quota", "get", *master).stdout
    out = mensa("reserve", agent["id"], "cpus(ml):1;mem(ml):256", *master)
    assert out.returncode == 0, out.stderr
    bad = mensa("reserve", agent["id"], "cpus(ml):100", *master)
    assert bad.returncode == 1 and "409" in bad.stderr
    assert mensa("weights", "set", "ml=-1", *master).returncode == 1

    info = mensa_pb2.FrameworkInfo(name="ml-fw", user="root", roles=["ml"])
    info.capabilities.add(type=mensa_pb2.FrameworkInfo.Capability.MULTI_ROLE)
    sched = OfferLog()
    driver = SchedulerDriver(sched, info, cluster.master_endpoint)
    driver.start()
    try:
        framework_id = sched.wait(lambda e: e[0] == "registered")[1]
        wait_until(lambda: sched.offered, what="an offer to the ml framework")
        role, first = sched.offered[0]
        assert role == "ml"
        assert first.filter_roles(["ml"]) == Resources.parse("cpus(ml):1;mem(ml):256")
        assert first.scalar("cpus") <= 3  # the quota limit holds
        sched.submit(driver, task("on-reserved", "sleep 60", "cpus(ml):1;mem(ml):128"))
        sched.state_of("on-reserved", "TASK_RUNNING")
        busy = mensa("unreserve", agent["id"], "cpus(ml):1;mem(ml):256", *master)
        assert busy.returncode == 1 and "409" in busy.stderr
        state = cluster.state()
        assert nonzero(state["reservations"][agent["id"]]) == {"cpus": 1.0, "mem": 256.0}
        [ml] = [r for r in state["roles"] if r["name"] == "ml"]
        assert ml["weight"] == 2.0 and nonzero(ml["quota"]["limit"]) == {"cpus": 3.0}
        assert framework_id in ml["frameworks"]
    finally:
        driver.stop()
        driver.join(10)

    # A restarted master keeps them (its registry is in --work-dir).
    master_proc = cluster.processes[0]
    port = cluster.master_endpoint.rsplit(":", 1)[1]
    master_proc.stop()
    cluster.processes.remove(master_proc)
    cluster.start_master("--port", port)  # where the agent looks for it
    cluster.wait_agents(1)
    with urllib.request.urlopen(f"{cluster.http}/weights", timeout=5) as response:
        assert json.load(response) == [{"role": "ml", "weight": 2.0}]
    with urllib.request.urlopen(f"{cluster.http}/quota", timeout=5) as response:
        assert [q["role"] for q in json.load(response)["infos"]] == ["ml"]
    wait_until(lambda: nonzero(cluster.state()["reservations"].get(agent["id"], {}))
               == {"cpus": 1.0, "mem": 256.0},
               what="the reservation applied to the re-registered agent")
