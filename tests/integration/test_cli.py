"""The `mensa` command: help, `mensa state` tables, JSON logs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mensa_cluster import Cluster

from mensa.deploy.processes import mensa_argv


def mensa(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mensa_argv(*args), capture_output=True, text=True, timeout=timeout, check=False)


def test_help_lists_every_command() -> None:
    out = mensa("--help")
    assert out.returncode == 0
    for command in ("master", "agent", "scheduler", "state", "local", "bench"):
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
