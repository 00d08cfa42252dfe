"""Dependencies: a job runs after every parent's latest run succeeded, once per round of parent
successes; unknown parents and cycles are refused when the job is put, with nothing applied."""

from __future__ import annotations

import copy

import pytest
from batch_harness import Harness, Persist, job_doc, launched_ids, offer

from mensa.frameworks.batch_fw import Conflict, SpecError
from mensa.proto import mensa_pb2

FINISHED, FAILED = mensa_pb2.TASK_FINISHED, mensa_pb2.TASK_FAILED


def child(job_id: str, *parents: str) -> dict:
    return job_doc(job_id, dependencies=[{"id": p} for p in parents])


def finish(h: Harness, state: int = FINISHED) -> list[str]:
    """Launches what waits and ends each launched task with ``state``; returns the jobs run."""
    h.now += 1
    ids = launched_ids(h.offers(offer(f"o{h.now}", resources="cpus:16;mem:16384")))
    for task_id in ids:
        h.update(task_id, state)
    return sorted({task_id.split(".")[0] for task_id in ids})


def last_persist(h: Harness, key: str) -> dict:
    return copy.deepcopy([c.doc for c in h.sent if isinstance(c, Persist) and c.key == key][-1])


def runs(h: Harness, job_id: str) -> list[dict]:
    return h.engine.runs(job_id, include_finished=True)


def test_unknown_parents_and_cycles_are_refused_with_nothing_applied() -> None:
    h = Harness()
    with pytest.raises(SpecError) as info:
        h.put(child("b", "a", "x"))
    assert info.value.to_json()["details"] == [{"path": "/dependencies/0/id", "errors": ["unknown job 'a'"]},
                                               {"path": "/dependencies/1/id", "errors": ["unknown job 'x'"]}]
    assert h.engine.jobs() == []
    with pytest.raises(SpecError, match="dependency cycle: s -> s"):
        h.put(child("s", "s"))
    h.put(job_doc("a"))
    h.put(child("b", "a"))
    h.put(child("c", "b"))
    before = copy.deepcopy(h.records)
    with pytest.raises(SpecError) as info:
        h.put(child("a", "c"))
    assert info.value.details == [("/dependencies", "dependency cycle: a -> c -> b -> a")]
    assert h.engine.job("a").dependencies == () and h.records == before


def test_a_chain_of_three_runs_in_order() -> None:
    h = Harness()
    h.put(job_doc("a"))
    h.put(child("b", "a"))
    h.put(child("c", "b"))
    h.now += 1
    h.start("a")
    assert finish(h) == ["a"]
    assert runs(h, "b")[0]["trigger"] == "dependency"
    assert finish(h) == ["b"]
    assert finish(h) == ["c"]
    assert finish(h) == []
    assert [len(runs(h, j)) for j in "abc"] == [1, 1, 1]


def test_a_child_of_two_parents_runs_once_both_succeeded_and_once_per_round() -> None:
    h = Harness()
    h.put(job_doc("p"))
    h.put(job_doc("q"))
    h.put(child("c", "p", "q"))
    h.now += 1
    since = "2026-11-21T12:00:00.000+0000"  # c's creation: it never ran
    assert h.engine.queue() == [{"jobId": "c", "runs": [], "reason": (  # no parent done yet
        f"waiting for p's next success (none since {since}); "
        f"waiting for q's next success (none since {since})")}]
    h.start("p")
    finish(h)
    assert runs(h, "c") == []
    queued = {e["jobId"]: e for e in h.engine.queue()}
    assert queued["c"]["reason"] == f"waiting for q's next success (none since {since})"  # one parent done
    h.start("p")  # p again: still one parent short
    finish(h)
    assert runs(h, "c") == []
    h.start("q")
    finish(h)
    [run] = runs(h, "c")
    assert run["trigger"] == "dependency"
    assert finish(h) == ["c"]
    h.start("q")  # a new round needs both parents again
    finish(h)
    assert len(runs(h, "c")) == 1


def test_a_failed_parent_does_not_trigger() -> None:
    h = Harness()
    h.put(job_doc("a"))
    h.put(child("b", "a"))
    h.now += 1
    h.start("a")
    finish(h, FAILED)
    assert runs(h, "b") == []


def test_parent_successes_during_a_child_run_trigger_one_more_run_after_it() -> None:
    h = Harness()
    h.put(job_doc("a"))
    h.put(child("b", "a"))
    h.now += 1
    h.start("a")
    finish(h)  # a succeeds: b starts and its task launches below
    h.now += 1
    [b_task] = launched_ids(h.offers(offer("ob")))
    for _ in range(3):  # a succeeds three times while b runs
        h.start("a")
        h.now += 1
        [a_task] = launched_ids(h.offers(offer(f"oa{h.now}")))
        h.update(a_task, FINISHED)
    assert len(runs(h, "b")) == 1
    h.update(b_task, FINISHED)
    assert len(runs(h, "b")) == 2  # one more, not three
    finish(h)
    assert len(runs(h, "b")) == 2


def test_a_job_with_dependents_cannot_be_deleted() -> None:
    h = Harness()
    h.put(job_doc("a"))
    h.put(child("b", "a"))
    with pytest.raises(Conflict, match="jobs b depend on 'a'"):
        h.engine.delete_job("a", h.now)
    h.apply(h.engine.delete_job("b", h.now))
    h.apply(h.engine.delete_job("a", h.now))
    assert h.engine.jobs() == []


def test_a_trigger_lost_in_a_restart_is_made_up_once() -> None:
    h = Harness()
    h.put(job_doc("a"))
    h.put(child("b", "a"))
    h.now += 1
    h.start("a")
    before = copy.deepcopy(h.records)
    finish(h)
    assert len(runs(h, "b")) == 1
    # Only the parent's run record was written before the restart.
    a_run_key = next(k for k in h.records["run"] if k.startswith("a."))
    h.records = before
    h.records["run"][a_run_key] = last_persist(h, a_run_key)
    h.restart(h.now + 1)
    assert [r["trigger"] for r in runs(h, "b")] == ["dependency"]
    h.restart(h.now + 1)
    assert len(runs(h, "b")) == 1


def test_a_parent_whose_latest_run_failed_does_not_satisfy_its_child() -> None:
    h = Harness()
    h.put(job_doc("a"))
    h.put(job_doc("c"))
    h.put(child("b", "a", "c"))
    h.now += 1
    h.start("a")
    assert finish(h) == ["a"]  # a succeeded, c not yet
    h.start("a")
    assert finish(h, FAILED) == ["a"]  # then a failed
    h.start("c")
    assert finish(h) == ["c"]
    assert runs(h, "b") == []  # a's latest run failed
    [item] = [q for q in h.engine.queue() if q["jobId"] == "b"]
    assert item["reason"] == "waiting for a's next success (its latest run failed)"
    h.start("a")
    assert finish(h) == ["a"]
    assert len(runs(h, "b")) == 1
