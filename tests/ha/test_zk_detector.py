"""ZkDetector and resolve_leader against a real 3-node ZooKeeper ensemble.

Contending masters are simulated with kazoo: each holds an ephemeral sequential ``json.info_``
znode with a MasterInfo (with a zmq_endpoint) on a session of its own, so closing that session
is what a master's death looks like to ZooKeeper.
"""

from __future__ import annotations

import contextlib
import queue
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.exceptions import NoNodeError

from mensa.deploy.zookeeper import ZooKeeperEnsemble, four_letter, free_ports
from mensa.proto import mensa_pb2
from mensa.proto.detector import (
    FixedDetector,
    MasterUnreachable,
    ZkDetector,
    detector_for,
    resolve_leader,
)
from mensa.proto.transport import Endpoint
from mensa.proto.zk import MASTER_PREFIX, Leader, ZkUriError, master_info_json, parse_zk_uri

SESSION_TIMEOUT = 2.0
WAIT = 15.0  # generous: a bound on a hang, never a timing assertion

Connect = Callable[..., Any]


def master_info(master_id: str, zmq_port: int, http_port: int | None = None) -> mensa_pb2.MasterInfo:
    info = mensa_pb2.MasterInfo(id=master_id, zmq_endpoint=f"tcp://127.0.0.1:{zmq_port}")
    info.address.ip = "127.0.0.1"
    info.address.hostname = "localhost"
    info.address.port = http_port or zmq_port + 1
    return info


def contend(client: Any, path: str, info: mensa_pb2.MasterInfo | bytes) -> str:
    """Creates an ephemeral sequential contender znode on ``client``'s session; returns its path."""
    data = info if isinstance(info, bytes) else master_info_json(info)
    created: str = client.create(f"{path}/{MASTER_PREFIX}", data, ephemeral=True, sequence=True,
                                 makepath=True)
    return created


class Reports:
    """Collects what a detector reports, in order."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Leader | None] = queue.Queue()

    def __call__(self, leader: Leader | None) -> None:
        self.queue.put(leader)

    def next(self, timeout: float = WAIT) -> Leader | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the detector reported nothing within {timeout:g}s") from None

    def next_id(self, timeout: float = WAIT) -> str | None:
        leader = self.next(timeout)
        return None if leader is None else leader.master_id

    def until(self, master_id: str | None, timeout: float = WAIT) -> list[str | None]:
        """Waits for a report of ``master_id`` (None: no leader); returns every id seen till then."""
        seen: list[str | None] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no report of {master_id!r} within {timeout:g}s; saw {seen}")
            seen.append(self.next_id(remaining))
            if seen[-1] == master_id:
                return seen

    def quiet(self) -> bool:
        return self.queue.empty()


@pytest.fixture
def detect() -> Iterator[Callable[[str], Reports]]:
    """Starts ZkDetectors on URIs (short session timeout); stops them all after the test."""
    detectors: list[ZkDetector] = []

    def start(uri: str) -> Reports:
        detector = detector_for(uri, session_timeout=SESSION_TIMEOUT)
        assert isinstance(detector, ZkDetector)
        reports = Reports()
        detector.start(reports)
        detectors.append(detector)
        return reports

    yield start
    for detector in detectors:
        detector.stop()


def sessions(ensemble: ZooKeeperEnsemble) -> dict[int, int]:
    """Returns session id -> index of the ZooKeeper node that session is connected to (``cons``)."""
    found: dict[int, int] = {}
    for node in ensemble.nodes:
        answer = four_letter(node.client_port, "cons") or ""
        for sid in re.findall(r"sid=0x([0-9a-f]+)", answer):
            found[int(sid, 16)] = node.index
    return found


def other_session_node(ensemble: ZooKeeperEnsemble, ours: set[int]) -> int | None:
    """Returns the node of the one session whose id is not in ``ours`` (the detector's), or None
    while there is not exactly one."""
    others = {sid: node for sid, node in sessions(ensemble).items() if sid not in ours}
    return next(iter(others.values())) if len(others) == 1 else None


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result is not None and result is not False:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


# -- following the leader ------------------------------------------------------------------------


def test_reports_the_lowest_contender_and_the_next_when_its_node_is_deleted(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    a = contend(zk_connect(), zk_path, master_info("master-a", 7001))
    contend(zk_connect(), zk_path, master_info("master-b", 7003))
    reports = detect(zk_uri)
    first = reports.next()
    assert first is not None
    assert (first.master_id, first.zmq, first.http) == ("master-a", Endpoint("127.0.0.1", 7001),
                                                       "127.0.0.1:7002")
    zk_connect().delete(a)
    assert reports.next_id() == "master-b"


def test_reports_the_next_contender_when_the_leaders_session_closes(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    leader_session = zk_connect()
    contend(leader_session, zk_path, master_info("master-a", 7001))
    contend(zk_connect(), zk_path, master_info("master-b", 7003))
    reports = detect(zk_uri)
    assert reports.next_id() == "master-a"
    leader_session.stop()  # as a master's clean exit: its ephemeral znode goes with the session
    assert reports.next_id() == "master-b"


def test_a_later_contender_does_not_change_the_leader(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    client = zk_connect()
    a = contend(client, zk_path, master_info("master-a", 7001))
    reports = detect(zk_uri)
    assert reports.next_id() == "master-a"
    client.delete(contend(client, zk_path, master_info("master-b", 7003)))
    contend(client, zk_path, b"garbage")
    # The next report must be the leader going away: nothing before it changed the leader.
    client.delete(a)
    assert reports.next() is None


def test_garbage_znodes_are_skipped(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    client = zk_connect()
    contend(client, zk_path, b"\x00\xffnot json")
    contend(client, zk_path, b'{"id": "no host"}')
    contend(client, zk_path, b"[" * 50_000)
    client.create(f"{zk_path}/registry", b"not a contender")
    b = contend(client, zk_path, master_info("master-b", 7003))
    reports = detect(zk_uri)
    assert reports.next_id() == "master-b"
    client.delete(b)
    assert reports.next() is None  # the detector still runs, and garbage never leads


def test_a_leader_without_zmq_endpoint_is_reported_as_no_leader(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    client = zk_connect()
    mesos = master_info("mesos-master", 5050)
    mesos.ClearField("zmq_endpoint")
    mesos_node = contend(client, zk_path, mesos)
    contend(client, zk_path, master_info("master-b", 7003))
    reports = detect(zk_uri)
    assert reports.next() is None
    client.delete(mesos_node)
    assert reports.next_id() == "master-b"


def test_reports_none_when_no_contender_remains_and_the_next_one_that_comes(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    client = zk_connect()
    a = contend(client, zk_path, master_info("master-a", 7001))
    b = contend(client, zk_path, master_info("master-b", 7003))
    reports = detect(zk_uri)
    assert reports.next_id() == "master-a"
    client.delete(a)
    assert reports.next_id() == "master-b"
    client.delete(b)
    assert reports.next() is None
    contend(client, zk_path, master_info("master-c", 7005))
    assert reports.next_id() == "master-c"


def test_a_path_that_does_not_exist_yet_reports_no_leader(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    reports = detect(zk_uri)
    assert reports.next() is None
    contend(zk_connect(), zk_path, master_info("master-a", 7001))
    assert reports.next_id() == "master-a"


def test_a_new_leader_with_an_empty_master_id_is_still_a_change(
        zk_uri: str, zk_path: str, zk_connect: Connect, detect: Callable[[str], Reports]) -> None:
    client = zk_connect()
    a = contend(client, zk_path, master_info("", 7001))
    reports = detect(zk_uri)
    first = reports.next()
    assert first is not None and first.zmq == Endpoint("127.0.0.1", 7001)
    b = contend(client, zk_path, master_info("", 7003))
    client.delete(a)
    second = reports.next()
    assert second is not None and second.zmq == Endpoint("127.0.0.1", 7003)
    client.delete(b)
    assert reports.next() is None


# -- ZooKeeper faults ----------------------------------------------------------------------------


def test_survives_sigkill_of_the_zookeeper_node_it_is_connected_to(
        zk_ensemble: ZooKeeperEnsemble, zk_uri: str, zk_path: str, zk_connect: Connect,
        detect: Callable[[str], Reports]) -> None:
    a_session, b_session = zk_connect(), zk_connect()
    a = contend(a_session, zk_path, master_info("master-a", 7001))
    ours = {a_session.client_id[0], b_session.client_id[0]}  # session ids survive reconnections
    reports = detect(zk_uri)
    assert reports.next_id() == "master-a"
    node = wait_for(lambda: other_session_node(zk_ensemble, ours), "the detector's session")
    zk_ensemble.kill(node)
    # Its session moves to a surviving node (kazoo re-sends its watches there).
    wait_for(lambda: (n := other_session_node(zk_ensemble, ours)) is not None and n != node,
             "the detector's session on another node")
    # The test's own clients may have been on the killed node too: let them reconnect first.
    wait_for(lambda: a_session.connected and b_session.connected, "the contenders' sessions")
    b_session.retry(contend, b_session, zk_path, master_info("master-b", 7003))
    with contextlib.suppress(NoNodeError):  # a retried delete may find it already gone
        a_session.retry(a_session.delete, a)
    assert reports.next_id() == "master-b"
    b_session.stop()
    assert reports.next() is None


def test_zookeeper_down_at_start_is_retried(
        tmp_path: Any, zk_ensemble: ZooKeeperEnsemble, zk_connect: Connect,
        detect: Callable[[str], Reports]) -> None:
    standalone = ZooKeeperEnsemble(tmp_path / "late-zk", size=1, start=False)
    try:
        uri = standalone.uri("/mensa")
        reports = detect(uri)  # nothing listens on that port yet
        time.sleep(1.0)  # let it fail to connect a few times
        assert reports.quiet()
        standalone.start_all()
        assert reports.next() is None  # connected: no master there yet
        contend(zk_connect(standalone.connect_string), "/mensa", master_info("master-a", 7001))
        assert reports.next_id() == "master-a"
    finally:
        standalone.stop()


# -- resolve_leader --------------------------------------------------------------------------------


def test_resolve_leader_reads_the_lowest_valid_contender(
        zk_uri: str, zk_path: str, zk_connect: Connect) -> None:
    client = zk_connect()
    contend(client, zk_path, b"garbage")
    contend(client, zk_path, master_info("master-a", 7001, 8001))
    contend(client, zk_path, master_info("master-b", 7003))
    leader = resolve_leader(zk_uri, timeout=5)
    assert (leader.master_id, leader.zmq, leader.http) == ("master-a", Endpoint("127.0.0.1", 7001),
                                                          "127.0.0.1:8001")


def test_resolve_leader_without_any_master_ever(zk_uri: str) -> None:
    with pytest.raises(MasterUnreachable, match="no masters have ever run"):
        resolve_leader(zk_uri, timeout=5)


@pytest.mark.parametrize("children", [[], [b"garbage"], [b'{"id": "x"}']])
def test_resolve_leader_with_no_valid_leader(
        zk_uri: str, zk_path: str, zk_connect: Connect, children: list[bytes]) -> None:
    client = zk_connect()
    client.ensure_path(zk_path)
    for data in children:
        contend(client, zk_path, data)
    with pytest.raises(MasterUnreachable, match="no master leads"):
        resolve_leader(zk_uri, timeout=5)


def test_resolve_leader_refuses_a_leader_without_zmq_endpoint(
        zk_uri: str, zk_path: str, zk_connect: Connect) -> None:
    mesos = master_info("mesos-master", 5050)
    mesos.ClearField("zmq_endpoint")
    contend(zk_connect(), zk_path, mesos)
    with pytest.raises(MasterUnreachable, match="unusable"):
        resolve_leader(zk_uri, timeout=5)


def test_resolve_leader_when_zookeeper_does_not_answer() -> None:
    (port,) = free_ports(1)
    with pytest.raises(MasterUnreachable, match="did not answer"):
        resolve_leader(f"zk://127.0.0.1:{port}/mensa", timeout=1)


def test_resolve_leader_refuses_a_malformed_uri() -> None:
    with pytest.raises(ZkUriError, match="needs a path"):
        resolve_leader("zk://127.0.0.1:2181", timeout=1)


# -- detector_for ----------------------------------------------------------------------------------


def test_detector_for_picks_the_detector() -> None:
    zk = detector_for("zk://127.0.0.1:1/mensa")
    assert isinstance(zk, ZkDetector) and zk.uri == parse_zk_uri("zk://127.0.0.1:1/mensa")
    fixed = detector_for("127.0.0.1:5050")
    assert isinstance(fixed, FixedDetector)
    seen: list[Leader | None] = []
    fixed.start(seen.append)
    assert [leader.zmq for leader in seen if leader is not None] == [Endpoint("127.0.0.1", 5050)]


@pytest.mark.parametrize("text", ["zk://", "zk://h:1", "zk://h:x/m", "zk:///m", "h:99999"])
def test_detector_for_refuses_malformed_values(text: str) -> None:
    with pytest.raises(ValueError):
        detector_for(text)
