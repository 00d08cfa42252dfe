"""Task status updates: what each one does to its attempt, slot and run (pure).

For the live attempt of a slot:

- STAGING, STARTING, RUNNING, KILLING, UNREACHABLE are recorded (RUNNING makes the run ACTIVE).
  UNREACHABLE (the framework is PARTITION_AWARE) waits: the task may still run behind a
  partition; it comes back RUNNING (or finishes), or the master later says GONE/UNKNOWN. Only the
  run's deadline (activeDeadlineSeconds) bounds that wait;
- FINISHED settles the slot; the run succeeds when every slot has;
- a task that never started (no STARTING or RUNNING seen) and is certainly not running: DROPPED,
  GONE, GONE_BY_OPERATOR, UNKNOWN, or LOST with reason RECONCILIATION, INVALID_OFFERS or
  TASK_UNKNOWN, puts the slot back to waiting at once, for a new attempt (not a failure);
- anything else terminal (FAILED, ERROR, KILLED, any other LOST, or a loss after the task
  started) is a failure of that attempt: under ON_FAILURE the slot waits a backoff of 1 s
  doubling per failure of that slot, capped at MAX_BACKOFF_SECONDS (5 minutes), unless the retry
  could not start before the run's deadline (the run fails then); under NEVER the run fails, and
  its other tasks are killed. (maxLaunchDelay is no cap: it bounds how long a run may take to
  start, see runs.py ``Run.launch_deadline``.)

For any other attempt (superseded by a relaunch, or of a finished run): FINISHED settles its
slot if it has not succeeded yet (the work is done; a live relaunch is killed); a state saying
the task runs gets it killed (a second copy must not run); other states are only recorded.
An update repeating the recorded state changes nothing; an update for a task id the engine does
not know gets the task killed unless it is terminal, or the task belongs to a record restore
could not read (``Book.held``: never killed).
"""

from __future__ import annotations

import structlog

from mensa.frameworks.batch_fw.book import Book
from mensa.frameworks.batch_fw.placement import fmt_number
from mensa.frameworks.batch_fw.runs import (
    ACTIVE,
    FAILED,
    LIVE,
    SUCCEEDED,
    SUCCESS,
    WAITING,
    Attempt,
    Run,
    Slot,
    clip_message,
    exit_code,
    iso,
    task_state_is_terminal,
)
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

# States saying the task is certainly not running (so a task that never started is launched again).
NEVER_STARTED_LOSS = frozenset({"TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"})
# The reasons for which TASK_LOST also says so: the master does not know the task, or never
# accepted its launch. Any other TASK_LOST (say, an agent that disconnected) may hide a task still
# running, so it counts as a failure of its attempt.
LOST_NOT_RUNNING = frozenset({
    mensa_pb2.TaskStatus.REASON_RECONCILIATION,
    mensa_pb2.TaskStatus.REASON_INVALID_OFFERS,
    mensa_pb2.TaskStatus.REASON_TASK_UNKNOWN,
})
# The longest wait before a slot's retry under ON_FAILURE: the backoff doubles from 1 s up to
# this (reached after 10 failures). A constant, not maxLaunchDelay, which in Metronome means the
# time by which a run must be running, not a retry delay.
MAX_BACKOFF_SECONDS = 300.0
# The exponent cap of the backoff, so 2 ** exponent never overflows a float (2 ** 62 s is far
# beyond MAX_BACKOFF_SECONDS).
MAX_BACKOFF_EXPONENT = 62
_STARTED = frozenset({"TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"})


def apply(book: Book, status: mensa_pb2.TaskStatus, now: float) -> None:
    """Applies one status update (see the module docstring); commands go to ``book.effects``."""
    task_id = status.task_id.value
    try:
        state = mensa_pb2.TaskState.Name(status.state)
    except ValueError:
        state = "TASK_UNKNOWN"
    terminal = task_state_is_terminal(state)
    if terminal:
        book.killing.pop(task_id, None)
    ref = book.tasks.get(task_id)
    if ref is None and task_id in book.held:
        if terminal:  # a task of an unreadable record: followed until over, never killed
            del book.held[task_id]
        return
    if ref is None:
        if not terminal and task_id not in book.killing:
            log.warning("orphan_task_killed", task_id=task_id, state=state)
            book.effects.append(book.kill_task(task_id, status.agent_id.value, None, now))
        return
    run = book.runs[ref[0]]
    slot = run.slots[ref[1]]
    attempt = slot.attempt(task_id)
    if attempt is None:
        return
    if attempt.terminal:
        if state == attempt.state or (terminal and state != "TASK_FINISHED"):
            return  # a repeat, or no news after the end
        if not terminal:
            if not attempt.agent_id:  # a superseded attempt restored in brief
                attempt.agent_id = status.agent_id.value
            _kill_stale(book, attempt, run, now)
            return
    live = not run.finished and slot.phase == LIVE and attempt is slot.current
    if not _record(attempt, state, status, now):
        return  # a repeated update: nothing changed
    book.dirty_runs[run.key] = None
    if run.finished or not live:
        if not terminal:
            _kill_stale(book, attempt, run, now)
        elif state == "TASK_FINISHED" and not run.finished and slot.phase != SUCCEEDED:
            _settle(book, run, slot, now)  # a superseded attempt did the work after all
            if not run.finished:
                book.refresh(run, now)
        return
    if not terminal:
        if state == "TASK_RUNNING" and run.status != ACTIVE:
            run.status = ACTIVE
    elif state == "TASK_FINISHED":
        _settle(book, run, slot, now)
    elif attempt.started_at is None and _not_running(state, status):
        slot.phase, slot.not_before = WAITING, now
        book.counters["tasks_relaunched"] += 1
        log.info("task_relaunch_planned", job_id=run.job_id, run_id=run.id, task_id=task_id, state=state,
                 reason="the task never started")
    else:
        _failed(book, run, slot, attempt, now)
    if not run.finished:
        book.refresh(run, now)


def _not_running(state: str, status: mensa_pb2.TaskStatus) -> bool:
    """True for a terminal state that says the task is certainly not running (see above)."""
    if state in NEVER_STARTED_LOSS:
        return True
    return state == "TASK_LOST" and status.HasField("reason") and status.reason in LOST_NOT_RUNNING


def backoff(failures: int) -> float:
    """Seconds before a slot's next attempt after ``failures`` failures: 1 s doubling per
    failure, capped at MAX_BACKOFF_SECONDS (the exponent is capped first: no float overflow)."""
    return min(2.0 ** min(max(failures - 1, 0), MAX_BACKOFF_EXPONENT), MAX_BACKOFF_SECONDS)


def _record(attempt: Attempt, state: str, status: mensa_pb2.TaskStatus, now: float) -> bool:
    """Records a new state of an attempt; False when it is the state already recorded."""
    if state == attempt.state:
        return False
    attempt.state = state
    if status.agent_id.value and not attempt.agent_id:
        attempt.agent_id = status.agent_id.value
    if state in _STARTED and attempt.started_at is None:
        attempt.started_at = now
    if status.message and status.reason != mensa_pb2.TaskStatus.REASON_RECONCILIATION:
        attempt.message = clip_message(status.message)  # its record, and a run's reason, stay bounded
    if task_state_is_terminal(state):
        attempt.completed_at = now
        attempt.exit_code = exit_code(state, status.message)
    return True


def _settle(book: Book, run: Run, slot: Slot, now: float) -> None:
    slot.phase = SUCCEEDED
    current = slot.current
    if current is not None and not current.terminal:
        book.kill(current, run, now)
    if run.succeeded() == len(run.slots):
        book.finish(run, SUCCESS, "", now)


def _failed(book: Book, run: Run, slot: Slot, attempt: Attempt, now: float) -> None:
    slot.failures += 1
    book.counters["tasks_failed"] += 1
    what = f"task {slot.index} ({attempt.task_id}) {attempt.state}"
    if attempt.message:
        what += f": {attempt.message}"
    restart = run.spec.run.restart
    if restart.policy != "ON_FAILURE":
        book.finish(run, FAILED, what, now)
        return
    at = now + backoff(slot.failures)
    deadline = run.deadline
    if deadline is not None and at >= deadline:
        book.finish(run, FAILED, f"{what}; its retry could not start before the run's deadline "
                    f"(activeDeadlineSeconds {fmt_number(restart.active_deadline_seconds or 0)} s): "
                    "deadline exceeded", now)
        return
    slot.phase, slot.not_before = WAITING, at
    book.alarm(at, "run", run.key)
    log.info("task_retry_planned", job_id=run.job_id, run_id=run.id, task_id=attempt.task_id,
             failures=slot.failures, retry_at=iso(at))


def _kill_stale(book: Book, attempt: Attempt, run: Run, now: float) -> None:
    if attempt.task_id not in book.killing:
        log.warning("stale_task_killed", job_id=run.job_id, run_id=run.id, task_id=attempt.task_id,
                    state=attempt.state)
    book.kill(attempt, run, now)
