"""``mensa job ...``: submit and follow batch work through the batch framework's REST API.

    mensa job run [--cpus 0.5] [--mem 128] [--image IMG] [--parallelism N --completions N] -- CMD ARGS...
    mensa job submit FILE            # a job (or a list of jobs) as JSON (YAML too, when PyYAML is there)
    mensa job list [--json]
    mensa job runs ID [--json]
    mensa job logs ID [RUN] [--stderr]
    mensa job stop ID RUN

``--batch URL`` names the batch framework (default ``$MENSA_BATCH`` or http://127.0.0.1:9000);
a standby's redirect to the leader is followed. ``job run`` creates a one-off job with a
generated id (``--id`` to choose it), starts a run, prints its progress on stderr (tasks
staged, running, succeeded, failed) while it streams its tasks' output (stdout, or stderr with
``--stderr``) on stdout, and exits with the run's status: 0 when it succeeded, else the exit
code of its last failed task (1 when there is none, e.g. a deadline). Output is read from the
agents, found through the master's ``/state`` (``--master``; by default the master the batch
framework uses, from its ``/info``). Errors print one line on stderr and exit 1 (2 for bad flags).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mensa.deploy.job_views import (
    JobCliError,
    exit_status,
    job_from_args,
    jobs_table,
    newest_first,
    one_off_id,
    progress,
    runs_table,
    task_labels,
)
from mensa.deploy.logs_cli import AgentFiles, LogsError, TaskLocation, locate_task
from mensa.deploy.rest_client import CliError, RestClient, read_documents
from mensa.deploy.state_cli import fetch_state, quiet_kazoo, write_stdout
from mensa.proto.detector import MasterUnreachable

DEFAULT_BATCH = "http://127.0.0.1:9000"
TERMINAL_RUN_STATES = frozenset({"SUCCESS", "FAILED", "SKIPPED", "ABORTED"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    name = parser.prog.split()[-1]
    parser.add_argument("--batch", default=os.environ.get("MENSA_BATCH", DEFAULT_BATCH),
                        help=f"the batch framework's URL (default $MENSA_BATCH or {DEFAULT_BATCH})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer")
    if name == "run":
        parser.add_argument("--id", help="the job's id (default: a generated one-off id)")
        parser.add_argument("--cpus", type=float, default=0.5, help="CPUs per task (default 0.5)")
        parser.add_argument("--mem", type=float, default=128, help="MB of memory per task (default 128)")
        parser.add_argument("--disk", type=float, default=0, help="MB of disk per task (default 0)")
        parser.add_argument("--image", help="run in this Docker image")
        parser.add_argument("--parallelism", type=int, help="tasks running at once (array jobs)")
        parser.add_argument("--completions", type=int, help="tasks that must succeed (array jobs)")
        parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                            help="an environment variable for the tasks (repeatable)")
        parser.add_argument("--retries", action="store_true",
                            help="retry failed tasks (restart policy ON_FAILURE)")
        parser.add_argument("--deadline", type=float, metavar="SECONDS",
                            help="fail the run when it is still active after this long")
        parser.add_argument("--master", help="the master, to read the tasks' output (default: the "
                            "batch framework's)")
        parser.add_argument("--stderr", action="store_true", help="stream stderr instead of stdout")
        parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
        parser.add_argument("--no-logs", action="store_true", help="do not stream the tasks' output")
        parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between polls")
        parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                            help="the command (after --); one argument is a shell command")
    elif name == "submit":
        parser.add_argument("file", metavar="FILE", help="a job as JSON (or YAML), or a list of jobs")
    elif name in ("list", "runs"):
        if name == "runs":
            parser.add_argument("job_id", metavar="ID")
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
    elif name == "logs":
        parser.add_argument("job_id", metavar="ID")
        parser.add_argument("run_id", metavar="RUN", nargs="?", help="the run (default: the latest)")
        parser.add_argument("--stderr", action="store_true", help="print stderr instead of stdout")
        parser.add_argument("--master", help="the master (default: the batch framework's)")
    elif name == "stop":
        parser.add_argument("job_id", metavar="ID")
        parser.add_argument("run_id", metavar="RUN")
    parser.set_defaults(_job_command=name)


# -- the REST client and job files ------------------------------------------------------------------

class BatchClient(RestClient):
    """The batch framework's REST API (see ``RestClient``); raises JobCliError."""

    def __init__(self, base: str, timeout: float = 10.0) -> None:
        super().__init__(base, timeout, what="the batch framework")

    def fail(self, error: CliError) -> Exception:
        return JobCliError(str(error))


def load_jobs(path: str) -> list[dict[str, Any]]:
    """The job documents in a JSON (or YAML) file; raises JobCliError saying what is wrong."""
    try:
        return read_documents(path, "job")
    except CliError as exc:
        raise JobCliError(str(exc)) from None


# -- reading the tasks' output -----------------------------------------------------------------------

@dataclass
class OutputFollower:
    """Prints the new output of a run's tasks, read from their agents (best effort: a task
    whose agent or sandbox cannot be found yet is tried again on the next poll)."""

    master: str
    timeout: float
    stream: str = "stdout"
    offsets: dict[str, int] = field(default_factory=dict)
    files: dict[str, tuple[AgentFiles, str]] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)

    def poll(self, tasks: Iterable[tuple[str, str]], framework_id: str | None, prefix: bool) -> None:
        """Prints what the tasks (``(task id, label)`` pairs) wrote since the last poll, each
        line after ``[label]`` when ``prefix``."""
        labels = dict(tasks)
        ids = list(labels)
        missing = [t for t in ids if t not in self.files]
        if missing:
            self._locate(missing, framework_id)
        for task_id in ids:
            found = self.files.get(task_id)
            if found is None:
                continue
            files, path = found
            offset = self.offsets.get(task_id, 0)
            try:
                while True:
                    chunk = files.read(path, offset)
                    if chunk is None or chunk[1] <= offset:
                        break
                    text, offset = chunk
                    _write_output(text, labels[task_id] if prefix else None)
            except (LogsError, urllib.error.HTTPError, OSError) as exc:
                self._warn(task_id, str(exc))
            self.offsets[task_id] = offset

    def _locate(self, task_ids: list[str], framework_id: str | None) -> None:
        try:
            state = fetch_state(self.master, self.timeout)
        except (MasterUnreachable, OSError, ValueError) as exc:
            self._warn("master", f"cannot read the master's state at {self.master}: {exc}")
            return
        for task_id in task_ids:
            try:
                location: TaskLocation = locate_task(state, task_id, framework_id)
                files = AgentFiles(location, self.timeout)
                task = files.task()
            except (LogsError, urllib.error.HTTPError, OSError):
                continue
            if task is not None and task.get("sandbox"):
                self.files[task_id] = (files, f"{task['sandbox']}/{self.stream}")

    def _warn(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(f"mensa job: {text}", file=sys.stderr)


def _write_output(text: str, label: str | None) -> None:
    if label is not None:
        text = "".join(f"[{label}] {line}" for line in text.splitlines(keepends=True))
    sys.stdout.write(text)
    sys.stdout.flush()


def master_of(client: BatchClient, given: str | None) -> str:
    if given:
        return given
    info = client.call("GET", "/info") or {}
    master = info.get("master")
    if not master:
        raise JobCliError("the batch framework does not say which master it uses; give --master")
    return str(master)


# -- the commands ------------------------------------------------------------------------------------

def cmd_run(client: BatchClient, args: argparse.Namespace) -> int:
    job_id = args.id or one_off_id(time.time())
    job = job_from_args(args, job_id)
    client.call("POST", "/v1/jobs", job)
    run = client.call("POST", f"/v1/jobs/{job_id}/runs", {})
    run_id = run["id"]
    if not args.quiet:
        print(f"mensa job: started run {run_id} of job {job_id}", file=sys.stderr)
    follower = None
    framework_id = None
    if not args.no_logs:
        follower = OutputFollower(master_of(client, args.master), args.timeout,
                                  "stderr" if args.stderr else "stdout")
        framework_id = (client.call("GET", "/info") or {}).get("frameworkId")
    last_line = ""
    while True:
        run = client.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
        status = str(run.get("status", ""))
        line = progress(run).line(status)
        if line != last_line and not args.quiet:
            print(f"mensa job: {line}", file=sys.stderr)
            last_line = line
        tasks = task_labels(run)
        prefix = int(run.get("completions", 1) or 1) > 1  # an array job: say which task wrote what
        if follower is not None and tasks:
            follower.poll(tasks, framework_id, prefix)
        if status in TERMINAL_RUN_STATES:
            break
        time.sleep(args.poll_interval)
    if follower is not None:
        follower.poll(tasks, framework_id, prefix)  # what was written last
    code = exit_status(run)
    if not args.quiet:
        reason = f" ({run['reason']})" if run.get("reason") else ""
        print(f"mensa job: run {run_id} of job {job_id} ended {status}{reason}; exit status {code}",
              file=sys.stderr)
    return code


def cmd_submit(client: BatchClient, args: argparse.Namespace) -> int:
    for job in load_jobs(args.file):
        job_id = job["id"]
        schedules = job.get("schedules")
        exists = client.call("GET", f"/v1/jobs/{job_id}", ok_404=True) is not None
        if not exists:
            client.call("POST", "/v1/jobs", job)
            print(f"created job {job_id}")
            continue
        body = {k: v for k, v in job.items() if k != "schedules"}
        client.call("PUT", f"/v1/jobs/{job_id}", body)
        for schedule in schedules or []:
            sid = schedule.get("id", "default")
            if client.call("GET", f"/v1/jobs/{job_id}/schedules/{sid}", ok_404=True) is None:
                client.call("POST", f"/v1/jobs/{job_id}/schedules", schedule)
            else:
                client.call("PUT", f"/v1/jobs/{job_id}/schedules/{sid}", schedule)
        print(f"updated job {job_id}")
    return 0


def cmd_list(client: BatchClient, args: argparse.Namespace) -> int:
    jobs = client.call("GET", "/v1/jobs?embed=activeRuns&embed=historySummary&embed=schedules") or []
    write_stdout(json.dumps(jobs, indent=2) if args.json else jobs_table(jobs))
    return 0


def cmd_runs(client: BatchClient, args: argparse.Namespace) -> int:
    runs = newest_first(client.call("GET", f"/v1/jobs/{args.job_id}/runs?includeFinished=true") or [])
    write_stdout(json.dumps(runs, indent=2) if args.json else runs_table(runs))
    return 0


def cmd_logs(client: BatchClient, args: argparse.Namespace) -> int:
    run_id = args.run_id
    if run_id is None:
        runs = newest_first(client.call("GET", f"/v1/jobs/{args.job_id}/runs?includeFinished=true") or [])
        if not runs:
            raise JobCliError(f"job {args.job_id} has no runs")
        run_id = runs[0]["id"]
    run = client.call("GET", f"/v1/jobs/{args.job_id}/runs/{run_id}")
    tasks = task_labels(run)
    if not tasks:
        raise JobCliError(f"run {run_id} of job {args.job_id} has launched no task")
    framework_id = (client.call("GET", "/info") or {}).get("frameworkId")
    follower = OutputFollower(master_of(client, args.master), client.timeout,
                              "stderr" if args.stderr else "stdout")
    follower.poll(tasks, framework_id, prefix=len(tasks) > 1)
    unread = [t for t, _label in tasks if t not in follower.files]
    if unread:
        print(f"mensa job: no output found for {', '.join(unread)} (the agent may have removed "
              "the sandbox)", file=sys.stderr)
    return 0


def cmd_stop(client: BatchClient, args: argparse.Namespace) -> int:
    run = client.call("POST", f"/v1/jobs/{args.job_id}/runs/{args.run_id}/actions/stop", {})
    print(f"stopping run {args.run_id} of job {args.job_id}: {(run or {}).get('status', 'requested')}")
    return 0


COMMANDS = {"run": cmd_run, "submit": cmd_submit, "list": cmd_list, "runs": cmd_runs, "logs": cmd_logs,
            "stop": cmd_stop}


def run(args: argparse.Namespace) -> int:
    quiet_kazoo()
    name = args._job_command
    try:
        return COMMANDS[name](BatchClient(args.batch, args.timeout), args)
    except JobCliError as exc:
        print(f"mensa job {name}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
