"""Job and schedule documents (Metronome's fields): what is accepted, the defaults, the errors with
their JSON-pointer paths, and the rendering that round-trips."""

from __future__ import annotations

from typing import Any

import pytest

from mensa.frameworks.batch_fw import (
    Constraint,
    DockerSpec,
    RestartSpec,
    SpecError,
    job_json,
    parse_job,
    parse_schedule,
    schedule_json,
)

FULL: dict[str, Any] = {
    "id": "nightly.report",
    "description": "the nightly report",
    "labels": {"team": "data"},
    "parallelism": 2,
    "completions": 10,
    "dependencies": [{"id": "nightly.extract"}],
    "run": {
        "cmd": "make report",
        "cpus": 0.5,
        "mem": 256,
        "disk": 10,
        "docker": {"image": "busybox", "forcePullImage": True},
        "env": {"MODE": "full"},
        "placement": {"constraints": [{"attribute": "rack", "operator": "like", "value": "r[12]"}]},
        "maxLaunchDelay": 600,
        "taskKillGracePeriodSeconds": 5,
        "restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 120},
        "user": "nobody",
        "artifacts": [],
    },
    "schedules": [{"id": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris",
                   "startingDeadlineSeconds": 60, "concurrencyPolicy": "FORBID", "enabled": True}],
}


def errors_of(doc: Any, parse: Any = parse_job) -> dict[str, list[str]]:
    with pytest.raises(SpecError) as info:
        parse(doc)
    body = info.value.to_json()
    assert body["message"] == "Object is not valid"
    return {d["path"]: d["errors"] for d in body["details"]}


def test_a_full_document_is_read_with_every_field() -> None:
    spec = parse_job(FULL)
    assert spec.id == "nightly.report" and spec.parallelism == 2 and spec.completions == 10
    assert spec.dependencies == ("nightly.extract",)
    assert spec.labels == (("team", "data"),)
    run = spec.run
    assert (run.cmd, run.args, run.cpus, run.mem, run.disk) == ("make report", None, 0.5, 256.0, 10.0)
    assert run.docker == DockerSpec("busybox", True)
    assert run.env == (("MODE", "full"),)
    assert run.constraints == (Constraint("rack", "LIKE", "r[12]"),)  # operators are upper-cased
    assert run.restart == RestartSpec("ON_FAILURE", 120.0)
    assert (run.max_launch_delay, run.task_kill_grace_period_seconds, run.user) == (600.0, 5.0, "nobody")
    assert spec.schedules is not None and spec.schedules[0].concurrency_policy == "FORBID"


def test_defaults_follow_metronome() -> None:
    spec = parse_job({"id": "a", "run": {"cmd": "true"}})
    assert (spec.run.cpus, spec.run.mem, spec.run.disk) == (1.0, 128.0, 0.0)
    assert spec.run.restart == RestartSpec("NEVER", None)
    assert spec.run.max_launch_delay == 3600.0
    assert (spec.parallelism, spec.completions, spec.dependencies) == (1, 1, ())
    assert spec.schedules is None  # not mentioned: an update keeps the job's schedules
    schedule = parse_schedule({"id": "s", "cron": "* * * * *"})
    assert (schedule.timezone, schedule.starting_deadline_seconds, schedule.concurrency_policy,
            schedule.enabled) == ("UTC", 900.0, "ALLOW", True)


def test_rendering_round_trips() -> None:
    for doc in (FULL, {"id": "a", "run": {"args": ["/bin/echo", "hi"]}}, {"id": "b", "run": {"docker": {
            "image": "busybox"}}, "schedules": []}):
        spec = parse_job(doc)
        assert parse_job(job_json(spec)) == spec
    rendered = job_json(parse_job(FULL))
    assert rendered["run"]["restart"] == {"policy": "ON_FAILURE", "activeDeadlineSeconds": 120.0}
    assert rendered["run"]["placement"] == {"constraints": [
        {"attribute": "rack", "operator": "LIKE", "value": "r[12]"}]}
    assert rendered["dependencies"] == [{"id": "nightly.extract"}]
    schedule = parse_schedule(FULL["schedules"][0])
    assert schedule_json(schedule) == {**FULL["schedules"][0], "startingDeadlineSeconds": 60.0}


@pytest.mark.parametrize("job_id", ["a", "a-b", "a.b-c.d9", "x" * 63, "0"])
def test_metronome_ids_are_accepted(job_id: str) -> None:
    assert parse_job({"id": job_id, "run": {"cmd": "true"}}).id == job_id


@pytest.mark.parametrize("job_id", ["", "A", "a_b", "-a", "a-", "a..b", ".a", "a/b", "x" * 64, 5, None])
def test_bad_ids_are_refused_at_their_path(job_id: Any) -> None:
    assert list(errors_of({"id": job_id, "run": {"cmd": "true"}})) == ["/id"]


def test_every_problem_is_reported_with_its_path() -> None:
    errors = errors_of({
        "id": "ok",
        "parallelism": 0,
        "completions": -1,
        "extra": 1,
        "run": {"cmd": "true", "cpus": 0, "mem": -5, "disk": "x", "maxLaunchDelay": 0,
                "restart": {"policy": "ALWAYS", "activeDeadlineSeconds": -1},
                "placement": {"constraints": [{"attribute": "rack", "operator": "UNIQUE", "value": "x"},
                                              {"attribute": "rack", "operator": "LIKE", "value": "("}]},
                "env": {"A=B": "x", "S": {"secret": "pw"}, "N": 3},
                "volumes": [{"containerPath": "/x"}]},
        "dependencies": [{"id": "Bad"}],
    })
    assert errors == {
        "/parallelism": ["must be between 1 and 1000"],
        "/completions": ["must be between 1 and 1000"],
        "/extra": ["unknown field"],
        "/run/cpus": ["must be > 0"],
        "/run/mem": ["must be > 0"],
        "/run/disk": ["must be a number"],
        "/run/maxLaunchDelay": ["must be > 0"],
        "/run/restart/policy": ["must be one of NEVER, ON_FAILURE"],
        "/run/restart/activeDeadlineSeconds": ["must be > 0"],
        "/run/placement/constraints/0/operator": ["must be one of IS, EQ, LIKE, UNLIKE"],
        "/run/placement/constraints/1/value": [errors["/run/placement/constraints/1/value"][0]],
        "/run/env/A=B": ["is not a valid environment variable name"],
        "/run/env/S": ["secrets are not supported"],
        "/run/env/N": ["must be a string"],
        "/run/volumes": ["volumes are not supported"],
        "/dependencies/0/id": [errors["/dependencies/0/id"][0]],
    }
    assert errors["/run/placement/constraints/1/value"][0].startswith("is not a valid regular expression")


def test_a_run_needs_something_to_run_but_not_two_things() -> None:
    assert errors_of({"id": "a", "run": {"cpus": 1}}) == {"/run": ["needs cmd, args or docker.image"]}
    both = {"id": "a", "run": {"cmd": "x", "args": ["x"]}}
    assert errors_of(both) == {"/run": ["give cmd or args, not both"]}
    empty = {"id": "a", "run": {"args": []}}
    assert errors_of(empty) == {"/run/args": ["must be a non-empty list of strings"]}
    assert errors_of({"id": "a", "run": {"cmd": "  "}}) == {"/run/cmd": ["must not be empty"]}
    assert errors_of({"id": "a", "run": {"docker": {}}}) == {"/run/docker/image": ["is required"]}
    assert errors_of({"id": "a"}) == {"/run": ["is required"]}
    assert errors_of([1]) == {"/": ["must be a JSON object"]}


def test_schedule_errors_name_the_field() -> None:
    assert errors_of({"id": "s", "cron": "61 * * * *"}, parse_schedule).keys() == {"/cron"}
    assert errors_of({"id": "s", "cron": "* * *"}, parse_schedule).keys() == {"/cron"}
    assert errors_of({"id": "s", "cron": "@often"}, parse_schedule).keys() == {"/cron"}
    assert errors_of({"id": "s", "cron": "0 0 31 2 *"}, parse_schedule).keys() == {"/cron"}
    zone = errors_of({"id": "s", "cron": "* * * * *", "timezone": "Mars/Olympus"}, parse_schedule)
    assert list(zone) == ["/timezone"] and "unknown timezone" in zone["/timezone"][0]
    assert errors_of({"id": "s", "cron": "* * * * *", "concurrencyPolicy": "REPLACE", "enabled": "yes",
                      "startingDeadlineSeconds": 0}, parse_schedule) == {
        "/startingDeadlineSeconds": ["must be > 0"],
        "/concurrencyPolicy": ["must be one of ALLOW, FORBID"],
        "/enabled": ["must be a boolean"],
    }
    assert errors_of({"cron": "* * * * *"}, parse_schedule).keys() == {"/id"}


def test_schedules_inside_a_job_are_checked_with_their_index() -> None:
    errors = errors_of({"id": "a", "run": {"cmd": "x"}, "schedules": [
        {"id": "s", "cron": "* * * * *"}, {"id": "s", "cron": "* * * * *"}, {"id": "t", "cron": "nope"}]})
    assert set(errors) == {"/schedules/1/id", "/schedules/2/cron"}


def test_strings_a_task_cannot_carry_are_refused() -> None:
    doc = {"id": "x", "labels": {"\ud800": "v"},
           "run": {"args": ["echo", "\ud800"], "env": {"A": "\udfff"}, "user": "a\0b"}}
    with pytest.raises(SpecError) as info:
        parse_job(doc)
    assert {d["path"] for d in info.value.to_json()["details"]} == {
        "/labels/\ud800", "/run/args", "/run/env/A", "/run/user"}
