"""Restoring the engine from its records, and reconciling the tasks that may be live (pure).

``restore`` rebuilds the books from the records Persist wrote (``{"job": {key: doc}, "run":
{key: doc}}``): jobs, their kept finished runs, and the active runs with their task ids. Nothing
is relaunched blindly: every task that may be live is reconciled, and only the master's answer
decides (see updates.py: a task that never started and is unknown to the master is relaunched as
a new attempt). Runs are written before their job, so a restart between the two writes leaves
the job's record behind; ``_repair`` brings it up to date from the runs (last-fired times,
dependency epoch, history counts), so a firing is never started twice.

A record that cannot be read is left as it is and listed (``Book.unreadable``, the engine's
``problems()``), never forgotten: the runs of an unreadable job, and unreadable run records,
keep their records untouched, and their tasks that may be live are reconciled but never killed
(``Book.held``), so an operator can repair the records and restart. Only the runs of a job that
is really gone (no record at all) are forgotten and their tasks killed.

``Reconciling`` asks about the unanswered tasks again with backoff (``initial`` doubling to
``maximum``) until each got a status update: after a restart the master may defer its answer
while the task's agent has not re-registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from mensa.frameworks.batch_fw.book import Book, JobState
from mensa.frameworks.batch_fw.commands import KIND_JOB, KIND_RUN, Forget, Reconcile
from mensa.frameworks.batch_fw.runs import FAILED, LIVE, SUCCESS, Run, task_state_is_terminal
from mensa.frameworks.batch_fw.schedules import arm_cron

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Reconciling:
    """Tasks asked about and not answered yet, and when to ask again."""

    initial: float = 2.0
    maximum: float = 30.0
    unconfirmed: dict[str, str] = field(default_factory=dict)  # task id -> agent id
    delay: float = 2.0
    next_at: float | None = None

    def answered(self, task_id: str) -> None:
        self.unconfirmed.pop(task_id, None)

    def start(self, book: Book, now: float) -> None:
        """Begins a round: asks about every unconfirmed task now."""
        self.delay = self.initial
        self.next_at = None
        self.retry(book, now)

    def retry(self, book: Book, now: float) -> None:
        """Asks again about the unanswered tasks, if the backoff has passed."""
        if not self.unconfirmed:
            self.next_at = None
            return
        if self.next_at is not None and now < self.next_at:
            return
        book.effects.append(Reconcile(tuple(sorted(self.unconfirmed.items()))))
        self.next_at = now + self.delay
        book.alarm(self.next_at, "reconcile")
        self.delay = min(self.delay * 2, self.maximum)


def live_tasks(book: Book) -> dict[str, str]:
    """Every task that may be live (task id -> agent id): the live attempts of active runs, and
    the tasks being killed."""
    out: dict[str, str] = {}
    for job in book.jobs.values():
        for run in job.active.values():
            for slot in run.slots:
                current = slot.current
                if slot.phase == LIVE and current is not None and not current.terminal:
                    out[current.task_id] = current.agent_id
    for task_id, (agent_id, _grace, _sent) in book.killing.items():
        out[task_id] = agent_id
    out.update(book.held)
    return out


def held_tasks(doc: Any) -> dict[str, str]:
    """The tasks a run record that could not be read as a run may still have live (task id ->
    agent id), read leniently: whatever of ``slots[].attempts[]`` is well formed and not over."""
    out: dict[str, str] = {}
    slots = doc.get("slots") if isinstance(doc, dict) else None
    for slot in slots if isinstance(slots, list) else ():
        attempts = slot.get("attempts") if isinstance(slot, dict) else None
        for attempt in attempts if isinstance(attempts, list) else ():
            if not isinstance(attempt, dict) or not isinstance(attempt.get("id"), str):
                continue
            if task_state_is_terminal(str(attempt.get("state", "TASK_STAGING"))):
                continue
            agent_id = attempt.get("agentId")
            out[attempt["id"]] = agent_id if isinstance(agent_id, str) else ""
    return out


def _hold(book: Book, reconciling: Reconciling, doc: Any) -> None:
    tasks = held_tasks(doc)
    book.held.update(tasks)
    reconciling.unconfirmed.update(tasks)


def restore(book: Book, reconciling: Reconciling, records: dict[str, dict[str, dict[str, Any]]],
            now: float) -> None:
    """Fills an empty ``book`` from ``records`` and starts reconciling (see the module docstring);
    the caller then runs a tick for what fell due meanwhile."""
    for key, doc in sorted(records.get(KIND_JOB, {}).items()):
        try:
            job = JobState.from_doc(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("record_unreadable", kind=KIND_JOB, key=key, error=str(exc))
            book.unreadable[(KIND_JOB, key)] = str(exc)
            continue
        book.jobs[job.spec.id] = job
    for job in book.jobs.values():
        for parent in job.spec.dependencies:
            book.children.setdefault(parent, set()).add(job.spec.id)
    runs: list[Run] = []
    for key, doc in records.get(KIND_RUN, {}).items():
        try:
            run = Run.from_doc(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("record_unreadable", kind=KIND_RUN, key=key, error=str(exc))
            book.unreadable[(KIND_RUN, key)] = str(exc)
            _hold(book, reconciling, doc)
            continue
        if (KIND_JOB, run.job_id) in book.unreadable:
            log.warning("run_of_unreadable_job_kept", job_id=run.job_id, run_id=run.id)
            _hold(book, reconciling, doc)
            continue
        if run.job_id not in book.jobs:
            log.warning("orphan_run_forgotten", job_id=run.job_id, run_id=run.id)
            book.forgets.append(Forget(KIND_RUN, key))
            for slot in run.slots:
                current = slot.current
                if current is not None and not current.terminal:
                    book.effects.append(book.kill_task(current.task_id, current.agent_id, None, now))
            continue
        runs.append(run)
    runs.sort(key=lambda r: (r.finished_at if r.finished else float("inf"), r.created_at, r.id))
    for run in runs:
        _adopt(book, reconciling, run, now)
    for job in book.jobs.values():
        _repair(book, job)
        while len(job.history) > book.history_limit:
            book.drop_run(job.history.popleft())
        for schedule in job.spec.schedules or ():
            arm_cron(book, job, schedule.id)
    for job_id in sorted(book.jobs):
        book.check_dependent(job_id, now)
    reconciling.start(book, now)
    if book.killing:
        book.alarm(now, "kill")
    log.info("records_restored", jobs=len(book.jobs), runs=len(runs),
             active=sum(len(j.active) for j in book.jobs.values()), reconciling=len(reconciling.unconfirmed),
             unreadable=len(book.unreadable), held=len(book.held))


def _adopt(book: Book, reconciling: Reconciling, run: Run, now: float) -> None:
    job = book.jobs[run.job_id]
    book.runs[run.key] = run
    for slot in run.slots:
        for attempt in slot.attempts:
            book.tasks[attempt.task_id] = (run.key, slot.index)
            if attempt.terminal:
                continue
            reconciling.unconfirmed[attempt.task_id] = attempt.agent_id
            if run.finished or attempt is not slot.current or slot.phase != LIVE:
                # Being killed when the engine stopped: kill again at once (see restore).
                grace = run.spec.run.task_kill_grace_period_seconds
                book.killing[attempt.task_id] = (attempt.agent_id, grace, now - book.kill_retry_seconds)
    if run.finished:
        job.history.append(run)
    else:
        job.active[run.id] = run
        book.arm_run(run, now)
        book.refresh(run, now)


def _repair(book: Book, job: JobState) -> None:
    before = job.to_doc()
    for run in [*job.history, *job.active.values()]:
        if run.status != "SKIPPED":
            job.dependency_epoch = max(job.dependency_epoch, run.created_at)
        if run.trigger.startswith("schedule:") and run.scheduled_at is not None:
            sid = run.trigger.split(":", 1)[1]
            if sid in job.last_fired:
                job.last_fired[sid] = max(job.last_fired[sid], run.scheduled_at)
        at = run.finished_at
        if at is None:
            continue
        if run.status == SUCCESS and (job.last_success_at is None or at > job.last_success_at):
            job.success_count += 1
            job.last_success_at = at
        elif run.status == FAILED and (job.last_failure_at is None or at > job.last_failure_at):
            job.failure_count += 1
            job.last_failure_at = at
    if job.to_doc() != before:
        book.dirty_jobs[job.spec.id] = None
