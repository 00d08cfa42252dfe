"""Master failover with real masters, agents, schedulers and a real 3-node ZooKeeper ensemble."""

from __future__ import annotations

import os
import queue
import signal
import time
from pathlib import Path

from ha_cluster import HACluster, redirect_of
from mensa_cluster import wait_until
from mensa_recorder import Recorder, task

from mensa.deploy.zookeeper import ZooKeeperEnsemble
from mensa.frameworks import SchedulerDriver
from mensa.proto import mensa_pb2
from mensa.proto.detector import fetch_master_info
from mensa.proto.transport import Endpoint
from mensa.proto.zk import parse_master_info

PA = mensa_pb2.FrameworkInfo.Capability.PARTITION_AWARE
RECONCILIATION = mensa_pb2.TaskStatus.REASON_RECONCILIATION


def scheduler(ha: HACluster, *, failover_timeout: float = 3600.0, framework_id: str = "",
              partition_aware: bool = True) -> tuple[Recorder, SchedulerDriver]:
    info = mensa_pb2.FrameworkInfo(name="ha", user="root", failover_timeout=failover_timeout)
    if framework_id:
        info.id.value = framework_id
    if partition_aware:
        info.capabilities.add(type=PA)
    sched = Recorder()
    driver = SchedulerDriver(sched, info, ha.zk_uri, zk_session_timeout=ha.session_timeout,
                             min_master_silence=2.0)
    driver.start()
    return sched, driver


def reconcile(sched: Recorder, driver: SchedulerDriver, task_ids: list[str]) -> dict[str, str]:
    """Reconciles ``task_ids`` (all live tasks when empty) and returns the state each was
    reported in by that reconciliation."""
    since = len(sched.seen)
    driver.reconcile_tasks([mensa_pb2.TaskStatus(task_id=mensa_pb2.TaskID(value=t),
                                                 state=mensa_pb2.TASK_STAGING) for t in task_ids])
    wanted = set(task_ids)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = {e[1]: e[2] for e in sched.seen[since:] if e[0] == "update" and e[4] == RECONCILIATION}
        if wanted and wanted <= set(got):
            return got
        if not wanted and got and time.monotonic() > deadline - 18:
            return got  # an implicit reconciliation: whatever arrived within two seconds
        try:
            sched.seen.append(sched.events.get(timeout=0.1))
        except queue.Empty:
            continue
    raise AssertionError(f"reconciliation of {sorted(wanted)} unanswered; seen {sched.seen[since:]}")


def test_one_master_leads_standbys_redirect_and_the_znodes_read_like_mesos(
        ha: HACluster, zk_client, zk_path: str) -> None:
    for name in ("m1", "m2", "m3"):
        ha.start_master(name)
    leader = ha.wait_leader()
    standbys = [n for n in ha.masters if n != leader]
    children = wait_until(lambda: len(c := sorted(
        n for n in zk_client.get_children(zk_path) if n.startswith("json.info_"))) == 3 and c,
        what="three contenders")
    infos = [parse_master_info(zk_client.get(f"{zk_path}/{c}")[0]) for c in children]
    leader_port = ha.masters[leader].endpoints()["http_port"]
    assert infos[0].address.port == leader_port  # the lowest sequence leads, as in Mesos
    for name in standbys:
        # A standby answers 503 until it has read who leads, then redirects there.
        _status, location = wait_until(lambda n=name: (r := redirect_of(f"{ha.http(n)}/state?x=1"))[0] == 307
                                      and r, what="a redirect")
        assert location == f"http://127.0.0.1:{leader_port}/state?x=1"
        zmq_port = ha.masters[name].endpoints()["zmq_port"]
        answer = fetch_master_info(Endpoint("127.0.0.1", zmq_port))
        assert not answer.leading and answer.leader.address.port == leader_port
    assert ha.health(leader)["leading"] is True


def test_leader_killed_while_tasks_launch_a_standby_takes_over_and_nothing_is_lost(
        ha: HACluster) -> None:
    for name in ("m1", "m2", "m3"):
        ha.start_master(name)
    first = ha.wait_leader()
    for name in ("a1", "a2"):
        ha.start_agent(name)
    agents = {a["id"] for a in wait_until(lambda: len(ha.state()["agents"]) == 2 and ha.state()["agents"],
                                          what="two agents")}
    sched, driver = scheduler(ha)
    try:
        framework_id = sched.wait(lambda e: e[0] == "registered")[1]
        ids = [f"t{i}" for i in range(12)]
        sched.submit(driver, *(task(t, "sleep 300", "cpus:0.25;mem:32") for t in ids[:6]))
        for t in ids[:3]:
            sched.state_of(t, "TASK_RUNNING")
        # Kill the leader while the rest are being launched.
        sched.submit(driver, *(task(t, "sleep 300", "cpus:0.25;mem:32") for t in ids[6:]))
        ha.masters[first].kill()
        second = ha.wait_leader(other_than=first)
        assert second != first
        ha.wait_agents(agents)  # the same agent ids re-registered with the new leader
        sched.wait(lambda e: e[0] == "reregistered" or (e[0] == "registered" and e[1] == framework_id))
        # Tasks whose launch was lost with the old leader are reconciled; the rest run.
        states = reconcile(sched, driver, ids)
        assert all(s in ("TASK_RUNNING", "TASK_STAGING", "TASK_STARTING", "TASK_GONE", "TASK_UNKNOWN",
                         "TASK_DROPPED") for s in states.values()), states
        assert all(states[t] == "TASK_RUNNING" for t in ids[:3]), states
        # The scheduler keeps getting offers: relaunch whatever was lost, then everything runs.
        lost = [t for t, s in states.items() if s not in ("TASK_RUNNING", "TASK_STAGING", "TASK_STARTING")]
        sched.submit(driver, *(task(t, "sleep 300", "cpus:0.25;mem:32") for t in lost))
        wait_until(lambda: all(s == "TASK_RUNNING" for s in ha.tasks(framework_id).values())
                   and len(ha.tasks(framework_id)) == len(ids), what="all twelve tasks running")
        # Implicit reconciliation names every task, RUNNING.
        implicit = reconcile(sched, driver, [])
        assert implicit == dict.fromkeys(ids, "TASK_RUNNING")
    finally:
        driver.stop()
        driver.join(10)


def test_zookeeper_node_killed_the_cluster_keeps_working(
        ha: HACluster, zk_ensemble: ZooKeeperEnsemble) -> None:
    for name in ("m1", "m2"):
        ha.start_master(name)
    ha.wait_leader()
    ha.start_agent("a1")
    agent_ids = {a["id"] for a in wait_until(lambda: ha.state()["agents"], what="an agent")}
    sched, driver = scheduler(ha)
    try:
        sched.wait(lambda e: e[0] == "registered")
        sched.submit(driver, task("before", "sleep 300", "cpus:0.5;mem:32"))
        sched.state_of("before", "TASK_RUNNING")
        victim = zk_ensemble.leader_index()
        assert victim is not None
        zk_ensemble.kill(victim)
        # One master leads again (the same or the other); the agent and the task are there.
        ha.wait_leader()
        ha.wait_agents(agent_ids)
        # A launch racing the failover (an offer rescinded as the leader paused) is dropped, and
        # retried under a new id, as any scheduler would; one of them runs.
        launched = None
        for attempt in ("after", "after-2", "after-3"):
            sched.submit(driver, task(attempt, "sleep 300", "cpus:0.5;mem:32"))
            outcome = sched.wait(lambda e, t=attempt: e[0] == "update" and e[1] == t and e[2] in (
                "TASK_RUNNING", "TASK_DROPPED", "TASK_LOST", "TASK_GONE", "TASK_ERROR"), timeout=40)
            if outcome[2] == "TASK_RUNNING":
                launched = attempt
                break
        assert launched is not None, sched.seen
        framework_id = sched.wait(lambda e: e[0] == "registered")[1]
        both = {"before": "TASK_RUNNING", launched: "TASK_RUNNING"}
        wait_until(lambda: {t: ha.tasks(framework_id).get(t) for t in both} == both,
                   what="both tasks running at the leader")
    finally:
        driver.stop()
        driver.join(10)


def test_scheduler_restarted_within_its_failover_timeout_keeps_its_tasks_and_past_it_loses_them(
        ha: HACluster) -> None:
    ha.start_master("m1")
    ha.wait_leader()
    ha.start_agent("a1")
    wait_until(lambda: ha.state()["agents"], what="an agent")
    sched, driver = scheduler(ha, failover_timeout=4.0)
    framework_id = sched.wait(lambda e: e[0] == "registered")[1]
    pid_file = ha.root / "keep.pid"
    sched.submit(driver, task("keep", f"echo $$ > {pid_file}; exec sleep 300", "cpus:0.5;mem:32"))
    sched.state_of("keep", "TASK_RUNNING")
    driver.abort()  # the scheduler dies: no TEARDOWN
    driver.join(10)

    sched, driver = scheduler(ha, failover_timeout=4.0, framework_id=framework_id)
    try:
        sched.wait(lambda e: e[0] == "registered" and e[1] == framework_id)
        assert reconcile(sched, driver, ["keep"]) == {"keep": "TASK_RUNNING"}
        assert _alive(int(pid_file.read_text()))
    finally:
        driver.abort()
        driver.join(10)
    # Past the failover timeout the framework is removed and its task killed.
    def removed() -> bool:
        state = ha.state()
        return any(f["id"] == framework_id for f in state["completed_frameworks"])
    wait_until(removed, timeout=30, what="the framework removed after its failover timeout")
    wait_until(lambda: not _alive(int(pid_file.read_text())), timeout=20, what="the task killed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_zookeeper_down_at_start_is_retried_and_a_garbage_znode_does_not_stall_the_election(
        ha: HACluster, tmp_path: Path) -> None:
    zk = ZooKeeperEnsemble(tmp_path / "late-zk", size=1, start=False)
    try:
        ha.zk_uri = zk.uri("/mensa")
        master = ha.start_master("m1")
        # No ZooKeeper: the master serves HTTP, leads nothing, and says so.
        wait_until(lambda: ha.health("m1")["role"] == "standby", what="a standby without ZooKeeper")
        status, _ = redirect_of(f"{ha.http('m1')}/state")
        assert status == 503
        zk.start_all()
        from kazoo.client import KazooClient

        client = KazooClient(hosts=zk.connect_string)
        client.start(timeout=10)
        try:
            # A znode with garbage data, older than any master's, must not win the election.
            client.create("/mensa/json.info_", b"{not json", ephemeral=True, sequence=True,
                          makepath=True)
            assert ha.wait_leader() == "m1"
        finally:
            client.stop()
            client.close()
        assert master.alive()
    finally:
        zk.stop()


def test_an_unreachable_agent_that_returns_gets_its_partition_aware_tasks_back(ha: HACluster) -> None:
    ha.start_master("m1")
    ha.wait_leader()
    agent = ha.start_agent("a1")
    [agent_info] = wait_until(lambda: ha.state()["agents"], what="an agent")
    sched, driver = scheduler(ha, partition_aware=True)
    try:
        framework_id = sched.wait(lambda e: e[0] == "registered")[1]
        sched.submit(driver, task("t1", "sleep 300", "cpus:0.5;mem:32"))
        sched.state_of("t1", "TASK_RUNNING")
        agent.signal(signal.SIGSTOP)  # a partition: the agent answers no pings
        try:
            sched.state_of("t1", "TASK_UNREACHABLE", timeout=20)
            sched.wait(lambda e: e[0] == "agent_lost" and e[1] == agent_info["id"])
            assert reconcile(sched, driver, ["t1"]) == {"t1": "TASK_UNREACHABLE"}
        finally:
            agent.signal(signal.SIGCONT)
        # The agent notices the silence, re-registers with its id, and the task is back.
        sched.wait(lambda e: e[0] == "update" and e[1] == "t1" and e[2] == "TASK_RUNNING"
                   and e[4] == mensa_pb2.TaskStatus.REASON_AGENT_REREGISTERED, timeout=30)
        ha.wait_agents({agent_info["id"]})
        assert ha.tasks(framework_id) == {"t1": "TASK_RUNNING"}
        assert reconcile(sched, driver, []) == {"t1": "TASK_RUNNING"}
    finally:
        driver.stop()
        driver.join(10)


def test_tasks_of_an_agent_that_never_returns_after_a_failover_are_reported_unreachable(
        ha: HACluster) -> None:
    for name in ("m1", "m2"):
        ha.start_master(name)
    first = ha.wait_leader()
    for name in ("a1", "a2"):
        ha.start_agent(name)
    wait_until(lambda: len(ha.state()["agents"]) == 2, what="two agents")
    sched, driver = scheduler(ha, partition_aware=True)
    try:
        sched.wait(lambda e: e[0] == "registered")
        sched.submit(driver, task("stays", "sleep 300", "cpus:0.5;mem:32"), hostname="a1")
        sched.submit(driver, task("stranded", "sleep 300", "cpus:0.5;mem:32"), hostname="a2")
        sched.state_of("stays", "TASK_RUNNING")
        sched.state_of("stranded", "TASK_RUNNING")
        ha.agents["a2"].kill()  # gone for good, with the leader
        ha.masters[first].kill()
        ha.wait_leader(other_than=first)
        # The SDK reconciles by itself after re-subscribing; the new leader answers for the
        # stranded task once a2 has missed --agent-reregister-timeout (10 s here).
        sched.wait(lambda e: e[0] == "update" and e[1] == "stranded" and e[2] == "TASK_UNREACHABLE",
                   timeout=40)
        assert reconcile(sched, driver, ["stays"]) == {"stays": "TASK_RUNNING"}
    finally:
        driver.stop()
        driver.join(10)
