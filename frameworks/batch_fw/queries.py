"""What the REST API shows: runs, history, the queue with reasons, metrics (pure reads).

Shapes follow Metronome: run JSON (runs.py ``Run.to_json``), the history
(``successCount``, ``failureCount``, ``lastSuccessAt``, ``lastFailureAt``,
``successfulFinishedRuns``, ``failedFinishedRuns``; Mensa adds ``skippedCount`` and
``skippedRuns``), the queue (``[{"jobId", "runs": [{"runId", ...}], "reason"?}]``, each
waiting run with the reason it waits; a dependent job waiting for its parents with a job-level
reason), metrics, and the records restore could not read (``problems``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mensa.frameworks.batch_fw.book import Book, JobState
from mensa.frameworks.batch_fw.commands import KIND_JOB
from mensa.frameworks.batch_fw.placement import OfferView, why_unplaced
from mensa.frameworks.batch_fw.runs import FAILED, SKIPPED, SUCCESS, WAITING, Run, iso


def active_runs(job: JobState) -> list[dict[str, Any]]:
    """The job's active runs, oldest first."""
    return [r.to_json() for r in sorted(job.active.values(), key=lambda r: (r.created_at, r.id))]


def history_summary(job: JobState) -> dict[str, Any]:
    return {"successCount": job.success_count, "failureCount": job.failure_count,
            "skippedCount": job.skipped_count, "lastSuccessAt": iso(job.last_success_at),
            "lastFailureAt": iso(job.last_failure_at)}


def _brief(run: Run) -> dict[str, Any]:
    item = {"id": run.id, "createdAt": iso(run.created_at), "finishedAt": iso(run.finished_at)}
    if run.scheduled_at is not None:
        item["scheduledAt"] = iso(run.scheduled_at)
    if run.reason:
        item["reason"] = run.reason
    return item


def history(job: JobState) -> dict[str, Any]:
    """The summary and the kept finished runs, newest first, by outcome."""
    out = history_summary(job)
    newest = list(reversed(job.history))
    out["successfulFinishedRuns"] = [_brief(r) for r in newest if r.status == SUCCESS]
    out["failedFinishedRuns"] = [_brief(r) for r in newest if r.status == FAILED]
    out["skippedRuns"] = [_brief(r) for r in newest if r.status == SKIPPED]
    return out


def why_waiting(run: Run, seen: Iterable[OfferView], now: float, unlaunchable: str | None = None) -> str:
    """Why a run's waiting slots are not launched: a task that cannot be built (``unlaunchable``),
    a backoff, or what no offer seen has."""
    if unlaunchable:
        return unlaunchable
    waiting = [s for s in run.slots if s.phase == WAITING]
    if waiting and all(s.not_before > now for s in waiting):
        slot = min(waiting, key=lambda s: s.not_before)
        plural = "s" if slot.failures != 1 else ""
        return (f"backoff until {iso(slot.not_before)} after {slot.failures} failure{plural} "
                f"of task {slot.index}")
    return why_unplaced(run.spec.run, seen)


def queue(book: Book, seen: list[OfferView], now: float) -> list[dict[str, Any]]:
    """Runs with slots waiting to launch (not merely held back by parallelism), each with why,
    and dependent jobs with no active run waiting for their parents, with a job-level "reason"
    (whether no parent or only some are done): a dependent job creates no run until every parent
    has succeeded, so it has no waiting run to show."""
    out: list[dict[str, Any]] = []
    for job_id in sorted(book.jobs):
        job = book.jobs[job_id]
        entries: list[dict[str, Any]] = []
        for run in sorted(job.active.values(), key=lambda r: (r.created_at, r.id)):
            waiting = sum(1 for s in run.slots if s.phase == WAITING)
            if not waiting or run.live() >= run.spec.parallelism:
                continue
            why = why_waiting(run, seen, now, book.unlaunchable.get(run.key))
            entry: dict[str, Any] = {"runId": run.id, "reason": why,
                                     "waitingTasks": waiting, "since": iso(run.created_at)}
            if run.start_deadline is not None and run.launches == 0:
                entry["mustStartBy"] = iso(run.start_deadline)
            entries.append(entry)
        item: dict[str, Any] = {"jobId": job_id, "runs": entries}
        deps = job.spec.dependencies
        if deps and not job.active:
            waits = [w for w in (book.parent_wait(p, job.dependency_epoch) for p in deps) if w is not None]
            if waits:
                item["reason"] = "; ".join(waits)
        if entries or "reason" in item:
            out.append(item)
    return out


def metrics(book: Book, reconciling: int) -> dict[str, float]:
    """Counters (totals since start) and gauges."""
    out: dict[str, float] = {k: float(v) for k, v in book.counters.items()}
    out["jobs"] = float(len(book.jobs))
    out["runs_active"] = float(sum(len(j.active) for j in book.jobs.values()))
    out["runs_waiting"] = float(len(book.ready))
    out["tasks_reconciling"] = float(reconciling)
    out["tasks_killing"] = float(len(book.killing))
    out["records_unreadable"] = float(len(book.unreadable))
    out["tasks_held"] = float(len(book.held))
    return out


def problems(book: Book) -> list[dict[str, Any]]:
    """The records restore could not read (kept as they are), by kind and key: ``[{"kind",
    "key", "jobId"?, "error"}]``; a job's runs are kept with it and their tasks left running."""
    out: list[dict[str, Any]] = []
    for (kind, key), error in sorted(book.unreadable.items()):
        item: dict[str, Any] = {"kind": kind, "key": key, "error": error}
        if kind == KIND_JOB:
            item["jobId"] = key
        out.append(item)
    return out
