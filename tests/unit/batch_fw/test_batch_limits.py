"""Limits that keep records and times representable: id lengths, upper bounds on resources and
seconds, the attempts a run keeps per slot, the worst-case size of a run's record, the retry
backoff for any number of failures, and times too large to print."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from batch_harness import T0, Harness, Persist, job_doc, launched_ids, offer

from mensa.frameworks import store
from mensa.frameworks.batch_fw.jobs import MAX_SPEC_BYTES, SpecError, parse_job, spec_bytes
from mensa.frameworks.batch_fw.runs import MAX_ATTEMPTS_KEPT, Attempt, Run, Slot, clip_message, exit_code, iso
from mensa.frameworks.batch_fw.updates import MAX_BACKOFF_SECONDS, backoff
from mensa.proto import mensa_pb2

FAILED, FINISHED = mensa_pb2.TASK_FAILED, mensa_pb2.TASK_FINISHED


def errors_of(doc: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(SpecError) as info:
        parse_job(doc)
    return {d["path"]: d["errors"] for d in info.value.to_json()["details"]}


def test_job_ids_are_at_most_100_characters_and_run_record_keys_fit_the_store() -> None:
    ok, too_long = "a" * 63 + "." + "c" * 36, "a" * 63 + "." + "c" * 37
    assert (len(ok), len(too_long)) == (100, 101)
    assert errors_of(job_doc(too_long)) == {"/id": ["must be at most 100 characters long"]}
    h = Harness()
    h.put(job_doc(ok))
    h.start(ok)
    keys = [c.key for c in h.sent if isinstance(c, Persist) and c.kind == "run"]
    assert keys and all(len(k.encode()) <= 200 for k in keys)  # the store's limit on a key


@pytest.mark.parametrize(("where", "field", "value", "path"), [
    ("run", "cpus", 1e6 + 1, "/run/cpus"),
    ("run", "mem", 1e12 + 1, "/run/mem"),
    ("run", "disk", 1e13, "/run/disk"),
    ("run", "gpus", 1e7, "/run/gpus"),
    ("run", "taskKillGracePeriodSeconds", 1e10, "/run/taskKillGracePeriodSeconds"),
    ("run", "maxLaunchDelay", 1e300, "/run/maxLaunchDelay"),
    ("restart", "activeDeadlineSeconds", 1e9 + 1, "/run/restart/activeDeadlineSeconds"),
    ("schedule", "startingDeadlineSeconds", 1e18, "/schedules/0/startingDeadlineSeconds"),
])
def test_sizes_and_seconds_have_upper_bounds(where: str, field: str, value: float, path: str) -> None:
    def doc_with(number: float) -> dict[str, Any]:
        doc = job_doc()
        if where == "run":
            doc["run"][field] = number
        elif where == "restart":
            doc["run"]["restart"] = {"policy": "ON_FAILURE", field: number}
        else:
            doc["schedules"] = [{"id": "s", "cron": "* * * * *", field: number}]
        return doc

    errors = errors_of(doc_with(value))
    assert list(errors) == [path] and errors[path][0].startswith("must be at most")
    parse_job(doc_with(1000))  # a value within the bounds is fine


def test_completions_and_parallelism_are_at_most_1000() -> None:
    assert errors_of(job_doc(completions=1001, parallelism=1001)) == {
        "/completions": ["must be between 1 and 1000"], "/parallelism": ["must be between 1 and 1000"]}
    parse_job(job_doc(completions=1000, parallelism=1000))


def test_a_job_spec_is_at_most_32_kib_as_json() -> None:
    doc = job_doc(description="d" * MAX_SPEC_BYTES)
    errors = errors_of(doc)
    assert list(errors) == ["/"] and "over the 32768 a job may take" in errors["/"][0]
    doc["description"] = "d" * (MAX_SPEC_BYTES - spec_bytes(parse_job(job_doc())))
    assert spec_bytes(parse_job(doc)) == MAX_SPEC_BYTES


def test_a_run_keeps_the_last_attempts_of_a_slot_and_counts_the_older_ones() -> None:
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE"}, "maxLaunchDelay": 1e9}))  # tasks never run
    run = h.start()
    for n in range(1, 16):
        [task_id] = launched_ids(h.offers(offer(f"o{n}")))
        assert task_id == f"hello.{run.id}.0.{n}"  # numbering goes on past the dropped attempts
        h.update(task_id, FAILED, "Command exited with status 1")
        h.advance(MAX_BACKOFF_SECONDS)
    slot = h.records["run"][f"hello.{run.id}"]["slots"][0]
    assert MAX_ATTEMPTS_KEPT == 2 and [a["n"] for a in slot["attempts"]] == [14, 15]
    assert slot["droppedAttempts"] == 15 - MAX_ATTEMPTS_KEPT
    older, current = slot["attempts"]  # the superseded attempt is stored in brief, without its message
    assert set(older) == {"n", "state", "exitCode", "completedAt"} and older["exitCode"] == 1
    assert current["message"] == "Command exited with status 1" and current["agentId"] == "a1"
    doc = h.run_json("hello", run.id)
    kept = [f"hello.{run.id}.0.{n}" for n in (14, 15)]
    assert doc["attempts"] == 15 and [t["id"] for t in doc["tasks"]] == kept
    assert "message" not in doc["tasks"][0] and doc["tasks"][1]["message"] == "Command exited with status 1"
    h.restart(h.now + 1)
    assert [t["id"] for t in h.run_json("hello", run.id)["tasks"]] == kept
    [task_id] = launched_ids(h.offers(offer("after")))
    assert task_id == f"hello.{run.id}.0.16"  # a restored run never reuses a dropped attempt's id
    h.update(task_id, FINISHED)
    assert h.run_json("hello", run.id)["status"] == "SUCCESS"


def test_the_backoff_never_overflows() -> None:
    assert backoff(1) == 1.0 and backoff(3) == 4.0
    assert backoff(1100) == MAX_BACKOFF_SECONDS  # 2.0 ** 1099 would raise OverflowError
    assert backoff(10**9) == MAX_BACKOFF_SECONDS
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE"}, "maxLaunchDelay": 1e9}))  # tasks never run
    run = h.start()
    for n in range(1, 1031):
        [task_id] = launched_ids(h.offers(offer(f"o{n}")))
        h.update(task_id, FAILED)
        h.advance(MAX_BACKOFF_SECONDS)
    assert h.run_json("hello", run.id)["attempts"] == 1030
    assert h.engine.queue()[0]["runs"][0]["waitingTasks"] == 1


def test_times_too_large_to_print_show_as_null() -> None:
    assert iso(0.0) == "1970-01-01T00:00:00.000+0000"
    for t in (1e300, -1e300, math.inf, math.nan):
        assert iso(t) is None
    h = Harness()
    h.put(job_doc())
    h.records["job"]["hello"]["lastSuccessAt"] = 1e300  # a damaged record
    h.records["job"]["hello"]["successCount"] = 1
    h.restart()
    assert h.engine.history_summary("hello")["lastSuccessAt"] is None
    assert h.engine.job_view("hello", ["history", "historySummary"])["history"]["successCount"] == 1


def test_status_messages_kept_in_a_run_are_bounded() -> None:
    h = Harness()
    h.put(job_doc())
    run = h.start()
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, FAILED, "x" * 100_000)
    doc = h.run_json("hello", run.id)
    assert len(doc["tasks"][0]["message"]) == 256 and len(doc["reason"]) < 600


def test_a_possibly_live_attempt_is_never_dropped_and_keeps_its_task_id() -> None:
    h = Harness()
    h.put(job_doc(run={"restart": {"policy": "ON_FAILURE"}, "maxLaunchDelay": 1e9}))  # tasks never run
    run = h.start()
    [first] = launched_ids(h.offers(offer("o1")))
    h.update(first, FAILED)
    h.advance(MAX_BACKOFF_SECONDS)
    slot = h.engine._book.runs[run.key].slots[0]
    slot.attempts[0].state = "TASK_RUNNING"  # as if a copy were still running (never relaunched so)
    slot.phase = "WAITING"
    for n in range(2, 5):
        [task_id] = launched_ids(h.offers(offer(f"o{n}")))
        h.update(task_id, FAILED)
        h.advance(MAX_BACKOFF_SECONDS)
    stored = h.records["run"][f"hello.{run.id}"]["slots"][0]["attempts"]
    assert [a.get("id") for a in stored] == [first, None]
    assert stored[0]["agentId"] == "a1" and stored[1]["n"] == 4


def test_status_messages_are_clipped_by_their_size_in_the_record() -> None:
    assert clip_message("x" * 300) == "x" * 256
    assert clip_message("\x01" * 300) == "\x01" * 42  # each is "\\u0001" (6 bytes) in JSON
    assert clip_message("\U0001F600" * 100) == "\U0001F600" * 64  # 4 bytes each in UTF-8
    assert clip_message('"' * 300) == '"' * 128
    assert exit_code("TASK_FAILED", "Command exited with status " + "9" * 200) is None
    assert exit_code("TASK_FAILED", "Command exited with status -2147483648") == -(2**31)


PARENT = "p" * 63 + "." + "q" * 36


def _worst_case_job(job_id: str) -> dict[str, Any]:
    """A job with every optional field set, as large as a job may be."""
    doc = {
        "id": job_id, "description": "", "labels": {"team": "data"},
        "parallelism": 1000, "completions": 1000, "dependencies": [{"id": PARENT}],
        "run": {"cmd": "sleep 1", "args": None, "cpus": 0.001, "mem": 1, "disk": 1, "gpus": 0,
                "docker": {"image": "busybox", "forcePullImage": True}, "env": {"MODE": "full"},
                "placement": {"constraints": [{"attribute": "rack", "operator": "LIKE", "value": "r.*"}]},
                "maxLaunchDelay": 1, "taskKillGracePeriodSeconds": 1e9, "user": "nobody",
                "restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 1e9}},
        "schedules": [{"id": "s" * 63 + "." + "t" * 36, "cron": "0 0 1 1 *"}],
    }
    del doc["run"]["args"]
    doc["description"] = "\x01" * ((MAX_SPEC_BYTES - spec_bytes(parse_job(doc))) // 6)
    assert spec_bytes(parse_job(doc)) > MAX_SPEC_BYTES - 6
    return doc


def test_the_largest_run_record_fits_the_store_with_room_to_spare() -> None:
    """The worst case, built as the engine leaves it (``Slot.add`` keeps the attempts; the run's
    Persist doc is ``Run.to_doc()``): a 100-character id, a spec as large as allowed with every
    optional field set, 1,000 slots that each failed ten billion times, times with every digit,
    64-character agent ids, 256-byte messages that are all escapes (and more given), the longest
    state names and exit codes; half the slots with a live current attempt, half with one over.
    The encoded record stays under 95% of the store's limit."""
    job_id = "j" * 63 + "." + "k" * 36
    spec = parse_job(_worst_case_job(job_id))
    t = T0 + 0.1234567  # 18 characters in JSON
    assert len(json.dumps(t)) == 18
    run = Run("9" * 19, job_id, spec, t, trigger="schedule:" + "s" * 63 + "." + "t" * 36, status="ACTIVE",
              scheduled_at=t, start_deadline=t, finished_at=t, reason="r" * 1000, launches=10**10)
    message = clip_message("Command exited with status -2147483648 " + "\x01" * 300)
    for index in range(spec.completions):
        slot = Slot(index, phase="ABANDONED", failures=10**10, not_before=t, dropped=10**10 - 2)
        for n in range(3):
            live = index % 2 == 0 and n == 2
            attempt = Attempt(slot.next_task_id(f"{job_id}.{run.id}"), "A" * 64, t)
            slot.add(attempt)
            attempt.state = "TASK_RUNNING" if live else "TASK_GONE_BY_OPERATOR"
            attempt.started_at, attempt.message = t, message
            if not live:
                attempt.completed_at, attempt.exit_code = t, exit_code("TASK_FAILED", message)
        run.slots.append(slot)
    doc = run.to_doc()
    assert Run.from_doc(json.loads(store.encode(doc))).task_ids() == run.task_ids()
    slots = doc["slots"]
    assert len(slots) == 1000 and all(len(s["attempts"]) == MAX_ATTEMPTS_KEPT for s in slots)
    assert slots[0]["droppedAttempts"] == 10**10 - 1 and slots[1]["attempts"][1]["exitCode"] == -(2**31)
    assert slots[0]["attempts"][1]["id"].endswith(".0.10000000001")  # live: its full task id
    assert len(store.encode({"m": slots[1]["attempts"][1]["message"]})) - len(b'{"m":""}') > 250
    size = len(store.encode(doc))
    print(f"worst-case run record: {size} bytes ({size / store.MAX_RECORD_BYTES:.1%} of "
          f"{store.MAX_RECORD_BYTES}), largest slot {max(len(store.encode(s)) for s in slots)} bytes")
    assert size < 0.95 * store.MAX_RECORD_BYTES


def test_huge_numbers_and_pathological_patterns_are_spec_errors_not_crashes() -> None:
    from mensa.frameworks.batch_fw import SpecError, parse_job

    with pytest.raises(SpecError, match="cpus"):
        parse_job({"id": "big", "run": {"cmd": "true", "cpus": int("1" + "0" * 400)}})
    constraint = {"attribute": "rack", "operator": "LIKE", "value": "a{99999999999}"}
    with pytest.raises(SpecError, match="constraints"):
        parse_job({"id": "re", "run": {"cmd": "true", "placement": {"constraints": [constraint]}}})
