"""``mensa job``'s pure parts: the job a command line makes, progress, exit status, tables, files."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from mensa.deploy.cli import build_parser
from mensa.deploy.job_cli import load_jobs
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


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["job", *argv])


def test_one_argument_is_a_shell_command_and_several_are_quoted() -> None:
    one = job_from_args(parse("run", "--", "echo hi && exit 3"), "j")
    several = job_from_args(parse("run", "--cpus", "1", "--", "sh", "-c", "echo 'a b'; exit 3"), "j")
    assert one["run"]["cmd"] == "echo hi && exit 3"
    assert several["run"]["cmd"] == "sh -c 'echo '\"'\"'a b'\"'\"'; exit 3'"
    assert several["run"]["cpus"] == 1.0


def test_flags_become_metronome_fields() -> None:
    args = parse("run", "--mem", "64", "--image", "busybox", "--parallelism", "4", "--completions", "20",
                 "--env", "A=1", "--env", "B=x=y", "--retries", "--deadline", "30", "--", "true")
    job = job_from_args(args, "run-x")
    assert job["id"] == "run-x"
    assert job["parallelism"] == 4 and job["completions"] == 20
    assert job["run"]["docker"] == {"image": "busybox"}
    assert job["run"]["env"] == {"A": "1", "B": "x=y"}
    assert job["run"]["restart"] == {"policy": "ON_FAILURE", "activeDeadlineSeconds": 30.0}
    assert job["run"]["mem"] == 64.0


def test_a_missing_command_or_bad_env_is_an_error() -> None:
    with pytest.raises(JobCliError, match="no command"):
        job_from_args(parse("run", "--cpus", "1"), "j")
    with pytest.raises(JobCliError, match="NAME=VALUE"):
        job_from_args(parse("run", "--env", "oops", "--", "true"), "j")


def test_one_off_ids_follow_metronome_rules() -> None:
    job_id = one_off_id(1_700_000_000.0)
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", job_id), job_id
    assert job_id.startswith("run-20231114221320-")
    assert one_off_id(0) != one_off_id(0)


def test_progress_counts_tasks_by_state() -> None:
    run = {"status": "ACTIVE", "tasks": [
        {"id": "a", "status": "TASK_STAGING"}, {"id": "b", "status": "TASK_RUNNING"},
        {"id": "c", "status": "TASK_FINISHED"}, {"id": "d", "status": "TASK_FAILED"},
        {"id": "e", "status": "TASK_KILLED"}, {"id": "f", "status": "TASK_STARTING"}]}
    count = progress(run)
    assert (count.staged, count.running, count.succeeded, count.failed) == (2, 1, 1, 2)
    assert count.line("ACTIVE") == "  active: 2 staged, 1 running, 1 succeeded, 2 failed"


def test_exit_status_is_the_last_failed_tasks_code() -> None:
    assert exit_status({"status": "SUCCESS", "tasks": [{"status": "TASK_FAILED", "exitCode": 3}]}) == 0
    failed = {"status": "FAILED", "tasks": [{"status": "TASK_FAILED", "exitCode": 2},
                                             {"status": "TASK_FINISHED", "exitCode": 0},
                                             {"status": "TASK_FAILED", "exitCode": 7}]}
    assert exit_status(failed) == 7
    assert exit_status({"status": "FAILED", "tasks": [{"status": "TASK_KILLED"}]}) == 1
    assert exit_status({"status": "FAILED"}) == 1


def test_tables() -> None:
    jobs = [{"id": "nightly", "run": {"cmd": "backup --all"}, "activeRuns": [{}],
             "schedules": [{"cron": "0 2 * * *", "enabled": True}],
             "historySummary": {"successCount": 3, "failureCount": 1,
                                "lastSuccessAt": "2024-01-02T02:00:05.000Z", "lastFailureAt": None}}]
    text = jobs_table(jobs)
    assert text.splitlines()[0].split() == ["ID", "ACTIVE", "OK", "FAILED", "LAST", "SUCCESS", "LAST",
                                           "FAILURE", "SCHEDULE", "COMMAND"]
    assert "nightly" in text and "0 2 * * *" in text and "2024-01-02 02:00:05" in text
    runs = [{"id": "r1", "status": "FAILED", "createdAt": "2024-01-01T00:00:00Z",
             "tasks": [{"status": "TASK_FAILED"}], "reason": "deadline exceeded"}]
    assert "deadline exceeded" in runs_table(runs)


def test_runs_are_listed_newest_first() -> None:
    runs = [{"id": "a", "createdAt": "2024-01-01"}, {"id": "c", "createdAt": "2024-01-03"},
            {"id": "b", "createdAt": "2024-01-02"}]
    assert [r["id"] for r in newest_first(runs)] == ["c", "b", "a"]


def test_job_files(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"id": "a", "run": {"cmd": "true"}}))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"id": "a"}, {"id": "b"}]))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    anonymous = tmp_path / "anon.json"
    anonymous.write_text("[{}]")

    assert [j["id"] for j in load_jobs(str(one))] == ["a"]
    assert [j["id"] for j in load_jobs(str(many))] == ["a", "b"]
    with pytest.raises(JobCliError, match="not JSON"):
        load_jobs(str(bad))
    with pytest.raises(JobCliError, match="id"):
        load_jobs(str(anonymous))
    with pytest.raises(JobCliError, match="cannot read"):
        load_jobs(str(tmp_path / "missing.json"))


def test_task_output_is_labelled_by_index_and_retry() -> None:
    run = {"tasks": [{"id": "j.r1.0.1", "index": 0}, {"id": "j.r1.1.1", "index": 1},
                     {"id": "j.r1.1.2", "index": 1}, {"status": "TASK_STAGING"}]}
    assert task_labels(run) == [("j.r1.0.1", "0"), ("j.r1.1.1", "1"), ("j.r1.1.2", "1#2")]
