"""The `mensa` command: help, `mensa state|agents|frameworks|tasks|top` tables and JSON, JSON logs."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mensa_cluster import Cluster, wait_until
from mensa_recorder import Launcher

from mensa.deploy.processes import mensa_argv
from mensa.frameworks import SchedulerDriver
from mensa.proto import mensa_pb2


def mensa(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mensa_argv(*args), capture_output=True, text=True, timeout=timeout, check=False)


def test_help_lists_every_command() -> None:
    out = mensa("--help")
    assert out.returncode == 0
    for command in ("master", "agent", "scheduler", "state", "agents", "frameworks", "tasks", "top", "local",
                    "bench"):
        assert command in out.stdout
    assert "run" in mensa("scheduler", "--help").stdout


def test_state_prints_agents_frameworks_and_tasks(cluster: Cluster) -> None:
    cluster.start_master("--log-format", "json")
    cluster.start_agent("agent1", "cpus:3;mem:1000;disk:10;ports:[31000-31001]")
    cluster.wait_agents(1)
    out = mensa("state", "--master", cluster.master_endpoint)
    assert out.returncode == 0, out.stderr
    assert "AGENTS (1)" in out.stdout
    row = next(line for line in out.stdout.splitlines() if "agent1" in line)
    assert "cpus=3 mem=1000" in row
    assert "FRAMEWORKS (0)" in out.stdout and "TASKS (0)" in out.stdout
    raw = mensa("state", "--master", cluster.http, "--json")
    assert json.loads(raw.stdout)["agents"][0]["hostname"] == "agent1"
    # The master was started with --log-format json: every log line is one JSON object.
    master = cluster.processes[0]
    assert master.log_path is not None
    lines = [json.loads(line) for line in master.log_path.read_text().splitlines() if line.strip()]
    assert any(entry["event"] == "master_started" for entry in lines)


def test_state_names_an_unreachable_master() -> None:
    out = mensa("state", "--master", "127.0.0.1:1", "--timeout", "0.5")
    assert out.returncode == 1
    assert "no answer from the master at 127.0.0.1:1" in out.stderr


def test_bad_flags_are_reported_without_a_traceback() -> None:
    out = mensa("agent", "--master", "127.0.0.1:5050", "--work-dir", "/tmp/x", "--resources", "cpus:-1")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "negative" in out.stderr


def test_state_with_a_bad_or_unreachable_zk_master_is_a_clear_error() -> None:
    out = mensa("state", "--master", "zk://127.0.0.1/mensa")
    assert out.returncode == 1
    assert out.stderr.startswith("mensa state: bad --master 'zk://127.0.0.1/mensa'")
    assert "must be HOST:PORT" in out.stderr and "Traceback" not in out.stderr
    out = mensa("state", "--master", "zk://127.0.0.1:1/mensa", "--timeout", "0.5")
    assert out.returncode == 1
    # One line, without kazoo's connection retries.
    assert out.stderr == "mensa state: ZooKeeper at 127.0.0.1:1 did not answer within 0.5s\n"


def test_state_finds_the_leader_through_zookeeper(cluster: Cluster, tmp_path: Path) -> None:
    from kazoo.client import KazooClient

    from mensa.deploy.zookeeper import ZooKeeperEnsemble, zookeeper_missing
    from mensa.proto.detector import fetch_master_info
    from mensa.proto.transport import Endpoint
    from mensa.proto.zk import MASTER_PREFIX, master_info_json

    if (why := zookeeper_missing()) is not None:
        pytest.skip(f"ZooKeeper is not available: {why}")
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:500;disk:10")
    cluster.wait_agents(1)
    info = fetch_master_info(Endpoint.parse(cluster.master_endpoint)).master_info
    with ZooKeeperEnsemble(tmp_path / "zk", size=1) as zk:
        uri = zk.uri("/mensa")
        out = mensa("state", "--master", uri, "--timeout", "5")
        assert out.returncode == 1 and "no masters have ever run under" in out.stderr
        client = KazooClient(hosts=zk.connect_string)
        client.start(timeout=10)
        try:
            # The election, as a contending master does it: the lowest json.info_ znode leads.
            client.create(f"/mensa/{MASTER_PREFIX}", b"garbage", ephemeral=True, sequence=True,
                          makepath=True)
            client.create(f"/mensa/{MASTER_PREFIX}", master_info_json(info), ephemeral=True,
                          sequence=True)
            out = mensa("state", "--master", uri, "--timeout", "5")
            assert out.returncode == 0, out.stderr
            assert f"master {info.id} " in out.stdout and "AGENTS (1)" in out.stdout
        finally:
            client.stop()
            client.close()
        out = mensa("state", "--master", uri, "--timeout", "5")  # its session ended: no leader
        assert out.returncode == 1 and "no master leads under" in out.stderr


# ``mensa agents|frameworks|tasks|top`` against a live master, an agent and a running task.


@pytest.fixture
def busy(cluster: Cluster) -> Iterator[tuple[Cluster, str]]:
    """A master, agent1 (cpus:2;mem:1024, rack:r1) and framework "sleepers" with task "sleeper"
    running and task "quick" finished; yields the cluster and the framework id."""
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100", "--attributes", "rack:r1")
    cluster.wait_agents(1)
    launcher = Launcher({"sleeper": "sleep 60", "quick": "true"}, "cpus:0.5;mem:128", "-name")
    driver = SchedulerDriver(launcher, mensa_pb2.FrameworkInfo(name="sleepers", user="root"),
                             cluster.master_endpoint)
    driver.start()
    try:
        framework_id: str = wait_until(lambda: driver.framework_id, what="registration")
        launcher.wait_state("sleeper", "TASK_RUNNING")
        launcher.wait_state("quick", "TASK_FINISHED")
        both = {"sleeper": "TASK_RUNNING", "quick": "TASK_FINISHED"}
        wait_until(lambda: cluster.tasks(framework_id) == both, what="the master to record both tasks")
        yield cluster, framework_id
    finally:
        driver.stop()
        driver.join()


def rows(text: str, needle: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if needle in line]


def test_agents_as_a_table_and_as_json(busy: tuple[Cluster, str]) -> None:
    cluster, _ = busy
    out = mensa("agents", "--master", cluster.master_endpoint)
    assert out.returncode == 0, out.stderr
    header, *lines = out.stdout.splitlines()
    assert header.split() == ["ID", "HOSTNAME", "ADDRESS", "CPUS", "MEM", "DISK", "TASKS", "ATTRIBUTES",
                              "REGISTERED"]
    [line] = lines
    for part in ("agent1", "0.5/2 25%", "128 MiB/1 GiB 12%", "rack:r1", "s ago"):
        assert part in line
    [agent] = json.loads(mensa("agents", "--master", cluster.http, "--json").stdout)
    figures = ("hostname", "cpus_used", "cpus_total", "mem_used", "mem_total", "tasks")
    assert [agent[k] for k in figures] == ["agent1", 0.5, 2.0, 128.0, 1024.0, 1]
    assert agent["attributes"] == {"rack": "r1"} and agent["address"].startswith("127.0.0.1:")


def test_frameworks_as_a_table_and_as_json(busy: tuple[Cluster, str]) -> None:
    cluster, framework_id = busy
    out = mensa("frameworks", "--master", cluster.master_endpoint)
    assert out.returncode == 0, out.stderr
    [row] = rows(out.stdout, framework_id)
    assert row[:5] == [framework_id, "sleepers", "*", "yes", "1"]
    assert row[5:9] == ["0.5", "25%", "128", "MiB"]
    assert row[-1].endswith("%")
    [fw] = json.loads(mensa("frameworks", "--master", cluster.master_endpoint, "--json").stdout)
    assert (fw["id"], fw["name"], fw["roles"], fw["active"], fw["tasks"], fw["cpus_used"]) == \
        (framework_id, "sleepers", ["*"], True, 1, 0.5)
    # The allocator's view: offers it holds count towards a framework's share.
    assert 0.25 <= fw["dominant_share"] <= 1 and set(fw["dominant_shares"]) == {"*"}


def test_tasks_with_filters_as_a_table_and_as_json(busy: tuple[Cluster, str]) -> None:
    cluster, framework_id = busy

    def tasks(*args: str) -> subprocess.CompletedProcess[str]:
        return mensa("tasks", "--master", cluster.master_endpoint, *args)

    out = tasks()
    assert out.returncode == 0, out.stderr
    header, *lines = out.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "FRAMEWORK", "AGENT", "STATE", "HEALTH", "CPUS", "MEM", "UPDATED"]
    assert [line.split()[:8] for line in lines] == \
        [["sleeper", "sleeper-name", "sleepers", "agent1", "RUNNING", "-", "0.5", "128"]]
    assert {r[0] for r in rows(tasks("--completed").stdout, "sleepers")} == {"sleeper", "quick"}
    assert [r[4] for r in rows(tasks("--state", "finished").stdout, "sleepers")] == ["FINISHED"]
    chosen = tasks("--state", "RUNNING,STAGING", "--framework", "sleepers", "--agent", "agent1", "--json")
    [task] = json.loads(chosen.stdout)
    assert task == {**task, "id": "sleeper", "name": "sleeper-name", "framework_id": framework_id,
                    "framework_name": "sleepers", "agent_hostname": "agent1", "state": "TASK_RUNNING",
                    "healthy": None, "cpus": 0.5, "mem": 128.0}
    assert isinstance(task["last_status_time"], float)
    by_id = json.loads(tasks("--framework", framework_id, "--agent", task["agent_id"], "--json",
                             "--completed").stdout)
    assert {t["id"]: t["state"] for t in by_id} == {"sleeper": "TASK_RUNNING", "quick": "TASK_FINISHED"}
    assert json.loads(tasks("--state", "KILLED", "--json").stdout) == []

    missing = tasks("--framework", "nope")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "mensa tasks: no framework has the id or name 'nope'\n"
    bad = tasks("--state", "RUNING")
    assert bad.returncode == 1 and bad.stderr.startswith("mensa tasks: unknown task state 'RUNING' (one of ")
    assert "Traceback" not in bad.stderr


def test_top_prints_one_frame_or_several(busy: tuple[Cluster, str]) -> None:
    cluster, _ = busy
    once = mensa("top", "--master", cluster.master_endpoint, "--once")
    assert once.returncode == 0, once.stderr
    lines = once.stdout.splitlines()
    assert lines[0].startswith("mensa top  ") and "  agents 1  frameworks 1  master " in lines[0]
    assert "\x1b" not in once.stdout  # not a terminal: no escapes
    cpus = next(line for line in lines if line.startswith("CPUS"))
    assert "0.5/2 25%" in cpus
    assert "TASKS 2  RUNNING 1  FINISHED 1" in lines
    for section in ("TOP FRAMEWORKS BY DOMINANT SHARE", "TOP AGENTS BY USAGE", "RECENTLY CHANGED TASKS"):
        assert section in lines
    recent = [line for line in lines[lines.index("RECENTLY CHANGED TASKS") + 2:] if line]
    assert sorted(line.split()[2:6] for line in recent) == [["quick", "sleepers", "agent1", "FINISHED"],
                                                             ["sleeper", "sleepers", "agent1", "RUNNING"]]

    # Off a terminal, without --once or --iterations: one frame too.
    assert mensa("top", "--master", cluster.http).stdout.count("mensa top  ") == 1
    two = mensa("top", "--master", cluster.master_endpoint, "--iterations", "2", "--interval", "0.2")
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("mensa top  ") == 2 and two.stdout.count("RECENTLY CHANGED TASKS") == 2
    frames = mensa("top", "--master", cluster.master_endpoint, "--json", "--iterations", "2",
                   "--interval", "0.2")
    docs = [json.loads(line) for line in frames.stdout.splitlines()]
    assert len(docs) == 2 and all(d["error"] is None for d in docs)
    assert docs[0]["task_counts"] == {"TASK_RUNNING": 1, "TASK_FINISHED": 1}
    assert docs[0]["top_agents"][0]["hostname"] == "agent1"


def test_top_keeps_drawing_when_the_master_goes_away_and_ctrl_c_exits_cleanly(cluster: Cluster) -> None:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:1;mem:256;disk:10")
    cluster.wait_agents(1)
    # At most 60 s of frames, so the test cannot hang on a frame that never comes.
    top = subprocess.Popen(mensa_argv("top", "--master", cluster.master_endpoint, "--timeout", "0.5",
                                      "--iterations", "300", "--interval", "0.2"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert top.stdout is not None
        assert top.stdout.readline().startswith("mensa top  ")
        cluster.processes[0].stop()  # the master
        line = top.stdout.readline()
        while line and not line.startswith("! "):
            line = top.stdout.readline()
        # The leader's HTTP port refuses, then the master's ZeroMQ port does not answer.
        assert line.startswith("! no answer from ") and "showing data from" in line
        top.send_signal(signal.SIGINT)
        _, err = top.communicate(timeout=20)
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
    assert top.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize("command", ["agents", "frameworks", "tasks", "top"])
def test_views_name_an_unreachable_master_or_a_bad_address(command: str) -> None:
    out = mensa(command, "--master", "127.0.0.1:1", "--timeout", "0.5")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.startswith(f"mensa {command}: no answer from the master at 127.0.0.1:1")
    assert out.stderr.count("\n") == 1
    out = mensa(command, "--master", "http://127.0.0.1:1", "--timeout", "0.5")
    assert out.returncode == 1
    assert out.stderr.startswith(f"mensa {command}: no answer from http://127.0.0.1:1/state: ")
    assert out.stderr.count("\n") == 1
    out = mensa(command, "--master", "zk://127.0.0.1/mensa")
    assert out.returncode == 1 and out.stderr.startswith(f"mensa {command}: bad --master 'zk://127.0.0.1/mensa'")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
