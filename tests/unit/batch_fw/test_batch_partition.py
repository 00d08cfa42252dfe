"""Partitions (the framework is PARTITION_AWARE): an unreachable task is waited for, only an answer
saying the task is certainly not running relaunches a task that never started, and any other
loss counts as a failure of its attempt."""

from __future__ import annotations

from batch_harness import Harness, Kill, Revive, job_doc, launched_ids, offer, only

from mensa.proto import mensa_pb2

S = mensa_pb2
Reason = mensa_pb2.TaskStatus


def in_flight(h: Harness, **run: object) -> tuple[str, str]:
    h.put(job_doc(run=run))
    started = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    return started.id, task_id


def test_an_unreachable_task_is_waited_for_not_relaunched() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    out = h.update(task_id, S.TASK_UNREACHABLE, "agent partitioned")
    assert only(out, Revive) == [] and only(out, Kill) == []
    assert not h.engine.wants_offers()
    assert launched_ids(h.offers(offer("o2", "a2"))) == []
    h.update(task_id, S.TASK_RUNNING)  # the partition healed: the same task ran all along
    h.update(task_id, S.TASK_FINISHED)
    doc = h.run_json("hello", run_id)
    assert doc["status"] == "SUCCESS" and doc["attempts"] == 1


def test_an_unreachable_task_that_never_comes_back_ends_at_the_runs_deadline() -> None:
    h = Harness()
    run_id, task_id = in_flight(h, restart={"policy": "ON_FAILURE", "activeDeadlineSeconds": 60})
    h.update(task_id, S.TASK_UNREACHABLE)
    out = h.run_until(h.now + 60)
    assert only(out, Kill) == [Kill(task_id, "a1", None)]
    doc = h.run_json("hello", run_id)
    assert doc["status"] == "FAILED" and doc["reason"] == "deadline exceeded (activeDeadlineSeconds 60 s)"


def test_an_unreachable_task_that_is_then_gone_is_relaunched() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    h.update(task_id, S.TASK_UNREACHABLE)
    assert only(h.update(task_id, S.TASK_GONE), Revive) == [Revive()]
    assert launched_ids(h.offers(offer("o2", "a2"))) == [f"hello.{run_id}.0.2"]


def test_task_lost_relaunches_only_when_the_master_does_not_know_the_task() -> None:
    for reason in (Reason.REASON_RECONCILIATION, Reason.REASON_INVALID_OFFERS, Reason.REASON_TASK_UNKNOWN):
        h = Harness()
        run_id, task_id = in_flight(h)
        h.update(task_id, S.TASK_LOST, reason=reason)
        assert launched_ids(h.offers(offer("o2"))) == [f"hello.{run_id}.0.2"]
        assert h.engine.history_summary("hello")["failureCount"] == 0


def test_other_task_lost_counts_as_a_failure_of_the_attempt() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)  # restart policy NEVER
    h.update(task_id, S.TASK_LOST, "agent disconnected", reason=Reason.REASON_AGENT_DISCONNECTED)
    doc = h.run_json("hello", run_id)
    assert doc["status"] == "FAILED" and doc["reason"] == f"task 0 ({task_id}) TASK_LOST: agent disconnected"
    h = Harness()
    run_id, task_id = in_flight(h, restart={"policy": "ON_FAILURE"})
    h.update(task_id, S.TASK_LOST)  # no reason at all
    assert launched_ids(h.offers(offer("o2"))) == []  # a backoff first, as for any failure
    h.advance(1)
    assert launched_ids(h.offers(offer("o3"))) == [f"hello.{run_id}.0.2"]
    assert h.engine.counters["tasks_failed"] == 1 and h.engine.counters["tasks_relaunched"] == 0
