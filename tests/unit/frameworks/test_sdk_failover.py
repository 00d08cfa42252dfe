"""Framework failover and leader following, the pure parts: the 7-day default, the framework id
file, NOT_LEADER hints, and how a ``--master`` value becomes a detector (or a clear error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mensa.frameworks import Scheduler, SchedulerDriver
from mensa.frameworks.driver import make_detector, with_defaults
from mensa.frameworks.events import is_removal_error, leader_hint, same_master
from mensa.frameworks.idfile import DEFAULT_FAILOVER_TIMEOUT, FrameworkIdFile
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.detector import FixedDetector, ZkDetector
from mensa.proto.transport import Endpoint
from mensa.proto.zk import Leader

WEEK = 604800.0


def info_of(master_id: str, zmq: str = "tcp://10.0.0.2:5050", http_port: int = 5051) -> mensa_pb2.MasterInfo:
    info = mensa_pb2.MasterInfo(id=master_id, hostname="m2", zmq_endpoint=zmq)
    info.address.ip = "10.0.0.2"
    info.address.port = http_port
    return info


# -- failover_timeout ---------------------------------------------------------------------------


def test_failover_timeout_defaults_to_a_week_unless_set() -> None:
    assert DEFAULT_FAILOVER_TIMEOUT == WEEK
    assert with_defaults(mensa_pb2.FrameworkInfo(name="f")).failover_timeout == WEEK
    explicit_zero = with_defaults(mensa_pb2.FrameworkInfo(name="f", failover_timeout=0.0))
    assert explicit_zero.failover_timeout == 0.0  # a user who asks for 0 gets 0
    assert with_defaults(mensa_pb2.FrameworkInfo(failover_timeout=60)).failover_timeout == 60


# -- the framework id file ----------------------------------------------------------------------


def test_framework_id_file_round_trip(tmp_path: Path) -> None:
    store = FrameworkIdFile(tmp_path / "state" / "framework_id")
    assert store.read() is None  # not there yet
    store.write("fw-0001")
    assert store.read() == "fw-0001"
    assert (tmp_path / "state" / "framework_id").read_text() == "fw-0001\n"
    store.write("fw-0002")  # replaced, and no temporary file left behind
    assert store.read() == "fw-0002"
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["framework_id"]
    store.remove()
    store.remove()  # already gone: fine
    assert store.read() is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"fw-1 fw-2\n", "not one id"),
        (b"\xff\xfe", "does not hold text"),
        (b"x" * 5000, "not an id"),
    ],
)
def test_framework_id_file_with_garbage_is_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "framework_id"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        FrameworkIdFile(path).read()
    assert str(path) in str(err.value)


def test_an_empty_framework_id_file_means_no_id(tmp_path: Path) -> None:
    (tmp_path / "framework_id").write_text("\n")
    assert FrameworkIdFile(tmp_path / "framework_id").read() is None


def test_driver_reads_the_id_file_and_refuses_a_conflicting_id(tmp_path: Path) -> None:
    path = tmp_path / "framework_id"
    path.write_text("fw-7\n")
    driver = SchedulerDriver(Scheduler(), {"name": "f"}, "127.0.0.1:5050", framework_id_file=path)
    assert driver.framework_id == "fw-7"  # it will fail over as fw-7
    with pytest.raises(ValueError, match="differs from 'fw-7'"):
        SchedulerDriver(
            Scheduler(), {"name": "f", "id": {"value": "fw-8"}}, "127.0.0.1:5050",
            framework_id_file=path,
        )  # fmt: skip
    fresh = SchedulerDriver(
        Scheduler(), {"name": "f"}, "127.0.0.1:5050", framework_id_file=tmp_path / "none"
    )
    assert fresh.framework_id is None


# -- the master's answers -----------------------------------------------------------------------


def test_removal_errors_are_recognised() -> None:
    assert is_removal_error("framework fw-1 has been removed; subscribe without an id")
    assert not is_removal_error("framework failed over to another scheduler")


def test_not_leader_hint_names_the_leader_when_usable() -> None:
    error = internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, leader=info_of("m2"))
    hint = leader_hint(error)
    assert hint is not None
    assert (hint.master_id, hint.zmq, hint.http) == ("m2", Endpoint("10.0.0.2", 5050), "10.0.0.2:5051")
    assert leader_hint(internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER)) is None
    no_zmq = info_of("m2", zmq="")
    assert leader_hint(internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, leader=no_zmq)) is None
    other = internal_pb2.Error(code=internal_pb2.Error.NOT_SUBSCRIBED, leader=info_of("m2"))
    assert leader_hint(other) is None


def test_same_master_compares_endpoints_and_known_ids() -> None:
    a = Leader.from_info(info_of("m1", "tcp://10.0.0.1:5050"))
    a_fixed = Leader("", Endpoint("10.0.0.1", 5050), "", mensa_pb2.MasterInfo())
    a_restarted = Leader.from_info(info_of("m1-new", "tcp://10.0.0.1:5050"))
    b = Leader.from_info(info_of("m2", "tcp://10.0.0.2:5050"))
    assert same_master(None, None) and same_master(a, a)
    assert same_master(a, a_fixed) and same_master(a_fixed, a)  # a fixed address knows no id
    assert not same_master(a, a_restarted)  # same address, another master
    assert not same_master(a, b) and not same_master(a, None) and not same_master(None, b)


# -- --master values ----------------------------------------------------------------------------


def test_master_values_become_detectors() -> None:
    fixed = make_detector("10.0.0.1:5050")
    assert isinstance(fixed, FixedDetector) and fixed.endpoint == Endpoint("10.0.0.1", 5050)
    assert isinstance(make_detector(Endpoint("h", 1)), FixedDetector)
    zk = make_detector("zk://z1:2181,z2:2181/mensa", 4.0)
    assert isinstance(zk, ZkDetector)  # not started: nothing connects yet
    assert (zk.uri.hosts, zk.uri.path, zk.session_timeout) == ("z1:2181,z2:2181", "/mensa", 4.0)


@pytest.mark.parametrize(
    ("master", "message"),
    [
        ("zk://z1/mensa", "must be HOST:PORT"),
        ("zk://z1:2181", "needs a path"),
        ("zk:///mensa", "names no ZooKeeper server"),
        ("10.0.0.1:99999", "bad port"),
        ("", "empty master address"),
    ],
)
def test_malformed_masters_are_refused_at_construction(master: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        SchedulerDriver(Scheduler(), {"name": "f"}, master)
    assert "HOST:PORT or zk://" in str(err.value)


def test_missing_master_and_bad_session_timeout_are_refused() -> None:
    with pytest.raises(ValueError, match="no master"):
        SchedulerDriver(Scheduler(), {"name": "f"})
    with pytest.raises(ValueError, match="zk_session_timeout must be positive"):
        SchedulerDriver(Scheduler(), {"name": "f"}, "zk://z:2181/m", zk_session_timeout=0)
