"""Runs: their life (INITIAL, STARTING, ACTIVE, SUCCESS/FAILED), array jobs, retries with backoff
under ON_FAILURE, deadlines, stopping, and status updates that repeat or come late."""

from __future__ import annotations

import pytest
from batch_harness import T0, Harness, Kill, job_doc, launched, launched_ids, offer, only

from mensa.frameworks.batch_fw import Conflict, NotFound
from mensa.frameworks.batch_fw import runs as runs_module
from mensa.frameworks.batch_fw.placement import fmt_number
from mensa.frameworks.batch_fw.runs import task_state_is_terminal
from mensa.frameworks.batch_fw.updates import MAX_BACKOFF_SECONDS, backoff
from mensa.proto import mensa_pb2
from mensa.proto.states import TERMINAL_STATES

RUNNING, FINISHED, FAILED_ = mensa_pb2.TASK_RUNNING, mensa_pb2.TASK_FINISHED, mensa_pb2.TASK_FAILED
STARTING, KILLED = mensa_pb2.TASK_STARTING, mensa_pb2.TASK_KILLED


def test_a_run_goes_initial_starting_active_success() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    assert h.run_json("hello", run.id)["status"] == "INITIAL"
    [task] = launched(h.offers(offer()))
    task_id = task.task_id.value
    assert task_id == f"hello.{run.id}.0.1"
    assert h.run_json("hello", run.id)["status"] == "STARTING"
    h.update(task_id, STARTING)
    h.now += 1
    h.update(task_id, RUNNING)
    assert h.run_json("hello", run.id)["status"] == "ACTIVE"
    h.now += 2
    h.update(task_id, FINISHED, "Command exited with status 0")
    doc = h.engine.run("hello", run.id)
    assert doc["status"] == "SUCCESS" and doc["completedTasks"] == 1 and doc["attempts"] == 1
    assert doc["finishedAt"] == "2026-11-21T12:00:03.000+0000" == doc["completedAt"]
    assert doc["tasks"] == [{"id": task_id, "status": "TASK_FINISHED", "index": 0, "agentId": "a1",
                             "launchedAt": "2026-11-21T12:00:00.000+0000",
                             "startedAt": "2026-11-21T12:00:00.000+0000",
                             "completedAt": "2026-11-21T12:00:03.000+0000", "exitCode": 0,
                             "message": "Command exited with status 0"}]
    assert h.engine.runs("hello") == []
    summary = h.engine.history_summary("hello")
    assert summary["successCount"] == 1 and summary["failureCount"] == 0
    assert summary["lastSuccessAt"] == "2026-11-21T12:00:03.000+0000"


def test_a_failing_task_fails_the_run_under_never_with_its_exit_code() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, RUNNING)
    h.update(task_id, FAILED_, "Command exited with status 3")
    doc = h.run_json("hello", run.id)
    assert doc["status"] == "FAILED"
    assert doc["tasks"][0]["exitCode"] == 3
    assert doc["reason"] == f"task 0 ({task_id}) TASK_FAILED: Command exited with status 3"
    history = h.engine.history("hello")
    assert history["failureCount"] == 1 and [r["id"] for r in history["failedFinishedRuns"]] == [run.id]


def test_on_failure_retries_with_doubling_backoff_not_capped_by_max_launch_delay() -> None:
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE"}, "maxLaunchDelay": 3}))
    run = h.start()
    retry_times = []
    for attempt in range(1, 5):
        [task_id] = launched_ids(h.offers(offer(f"o{attempt}")))
        assert task_id == f"hello.{run.id}.0.{attempt}"  # a new attempt id each time
        h.update(task_id, RUNNING)
        h.update(task_id, FAILED_, "Command exited with status 1")
        failed_at = h.now
        assert h.offers(offer("early")) and not launched(h.sent[-3:])  # in backoff: nothing launches
        assert not h.engine.wants_offers()
        wake = h.engine.next_wakeup()
        assert wake is not None
        retry_times.append(wake - failed_at)
        h.tick(wake)
        assert h.engine.wants_offers()
    assert retry_times == [1.0, 2.0, 4.0, 8.0]  # maxLaunchDelay (3 s) is no cap: the run did start
    [task_id] = launched_ids(h.offers(offer("o5")))
    h.update(task_id, FINISHED)
    doc = h.run_json("hello", run.id)
    assert doc["status"] == "SUCCESS" and doc["attempts"] == 5 and len(doc["tasks"]) == 2


def test_the_retry_backoff_is_capped_at_a_constant() -> None:
    assert [backoff(n) for n in (1, 2, 3, 9, 10, 1100)] == [1.0, 2.0, 4.0, 256.0, MAX_BACKOFF_SECONDS,
                                                             MAX_BACKOFF_SECONDS]
    assert MAX_BACKOFF_SECONDS == 300.0
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE"}, "maxLaunchDelay": 10}))
    run = h.start()
    for n in range(1, 12):
        [task_id] = launched_ids(h.offers(offer(f"o{n}")))
        h.update(task_id, RUNNING)
        h.update(task_id, FAILED_)
        wake = h.engine.next_wakeup()
        assert wake is not None and wake - h.now == min(2.0 ** (n - 1), 300.0)
        h.tick(wake)
    assert h.run_json("hello", run.id)["status"] == "ACTIVE"


def test_a_run_with_no_task_running_within_max_launch_delay_fails_and_its_launching_task_is_killed() -> None:
    h = Harness()
    h.put(job_doc(run={"maxLaunchDelay": 60, "taskKillGracePeriodSeconds": 2}))
    run = h.start()
    assert h.engine.next_wakeup() == T0 + 60
    h.now += 10
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, STARTING)  # launching, never RUNNING
    out = h.run_until(T0 + 60)
    assert only(out, Kill) == [Kill(task_id, "a1", 2.0)]
    doc = h.run_json("hello", run.id)
    assert doc["status"] == "FAILED" and doc["reason"] == "not started within maxLaunchDelay (60 s)"
    assert h.engine.history_summary("hello")["failureCount"] == 1


def test_a_run_never_placed_fails_after_the_default_max_launch_delay_of_an_hour() -> None:
    h = Harness()
    h.put(job_doc(run={"cpus": 64}))
    run = h.start()
    h.offers(offer())  # too small: nothing launches
    assert h.engine.next_wakeup() == T0 + 3600
    h.run_until(T0 + 3599)
    assert h.run_json("hello", run.id)["status"] == "INITIAL"
    h.run_until(T0 + 3600)
    doc = h.run_json("hello", run.id)
    assert doc["status"] == "FAILED" and doc["reason"] == "not started within maxLaunchDelay (3600 s)"
    assert h.engine.queue() == [] and not h.engine.wants_offers()


def test_a_run_whose_task_ran_or_finished_is_not_bound_by_max_launch_delay() -> None:
    h = Harness()
    on_failure = {"policy": "ON_FAILURE"}
    h.put(job_doc(parallelism=2, completions=2, run={"maxLaunchDelay": 60, "restart": on_failure}))
    run = h.start()
    [first, second] = launched_ids(h.offers(offer()))
    h.update(first, RUNNING)
    h.now += 50
    h.update(first, FAILED_)  # it ran, then failed: its retry may come after the 60 s
    h.run_until(T0 + 200)
    assert h.run_json("hello", run.id)["status"] == "ACTIVE"
    [retry] = launched_ids(h.offers(offer("o2")))
    h.update(retry, FINISHED)
    h.update(second, FINISHED)
    assert h.run_json("hello", run.id)["status"] == "SUCCESS"
    # A task that goes straight to FINISHED (no RUNNING seen) also counts as having run.
    h.put(job_doc(parallelism=2, completions=2, run={"maxLaunchDelay": 60}))
    run = h.start()
    [done, slow] = launched_ids(h.offers(offer("o3")))
    h.update(done, FINISHED)
    h.run_until(h.now + 120)
    assert h.run_json("hello", run.id)["status"] == "STARTING"
    h.update(slow, FINISHED)
    assert h.run_json("hello", run.id)["status"] == "SUCCESS"


def test_terminal_task_states_are_the_protocol_s_plus_unknown() -> None:
    names = {mensa_pb2.TaskState.Name(s) for s in TERMINAL_STATES}
    assert all(task_state_is_terminal(n) for n in names) and task_state_is_terminal("TASK_UNKNOWN")
    others = set(mensa_pb2.TaskState.keys()) - names - {"TASK_UNKNOWN"}
    assert others and not any(task_state_is_terminal(n) for n in others)
    assert frozenset(names | {"TASK_UNKNOWN"}) == runs_module._TERMINAL_TASK_STATES


def test_numbers_in_reasons_are_written_exactly() -> None:
    assert [fmt_number(v) for v in (60.0, 2.5, 0.1234567, 1e-05)] == ["60", "2.5", "0.1234567", "1e-05"]
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 0.1234567}}))
    run = h.start()
    h.run_until(T0 + 1)
    assert h.run_json("hello", run.id)["reason"] == "deadline exceeded (activeDeadlineSeconds 0.1234567 s)"


def test_backoff_is_reported_in_the_queue() -> None:
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE"}}))
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, FAILED_, "boom")
    assert h.engine.queue() == [{"jobId": "hello", "runs": [{
        "runId": run.id, "reason": "backoff until 2026-11-21T12:00:01.000+0000 after 1 failure of task 0",
        "waitingTasks": 1, "since": "2026-11-21T12:00:00.000+0000"}]}]


def test_the_active_deadline_kills_the_tasks_and_fails_the_run() -> None:
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 60},
                       "taskKillGracePeriodSeconds": 3}))
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, RUNNING)
    assert h.engine.next_wakeup() == T0 + 60
    out = h.run_until(T0 + 60)
    assert only(out, Kill) == [Kill(task_id, "a1", 3.0)]
    doc = h.run_json("hello", run.id)
    assert doc["status"] == "FAILED" and doc["reason"] == "deadline exceeded (activeDeadlineSeconds 60 s)"
    # The kill is repeated until the task is reported terminal, then not any more.
    assert only(h.run_until(T0 + 91), Kill) == [Kill(task_id, "a1", 3.0)]
    h.update(task_id, KILLED)
    assert only(h.run_until(T0 + 300), Kill) == []
    assert h.run_json("hello", run.id)["tasks"][0]["status"] == "TASK_KILLED"


def test_a_retry_that_cannot_start_before_the_deadline_fails_the_run_at_once() -> None:
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 10}}))
    run = h.start()
    h.now += 9.5
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, FAILED_, "boom")
    doc = h.run_json("hello", run.id)
    assert doc["status"] == "FAILED"
    assert doc["reason"].endswith("its retry could not start before the run's deadline "
                                  "(activeDeadlineSeconds 10 s): deadline exceeded")


def test_an_array_job_runs_parallelism_tasks_at_once_and_succeeds_at_completions() -> None:
    h = Harness()
    h.put(job_doc("arr", parallelism=2, completions=5, run={"cpus": 0.5, "mem": 32}))
    run = h.start("arr")
    first = launched(h.offers(offer()))
    assert [t.task_id.value for t in first] == [f"arr.{run.id}.{i}.1" for i in (0, 1)]  # two at once
    env = {v.name: v.value for v in first[1].command.environment.variables}
    assert env["MENSA_TASK_INDEX"] == "1" and env["MENSA_JOB_ID"] == "arr" and env["MENSA_RUN_ID"] == run.id
    assert env["MENSA_TASK_COUNT"] == "5"
    done = 0
    pending = [t.task_id.value for t in first]
    while pending:
        task_id = pending.pop(0)
        h.update(task_id, RUNNING)
        h.update(task_id, FINISHED)
        done += 1
        pending += launched_ids(h.offers(offer(f"o{done}")))
        assert sum(1 for t in h.run_json("arr", run.id)["tasks"] if t["status"] != "TASK_FINISHED") <= 2
    doc = h.run_json("arr", run.id)
    assert doc["status"] == "SUCCESS" and doc["completedTasks"] == 5
    assert sorted(t["index"] for t in doc["tasks"]) == [0, 1, 2, 3, 4]


def test_an_array_job_fails_as_a_whole_and_its_other_tasks_are_killed() -> None:
    h = Harness()
    h.put(job_doc("arr", parallelism=3, completions=3))
    run = h.start("arr")
    ids = launched_ids(h.offers(offer()))
    assert len(ids) == 3
    out = h.update(ids[1], FAILED_, "Command exited with status 2")
    assert sorted(k.task_id for k in only(out, Kill)) == [ids[0], ids[2]]
    assert h.run_json("arr", run.id)["status"] == "FAILED"


def test_stop_kills_the_run_and_deleting_a_job_with_active_runs_is_refused() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    with pytest.raises(Conflict, match="active runs"):
        h.engine.delete_job("hello", h.now)
    out = h.apply(h.engine.stop_run("hello", run.id, h.now))
    assert only(out, Kill) == [Kill(task_id, "a1", None)]
    assert h.run_json("hello", run.id)["status"] == "FAILED"
    assert h.run_json("hello", run.id)["reason"] == "stopped by request"
    assert h.engine.stop_run("hello", run.id, h.now) == []  # stopping again: nothing
    h.apply(h.engine.delete_job("hello", h.now))
    assert h.records == {"job": {}, "run": {}}
    with pytest.raises(NotFound):
        h.engine.run("hello", run.id)
    with pytest.raises(NotFound):
        h.engine.stop_run("hello", "nope", h.now)


def test_delete_with_stop_active_stops_first() -> None:
    h = Harness()
    h.put(job_doc())
    h.start()
    [task_id] = launched_ids(h.offers(offer()))
    out = h.apply(h.engine.delete_job("hello", h.now, stop_active=True))
    assert only(out, Kill) == [Kill(task_id, "a1", None)]
    assert h.engine.jobs() == [] and h.records["run"] == {}


def test_repeated_and_late_updates_change_nothing() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, RUNNING)
    assert h.update(task_id, RUNNING) == []  # a duplicate: no Persist, nothing
    h.update(task_id, FINISHED)
    before = h.run_json("hello", run.id)
    assert h.update(task_id, FINISHED) == []
    assert h.update(task_id, FAILED_) == []  # a different terminal state after the end: no news
    assert h.run_json("hello", run.id) == before
    assert h.engine.history_summary("hello")["successCount"] == 1


def test_a_task_said_running_after_its_run_ended_is_killed() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    h.apply(h.engine.stop_run("hello", run.id, h.now))
    h.update(task_id, KILLED)
    out = h.update(task_id, RUNNING)  # the agent says it runs after all
    assert only(out, Kill) == [Kill(task_id, "a1", None)]


def test_an_unknown_live_task_is_killed_and_a_terminal_one_ignored() -> None:
    h = Harness()
    assert only(h.update("ghost.1.0.1", RUNNING, agent_id="a9"), Kill) == [Kill("ghost.1.0.1", "a9", None)]
    assert h.update("ghost.2.0.1", FINISHED) == []


def test_runs_of_unknown_jobs_are_not_found() -> None:
    h = Harness()
    with pytest.raises(NotFound):
        h.engine.start_run("nope", h.now)
    with pytest.raises(NotFound):
        h.engine.runs("nope")
    with pytest.raises(NotFound):
        h.engine.history("nope")


def test_history_keeps_the_last_runs_and_forgets_the_oldest() -> None:
    h = Harness()
    h.engine = type(h.engine)(history_limit=3)
    h.put(job_doc())
    ids = []
    for i in range(5):
        run = h.start()
        ids.append(run.id)
        [task_id] = launched_ids(h.offers(offer(f"o{i}")))
        h.update(task_id, FINISHED if i % 2 == 0 else FAILED_)
        h.now += 1
    history = h.engine.history("hello")
    assert history["successCount"] == 3 and history["failureCount"] == 2  # counts are totals
    kept = [r["id"] for r in history["successfulFinishedRuns"] + history["failedFinishedRuns"]]
    assert sorted(kept) == sorted(ids[2:])
    assert sorted(h.records["run"]) == sorted(f"hello.{i}" for i in ids[2:])
    assert [r["id"] for r in h.engine.runs("hello", include_finished=True)] == list(reversed(ids[2:]))


def test_an_updated_job_does_not_change_a_run_in_flight() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    h.put(job_doc(run={"cmd": "echo changed"}))
    [task] = launched(h.offers(offer()))
    assert task.command.value == "echo hi"
    assert h.engine.job("hello").run.cmd == "echo changed"
    assert h.run_json("hello", run.id)["status"] == "STARTING"
