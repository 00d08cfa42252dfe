"""Runs, the queue and stopping through the REST API; the intent to run is stored before
anything is sent to the master."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_api_harness import ApiHarness

from mensa.frameworks.store import FileStore

JOB = {"id": "hello", "run": {"cmd": "echo hello", "cpus": 0.1, "mem": 32}}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiHarness]:
    harness = ApiHarness.start(tmp_path)
    harness.call("POST", "/v1/jobs", JOB)
    yield harness
    harness.stop()


def test_run_now_answers_201_with_the_run_stored_before_offers_are_asked_for(
        api: ApiHarness, tmp_path: Path) -> None:
    api.events.clear()
    status, _h, run = api.call("POST", "/v1/jobs/hello/runs", {})

    assert status == 201
    assert run["jobId"] == "hello" and run["status"] == "INITIAL" and run["tasks"] == []
    stored = FileStore(tmp_path / "state").load()["run"]
    assert list(stored) == [f"hello.{run['id']}"]
    names = [name for name, _args in api.events]
    assert names[0] == "commit" and "revive_offers" in names
    assert names.index("commit") < names.index("revive_offers")


def test_runs_are_listed_and_read(api: ApiHarness) -> None:
    first = api.call("POST", "/v1/jobs/hello/runs")[2]
    second = api.call("POST", "/v1/jobs/hello/runs", {})[2]
    runs = api.call("GET", "/v1/jobs/hello/runs")[2]
    assert [r["id"] for r in runs] == [first["id"], second["id"]]
    status, _h, body = api.call("GET", f"/v1/jobs/hello/runs/{first['id']}")
    assert status == 200 and body["id"] == first["id"]
    assert api.call("GET", "/v1/jobs/hello/runs/nope")[0] == 404
    assert api.call("GET", "/v1/jobs/nope/runs")[0] == 404
    assert api.call("POST", "/v1/jobs/nope/runs", {})[0] == 404


def test_the_queue_says_why_a_run_waits(api: ApiHarness) -> None:
    run = api.call("POST", "/v1/jobs/hello/runs", {})[2]
    status, _h, queue = api.call("GET", "/v1/queue")
    assert status == 200
    assert [(q["jobId"], [r["runId"] for r in q["runs"]]) for q in queue] == [("hello", [run["id"]])]
    assert queue[0]["runs"][0]["reason"]


def test_a_stopped_run_fails_and_leaves_the_queue(api: ApiHarness) -> None:
    run = api.call("POST", "/v1/jobs/hello/runs", {})[2]
    status, _h, body = api.call("POST", f"/v1/jobs/hello/runs/{run['id']}/actions/stop", {})
    assert status == 200 and body["status"] == "FAILED" and "stopped" in body["reason"]
    assert api.call("GET", "/v1/jobs/hello/runs")[2] == []
    assert api.call("GET", "/v1/queue")[2] == []
    history = api.call("GET", "/v1/jobs/hello?embed=history")[2]["history"]
    assert history["failureCount"] == 1 and history["failedFinishedRuns"][0]["id"] == run["id"]
    assert api.call("POST", "/v1/jobs/hello/runs/nope/actions/stop", {})[0] == 404


def test_a_job_with_active_runs_is_deleted_only_when_told_to_stop_them(api: ApiHarness) -> None:
    api.call("POST", "/v1/jobs/hello/runs", {})
    status, _h, body = api.call("DELETE", "/v1/jobs/hello")
    assert status == 409 and "active runs" in body["message"]
    assert api.call("GET", "/v1/jobs/hello")[0] == 200
    assert api.call("DELETE", "/v1/jobs/hello?stopCurrentJobRuns=maybe")[0] == 400
    assert api.call("DELETE", "/v1/jobs/hello?stopCurrentJobRuns=true")[0] == 200
    assert api.call("GET", "/v1/jobs/hello")[0] == 404
