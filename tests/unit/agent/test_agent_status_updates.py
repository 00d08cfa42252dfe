"""StatusUpdateManager: ordered per-task streams, retry with backoff, acknowledgement of the head."""

from __future__ import annotations

import pytest

from mensa.agent.status_updates import Ack, StatusUpdateManager
from mensa.proto import mensa_pb2


def status(uuid: bytes, state: int = mensa_pb2.TASK_RUNNING) -> mensa_pb2.TaskStatus:
    s = mensa_pb2.TaskStatus(state=state, uuid=uuid)
    return s


def uuids(pending: list) -> list[bytes]:
    return [p.status.uuid for p in pending]


def test_only_the_head_of_a_stream_is_in_flight_and_order_is_kept() -> None:
    m = StatusUpdateManager(min_interval=1.0, max_interval=60.0)
    m.enqueue("fw", "t1", status(b"a", mensa_pb2.TASK_STARTING), now=0.0)
    m.enqueue("fw", "t1", status(b"b", mensa_pb2.TASK_RUNNING), now=0.0)
    m.enqueue("fw", "t1", status(b"c", mensa_pb2.TASK_FINISHED), now=0.0)
    assert uuids(m.due(0.0)) == [b"a"]
    assert m.acknowledge("fw", "t1", b"a", now=0.1) is Ack.ACCEPTED
    assert uuids(m.due(0.1)) == [b"b"]
    assert m.acknowledge("fw", "t1", b"b", now=0.2) is Ack.ACCEPTED
    assert uuids(m.due(0.2)) == [b"c"]
    assert m.acknowledge("fw", "t1", b"c", now=0.3) is Ack.ACCEPTED
    assert m.due(100.0) == []
    assert len(m) == 0


def test_streams_of_different_tasks_are_independent() -> None:
    m = StatusUpdateManager()
    m.enqueue("fw", "t1", status(b"a"), now=0.0)
    m.enqueue("fw", "t2", status(b"x"), now=0.0)
    m.enqueue("fw2", "t1", status(b"y"), now=0.0)
    assert sorted(uuids(m.due(0.0))) == [b"a", b"x", b"y"]


def test_retry_backoff_doubles_up_to_the_maximum() -> None:
    m = StatusUpdateManager(min_interval=1.0, max_interval=4.0)
    m.enqueue("fw", "t", status(b"a"), now=0.0)
    sent_at = []
    now = 0.0
    while now <= 20.0:
        if m.due(now):
            sent_at.append(now)
        now = round(now + 0.5, 1)
    # Sent at 0; retried 1s later, then 2s, then 4s, then every 4s (the cap).
    assert sent_at == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]
    attempts = m.pending("fw", "t")[0].attempts
    assert attempts == 7


def test_ack_of_anything_but_the_head_is_ignored() -> None:
    m = StatusUpdateManager()
    m.enqueue("fw", "t", status(b"a"), now=0.0)
    m.enqueue("fw", "t", status(b"b"), now=0.0)
    m.due(0.0)
    assert m.acknowledge("fw", "t", b"b", now=0.1) is Ack.STALE
    assert m.acknowledge("fw", "t", b"zzz", now=0.1) is Ack.STALE
    assert m.acknowledge("fw", "other", b"a", now=0.1) is Ack.UNKNOWN
    assert uuids(m.pending("fw", "t")) == [b"a", b"b"]
    assert m.head("fw", "t") is not None and m.head("fw", "t").uuid == b"a"


def test_duplicate_ack_is_harmless() -> None:
    m = StatusUpdateManager()
    m.enqueue("fw", "t", status(b"a"), now=0.0)
    m.enqueue("fw", "t", status(b"b"), now=0.0)
    m.due(0.0)
    assert m.acknowledge("fw", "t", b"a", now=0.1) is Ack.ACCEPTED
    assert m.acknowledge("fw", "t", b"a", now=0.2) is Ack.STALE
    assert uuids(m.pending()) == [b"b"]


def test_next_update_is_due_right_after_the_ack() -> None:
    m = StatusUpdateManager(min_interval=10.0, max_interval=60.0)
    m.enqueue("fw", "t", status(b"a"), now=0.0)
    m.enqueue("fw", "t", status(b"b"), now=0.0)
    assert uuids(m.due(0.0)) == [b"a"]
    assert m.due(5.0) == []  # a is not due again before 10s; b waits behind it
    m.acknowledge("fw", "t", b"a", now=5.0)
    assert m.next_due_at() == 5.0
    assert uuids(m.due(5.0)) == [b"b"]


def test_an_update_enqueued_behind_an_in_flight_one_waits() -> None:
    m = StatusUpdateManager(min_interval=1.0)
    m.enqueue("fw", "t", status(b"a"), now=0.0)
    assert uuids(m.due(0.0)) == [b"a"]
    m.enqueue("fw", "t", status(b"b"), now=0.5)
    assert m.due(0.5) == []
    assert uuids(m.due(1.0)) == [b"a"]  # the head is retried, not the newer update


def test_discard_framework_drops_only_that_framework() -> None:
    m = StatusUpdateManager()
    m.enqueue("fw1", "t1", status(b"a"), now=0.0)
    m.enqueue("fw1", "t2", status(b"b"), now=0.0)
    m.enqueue("fw1", "t2", status(b"c"), now=0.0)
    m.enqueue("fw2", "t1", status(b"d"), now=0.0)
    assert m.discard_framework("fw1") == 3
    assert uuids(m.pending()) == [b"d"]
    assert uuids(m.due(0.0)) == [b"d"]
    assert not m.has_pending("fw1", "t2")


def test_retry_now_restarts_backoff() -> None:
    m = StatusUpdateManager(min_interval=1.0, max_interval=60.0)
    m.enqueue("fw", "t", status(b"a"), now=0.0)
    for t in (0.0, 1.0, 3.0, 7.0):
        assert m.due(t)
    assert m.due(8.0) == []
    m.retry_now(8.0)
    assert uuids(m.due(8.0)) == [b"a"]
    assert uuids(m.due(9.0)) == [b"a"]  # backoff restarted at min_interval


def test_an_update_without_uuid_is_refused() -> None:
    with pytest.raises(ValueError):
        StatusUpdateManager().enqueue("fw", "t", mensa_pb2.TaskStatus(), now=0.0)


def test_discard_all() -> None:
    m = StatusUpdateManager()
    m.enqueue("fw1", "t1", status(b"a"), now=0.0)
    m.enqueue("fw2", "t1", status(b"b"), now=0.0)
    assert m.discard_all() == 2
    assert m.pending() == [] and m.due(10.0) == []
