"""Runs of batch jobs: their task slots and attempts, and their JSON (pure data).

A ``Run`` is one execution of a job. It has ``completions`` task slots (indexes 0..N-1); at most
``parallelism`` of them have a live task at once, and the run succeeds when every slot has
succeeded. Each slot's launches are its ``Attempt``s, whose task ids are
``<job>.<run>.<index>.<attempt>`` (attempt counting from 1), so a relaunch never reuses an id.

Statuses (Metronome's, plus SKIPPED for a scheduled firing that did not run): INITIAL (created,
nothing launched), STARTING (a task launched), ACTIVE (a task reached RUNNING), then SUCCESS,
FAILED or SKIPPED. A run that has not started (no task RUNNING or finished) run.maxLaunchDelay
after its creation fails (``Run.launch_deadline``). ``to_doc``/``from_doc`` are the durable form
(epoch seconds); ``to_json`` is the API's (Metronome shape, ISO 8601 times).

A run's record has a bounded size (it must fit the store's record limit, 900 KB): a job has at
most 1,000 slots (``jobs.MAX_TASKS``), its spec at most ``jobs.MAX_SPEC_BYTES``, a slot keeps at
most ``MAX_ATTEMPTS_KEPT`` attempts, and an attempt's message at most ``MAX_MESSAGE_BYTES`` as
JSON. Only a slot's current attempt is stored in full; a superseded attempt that is over is
stored in brief (its attempt number, state, exit code and end: no agent, start or message), and
an attempt that is over stores its number rather than its task id (a possibly live one keeps
its task id, which restore reads even from a record it cannot parse). The worst case is
measured in tests/unit/batch_fw/test_batch_limits.py.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from mensa.frameworks.batch_fw.jobs import JobSpec, job_json, parse_job
from mensa.proto import mensa_pb2
from mensa.proto.states import TERMINAL_STATES

INITIAL, STARTING, ACTIVE = "INITIAL", "STARTING", "ACTIVE"
SUCCESS, FAILED, SKIPPED = "SUCCESS", "FAILED", "SKIPPED"
FINISHED = frozenset({SUCCESS, FAILED, SKIPPED})

# Slot phases: waiting for a (re)launch, a task live, done well, or given up on.
WAITING, LIVE, SUCCEEDED, ABANDONED = "WAITING", "LIVE", "SUCCEEDED", "ABANDONED"

# The protocol's terminal states by name, plus TASK_UNKNOWN: the master's answer for a task it
# does not know, which for the batch framework means the task is not running (its attempt is over;
# updates.py relaunches a slot whose task never started).
_TERMINAL_TASK_STATES = frozenset(
    {mensa_pb2.TaskState.Name(s) for s in TERMINAL_STATES} | {"TASK_UNKNOWN"})
_EXIT_RE = re.compile(r"exited with status (-?\d+)")

# How many attempts of a slot a run keeps (and stores): the latest ones. Older attempts that are
# over are dropped and only counted (``Slot.dropped``), so retries cannot grow a run's record
# without bound; an attempt that may still be live is never dropped.
MAX_ATTEMPTS_KEPT = 2
# The most bytes a status message kept in an attempt takes in the record, as a JSON string's
# content (escapes counted): 256 characters of plain text.
MAX_MESSAGE_BYTES = 256
_INT32 = 2**31


def clip_message(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """The longest start of ``text`` whose JSON encoding (the store's: UTF-8, escapes for quotes,
    backslashes and control characters) takes at most ``limit`` bytes between the quotes."""
    size = 0
    for i, char in enumerate(text):
        size += len(json.dumps(char, ensure_ascii=False).encode()) - 2
        if size > limit:
            return text[:i]
    return text


def iso(t: float | None) -> str | None:
    """Epoch seconds as Metronome writes times: ``2026-11-21T10:30:00.123+0000`` (UTC); None for
    None and for a time that has no such form (infinite, NaN, or beyond what gmtime handles)."""
    if t is None:
        return None
    try:
        millis = round(t * 1000)
        seconds, ms = divmod(millis, 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}+0000"
    except (OverflowError, OSError, ValueError, TypeError):
        return None


def exit_code(state: str, message: str) -> int | None:
    """The exit code a status carries: 0 for FINISHED, N from "Command exited with status N"."""
    match = _EXIT_RE.search(message or "")
    if match and len(match.group(1)) <= 11 and -_INT32 <= int(match.group(1)) < _INT32:
        return int(match.group(1))
    return 0 if state == "TASK_FINISHED" else None


def task_state_is_terminal(state: str) -> bool:
    """True for task state names after which the attempt is over (UNKNOWN included: for the
    batch framework a task the master does not know is not running)."""
    return state in _TERMINAL_TASK_STATES


@dataclass(slots=True)
class Attempt:
    """One launch of a slot: its task and what is known of it."""

    task_id: str
    agent_id: str
    launched_at: float
    state: str = "TASK_STAGING"
    started_at: float | None = None  # first STARTING/RUNNING seen: the task did start
    completed_at: float | None = None
    exit_code: int | None = None
    message: str = ""

    @property
    def terminal(self) -> bool:
        return task_state_is_terminal(self.state)

    def to_doc(self, slot_prefix: str, *, current: bool) -> dict[str, Any]:
        """The stored form (see the module docstring): in full for the slot's ``current`` attempt
        or one that may be live, in brief otherwise; ``slot_prefix`` is ``<job>.<run>.<index>``."""
        number = self.task_id[len(slot_prefix) + 1:] if self.task_id.startswith(slot_prefix + ".") else ""
        doc: dict[str, Any] = ({"n": int(number)} if self.terminal and number.isdigit() and len(number) < 19
                               else {"id": self.task_id})
        doc.update(state=self.state, completedAt=self.completed_at, exitCode=self.exit_code)
        if current or not self.terminal:
            doc.update(agentId=self.agent_id, launchedAt=self.launched_at, startedAt=self.started_at,
                       message=self.message)
        return doc

    @staticmethod
    def from_doc(doc: dict[str, Any], slot_prefix: str) -> Attempt:
        task_id = doc["id"] if "id" in doc else f"{slot_prefix}.{int(doc['n'])}"
        completed = doc.get("completedAt")
        return Attempt(task_id, doc.get("agentId", ""), float(doc.get("launchedAt", completed or 0.0)),
                       doc.get("state", "TASK_STAGING"), doc.get("startedAt"), completed,
                       doc.get("exitCode"), doc.get("message", ""))


@dataclass(slots=True)
class Slot:
    """Task slot ``index`` of a run: its latest attempts (the last one is the current; ``dropped``
    older ones were over and are only counted, see MAX_ATTEMPTS_KEPT), the failures counted
    against it, and the earliest time it may be (re)launched (its backoff)."""

    index: int
    phase: str = WAITING
    attempts: list[Attempt] = field(default_factory=list)
    failures: int = 0
    not_before: float = 0.0
    dropped: int = 0

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def next_task_id(self, run_prefix: str) -> str:
        """The task id of the slot's next attempt: ``<run_prefix>.<index>.<attempt number>``."""
        return f"{run_prefix}.{self.index}.{self.dropped + len(self.attempts) + 1}"

    def add(self, attempt: Attempt) -> list[Attempt]:
        """Appends a new (current) attempt; drops the oldest attempts that are over beyond
        MAX_ATTEMPTS_KEPT and returns them."""
        for older in self.attempts:
            if older.terminal:
                older.message = ""  # only the current attempt keeps its message (the record's size)
        self.attempts.append(attempt)
        out: list[Attempt] = []
        while len(self.attempts) > MAX_ATTEMPTS_KEPT:
            oldest = next((a for a in self.attempts[:-1] if a.terminal), None)
            if oldest is None:
                break
            self.attempts.remove(oldest)
            out.append(oldest)
        self.dropped += len(out)
        return out

    def attempt(self, task_id: str) -> Attempt | None:
        for a in reversed(self.attempts):
            if a.task_id == task_id:
                return a
        return None

    def to_doc(self, run_prefix: str) -> dict[str, Any]:
        """The stored form; ``run_prefix`` is ``<job>.<run>`` (its attempts' task ids start so)."""
        prefix = f"{run_prefix}.{self.index}"
        doc = {"index": self.index, "phase": self.phase, "failures": self.failures,
               "notBefore": self.not_before,
               "attempts": [a.to_doc(prefix, current=a is self.current) for a in self.attempts]}
        if self.dropped:
            doc["droppedAttempts"] = self.dropped
        return doc

    @staticmethod
    def from_doc(doc: dict[str, Any], run_prefix: str) -> Slot:
        index = int(doc["index"])
        return Slot(index, doc.get("phase", WAITING),
                    [Attempt.from_doc(a, f"{run_prefix}.{index}") for a in doc.get("attempts", [])],
                    int(doc.get("failures", 0)), float(doc.get("notBefore", 0.0)),
                    int(doc.get("droppedAttempts", 0)))


@dataclass(slots=True)
class Run:
    """A run of job ``job_id`` with the job's spec as it was when the run was created.

    ``trigger`` is "api", "schedule:<id>" or "dependency"; a scheduled run carries the firing
    time (``scheduled_at``) and the time by which it must have launched a task
    (``start_deadline``, from the schedule's startingDeadlineSeconds, or it ends SKIPPED). Every
    run must have a task running by its ``launch_deadline`` (run.maxLaunchDelay), or it fails."""

    id: str
    job_id: str
    spec: JobSpec
    created_at: float
    trigger: str = "api"
    status: str = INITIAL
    slots: list[Slot] = field(default_factory=list)
    scheduled_at: float | None = None
    start_deadline: float | None = None
    finished_at: float | None = None
    reason: str = ""
    launches: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.job_id, self.id)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def deadline(self) -> float | None:
        """When the run fails if still unfinished (restart.activeDeadlineSeconds after creation)."""
        seconds = self.spec.run.restart.active_deadline_seconds
        return None if seconds is None else self.created_at + seconds

    @property
    def ran(self) -> bool:
        """True once a task of the run reached RUNNING (the run is ACTIVE) or did its work (a slot
        succeeded, RUNNING unseen): the run has started, as maxLaunchDelay means it."""
        return self.status == ACTIVE or self.succeeded() > 0

    @property
    def launch_deadline(self) -> float | None:
        """When the run fails unless it has started by then: run.maxLaunchDelay after its creation
        (Metronome's meaning: the seconds until the job needs to be running); None once it ran."""
        return None if self.ran else self.created_at + self.spec.run.max_launch_delay

    def launch_closed(self, now: float) -> bool:
        """True when the run may launch no more tasks: a scheduled run that launched none by its
        start deadline (it is to be SKIPPED), or a run not started by its launch deadline (it is
        to fail)."""
        if self.start_deadline is not None and self.launches == 0 and now >= self.start_deadline:
            return True
        launch_deadline = self.launch_deadline
        return launch_deadline is not None and now >= launch_deadline

    def live(self) -> int:
        return sum(1 for s in self.slots if s.phase == LIVE)

    def succeeded(self) -> int:
        return sum(1 for s in self.slots if s.phase == SUCCEEDED)

    def task_ids(self) -> list[str]:
        return [a.task_id for s in self.slots for a in s.attempts]

    # -- durable form ------------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """The run as stored (epoch seconds), with the job spec it runs."""
        spec = job_json(self.spec)
        spec.pop("schedules", None)
        return {"id": self.id, "jobId": self.job_id, "spec": spec, "createdAt": self.created_at,
                "trigger": self.trigger, "status": self.status, "scheduledAt": self.scheduled_at,
                "startDeadline": self.start_deadline, "finishedAt": self.finished_at,
                "reason": self.reason, "launches": self.launches,
                "slots": [s.to_doc(f"{self.job_id}.{self.id}") for s in self.slots]}

    @staticmethod
    def from_doc(doc: dict[str, Any]) -> Run:
        """Rebuilds a run from ``to_doc``; raises KeyError/ValueError/SpecError when malformed."""
        return Run(
            id=doc["id"], job_id=doc["jobId"], spec=parse_job(doc["spec"]),
            created_at=float(doc["createdAt"]), trigger=doc.get("trigger", "api"),
            status=doc.get("status", INITIAL),
            slots=[Slot.from_doc(s, f"{doc['jobId']}.{doc['id']}") for s in doc.get("slots", [])],
            scheduled_at=doc.get("scheduledAt"), start_deadline=doc.get("startDeadline"),
            finished_at=doc.get("finishedAt"), reason=doc.get("reason", ""),
            launches=int(doc.get("launches", 0)),
        )

    # -- API form ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The run in Metronome's shape (``finishedAt`` and its Metronome alias ``completedAt``),
        with each task's slot index, agent and exit code."""
        tasks: list[dict[str, Any]] = []
        for slot in self.slots:
            for a in slot.attempts:
                task: dict[str, Any] = {"id": a.task_id, "status": a.state, "index": slot.index,
                                        "agentId": a.agent_id, "launchedAt": iso(a.launched_at),
                                        "startedAt": iso(a.started_at), "completedAt": iso(a.completed_at)}
                if a.exit_code is not None:
                    task["exitCode"] = a.exit_code
                if a.message:
                    task["message"] = a.message
                tasks.append(task)
        out: dict[str, Any] = {
            "id": self.id, "jobId": self.job_id, "status": self.status,
            "createdAt": iso(self.created_at), "finishedAt": iso(self.finished_at),
            "completedAt": iso(self.finished_at), "tasks": tasks,
            "completedTasks": self.succeeded(), "attempts": self.launches,
            "parallelism": self.spec.parallelism, "completions": self.spec.completions,
            "trigger": self.trigger,
        }
        if self.scheduled_at is not None:
            out["scheduledAt"] = iso(self.scheduled_at)
        if self.reason:
            out["reason"] = self.reason
        return out
