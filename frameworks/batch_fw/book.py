"""The batch engine's books: jobs, runs, task ids, timers, and what to tell the shell (pure).

``Book`` holds all the engine's state and the primitives every part of it uses: creating and
finishing runs (with history, counts and dependency triggers), the set of runs ready to launch,
one-shot timers (``alarm``; the engine's ``tick`` pops them), kills that are repeated until the
task is reported terminal, and ``flush``, which turns what changed into commands: Persist and
Forget first (runs before jobs), then the effects (Launch, Decline, Kill, Reconcile), then
Revive/Suppress when whether offers are wanted changed.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog

from mensa.frameworks.batch_fw.commands import (
    KIND_JOB,
    KIND_RUN,
    Command,
    Forget,
    Kill,
    Persist,
    Revive,
    Suppress,
)
from mensa.frameworks.batch_fw.cron import CronSchedule
from mensa.frameworks.batch_fw.jobs import JobSpec, ScheduleSpec, SpecError, job_json, parse_job
from mensa.frameworks.batch_fw.runs import (
    ABANDONED,
    FAILED,
    LIVE,
    SKIPPED,
    SUCCESS,
    WAITING,
    Attempt,
    Run,
    Slot,
    iso,
)

log = structlog.get_logger(__name__)

RunKey = tuple[str, str]


class NotFound(LookupError):
    """No such job, schedule or run."""


class Conflict(Exception):
    """The request contradicts the current state (an existing id, active runs, dependents)."""


def run_record_key(run: Run) -> str:
    """The key of a run's record: ``<job id>.<run id>``."""
    return f"{run.job_id}.{run.id}"


def crons_of(spec: JobSpec) -> dict[str, CronSchedule]:
    """The parsed cron expression of each of the job's schedules; SpecError if one is invalid."""
    try:
        return {s.id: CronSchedule.parse(s.cron, s.timezone) for s in spec.schedules or ()}
    except ValueError as exc:  # parse_job checked them already; kept for specs built by hand
        raise SpecError("Object is not valid", [("/schedules", str(exc))]) from None


@dataclass(slots=True)
class JobState:
    """A job: its spec (schedules always a tuple), its runs, and what must survive a restart:
    each schedule's last-fired time, the dependency epoch (when its last run was created), and
    its history summary."""

    spec: JobSpec
    created_at: float
    last_fired: dict[str, float] = field(default_factory=dict)
    dependency_epoch: float = 0.0
    success_count: int = 0
    failure_count: int = 0
    skipped_count: int = 0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    active: dict[str, Run] = field(default_factory=dict)
    history: deque[Run] = field(default_factory=deque)  # finished runs, oldest first
    crons: dict[str, CronSchedule] = field(default_factory=dict)

    def schedule(self, schedule_id: str) -> ScheduleSpec | None:
        return next((s for s in self.spec.schedules or () if s.id == schedule_id), None)

    def to_doc(self) -> dict[str, Any]:
        return {"spec": job_json(self.spec), "createdAt": self.created_at,
                "lastFired": dict(self.last_fired), "dependencyEpoch": self.dependency_epoch,
                "successCount": self.success_count, "failureCount": self.failure_count,
                "skippedCount": self.skipped_count, "lastSuccessAt": self.last_success_at,
                "lastFailureAt": self.last_failure_at}

    @staticmethod
    def from_doc(doc: dict[str, Any]) -> JobState:
        """Rebuilds a job from ``to_doc``; raises KeyError/TypeError/ValueError when malformed."""
        spec = parse_job(doc["spec"])
        spec = dataclasses.replace(spec, schedules=spec.schedules or ())
        fired = {k: float(v) for k, v in doc.get("lastFired", {}).items()}
        epoch = float(doc.get("dependencyEpoch", doc["createdAt"]))
        job = JobState(spec, float(doc["createdAt"]), fired, epoch, int(doc.get("successCount", 0)),
                       int(doc.get("failureCount", 0)), int(doc.get("skippedCount", 0)),
                       doc.get("lastSuccessAt"), doc.get("lastFailureAt"))
        job.crons = crons_of(spec)
        return job


def latest_succeeded(job: JobState) -> bool:
    """True when the job's latest finished run, skipped firings aside, is a success (from the
    kept history; from the last success and failure times when no such run is kept)."""
    for run in reversed(job.history):
        if run.status != SKIPPED:
            return run.status == SUCCESS
    if job.last_success_at is None:
        return False
    return job.last_failure_at is None or job.last_success_at >= job.last_failure_at


def run_times(run: Run, after: float) -> list[float]:
    """When an unfinished run needs a look: its deadlines still pending (starting, while nothing
    launched; launch, while it has not started; active) and its slots' backoff ends after
    ``after``."""
    deadlines = (run.start_deadline if run.launches == 0 else None, run.launch_deadline, run.deadline)
    return [t for t in deadlines if t is not None] + [
        s.not_before for s in run.slots if s.phase == WAITING and s.not_before > after]


@dataclass(slots=True)
class Book:
    """The engine's state; see the module docstring. Tunables are set by BatchEngine."""

    history_limit: int = 1000
    kill_retry_seconds: float = 30.0
    jobs: dict[str, JobState] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=dict)  # parent id -> dependent job ids
    runs: dict[RunKey, Run] = field(default_factory=dict)  # active runs and kept finished ones
    ready: dict[RunKey, None] = field(default_factory=dict)  # runs with a slot launchable now
    tasks: dict[str, tuple[RunKey, int]] = field(default_factory=dict)  # task id -> run, slot index
    alarms: list[tuple[float, int, str, tuple[str, ...]]] = field(default_factory=list)
    alarm_seq: int = 0
    cron_alarm: dict[tuple[str, str], float] = field(default_factory=dict)  # the live alarm of each schedule
    # task id -> (agent id, grace, when the kill was last sent), until reported terminal
    killing: dict[str, tuple[str, float | None, float]] = field(default_factory=dict)
    told: bool | None = None  # what the master was last told: offers wanted (Revive) or not (Suppress)
    seq: int = 0
    now: float = 0.0  # the latest time the engine was given (for queries)
    dirty_runs: dict[RunKey, None] = field(default_factory=dict)
    dirty_jobs: dict[str, None] = field(default_factory=dict)
    forgets: list[Forget] = field(default_factory=list)
    effects: list[Command] = field(default_factory=list)
    unlaunchable: dict[RunKey, str] = field(default_factory=dict)  # run -> why its task could not be built
    # Records restore could not read: (kind, key) -> error. Their records are kept as they are.
    unreadable: dict[tuple[str, str], str] = field(default_factory=dict)
    # Tasks of runs whose job record is unreadable (task id -> agent id): reconciled, never
    # killed by the engine (it cannot tell what they belong to; the records are left for a fix).
    held: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys((
        "runs_created", "runs_succeeded", "runs_failed", "runs_skipped", "tasks_launched",
        "tasks_relaunched", "tasks_failed", "offers_received", "offers_declined"), 0))

    def job(self, job_id: str) -> JobState:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return job

    # -- runs ----------------------------------------------------------------------------------

    def new_run(self, job: JobState, now: float, trigger: str, scheduled_at: float | None = None,
                start_deadline: float | None = None) -> Run:
        """Creates a run of ``job`` with the job's current spec."""
        spec = dataclasses.replace(job.spec, schedules=None)
        run = Run(self.run_id(job.spec.id, now), job.spec.id, spec, now, trigger,
                  slots=[Slot(i) for i in range(spec.completions)], scheduled_at=scheduled_at,
                  start_deadline=start_deadline)
        self.runs[run.key] = run
        job.active[run.id] = run
        job.dependency_epoch = max(job.dependency_epoch, now)
        self.dirty_runs[run.key] = None
        self.dirty_jobs[job.spec.id] = None
        self.counters["runs_created"] += 1
        self.arm_run(run, now)
        self.refresh(run, now)
        log.info("run_created", job_id=run.job_id, run_id=run.id, trigger=trigger,
                 tasks=spec.completions, parallelism=spec.parallelism)
        return run

    def run_id(self, job_id: str, now: float) -> str:
        """A new run id: the UTC time to the second, then a sequence number (Metronome-like)."""
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
        while True:
            self.seq += 1
            run_id = f"{stamp}{self.seq % 100000:05d}"
            if (job_id, run_id) not in self.runs:
                return run_id

    def record_skip(self, job: JobState, schedule_id: str, scheduled_at: float, reason: str,
                    now: float) -> None:
        """Records a firing of a schedule that did not run, as a SKIPPED run in the history."""
        spec = dataclasses.replace(job.spec, schedules=None)
        run = Run(self.run_id(job.spec.id, now), job.spec.id, spec, now, f"schedule:{schedule_id}",
                  scheduled_at=scheduled_at)
        self.runs[run.key] = run
        job.active[run.id] = run
        log.info("firing_skipped", job_id=job.spec.id, schedule_id=schedule_id, reason=reason)
        self.finish(run, "SKIPPED", reason, now, dependents=False)

    def finish(self, run: Run, status: str, reason: str, now: float, *, dependents: bool = True) -> None:
        """Ends a run: kills its live tasks, moves it to its job's history, counts it, and (with
        ``dependents``) starts the dependent runs that became due."""
        run.status, run.reason, run.finished_at = status, reason, now
        for slot in run.slots:
            current = slot.current
            if current is not None and not current.terminal:
                self.kill(current, run, now)
            if slot.phase in (WAITING, LIVE):
                slot.phase = ABANDONED
        self.ready.pop(run.key, None)
        self.unlaunchable.pop(run.key, None)
        job = self.jobs[run.job_id]
        job.active.pop(run.id, None)
        job.history.append(run)
        if status == SUCCESS:
            job.success_count += 1
            job.last_success_at = now
        elif status == FAILED:
            job.failure_count += 1
            job.last_failure_at = now
        else:
            job.skipped_count += 1
        self.counters[{SUCCESS: "runs_succeeded", FAILED: "runs_failed"}.get(status, "runs_skipped")] += 1
        while len(job.history) > self.history_limit:
            self.drop_run(job.history.popleft())
        self.dirty_runs[run.key] = None
        self.dirty_jobs[run.job_id] = None
        if status != "SKIPPED":
            log.info("run_finished", job_id=run.job_id, run_id=run.id, status=status, reason=reason or None)
        if not dependents:
            return
        if status == SUCCESS:
            for child in sorted(self.children.get(run.job_id, ())):
                self.check_dependent(child, now)
        self.check_dependent(run.job_id, now)

    def drop_run(self, run: Run) -> None:
        """Forgets a finished run (evicted from history, or its job deleted)."""
        self.runs.pop(run.key, None)
        for task_id in run.task_ids():
            self.tasks.pop(task_id, None)
        self.forgets.append(Forget(KIND_RUN, run_record_key(run)))

    def check_dependent(self, job_id: str, now: float) -> None:
        """Starts a run of ``job_id`` if it has dependencies, none of its runs is active, and
        every parent has a successful run that finished after the job's last run was created
        and its latest finished run (skipped firings aside) is a success."""
        job = self.jobs.get(job_id)
        if job is None or not job.spec.dependencies or job.active:
            return
        if all(self.parent_wait(parent, job.dependency_epoch) is None for parent in job.spec.dependencies):
            self.new_run(job, now, "dependency")

    def parent_wait(self, parent_id: str, since: float) -> str | None:
        """Why parent ``parent_id`` does not yet let a dependent whose last run was created at
        ``since`` run, e.g. "waiting for a's next success (none since ...)" (None: it does)."""
        parent = self.jobs.get(parent_id)
        if parent is None:
            return f"waiting for {parent_id} (it does not exist)"
        if parent.last_success_at is None or parent.last_success_at <= since:
            return f"waiting for {parent_id}'s next success (none since {iso(since)})"
        if not latest_succeeded(parent):
            return f"waiting for {parent_id}'s next success (its latest run failed)"
        return None

    def refresh(self, run: Run, now: float) -> None:
        """Keeps ``run`` in the ready set exactly while it has a slot it may launch now."""
        ready = (not run.finished and not run.launch_closed(now) and run.live() < run.spec.parallelism
                 and any(s.phase == WAITING and s.not_before <= now for s in run.slots))
        if ready:
            self.ready.setdefault(run.key, None)
        else:
            self.ready.pop(run.key, None)

    # -- timers --------------------------------------------------------------------------------

    def alarm(self, t: float, kind: str, ref: tuple[str, ...] = ()) -> None:
        """Asks for a look at ``ref`` (of ``kind``: run, cron, reconcile, kill) at time ``t``."""
        self.alarm_seq += 1
        heapq.heappush(self.alarms, (t, self.alarm_seq, kind, ref))

    def arm_run(self, run: Run, now: float) -> None:
        """Sets the alarms of a run: its starting, launch and active deadlines, its slots' backoffs."""
        for t in run_times(run, now):
            self.alarm(t, "run", run.key)

    # -- kills ---------------------------------------------------------------------------------

    def kill(self, attempt: Attempt, run: Run, now: float) -> None:
        """Kills a task (with the run's grace period) unless it is being killed already."""
        if attempt.task_id not in self.killing:
            self.effects.append(self.kill_task(attempt.task_id, attempt.agent_id,
                                               run.spec.run.task_kill_grace_period_seconds, now))

    def kill_task(self, task_id: str, agent_id: str, grace: float | None, now: float) -> Kill:
        """Returns the Kill for a task and repeats it every ``kill_retry_seconds`` until the task is
        reported terminal."""
        if not self.killing:
            self.alarm(now + self.kill_retry_seconds, "kill")
        self.killing[task_id] = (agent_id, grace, now)
        return Kill(task_id, agent_id, grace)

    def retry_kills(self, now: float) -> None:
        for task_id, (agent_id, grace, sent) in list(self.killing.items()):
            if now - sent >= self.kill_retry_seconds:
                self.killing[task_id] = (agent_id, grace, now)
                self.effects.append(Kill(task_id, agent_id, grace))
        if self.killing:
            self.alarm(min(s for _a, _g, s in self.killing.values()) + self.kill_retry_seconds, "kill")

    # -- output --------------------------------------------------------------------------------

    def flush(self) -> list[Command]:
        """The commands of one call: records first (runs before jobs), then effects, then
        Revive/Suppress when whether offers are wanted changed."""
        out: list[Command] = []
        for key in self.dirty_runs:
            run = self.runs.get(key)
            if run is not None:
                out.append(Persist(KIND_RUN, run_record_key(run), run.to_doc()))
        for job_id in self.dirty_jobs:
            job = self.jobs.get(job_id)
            if job is not None:
                out.append(Persist(KIND_JOB, job_id, job.to_doc()))
        out += self.forgets
        out += self.effects
        self.dirty_runs, self.dirty_jobs, self.forgets, self.effects = {}, {}, [], []
        wanted = bool(self.ready)
        if wanted != self.told:
            out.append(Revive() if wanted else Suppress())
            self.told = wanted
        return out
