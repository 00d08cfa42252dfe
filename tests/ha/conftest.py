"""A real ZooKeeper ensemble for the high-availability tests (no fake ZooKeeper anywhere).

``zk_ensemble`` is one 3-node ensemble on 127.0.0.1 for the whole session (Debian's zookeeper,
started by deploy/zookeeper.py). Without java or ZooKeeper the tests are skipped with the reason,
except under ``CI=true``, where that is a failure. Every test gets its own chroot (``zk_path``,
``zk_uri``), so tests never see each other's znodes; a test that SIGKILLs ZooKeeper nodes gets
them restarted after it, so the next test finds all three serving.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ha_cluster import HACluster

from mensa.deploy.zookeeper import ZooKeeperEnsemble, zookeeper_missing

ZK_SESSION_TIMEOUT = 2.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_zookeeper() -> None:
    """Skips the test (fails it under CI=true) when java or Debian's zookeeper is missing."""
    why = zookeeper_missing()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"ZooKeeper is required under CI: {why}", pytrace=False)
    pytest.skip(f"ZooKeeper is not available: {why}")


@pytest.fixture(scope="session")
def zk_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """Three ZooKeeper servers on 127.0.0.1, shared by the session; stopped by pid at its end."""
    require_zookeeper()
    ensemble = ZooKeeperEnsemble(tmp_path_factory.mktemp("zookeeper"), size=3)
    try:
        yield ensemble
    finally:
        ensemble.stop()


@pytest.fixture
def zk_path(zk_ensemble: ZooKeeperEnsemble, request: pytest.FixtureRequest) -> Iterator[str]:
    """A znode path of this test's own (``/t-<test name>-<random>``), removed after it; any
    ZooKeeper node the test killed is started again."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    path = f"/t-{name}-{uuid.uuid4().hex[:8]}"
    yield path
    dead = [node.index for node in zk_ensemble.nodes if not node.alive()]
    for n in dead:
        zk_ensemble.start(n, wait=False)
    if dead:
        zk_ensemble.wait_serving(range(zk_ensemble.size))
    client = connect(zk_ensemble.connect_string)
    try:
        client.delete(path, recursive=True)
    except Exception:  # Already gone, or a node the test left behind vanished meanwhile.
        pass
    finally:
        close(client)


@pytest.fixture
def zk_uri(zk_ensemble: ZooKeeperEnsemble, zk_path: str) -> str:
    """``zk://<all three servers><zk_path>``."""
    return zk_ensemble.uri(zk_path)


@pytest.fixture
def zk_client(zk_ensemble: ZooKeeperEnsemble) -> Iterator[Any]:
    """A started kazoo client on the ensemble, closed after the test."""
    client = connect(zk_ensemble.connect_string)
    yield client
    close(client)


def connect(hosts: str, timeout: float = ZK_SESSION_TIMEOUT) -> Any:
    """Returns a started KazooClient on ``hosts`` (short session timeout, like the tests')."""
    from kazoo.client import KazooClient

    client = KazooClient(hosts=hosts, timeout=timeout)
    client.start(timeout=10)
    return client


def close(client: Any) -> None:
    try:
        client.stop()
        client.close()
    except Exception:  # Closing must not mask what the test found.
        pass


@pytest.fixture
def zk_connect(zk_ensemble: ZooKeeperEnsemble) -> Iterator[Callable[..., Any]]:
    """A factory of started kazoo clients (on the ensemble unless ``hosts`` is given), each
    closed after the test; one client per simulated contender, so closing it ends its session."""
    clients: list[Any] = []

    def make(hosts: str | None = None, timeout: float = ZK_SESSION_TIMEOUT) -> Any:
        client = connect(hosts or zk_ensemble.connect_string, timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        close(client)


@pytest.fixture
def ha(tmp_path: Path, zk_uri: str, request: pytest.FixtureRequest) -> Iterator[HACluster]:
    """Masters and agents contending through the test's ZooKeeper path (see ha_cluster.py)."""
    cluster = HACluster(tmp_path, zk_uri)
    yield cluster
    cluster.shutdown()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.dump_logs())
