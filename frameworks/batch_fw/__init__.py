"""The batch framework: one-off, array, scheduled and dependent jobs, run exactly once.

The pure core (no I/O, no clock): jobs.py (Metronome job and schedule specs; reading.py reads
them), cron.py (cron with timezones), engine.py (``BatchEngine``: events and ``now`` in, commands
out; its parts in book.py, runs.py, schedules.py, firing.py, offering.py, placement.py,
updates.py, recovery.py, queries.py) and commands.py (what the shell carries out). The shell
(store, REST API, service, CLI) sits around it.

Usage::

    from mensa.frameworks.batch_fw import BatchEngine, parse_job

    engine = BatchEngine()
    commands = engine.put_job(parse_job({"id": "hello", "run": {"cmd": "echo hi"}}), now)
    run, commands = engine.start_run("hello", now)
"""

from __future__ import annotations

from mensa.frameworks.batch_fw.commands import (
    KIND_JOB,
    KIND_RUN,
    Command,
    Decline,
    Forget,
    Kill,
    Launch,
    Persist,
    Reconcile,
    Revive,
    Suppress,
)
from mensa.frameworks.batch_fw.cron import CronSchedule
from mensa.frameworks.batch_fw.engine import BatchEngine, Conflict, NotFound
from mensa.frameworks.batch_fw.jobs import (
    Constraint,
    DockerSpec,
    JobSpec,
    RestartSpec,
    RunSpec,
    ScheduleSpec,
    SpecError,
    job_json,
    parse_job,
    parse_schedule,
    schedule_json,
)
from mensa.frameworks.batch_fw.runs import Run

__all__ = [
    "KIND_JOB",
    "KIND_RUN",
    "BatchEngine",
    "Command",
    "Conflict",
    "Constraint",
    "CronSchedule",
    "Decline",
    "DockerSpec",
    "Forget",
    "JobSpec",
    "Kill",
    "Launch",
    "NotFound",
    "Persist",
    "Reconcile",
    "RestartSpec",
    "Revive",
    "Run",
    "RunSpec",
    "ScheduleSpec",
    "SpecError",
    "Suppress",
    "job_json",
    "parse_job",
    "parse_schedule",
    "schedule_json",
]
