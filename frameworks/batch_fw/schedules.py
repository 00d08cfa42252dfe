"""Cron schedules of jobs: their last-fired times, their alarms, and what a firing does (pure).

Each enabled schedule has one live alarm at its next firing after its last-fired time. When it
goes off, ``fire`` applies the catch-up policy of firing.py: missed firings are recorded as
SKIPPED runs; the latest due firing starts a run (trigger ``schedule:<id>``, with its
``scheduled_at`` and the ``start_deadline`` its startingDeadlineSeconds gives), unless it is
past that deadline or the schedule's concurrencyPolicy is FORBID and a run of the job is active
(both recorded as SKIPPED with the reason). The last-fired time then moves on, so nothing
fires twice.

A new schedule, or one whose cron or timezone changed, or that was re-enabled, counts as fired
when it was set: it first fires at its next firing after that (no catch-up for the time it did
not exist or was disabled).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import structlog

from mensa.frameworks.batch_fw import firing
from mensa.frameworks.batch_fw.book import Book, JobState
from mensa.frameworks.batch_fw.jobs import ScheduleSpec
from mensa.frameworks.batch_fw.placement import fmt_number
from mensa.frameworks.batch_fw.runs import iso

log = structlog.get_logger(__name__)


def apply_schedules(book: Book, job: JobState, old: Iterable[ScheduleSpec], now: float) -> None:
    """After ``job.spec.schedules`` changed from ``old``: sets each schedule's last-fired time
    (kept when only its deadline or policy changed) and arms its alarm."""
    before = {s.id: s for s in old}
    fired: dict[str, float] = {}
    for s in job.spec.schedules or ():
        prev = before.get(s.id)
        keep = (prev is not None and prev.cron == s.cron and prev.timezone == s.timezone
                and (prev.enabled or not s.enabled) and s.id in job.last_fired)
        fired[s.id] = job.last_fired[s.id] if keep else now
    job.last_fired = fired
    for sid in before:
        if sid not in fired:
            book.cron_alarm.pop((job.spec.id, sid), None)
    for s in job.spec.schedules or ():
        arm_cron(book, job, s.id)


def arm_cron(book: Book, job: JobState, schedule_id: str) -> None:
    """Sets the schedule's alarm at its next firing (none while disabled)."""
    key = (job.spec.id, schedule_id)
    spec = job.schedule(schedule_id)
    if spec is None or not spec.enabled:
        book.cron_alarm.pop(key, None)
        return
    t = job.crons[schedule_id].next_after(job.last_fired[schedule_id])
    if math.isinf(t):
        book.cron_alarm.pop(key, None)
        return
    if book.cron_alarm.get(key) != t:
        book.cron_alarm[key] = t
        book.alarm(t, "cron", key)


def fire(book: Book, job_id: str, schedule_id: str, now: float) -> None:
    """Handles a schedule's alarm: what is due by ``now`` (see the module docstring)."""
    job = book.jobs.get(job_id)
    spec = job.schedule(schedule_id) if job is not None else None
    if job is None or spec is None or not spec.enabled:
        return
    book.cron_alarm.pop((job_id, schedule_id), None)
    d = firing.due(job.crons[schedule_id], job.last_fired[schedule_id], now,
                   spec.starting_deadline_seconds)
    if d is not None:
        if d.missed_before is not None:
            count, first, last = d.missed_before
            book.record_skip(job, schedule_id, first, f"missed: {count} firings from {iso(first)} to "
                             f"{iso(last)} were superseded by later ones", now)
        for t in d.missed:
            book.record_skip(job, schedule_id, t, "missed: superseded by the later firing at "
                             f"{iso(d.last_fired)}", now)
        if d.start_at is not None:
            _start(book, job, spec, d.start_at, d.late, now)
        job.last_fired[schedule_id] = d.last_fired
        book.dirty_jobs[job_id] = None
        if d.next_at <= now:  # more firings were due than one step looks at: go on at once
            book.cron_alarm[(job_id, schedule_id)] = d.next_at
            book.alarm(d.next_at, "cron", (job_id, schedule_id))
            return
    arm_cron(book, job, schedule_id)


def _start(book: Book, job: JobState, spec: ScheduleSpec, at: float, late: bool, now: float) -> None:
    if late:
        deadline = fmt_number(spec.starting_deadline_seconds)
        book.record_skip(job, spec.id, at, f"startingDeadlineSeconds ({deadline} s) exceeded: the firing at "
                         f"{iso(at)} was handled {fmt_number(round(now - at, 3))} s late", now)
    elif spec.concurrency_policy == "FORBID" and job.active:
        book.record_skip(job, spec.id, at, "concurrencyPolicy FORBID: run "
                         f"{', '.join(sorted(job.active))} is still active", now)
    else:
        book.new_run(job, now, f"schedule:{spec.id}", scheduled_at=at,
                     start_deadline=at + spec.starting_deadline_seconds)
        log.info("schedule_fired", job_id=job.spec.id, schedule_id=spec.id, scheduled_at=iso(at),
                 lateness=round(now - at, 3))
