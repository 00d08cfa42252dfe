"""The batch framework with a real ZooKeeper ensemble: its state store (writes, fencing, reloads),
instances electing a leader (a standby takes over a SIGKILLed leader's runs) and runs that live
through a master failover, each checked to have run once (one sandbox per task attempt)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ha_cluster import HACluster
from mensa_cluster import wait_until

from mensa.deploy.job_cli import BatchClient
from mensa.deploy.job_views import JobCliError
from mensa.deploy.processes import ManagedProcess, mensa_argv
from mensa.frameworks.store import Drop, Put, StoreError, ZkStore, ZkText


def test_records_round_trip_as_one_znode_each(zk_client: Any, zk_path: str) -> None:
    store = ZkStore(zk_client, f"{zk_path}/state")
    store.commit([Put("job", "nightly", {"id": "nightly"}), Put("run", "nightly.1", {"status": "ACTIVE"})])
    store.put("run", "nightly.1", {"status": "SUCCESS"})
    store.put("run", "nightly.2", {"status": "ACTIVE"})
    store.forget("run", "nightly.2")
    store.forget("run", "never-written")

    again = ZkStore(zk_client, f"{zk_path}/state").load()

    assert again == {"job": {"nightly": {"id": "nightly"}}, "run": {"nightly.1": {"status": "SUCCESS"}}}
    data, _stat = zk_client.get(f"{zk_path}/state/job/nightly")
    assert data == b'{"id":"nightly"}'


def test_a_batch_applies_in_order_across_transactions(zk_client: Any, zk_path: str) -> None:
    store = ZkStore(zk_client, f"{zk_path}/state")
    big = {"blob": "x" * 100_000}
    changes: list[Put | Drop] = [Put("run", f"r{n}", big) for n in range(12)]  # over one transaction
    changes += [Drop("run", "r0"), Put("run", "r1", {"small": True})]
    store.commit(changes)

    records = ZkStore(zk_client, f"{zk_path}/state").load()["run"]
    assert sorted(records) == sorted(f"r{n}" for n in range(1, 12))
    assert records["r1"] == {"small": True}


def test_writes_survive_someone_else_changing_the_records(zk_client: Any, zk_path: str,
                                                          zk_connect: Callable[..., Any]) -> None:
    store = ZkStore(zk_client, f"{zk_path}/state")
    store.load()
    store.put("job", "a", {"v": 1})
    other = zk_connect()
    other.delete(f"{zk_path}/state/job/a")          # the store believes it exists
    other.create(f"{zk_path}/state/job/b", b"{}")   # the store believes it does not

    store.commit([Put("job", "a", {"v": 2}), Put("job", "b", {"v": 3})])

    assert ZkStore(other, f"{zk_path}/state").load() == {"job": {"a": {"v": 2}, "b": {"v": 3}}}


def test_a_writer_whose_fence_is_gone_writes_nothing(zk_client: Any, zk_path: str) -> None:
    zk_client.ensure_path(f"{zk_path}/leader")
    fence = zk_client.create(f"{zk_path}/leader/lock-", b"me", ephemeral=True, sequence=True)
    store = ZkStore(zk_client, f"{zk_path}/state", fence=lambda: fence)
    store.put("job", "a", {"v": 1})

    zk_client.delete(fence)  # as when the session expired and another instance leads
    with pytest.raises(StoreError, match="fence"):
        store.commit([Put("job", "a", {"v": 2}), Put("job", "b", {"v": 1})])

    assert ZkStore(zk_client, f"{zk_path}/state").load() == {"job": {"a": {"v": 1}}}


def test_an_unfenced_store_refuses_when_the_fence_is_unknown(zk_client: Any, zk_path: str) -> None:
    store = ZkStore(zk_client, f"{zk_path}/state", fence=lambda: None)
    with pytest.raises(StoreError, match="leadership"):
        store.put("job", "a", {})


def test_an_unreadable_record_is_reported_and_skipped(zk_client: Any, zk_path: str) -> None:
    store = ZkStore(zk_client, f"{zk_path}/state")
    store.put("job", "good", {"id": "good"})
    zk_client.create(f"{zk_path}/state/job/bad", b"{not json")

    assert store.load() == {"job": {"good": {"id": "good"}}}
    assert [path.rsplit("/", 1)[1] for path, _why in store.unreadable] == ["bad"]


def test_the_framework_id_znode(zk_client: Any, zk_path: str) -> None:
    text = ZkText(zk_client, f"{zk_path}/framework_id")
    assert text.read() is None
    text.write("fw-1")
    text.write("fw-2")
    assert ZkText(zk_client, f"{zk_path}/framework_id").read() == "fw-2"


# -- the framework: instances electing a leader, and a master failover --------------------------------

def start_batch(ha: HACluster, name: str, zk_uri: str) -> ManagedProcess:
    work = ha.root / name
    proc = ManagedProcess(name, mensa_argv(
        "batch", "--master", ha.zk_uri, "--zk", f"{zk_uri}/batch", "--zk-session-timeout",
        str(ha.session_timeout), "--work-dir", str(work), "--http-port", "0", "--log-level", "debug"),
        work).start()
    proc.endpoints()
    ha.processes.append(proc)
    return proc


def api_of(proc: ManagedProcess) -> BatchClient:
    return BatchClient(f"http://127.0.0.1:{proc.endpoints()['http_port']}")


def info(proc: ManagedProcess) -> dict[str, Any]:
    data: dict[str, Any] = api_of(proc).call("GET", "/info")
    return data


def leading_batch(procs: list[ManagedProcess]) -> ManagedProcess:
    def check() -> ManagedProcess | None:
        leaders = [p for p in procs if p.alive() and info(p)["leading"]]
        assert len(leaders) <= 1, "two batch instances lead at once"
        return leaders[0] if leaders else None
    return wait_until(check, timeout=30, what="a leading batch instance")


def sandboxes(root: Path, task_prefix: str) -> list[Path]:
    found = root.glob(f"agent*/agents/*/frameworks/*/executors/{task_prefix}*")
    return sorted(p for p in found if p.is_dir())


def run_of(api: BatchClient, job_id: str, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
    return run


def finished(api: BatchClient, job_id: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        run = run_of(api, job_id, run_id)
        return run if run["status"] in ("SUCCESS", "FAILED", "SKIPPED") else None
    return wait_until(check, timeout=timeout, what=f"run {run_id} of {job_id} to finish")


@pytest.fixture
def batch_ha(ha: HACluster) -> HACluster:
    ha.start_master("master1")
    ha.start_master("master2")
    ha.wait_leader()
    for name in ("agent1", "agent2"):
        ha.start_agent(name, "cpus:2;mem:2048;disk:100;ports:[31000-31009]")
    wait_until(lambda: len(ha.state()["agents"]) == 2, what="two agents")
    return ha


def test_one_batch_instance_leads_and_a_standby_takes_its_runs_over(batch_ha: HACluster, zk_uri: str,
                                                                     tmp_path: Path) -> None:
    ha = batch_ha
    procs = [start_batch(ha, "batch1", zk_uri), start_batch(ha, "batch2", zk_uri)]
    leader = leading_batch(procs)
    [standby] = [p for p in procs if p is not leader]
    api = api_of(leader)
    # The standby names the leader once it has read the leader's znode, and sends API clients
    # there (BatchClient follows the 307).
    def named_leader() -> Any:
        try:
            return api_of(standby).call("GET", "/leader")
        except JobCliError:
            return None  # it has not read the election's znodes yet
    named = wait_until(named_leader, what="the standby naming the leader")
    assert named == {"leader": info(leader)["address"]}
    gate = tmp_path / "gate"
    api_of(standby).call("POST", "/v1/jobs", {"id": "long", "run": {
        "cmd": f"while [ ! -e {gate} ]; do sleep 0.1; done; echo finished", "cpus": 0.1, "mem": 32}})
    run_id = api.call("POST", "/v1/jobs/long/runs", {})["id"]
    wait_until(lambda: [t["status"] for t in run_of(api, "long", run_id)["tasks"]] == ["TASK_RUNNING"],
               what="the task running")
    framework_id = info(leader)["frameworkId"]

    leader.kill()  # SIGKILL: its ZooKeeper session lingers for the session timeout
    gate.touch()
    assert leading_batch([standby]) is standby
    api = api_of(standby)
    run = finished(api, "long", run_id)

    assert run["status"] == "SUCCESS"
    assert [t["id"] for t in run["tasks"]] == [f"long.{run_id}.0.1"]
    assert info(standby)["frameworkId"] == framework_id
    assert len(sandboxes(ha.root, "long.")) == 1


def test_runs_in_flight_and_due_survive_a_master_failover(batch_ha: HACluster, zk_uri: str,
                                                           tmp_path: Path) -> None:
    ha = batch_ha
    proc = start_batch(ha, "batch1", zk_uri)
    leading_batch([proc])
    api = api_of(proc)
    gate = tmp_path / "gate"
    api.call("POST", "/v1/jobs", {"id": "long", "run": {
        "cmd": f"while [ ! -e {gate} ]; do sleep 0.1; done; echo finished", "cpus": 0.1, "mem": 32}})
    api.call("POST", "/v1/jobs", {"id": "later", "run": {"cmd": "echo later", "cpus": 0.1, "mem": 32}})
    in_flight = api.call("POST", "/v1/jobs/long/runs", {})["id"]
    wait_until(lambda: [t["status"] for t in run_of(api, "long", in_flight)["tasks"]] == ["TASK_RUNNING"],
               what="the task running")

    old = ha.wait_leader()
    ha.masters[old].kill()
    due = api.call("POST", "/v1/jobs/later/runs", {})["id"]  # asked for while no master leads
    gate.touch()
    ha.wait_leader(other_than=old)

    assert finished(api, "long", in_flight)["status"] == "SUCCESS"
    assert finished(api, "later", due)["status"] == "SUCCESS"
    assert [t["id"] for t in run_of(api, "long", in_flight)["tasks"]] == [f"long.{in_flight}.0.1"]
    assert len(sandboxes(ha.root, "long.")) == 1
    assert len(sandboxes(ha.root, "later.")) == 1
