"""BatchEngine: every decision of the batch framework; events and ``now`` in, commands out (pure).

It never reads a clock and does no I/O: the shell passes ``now`` (epoch seconds) and carries out
the commands it gets back in order (commands.py); every Persist/Forget precedes the Launch that
depends on it. The parts, one noun each:

- runs.py: a run has ``completions`` task slots, at most ``parallelism`` live; it goes INITIAL ->
  STARTING (a task launched) -> ACTIVE (a task ran) -> SUCCESS (every slot succeeded) or FAILED.
- updates.py: status updates; retries under ON_FAILURE with backoff (1 s doubling per failure of
  a slot, capped at 5 minutes: updates.MAX_BACKOFF_SECONDS) while the deadline allows; relaunch
  of tasks that never started and are certainly not running (UNREACHABLE waits); killing of
  stale copies.
- A run still unfinished ``restart.activeDeadlineSeconds`` after its creation fails ("deadline
  exceeded") and its tasks are killed; kills repeat until the tasks are reported terminal.
- run.maxLaunchDelay (default 3600 s) means what it means in Metronome: the seconds until the run
  needs to be running. A run none of whose tasks reached RUNNING (or finished) by then fails
  ("not started within maxLaunchDelay") and its tasks still launching are killed; while a task of
  it awaits the master's answer to reconciliation (it may have started unheard, say while the
  engine was down), the failure waits for that answer.
- schedules.py and firing.py: cron firings, their catch-up policy, startingDeadlineSeconds and
  concurrencyPolicy. A scheduled run that launched no task within startingDeadlineSeconds of its
  firing ends SKIPPED, saying why.
- Dependencies (book.py): a job with dependencies starts a run (trigger "dependency") once every
  parent has a successful run that finished after the child's last run was created (or the
  child itself, if it never ran) and the parent's latest finished run (skipped firings aside)
  is a success: each round of parent successes triggers at most one child run;
  while a run of the child is active, triggering waits for it to finish. Unknown parents and
  cycles are refused by ``put_job``.
- offering.py and placement.py: offers, constraints (IS/EQ, LIKE, UNLIKE), Launch/Decline and
  their filters; Revive when something starts waiting, Suppress when nothing does.
- recovery.py: ``restore`` and reconciliation. Exactly once: a run and each of its task ids are
  persisted before the Launch; task ids are ``<job>.<run>.<index>.<attempt>``; after a restore,
  every task that may be live is reconciled and only the master's answer decides.
- queries.py: what the REST API shows.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from mensa.frameworks.batch_fw import offering, queries, recovery, schedules, updates
from mensa.frameworks.batch_fw.book import Book, Conflict, JobState, NotFound, crons_of, run_times
from mensa.frameworks.batch_fw.commands import KIND_JOB, Command, Forget
from mensa.frameworks.batch_fw.jobs import JobSpec, ScheduleSpec, SpecError, job_json
from mensa.frameworks.batch_fw.placement import OfferView, fmt_number
from mensa.frameworks.batch_fw.runs import FAILED, SKIPPED, Run, iso
from mensa.proto import mensa_pb2

__all__ = ["BatchEngine", "Conflict", "NotFound"]

log = structlog.get_logger(__name__)


class BatchEngine:
    """The batch framework's scheduler; see the module docstring.

    Usage::

        engine = BatchEngine()
        commands = engine.restore(store.load(), now)          # at start (records may be empty)
        commands += engine.put_job(parse_job(doc), now)
        run, more = engine.start_run("hello", now)
        commands = engine.subscribed(now)                     # on every SUBSCRIBED
        commands = engine.offers(offers, now)                 # Persist..., Launch..., Decline
        commands = engine.status_update(status, now)
        commands = engine.tick(now)                           # at engine.next_wakeup()
    """

    def __init__(self, *, history_limit: int = 1000, refuse_seconds: float = 5.0,
                 idle_refuse_seconds: float = 300.0, reconcile_initial: float = 2.0,
                 reconcile_max: float = 30.0, kill_retry_seconds: float = 30.0,
                 offer_memory_seconds: float = 600.0) -> None:
        self.history_limit = history_limit
        self.refuse_seconds = refuse_seconds
        self.idle_refuse_seconds = idle_refuse_seconds
        self.reconcile_initial = reconcile_initial
        self.reconcile_max = reconcile_max
        self.kill_retry_seconds = kill_retry_seconds
        self.offer_memory_seconds = offer_memory_seconds
        self._reset()

    def _reset(self) -> None:
        self._book = Book(history_limit=self.history_limit, kill_retry_seconds=self.kill_retry_seconds)
        self._reconciling = recovery.Reconciling(self.reconcile_initial, self.reconcile_max,
                                                 delay=self.reconcile_initial)
        self._seen: dict[str, tuple[OfferView, float]] = {}  # agent id -> its latest offer, when

    @property
    def counters(self) -> dict[str, int]:
        return self._book.counters

    # -- jobs ----------------------------------------------------------------------------------

    def put_job(self, spec: JobSpec, now: float, *, create: bool | None = None) -> list[Command]:
        """Creates or replaces a job. ``create`` True refuses an existing id (Conflict), False a
        missing one (NotFound), None accepts both. ``spec.schedules`` None keeps the job's
        schedules. SpecError for unknown dependencies or a dependency cycle (path
        ``/dependencies...``). Runs already created keep the spec they started with."""
        book = self._at(now)
        existing = book.jobs.get(spec.id)
        if create is True and existing is not None:
            raise Conflict(f"job {spec.id!r} already exists")
        if create is False and existing is None:
            raise NotFound(f"job {spec.id!r} does not exist")
        self._check_dependencies(spec)
        kept = existing.spec.schedules if existing is not None else ()
        spec = dataclasses.replace(spec, schedules=spec.schedules if spec.schedules is not None else kept)
        crons = crons_of(spec)
        if existing is None:
            job = JobState(spec, now, dependency_epoch=now, crons=crons)
            book.jobs[spec.id] = job
            schedules.apply_schedules(book, job, (), now)
            log.info("job_created", job_id=spec.id)
        else:
            job = existing
            for parent in job.spec.dependencies:
                book.children.get(parent, set()).discard(spec.id)
            old = job.spec.schedules or ()
            job.spec, job.crons = spec, crons
            schedules.apply_schedules(book, job, old, now)
            log.info("job_updated", job_id=spec.id)
        for parent in spec.dependencies:
            book.children.setdefault(parent, set()).add(spec.id)
        book.dirty_jobs[spec.id] = None
        return book.flush()

    def delete_job(self, job_id: str, now: float, *, stop_active: bool = False) -> list[Command]:
        """Deletes a job and its history. NotFound; Conflict while other jobs depend on it, or
        while it has active runs unless ``stop_active`` (they are stopped first)."""
        book = self._at(now)
        job = book.job(job_id)
        children = sorted(book.children.get(job_id, ()))
        if children:
            raise Conflict(f"jobs {', '.join(children)} depend on {job_id!r}; change or delete them first")
        if job.active and not stop_active:
            active = ", ".join(sorted(job.active))
            raise Conflict(f"job {job_id!r} has active runs ({active}); stop them first")
        for run in list(job.active.values()):
            book.finish(run, FAILED, "stopped: the job was deleted", now, dependents=False)
        for run in job.history:
            book.drop_run(run)
        for parent in job.spec.dependencies:
            book.children.get(parent, set()).discard(job_id)
        for schedule in job.spec.schedules or ():
            book.cron_alarm.pop((job_id, schedule.id), None)
        del book.jobs[job_id]
        book.forgets.append(Forget(KIND_JOB, job_id))
        log.info("job_deleted", job_id=job_id)
        return book.flush()

    def put_schedule(self, job_id: str, spec: ScheduleSpec, now: float, *,
                     create: bool | None = None) -> list[Command]:
        """Adds or replaces a schedule of a job (``create`` as in put_job; NotFound for an
        unknown job). A new schedule, or one whose cron or timezone changed or that was
        re-enabled, first fires at its next firing after ``now``."""
        book = self._at(now)
        job = book.job(job_id)
        old = job.spec.schedules or ()
        exists = any(s.id == spec.id for s in old)
        if create is True and exists:
            raise Conflict(f"job {job_id!r} already has a schedule {spec.id!r}")
        if create is False and not exists:
            raise NotFound(f"job {job_id!r} has no schedule {spec.id!r}")
        new = tuple(spec if s.id == spec.id else s for s in old) if exists else (*old, spec)
        self._set_schedules(job, old, new, now)
        log.info("schedule_updated", job_id=job_id, schedule_id=spec.id, cron=spec.cron,
                 timezone=spec.timezone, enabled=spec.enabled)
        return book.flush()

    def delete_schedule(self, job_id: str, schedule_id: str, now: float) -> list[Command]:
        """Removes a schedule; NotFound when the job or the schedule does not exist."""
        book = self._at(now)
        job = book.job(job_id)
        old = job.spec.schedules or ()
        if not any(s.id == schedule_id for s in old):
            raise NotFound(f"job {job_id!r} has no schedule {schedule_id!r}")
        self._set_schedules(job, old, tuple(s for s in old if s.id != schedule_id), now)
        log.info("schedule_deleted", job_id=job_id, schedule_id=schedule_id)
        return book.flush()

    def _set_schedules(self, job: JobState, old: tuple[ScheduleSpec, ...], new: tuple[ScheduleSpec, ...],
                       now: float) -> None:
        spec = dataclasses.replace(job.spec, schedules=new)
        job.crons = crons_of(spec)
        job.spec = spec
        schedules.apply_schedules(self._book, job, old, now)
        self._book.dirty_jobs[job.spec.id] = None

    def _check_dependencies(self, spec: JobSpec) -> None:
        known = self._book.jobs
        details = [(f"/dependencies/{i}/id", f"unknown job {dep!r}")
                   for i, dep in enumerate(spec.dependencies) if dep not in known and dep != spec.id]
        if details:
            raise SpecError("Object is not valid", details)
        if not spec.dependencies:
            return  # a job that depends on nothing closes no cycle

        def parents(job_id: str) -> tuple[str, ...]:
            if job_id == spec.id:
                return spec.dependencies
            job = known.get(job_id)
            return job.spec.dependencies if job is not None else ()

        path = _cycle_from(spec.id, parents)
        if path:
            raise SpecError("Object is not valid",
                            [("/dependencies", "dependency cycle: " + " -> ".join(path))])

    # -- runs ----------------------------------------------------------------------------------

    def start_run(self, job_id: str, now: float, trigger: str = "api") -> tuple[Run, list[Command]]:
        """Starts a run of a job now (NotFound for an unknown job); returns the run (``run.id``,
        ``run.to_json()``) and the commands (its Persist, a Revive if offers were suppressed)."""
        book = self._at(now)
        run = book.new_run(book.job(job_id), now, trigger)
        return run, book.flush()

    def stop_run(self, job_id: str, run_id: str, now: float) -> list[Command]:
        """Stops an active run: it ends FAILED ("stopped by request") and its tasks are killed.
        Stopping a finished run changes nothing; NotFound for an unknown job or run."""
        book = self._at(now)
        book.job(job_id)
        run = book.runs.get((job_id, run_id))
        if run is None:
            raise NotFound(f"job {job_id!r} has no run {run_id!r}")
        if not run.finished:
            book.finish(run, FAILED, "stopped by request", now)
        return book.flush()

    # -- time ----------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Command]:
        """Does what is due by ``now``: cron firings (and skips), starting, launch (maxLaunchDelay)
        and active deadlines, backoffs that expired, reconciliation and kill retries."""
        book = self._at(now)
        while book.alarms and book.alarms[0][0] <= now:
            t, _seq, kind, ref = heapq.heappop(book.alarms)
            if kind == "run":
                run = book.runs.get((ref[0], ref[1]))
                if run is not None and not run.finished:
                    self._check_run(run, now)
            elif kind == "cron":
                if book.cron_alarm.get((ref[0], ref[1])) == t:
                    schedules.fire(book, ref[0], ref[1], now)
            elif kind == "reconcile":
                self._reconciling.retry(book, now)
            elif kind == "kill":
                book.retry_kills(now)
        self._compact(now)
        return book.flush()

    def next_wakeup(self) -> float | None:
        """When ``tick`` has something to do next (None: nothing planned): the next cron firing,
        run deadline (starting, maxLaunchDelay, active), backoff end, reconciliation or kill
        retry. Calling tick early or more often is harmless."""
        alarms = self._book.alarms
        while alarms and self._stale(alarms[0]):
            heapq.heappop(alarms)
        return alarms[0][0] if alarms else None

    def _stale(self, alarm: tuple[float, int, str, tuple[str, ...]]) -> bool:
        """True for an alarm that no longer has anything to do (a replaced cron alarm, a finished
        or forgotten run's, a run's for a deadline or backoff that no longer applies, a
        reconciliation or kill retry with nothing left to ask or kill)."""
        t, _seq, kind, ref = alarm
        if kind == "cron":
            return self._book.cron_alarm.get((ref[0], ref[1])) != t
        if kind == "run":
            run = self._book.runs.get((ref[0], ref[1]))
            return run is None or run.finished or t not in run_times(run, -math.inf)
        if kind == "reconcile":
            return self._reconciling.next_at != t or not self._reconciling.unconfirmed
        return not self._book.killing  # kind == "kill"

    def _check_run(self, run: Run, now: float) -> None:
        """Ends a run whose deadline passed: SKIPPED past its starting deadline with nothing
        launched, FAILED past its active deadline, or past its launch deadline (maxLaunchDelay)
        not started; otherwise updates whether it is ready to launch."""
        book = self._book
        if run.start_deadline is not None and run.launches == 0 and now >= run.start_deadline:
            why = queries.why_waiting(run, self._seen_views(), now, book.unlaunchable.get(run.key))
            seconds = run.start_deadline - (run.scheduled_at or run.created_at)
            book.finish(run, SKIPPED, "could not start within startingDeadlineSeconds "
                        f"({fmt_number(seconds)} s) of its firing at {iso(run.scheduled_at)}: {why}", now)
            return
        deadline = run.deadline
        if deadline is not None and now >= deadline:
            seconds = run.spec.run.restart.active_deadline_seconds or 0.0
            book.finish(run, FAILED, f"deadline exceeded (activeDeadlineSeconds {fmt_number(seconds)} s)",
                        now)
            return
        launch_deadline = run.launch_deadline
        if launch_deadline is not None and now >= launch_deadline and not self._awaiting_answer(run):
            book.finish(run, FAILED, f"not started within maxLaunchDelay "
                        f"({fmt_number(run.spec.run.max_launch_delay)} s)", now)
            return
        book.refresh(run, now)

    def _awaiting_answer(self, run: Run) -> bool:
        """True while a live task of the run awaits the master's answer to reconciliation: it may
        have reached RUNNING unheard (the engine was down), so only that answer decides whether
        the run started in time (``status_update`` checks the run again when it comes)."""
        unconfirmed = self._reconciling.unconfirmed
        return any(a is not None and not a.terminal and a.task_id in unconfirmed
                   for a in (slot.current for slot in run.slots))

    def _compact(self, now: float) -> None:
        """Rebuilds the timer heap when stale entries (of finished runs) pile up."""
        book = self._book
        live = sum(len(j.active) for j in book.jobs.values()) + len(book.cron_alarm)
        if len(book.alarms) <= 4 * live + 1024:
            return
        book.alarms, book.alarm_seq = [], 0
        for job in book.jobs.values():
            for run in job.active.values():
                book.arm_run(run, now)
        for key, t in book.cron_alarm.items():
            book.alarm(t, "cron", key)
        if self._reconciling.next_at is not None:
            book.alarm(self._reconciling.next_at, "reconcile")
        if book.killing:
            book.alarm(min(s for _a, _g, s in book.killing.values()) + book.kill_retry_seconds, "kill")

    # -- resources and tasks --------------------------------------------------------------------

    def offers(self, offers: list[mensa_pb2.Offer], now: float) -> list[Command]:
        """Packs waiting task slots into the offers: Persist of the runs that launch, then one
        Launch per used offer, one Decline for the others (and Revive/Suppress on a change)."""
        book = self._at(now)
        offering.place(book, self._seen, offers, now, refuse_seconds=self.refuse_seconds,
                       idle_refuse_seconds=self.idle_refuse_seconds, memory_seconds=self.offer_memory_seconds)
        return book.flush()

    def wants_offers(self) -> bool:
        """True while some task slot could be launched now."""
        return bool(self._book.ready)

    def status_update(self, status: mensa_pb2.TaskStatus, now: float) -> list[Command]:
        """Applies a task status update (from an agent, the master, or reconciliation); see
        updates.py. Acknowledge it only after the returned Persists are written."""
        book = self._at(now)
        self._reconciling.answered(status.task_id.value)
        updates.apply(book, status, now)
        ref = book.tasks.get(status.task_id.value)
        run = book.runs.get(ref[0]) if ref is not None else None
        if run is not None and not run.finished:
            self._check_run(run, now)  # a launch deadline that waited for this answer
        return book.flush()

    # -- restart and failover -------------------------------------------------------------------

    def restore(self, records: dict[str, dict[str, dict[str, Any]]], now: float) -> list[Command]:
        """Rebuilds the engine from its records (``{kind: {key: doc}}``, as Persist wrote them);
        returns the Reconcile for every task that may be live, then whatever fell due while the
        engine was down (as ``tick(now)`` would), and Revive or Suppress."""
        self._reset()
        book = self._at(now)
        recovery.restore(book, self._reconciling, records, now)
        return self.tick(now)

    def subscribed(self, now: float) -> list[Command]:
        """Call on every SUBSCRIBED (the first, and after a master failover or reconnection):
        reconciles every task that may be live, and says again whether offers are wanted."""
        book = self._at(now)
        book.told = None
        self._reconciling.unconfirmed.update(recovery.live_tasks(book))
        self._reconciling.start(book, now)
        return book.flush()

    # -- queries -------------------------------------------------------------------------------

    def jobs(self) -> list[JobSpec]:
        """Every job's spec (schedules included), by id."""
        return [self._book.jobs[j].spec for j in sorted(self._book.jobs)]

    def job(self, job_id: str) -> JobSpec:
        """A job's spec (schedules included); NotFound."""
        return self._book.job(job_id).spec

    def job_view(self, job_id: str, embed: Iterable[str] = ()) -> dict[str, Any]:
        """The job's Metronome JSON (with ``schedules``) plus the embeds asked for:
        ``activeRuns``, ``history``, ``historySummary``; NotFound."""
        job = self._book.job(job_id)
        out = job_json(job.spec)
        wanted = set(embed)
        if "activeRuns" in wanted:
            out["activeRuns"] = queries.active_runs(job)
        if "history" in wanted:
            out["history"] = queries.history(job)
        if "historySummary" in wanted:
            out["historySummary"] = queries.history_summary(job)
        return out

    def runs(self, job_id: str, *, include_finished: bool = False) -> list[dict[str, Any]]:
        """The job's active runs (oldest first), then with ``include_finished`` its kept
        finished runs (newest first), as run JSON; NotFound."""
        job = self._book.job(job_id)
        out = queries.active_runs(job)
        if include_finished:
            out += [r.to_json() for r in reversed(job.history)]
        return out

    def run(self, job_id: str, run_id: str) -> dict[str, Any]:
        """One run's JSON (active, or finished and kept in history); NotFound."""
        self._book.job(job_id)
        run = self._book.runs.get((job_id, run_id))
        if run is None:
            raise NotFound(f"job {job_id!r} has no run {run_id!r}")
        return run.to_json()

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's history (Metronome shape, newest first, skipped firings beside); NotFound."""
        return queries.history(self._book.job(job_id))

    def history_summary(self, job_id: str) -> dict[str, Any]:
        """successCount, failureCount, skippedCount, lastSuccessAt, lastFailureAt; NotFound."""
        return queries.history_summary(self._book.job(job_id))

    def queue(self) -> list[dict[str, Any]]:
        """Waiting runs with the reason they wait, and dependent jobs waiting for their parents
        (with a job-level reason, e.g. "waiting for a's next success (none since ...)"):
        ``[{"jobId", "runs": [{"runId", "reason", "waitingTasks", "since", "mustStartBy"?}],
        "reason"?}]``."""
        return queries.queue(self._book, self._seen_views(), self._book.now)

    def metrics(self) -> dict[str, float]:
        """Counters (runs_created, runs_succeeded, runs_failed, runs_skipped, tasks_launched,
        tasks_relaunched, tasks_failed, offers_received, offers_declined) and gauges (jobs,
        runs_active, runs_waiting, tasks_reconciling, tasks_killing, records_unreadable: see
        ``problems()``, tasks_held: live tasks of those records)."""
        return queries.metrics(self._book, len(self._reconciling.unconfirmed))

    def problems(self) -> list[dict[str, Any]]:
        """The records the last restore could not read, kept untouched (their runs' tasks are
        reconciled, never killed): ``[{"kind": "job"|"run", "key", "jobId"?, "error"}]``; for
        the API to show (an operator repairs the store and restarts)."""
        return queries.problems(self._book)

    def _seen_views(self) -> list[OfferView]:
        return [view for view, _at in self._seen.values()]

    def _at(self, now: float) -> Book:
        self._book.now = now
        return self._book


def _cycle_from(start: str, parents: Callable[[str], tuple[str, ...]]) -> list[str] | None:
    """Returns a dependency path from ``start`` back to itself, or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for dep in parents(node):
            if dep == start:
                return [*path, dep]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None
