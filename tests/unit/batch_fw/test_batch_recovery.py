"""Exactly once across restarts: the intent is stored before the launch, a restored engine
reconciles instead of relaunching, and only the master's answer decides what is launched again."""

from __future__ import annotations

import copy

from batch_harness import (
    Harness,
    Kill,
    Persist,
    Reconcile,
    Revive,
    Suppress,
    job_doc,
    kinds,
    launched_ids,
    offer,
    only,
)

from mensa.frameworks.batch_fw import BatchEngine, Launch
from mensa.proto import mensa_pb2

S = mensa_pb2
RECONCILIATION = mensa_pb2.TaskStatus.REASON_RECONCILIATION


def in_flight(h: Harness, doc: dict | None = None) -> tuple[str, str]:
    """A job with one run whose task was launched; returns (run id, task id)."""
    h.put(doc or job_doc())
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    return run.id, task_id


def test_every_launch_is_preceded_by_the_persist_of_its_task_id() -> None:
    h = Harness()
    h.put(job_doc("arr", parallelism=4, completions=4))
    h.start("arr")
    out = h.offers(offer("o1", resources="cpus:2;mem:1024"), offer("o2", "a2", resources="cpus:2;mem:1024"))
    stored: set[str] = set()
    for command in out:
        if isinstance(command, Persist) and command.kind == "run":
            stored |= {a["id"] for s in command.doc["slots"] for a in s["attempts"]}
        if isinstance(command, Launch):
            assert {t.task_id.value for t in command.tasks} <= stored
    assert len(stored) == 4


def test_a_restored_engine_reconciles_in_flight_tasks_and_does_not_launch_them_again() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    out = h.restart(h.now + 10)
    assert only(out, Reconcile) == [Reconcile(((task_id, "a1"),))]
    assert only(out, Suppress) == [Suppress()]  # nothing waits: the task is in flight
    assert launched_ids(h.offers(offer("o2"))) == []
    h.update(task_id, S.TASK_RUNNING, "reconciliation", reason=RECONCILIATION)
    h.update(task_id, S.TASK_FINISHED)
    doc = h.run_json("hello", run_id)
    assert doc["status"] == "SUCCESS" and doc["attempts"] == 1


def test_a_task_the_master_never_heard_of_is_relaunched_once_with_a_new_attempt_id() -> None:
    for answer in (S.TASK_LOST, S.TASK_UNKNOWN, S.TASK_GONE, S.TASK_DROPPED):
        h = Harness()
        run_id, task_id = in_flight(h)  # persisted, but (say) the Launch never reached the master
        h.restart(h.now + 10)
        out = h.update(task_id, answer, "task is unknown to the master", reason=RECONCILIATION)
        assert only(out, Revive) == [Revive()]
        assert h.engine.wants_offers()
        [relaunched] = launched_ids(h.offers(offer("o2")))
        assert relaunched == f"hello.{run_id}.0.2"
        assert launched_ids(h.offers(offer("o3"))) == []  # once
        assert h.update(task_id, answer) == []  # a repeated answer changes nothing
        assert launched_ids(h.offers(offer("o4"))) == []
        h.update(relaunched, S.TASK_FINISHED)
        assert h.run_json("hello", run_id)["status"] == "SUCCESS"
        assert h.engine.history_summary("hello")["failureCount"] == 0


def test_a_task_lost_after_it_started_counts_as_a_failure() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    h.update(task_id, S.TASK_RUNNING)
    h.restart(h.now + 10)
    h.update(task_id, S.TASK_LOST, "agent removed")
    doc = h.run_json("hello", run_id)
    assert doc["status"] == "FAILED" and doc["reason"] == f"task 0 ({task_id}) TASK_LOST: agent removed"
    h2 = Harness()
    run_id, task_id = in_flight(h2, job_doc(run={"restart": {"policy": "ON_FAILURE"}}))
    h2.update(task_id, S.TASK_RUNNING)
    h2.restart(h2.now + 10)
    h2.update(task_id, S.TASK_LOST, "agent removed")
    assert launched_ids(h2.offers(offer("o2"))) == []  # backoff first
    h2.advance(1)
    assert launched_ids(h2.offers(offer("o3"))) == [f"hello.{run_id}.0.2"]


def test_unanswered_tasks_are_reconciled_again_with_backoff() -> None:
    h = Harness()
    _run_id, task_id = in_flight(h)
    start = h.now + 10
    h.restart(start)
    asked = []
    for _ in range(6):
        wake = h.engine.next_wakeup()
        assert wake is not None
        if only(h.tick(wake), Reconcile):
            asked.append(wake - start)
    assert asked == [2, 6, 14, 30, 60, 90]  # 2, 4, 8, 16, 30 (the cap), 30
    h.update(task_id, S.TASK_RUNNING, reason=RECONCILIATION)
    assert not any(only(h.advance(60), Reconcile) for _ in range(3))


def test_subscribed_reconciles_live_tasks_and_restates_interest_in_offers() -> None:
    h = Harness()
    _run_id, task_id = in_flight(h)
    h.update(task_id, S.TASK_RUNNING)
    out = h.apply(h.engine.subscribed(h.now))
    assert only(out, Reconcile) == [Reconcile(((task_id, "a1"),))]
    assert only(out, Suppress) == [Suppress()]  # said again after a (re-)subscription
    h.start()
    out = h.apply(h.engine.subscribed(h.now))
    assert only(out, Revive) == [Revive()]


def test_tasks_being_killed_when_the_engine_stopped_are_killed_again() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    h.apply(h.engine.stop_run("hello", run_id, h.now))
    out = h.restart(h.now + 5)
    assert only(out, Kill) == [Kill(task_id, "a1", None)]
    assert only(out, Reconcile) == [Reconcile(((task_id, "a1"),))]
    h.update(task_id, S.TASK_KILLED)
    assert only(h.advance(120), Kill) == []


def test_a_deadline_that_passed_during_downtime_fails_the_run_at_restore() -> None:
    h = Harness()
    restart = {"policy": "ON_FAILURE", "activeDeadlineSeconds": 30}
    run_id, task_id = in_flight(h, job_doc(run={"restart": restart}))
    out = h.restart(h.now + 100)
    assert only(out, Kill) == [Kill(task_id, "a1", None)]
    assert h.run_json("hello", run_id)["status"] == "FAILED"


def test_max_launch_delay_passed_during_downtime_waits_for_the_master_s_answer() -> None:
    h = Harness()
    run_id, task_id = in_flight(h, job_doc(run={"maxLaunchDelay": 60}))
    out = h.restart(h.now + 100)  # the task may have started meanwhile: reconciled, not killed
    assert only(out, Kill) == [] and only(out, Reconcile) == [Reconcile(((task_id, "a1"),))]
    assert h.run_json("hello", run_id)["status"] == "STARTING"
    h.update(task_id, S.TASK_RUNNING, "reconciliation", reason=RECONCILIATION)
    assert only(h.advance(10), Kill) == [] and h.run_json("hello", run_id)["status"] == "ACTIVE"
    h2 = Harness()
    run_id, task_id = in_flight(h2, job_doc(run={"maxLaunchDelay": 60}))
    h2.restart(h2.now + 100)
    out = h2.update(task_id, S.TASK_STAGING, "reconciliation", reason=RECONCILIATION)
    assert only(out, Kill) == [Kill(task_id, "a1", None)]
    doc = h2.run_json("hello", run_id)
    assert doc["status"] == "FAILED" and doc["reason"] == "not started within maxLaunchDelay (60 s)"


def test_history_and_counts_survive_a_restart_and_are_repaired_from_the_runs() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    stale_job = copy.deepcopy(h.records["job"]["hello"])
    h.update(task_id, S.TASK_FINISHED)
    h.records["job"]["hello"] = stale_job  # the job's record lost the write that counted the run
    h.restart(h.now + 1)
    assert h.engine.history_summary("hello")["successCount"] == 1
    assert [r["id"] for r in h.engine.history("hello")["successfulFinishedRuns"]] == [run_id]
    assert h.records["job"]["hello"]["successCount"] == 1
    h.restart(h.now + 1)
    assert h.engine.history_summary("hello")["successCount"] == 1  # not counted twice


def test_runs_of_a_job_that_is_gone_are_forgotten_and_their_tasks_killed() -> None:
    h = Harness()
    _run_id, task_id = in_flight(h)
    del h.records["job"]["hello"]
    out = h.restart(h.now + 1)
    assert only(out, Kill) == [Kill(task_id, "a1", None)]
    assert h.records["run"] == {}
    assert h.engine.jobs() == []


def test_a_superseded_attempt_that_finished_settles_its_slot_and_the_relaunch_is_killed() -> None:
    h = Harness()
    run_id, first = in_flight(h)
    h.update(first, S.TASK_GONE, "agent removed")
    [second] = launched_ids(h.offers(offer("o2", "a2")))
    out = h.update(first, S.TASK_FINISHED, agent_id="a1")  # the first copy did run and finish
    assert only(out, Kill) == [Kill(second, "a2", None)]
    assert h.run_json("hello", run_id)["status"] == "SUCCESS"
    h.update(first, S.TASK_RUNNING)  # out of order: at most a harmless kill of a finished task
    assert h.run_json("hello", run_id)["status"] == "SUCCESS"


def test_a_copy_that_reappears_running_after_its_slot_moved_on_is_killed() -> None:
    h = Harness()
    _run_id, first = in_flight(h)
    h.update(first, S.TASK_GONE)
    assert launched_ids(h.offers(offer("o2", "a2"))) == [first[:-1] + "2"]
    assert only(h.update(first, S.TASK_RUNNING), Kill) == [Kill(first, "a1", None)]


def test_restore_is_deterministic_and_records_are_not_rewritten_needlessly() -> None:
    h = Harness()
    in_flight(h)
    records = copy.deepcopy(h.records)
    a, b = BatchEngine(), BatchEngine()
    out_a = a.restore(copy.deepcopy(records), h.now + 1)
    out_b = b.restore(copy.deepcopy(records), h.now + 1)
    assert out_a == out_b
    assert kinds(out_a) == ["Reconcile", "Suppress"]
    assert a.runs("hello") == b.runs("hello") == h.engine.runs("hello")


def test_nothing_is_planned_once_every_task_answered_and_finished() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    h.restart(h.now + 1)
    assert h.engine.next_wakeup() is not None  # the reconciliation retry
    h.update(task_id, S.TASK_RUNNING, reason=RECONCILIATION)
    h.update(task_id, S.TASK_FINISHED)
    assert h.run_json("hello", run_id)["status"] == "SUCCESS"
    assert h.engine.next_wakeup() is None


def test_runs_of_an_unreadable_job_are_kept_and_their_tasks_reconciled_not_killed() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    good = copy.deepcopy(h.records["job"]["hello"])
    h.records["job"]["hello"]["spec"]["run"]["cpus"] = -1  # damaged
    run_record = copy.deepcopy(h.records["run"])
    out = h.restart(h.now + 1)
    assert only(out, Kill) == [] and [c for c in out if type(c).__name__ == "Forget"] == []
    assert only(out, Reconcile) == [Reconcile(((task_id, "a1"),))]
    assert h.records["run"] == run_record  # untouched
    [problem] = h.engine.problems()
    assert problem["kind"] == "job" and problem["jobId"] == "hello" and "/run/cpus" in problem["error"]
    assert h.engine.metrics()["records_unreadable"] == 1
    assert only(h.update(task_id, S.TASK_RUNNING), Kill) == []  # still running: left alone
    assert only(h.apply(h.engine.subscribed(h.now)), Reconcile) == [Reconcile(((task_id, "a1"),))]
    h.records["job"]["hello"] = good  # the operator repairs the record
    h.restart(h.now + 1)
    assert h.engine.problems() == []
    h.update(task_id, S.TASK_FINISHED)
    assert h.run_json("hello", run_id)["status"] == "SUCCESS"


def test_an_unreadable_run_record_is_kept_and_its_tasks_not_killed() -> None:
    h = Harness()
    run_id, task_id = in_flight(h)
    h.records["run"][f"hello.{run_id}"]["createdAt"] = "soon"
    out = h.restart(h.now + 1)
    assert only(out, Reconcile) == [Reconcile(((task_id, "a1"),))]
    assert [p["kind"] for p in h.engine.problems()] == ["run"]
    assert only(h.update(task_id, S.TASK_RUNNING), Kill) == []
    assert f"hello.{run_id}" in h.records["run"]
