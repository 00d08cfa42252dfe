"""The scheduler SDK and the CLI follow the leading master through a real ZooKeeper ensemble:
two real masters contend (``mensa master --zk``), a SchedulerDriver given the zk:// URI
subscribes with the leader, and when the leader is SIGKILLed it re-subscribes with the new one
under the same framework id. ``mensa state`` finds the leader by zk:// and through a standby."""

from __future__ import annotations

import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mensa.deploy.processes import ManagedProcess, mensa_argv
from mensa.frameworks import DriverStatus, Scheduler, SchedulerDriver
from mensa.proto import mensa_pb2
from mensa.proto.detector import resolve_leader

pytestmark = pytest.mark.integration

SESSION_TIMEOUT = "2"
WAIT = 30.0  # a bound on a hang (a failover takes about the session timeout), never asserted


class Events(Scheduler):
    """Records (callback, master id) pairs."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[str, str]] = queue.Queue()

    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self.seen.put(("registered", master_info.id))

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self.seen.put(("reregistered", master_info.id))

    def disconnected(self, driver: Any) -> None:
        self.seen.put(("disconnected", ""))

    def wait(self, name: str) -> str:
        while True:
            try:
                got, master_id = self.seen.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no {name} within {WAIT:g}s") from None
            if got == name:
                return master_id


@pytest.fixture
def masters(zk_uri: str, tmp_path: Path) -> Iterator[list[ManagedProcess]]:
    procs: list[ManagedProcess] = []
    for name in ("m1", "m2"):
        work = tmp_path / name
        argv = mensa_argv("master", "--work-dir", str(work), "--port", "0", "--http-port", "0",
                          "--framework-heartbeat-interval", "1", "--zk", zk_uri,
                          "--zk-session-timeout", SESSION_TIMEOUT)
        proc = ManagedProcess(name, argv, work).start()
        proc.endpoints()
        procs.append(proc)
    yield procs
    for proc in procs:
        if proc.alive():
            proc.stop(grace=5.0)


def mensa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mensa_argv(*args), capture_output=True, text=True, timeout=60, check=False)


def test_driver_and_cli_follow_the_leader_across_a_sigkill(
    zk_uri: str, masters: list[ManagedProcess]
) -> None:
    leader = resolve_leader(zk_uri, timeout=WAIT)
    by_port = {p.endpoints()["zmq_port"]: p for p in masters}
    leading = by_port[leader.zmq.port]
    (standby,) = [p for p in masters if p is not leading]

    # The CLI: by zk://, and through the standby, which names the leader.
    for master in (zk_uri, f"127.0.0.1:{standby.endpoints()['zmq_port']}"):
        out = mensa("state", "--master", master, "--timeout", "10")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"master {leader.master_id} ")

    scheduler = Events()
    driver = SchedulerDriver(scheduler, mensa_pb2.FrameworkInfo(name="ha-sdk", user="root"),
                             zk_uri, zk_session_timeout=2.0, min_master_silence=3.0)
    driver.start()
    try:
        assert scheduler.wait("registered") == leader.master_id
        framework_id = driver.framework_id
        assert framework_id and driver.master == leader.zmq

        leading.kill()  # SIGKILL: its znode goes when its session expires
        scheduler.wait("disconnected")
        new_leader = scheduler.wait("reregistered")
        assert new_leader != leader.master_id
        assert driver.framework_id == framework_id  # the same framework, failed over
        assert driver.master is not None and driver.master.port == standby.endpoints()["zmq_port"]
    finally:
        driver.stop(failover=True)
        assert driver.join(timeout=10) is DriverStatus.STOPPED
