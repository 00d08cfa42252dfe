"""The /v1/jobs and schedules endpoints against a real engine and store (recording driver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_api_harness import ApiHarness

from mensa.frameworks.store import FileStore


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    harness = ApiHarness.start(tmp_path)
    yield harness
    harness.stop()


def job(job_id: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "run": {"cmd": "echo hello", "cpus": 0.1, "mem": 32}, **extra}


def test_a_job_is_created_read_listed_and_stored(api: ApiHarness, tmp_path: Path) -> None:
    status, _h, body = api.call("POST", "/v1/jobs", job(description="says hello"))
    assert status == 201
    assert body["id"] == "hello" and body["run"]["cmd"] == "echo hello"
    assert body["description"] == "says hello"

    assert api.call("GET", "/v1/jobs/hello")[2]["run"]["cpus"] == 0.1
    assert [j["id"] for j in api.call("GET", "/v1/jobs")[2]] == ["hello"]
    assert FileStore(tmp_path / "state").load()["job"]["hello"]  # durable before the 201


def test_a_job_with_schedules_is_created_whole(api: ApiHarness) -> None:
    doc = job(schedules=[{"id": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris"}])
    assert api.call("POST", "/v1/jobs", doc)[0] == 201
    status, _h, schedules = api.call("GET", "/v1/jobs/hello/schedules")
    assert status == 200
    assert [(s["id"], s["cron"], s["timezone"], s["concurrencyPolicy"]) for s in schedules] == [
        ("nightly", "30 2 * * *", "Europe/Paris", "ALLOW")]


def test_a_body_that_is_not_json_is_a_400_saying_so(api: ApiHarness) -> None:
    status, _h, body = api.call("POST", "/v1/jobs", raw=b'{"id": "x", ')
    assert status == 400
    assert body["message"] == "Invalid JSON"
    assert body["details"][0]["path"] == "/" and "not JSON" in body["details"][0]["errors"][0]
    assert api.call("POST", "/v1/jobs", raw=b"")[0] == 400


def test_an_invalid_job_is_a_422_listing_every_problem(api: ApiHarness) -> None:
    status, _h, body = api.call("POST", "/v1/jobs", {"id": "Bad_Id", "run": {"cmd": "x", "cpus": 0},
                                                     "parallelism": 0})
    assert status == 422
    paths = {d["path"] for d in body["details"]}
    assert {"/id", "/run/cpus", "/parallelism"} <= paths
    assert api.call("GET", "/v1/jobs")[2] == []  # nothing half-applied
    assert api.call("POST", "/v1/jobs", [1, 2])[0] == 422


def test_a_duplicate_is_a_409_and_an_unknown_job_a_404(api: ApiHarness) -> None:
    api.call("POST", "/v1/jobs", job())
    status, _h, body = api.call("POST", "/v1/jobs", job())
    assert status == 409 and "already exists" in body["message"]
    status, _h, body = api.call("GET", "/v1/jobs/nope")
    assert status == 404 and "nope" in body["message"]
    assert api.call("PUT", "/v1/jobs/nope", job("nope"))[0] == 404
    assert api.call("DELETE", "/v1/jobs/nope")[0] == 404


def test_put_replaces_the_job_and_keeps_its_schedules(api: ApiHarness) -> None:
    api.call("POST", "/v1/jobs", job(schedules=[{"id": "s", "cron": "0 * * * *"}]))
    changed = {"id": "hello", "run": {"cmd": "echo changed", "cpus": 0.2, "mem": 64}}
    status, _h, body = api.call("PUT", "/v1/jobs/hello", changed)
    assert status == 200 and body["run"]["cmd"] == "echo changed"
    assert [s["id"] for s in api.call("GET", "/v1/jobs/hello")[2]["schedules"]] == ["s"]
    # The id may be left out of the body; a different one is refused.
    assert api.call("PUT", "/v1/jobs/hello", {"run": {"cmd": "true"}})[0] == 200
    status, _h, body = api.call("PUT", "/v1/jobs/hello", job("other"))
    assert status == 422 and body["details"][0]["path"] == "/id"


def test_dependencies_on_unknown_jobs_and_cycles_are_refused(api: ApiHarness) -> None:
    status, _h, body = api.call("POST", "/v1/jobs", job("b", dependencies=[{"id": "a"}]))
    assert status == 422 and body["details"][0]["path"] == "/dependencies/0/id"
    api.call("POST", "/v1/jobs", job("a"))
    assert api.call("POST", "/v1/jobs", job("b", dependencies=[{"id": "a"}]))[0] == 201
    status, _h, body = api.call("PUT", "/v1/jobs/a", job("a", dependencies=[{"id": "b"}]))
    assert status == 422 and "cycle" in body["details"][0]["errors"][0]
    # A job others depend on cannot be deleted.
    assert api.call("DELETE", "/v1/jobs/a")[0] == 409


def test_delete_removes_the_job(api: ApiHarness, tmp_path: Path) -> None:
    api.call("POST", "/v1/jobs", job())
    status, _h, body = api.call("DELETE", "/v1/jobs/hello")
    assert status == 200 and body["id"] == "hello"
    assert api.call("GET", "/v1/jobs/hello")[0] == 404
    assert "hello" not in FileStore(tmp_path / "state").load().get("job", {})


def test_embeds(api: ApiHarness) -> None:
    api.call("POST", "/v1/jobs", job())
    api.call("POST", "/v1/jobs/hello/runs", {})
    status, _h, jobs = api.call("GET", "/v1/jobs?embed=activeRuns&embed=historySummary")
    assert status == 200
    assert len(jobs[0]["activeRuns"]) == 1 and jobs[0]["historySummary"]["successCount"] == 0
    assert "history" not in jobs[0]
    one = api.call("GET", "/v1/jobs/hello?embed=history,schedules")[2]
    assert one["history"]["successfulFinishedRuns"] == [] and one["schedules"] == []
    status, _h, body = api.call("GET", "/v1/jobs?embed=everything")
    assert status == 400 and "everything" in body["message"]


def test_schedules_are_added_read_replaced_and_removed(api: ApiHarness) -> None:
    api.call("POST", "/v1/jobs", job())
    schedule = {"id": "every-minute", "cron": "* * * * *", "timezone": "UTC", "concurrencyPolicy": "FORBID"}
    status, _h, body = api.call("POST", "/v1/jobs/hello/schedules", schedule)
    assert status == 201 and body["concurrencyPolicy"] == "FORBID"
    assert api.call("POST", "/v1/jobs/hello/schedules", schedule)[0] == 409
    assert api.call("GET", "/v1/jobs/hello/schedules/every-minute")[2]["cron"] == "* * * * *"

    status, _h, body = api.call("PUT", "/v1/jobs/hello/schedules/every-minute",
                                {"cron": "*/5 * * * *", "enabled": False})
    assert status == 200 and body["cron"] == "*/5 * * * *" and body["enabled"] is False

    assert api.call("DELETE", "/v1/jobs/hello/schedules/every-minute")[0] == 200
    assert api.call("GET", "/v1/jobs/hello/schedules/every-minute")[0] == 404
    assert api.call("PUT", "/v1/jobs/hello/schedules/nope", {"cron": "* * * * *"})[0] == 404


def test_bad_schedules_are_refused(api: ApiHarness) -> None:
    api.call("POST", "/v1/jobs", job())
    status, _h, body = api.call("POST", "/v1/jobs/hello/schedules", {"id": "s", "cron": "61 * * * *"})
    assert status == 422 and body["details"][0]["path"] == "/cron"
    status, _h, body = api.call("POST", "/v1/jobs/hello/schedules",
                                {"id": "s", "cron": "* * * * *", "timezone": "Mars/Olympus"})
    assert status == 422 and body["details"][0]["path"] == "/timezone"
    assert api.call("POST", "/v1/jobs/nope/schedules", {"id": "s", "cron": "* * * * *"})[0] == 404
    assert api.call("GET", "/v1/jobs/hello/schedules")[2] == []
