"""What ``mensa job`` shows and sends, as pure functions: the job a command line describes, task
counts and exit status of a run, tables of jobs and runs, labels for task output.

Usage::

    job = job_from_args(args, one_off_id(time.time()))
    print(progress(run).line(run["status"]), exit_status(run))
    print(jobs_table(jobs))
"""

from __future__ import annotations

import argparse
import shlex
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mensa.deploy.views import table

STAGED = frozenset({"TASK_STAGING", "TASK_STARTING", "STAGING", "STARTING"})
RUNNING = frozenset({"TASK_RUNNING", "TASK_KILLING", "RUNNING", "KILLING"})
SUCCEEDED = frozenset({"TASK_FINISHED", "FINISHED"})


class JobCliError(Exception):
    """What went wrong, for the user (one line)."""


def one_off_id(now: float) -> str:
    """A fresh job id in Metronome's alphabet: ``run-YYYYMMDDHHMMSS-xxxxxx``."""
    return "run-" + time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6]


def job_from_args(args: argparse.Namespace, job_id: str) -> dict[str, Any]:
    """The job document ``mensa job run`` creates; raises JobCliError for bad flags."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise JobCliError("no command: give it after --, e.g. mensa job run -- echo hello")
    run: dict[str, Any] = {"cmd": command[0] if len(command) == 1 else shlex.join(command),
                           "cpus": args.cpus, "mem": args.mem, "disk": args.disk}
    if args.image:
        run["docker"] = {"image": args.image}
    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise JobCliError(f"--env {item!r} is not NAME=VALUE")
        env[key] = value
    if env:
        run["env"] = env
    restart: dict[str, Any] = {"policy": "ON_FAILURE" if args.retries else "NEVER"}
    if args.deadline is not None:
        restart["activeDeadlineSeconds"] = args.deadline
    run["restart"] = restart
    job: dict[str, Any] = {"id": job_id, "description": "one-off job from mensa job run",
                           "labels": {"mensa/one-off": "true"}, "run": run}
    if args.parallelism is not None:
        job["parallelism"] = args.parallelism
    if args.completions is not None:
        job["completions"] = args.completions
    return job


@dataclass(slots=True)
class Progress:
    """Task counts of a run, as ``job run`` shows them."""

    staged: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0

    def line(self, status: str) -> str:
        return (f"{status.lower():>8}: {self.staged} staged, {self.running} running, "
                f"{self.succeeded} succeeded, {self.failed} failed")


def progress(run: dict[str, Any]) -> Progress:
    """Counts a run document's tasks by state."""
    out = Progress()
    for task in run.get("tasks", []) or []:
        state = str(task.get("status", ""))
        if state in STAGED:
            out.staged += 1
        elif state in RUNNING:
            out.running += 1
        elif state in SUCCEEDED:
            out.succeeded += 1
        elif state:
            out.failed += 1
    return out


def exit_status(run: dict[str, Any]) -> int:
    """0 for a successful run, else the exit code of its last failed task (1 when none has one)."""
    if run.get("status") == "SUCCESS":
        return 0
    codes = [t.get("exitCode") for t in run.get("tasks", []) or []
             if str(t.get("status", "")) not in SUCCEEDED and isinstance(t.get("exitCode"), int)]
    code = codes[-1] if codes else 1
    return code if 0 < code < 256 else 1


def _when(value: Any) -> str:
    return str(value or "-").replace("T", " ")[:19]


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    rows = []
    for job in jobs:
        schedules = ",".join(s.get("cron", "") for s in job.get("schedules", []) or []
                             if s.get("enabled", True)) or "-"
        summary = job.get("historySummary", {}) or {}
        spec = job.get("run", {}) or {}
        command = spec.get("cmd") or " ".join(spec.get("args", []) or [])
        rows.append([job.get("id", ""), len(job.get("activeRuns", []) or []), summary.get("successCount", 0),
                     summary.get("failureCount", 0), _when(summary.get("lastSuccessAt")),
                     _when(summary.get("lastFailureAt")), schedules, _short(command)])
    return table(["ID", "ACTIVE", "OK", "FAILED", "LAST SUCCESS", "LAST FAILURE", "SCHEDULE", "COMMAND"],
                 rows, right=(1, 2, 3))


def runs_table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        count = progress(run)
        rows.append([run.get("id", ""), run.get("status", ""), _when(run.get("createdAt")),
                     _when(run.get("finishedAt")), count.succeeded, count.failed,
                     count.staged + count.running, run.get("reason", "") or ""])
    return table(["RUN", "STATUS", "CREATED", "FINISHED", "OK", "FAILED", "LIVE", "REASON"], rows,
                 right=(4, 5, 6))


def _short(text: str, width: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def newest_first(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs (active and finished, as ``GET /v1/jobs/ID/runs?includeFinished=true`` lists
    them), newest first."""
    return sorted(runs, key=lambda r: (str(r.get("createdAt", "")), str(r.get("id", ""))), reverse=True)


def task_labels(run: dict[str, Any]) -> list[tuple[str, str]]:
    """A run's task ids with the short label their output is shown under: the task's index,
    and ``#attempt`` for a retry (task ids end in ``.<index>.<attempt>``)."""
    out = []
    for task in run.get("tasks", []) or []:
        task_id = str(task.get("id") or "")
        if not task_id:
            continue
        parts = task_id.rsplit(".", 2)
        index = str(task.get("index", parts[-2] if len(parts) == 3 else "?"))
        attempt = parts[-1] if len(parts) == 3 else "1"
        out.append((task_id, index if attempt == "1" else f"{index}#{attempt}"))
    return out
