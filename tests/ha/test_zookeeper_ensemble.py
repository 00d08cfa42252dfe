"""deploy/zookeeper.py: real ZooKeeper servers on loopback, started and stopped by pid."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mensa.deploy.zookeeper import ZooKeeperEnsemble, ZooKeeperUnavailable, zookeeper_missing
from mensa.proto.zk import parse_zk_uri


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_ensemble_has_one_leader_and_serves_through_its_death(
        zk_ensemble: ZooKeeperEnsemble, zk_path: str, zk_connect: Callable[..., Any]) -> None:
    modes = sorted(str(zk_ensemble.mode(n)) for n in range(3))
    assert modes == ["follower", "follower", "leader"]
    leader = zk_ensemble.leader_index()
    assert leader is not None and zk_ensemble.mode(leader) == "leader"
    uri = parse_zk_uri(zk_ensemble.uri(zk_path))
    assert uri.hosts == zk_ensemble.connect_string and uri.path == zk_path
    assert len(zk_ensemble.connect_string.split(",")) == 3

    client = zk_connect()
    client.create(f"{zk_path}/before", b"1", makepath=True)
    old_pid = zk_ensemble.pid(leader)
    assert old_pid is not None
    zk_ensemble.kill(leader)
    assert not pid_alive(old_pid)
    assert zk_ensemble.mode(leader) is None
    zk_ensemble.wait_serving([n for n in range(3) if n != leader])
    new_leader = zk_ensemble.leader_index()
    assert new_leader is not None and new_leader != leader
    client.retry(client.create, f"{zk_path}/after", b"2")

    zk_ensemble.start(leader)
    assert zk_ensemble.mode(leader) == "follower"
    assert zk_ensemble.ruok(leader)
    assert sorted(client.get_children(zk_path)) == ["after", "before"]


def test_a_standalone_server_stops_by_pid_and_cleans_up(tmp_path: Path) -> None:
    with ZooKeeperEnsemble(tmp_path / "zk", size=1) as zk:
        assert zk.mode(0) == "standalone"
        assert zk.leader_index() == 0
        assert zk.uri("mensa") == f"zk://{zk.connect_string}/mensa"
        pid = zk.pid(0)
        assert pid is not None and pid_alive(pid)
        assert (tmp_path / "zk" / "node1" / "zoo.cfg").exists()
    assert not pid_alive(pid)
    assert zk.mode(0) is None
    assert not (tmp_path / "zk").exists()


def test_missing_zookeeper_names_the_package(tmp_path: Path) -> None:
    why = zookeeper_missing(tmp_path)
    assert why is not None and "apt-get install" in why and "zookeeper" in why
    with pytest.raises(ZooKeeperUnavailable, match="apt-get install"):
        ZooKeeperEnsemble(tmp_path / "zk", size=1, java_dir=tmp_path)


def test_a_size_of_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one node"):
        ZooKeeperEnsemble(tmp_path, size=0)
