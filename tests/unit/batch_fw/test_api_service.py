"""/ping, /info, /leader, /metrics, and what an instance that does not lead answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batch_api_harness import ApiHarness
from prometheus_client.parser import text_string_to_metric_families

from mensa.frameworks.store import Change, FileStore, StoreError


def test_ping_info_leader_and_metrics(tmp_path: Path) -> None:
    api = ApiHarness.start(tmp_path)
    try:
        api.call("POST", "/v1/jobs", {"id": "a", "run": {"cmd": "true"}})
        api.call("POST", "/v1/jobs/a/runs", {})
        status, headers, body = api.call("GET", "/ping")
        assert status == 200 and body == "pong" and headers["Content-Type"].startswith("text/plain")

        info = api.call("GET", "/info")[2]
        assert info["leading"] is True and info["name"] == "mensa-batch" and info["version"]

        assert api.call("GET", "/leader")[2] == {"leader": f"127.0.0.1:{api.port}"}

        metrics = api.call("GET", "/metrics")[2]
        assert metrics["batch/leading"] == 1.0
        assert metrics["batch/jobs"] == 1.0 and metrics["batch/runs_created"] == 1.0
        assert metrics["batch/state_batches_written"] >= 2

        status, headers, text = api.call("GET", "/metrics?format=prometheus")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["mensa_batch_runs_created"].type == "counter"
        assert families["mensa_batch_runs_created"].samples[0].value == 1.0
        assert families["mensa_batch_jobs"].type == "gauge"
        by_accept = api.call("GET", "/metrics", headers={"Accept": "text/plain"})[2]
        assert "mensa_batch_runs_created_total 1.0" in by_accept.splitlines()
        assert info["startedAt"].endswith("+0000")  # as every other time in the API
    finally:
        api.stop()


def test_a_standby_redirects_the_api_to_the_leader(tmp_path: Path) -> None:
    api = ApiHarness.start(tmp_path, leading=False, leader="10.0.0.7:9000")
    try:
        status, headers, body = api.call("GET", "/v1/jobs?embed=history")
        assert status == 307
        assert headers["Location"] == "http://10.0.0.7:9000/v1/jobs?embed=history"
        assert body["leader"] == "10.0.0.7:9000"
        assert api.call("POST", "/v1/jobs", {"id": "a", "run": {"cmd": "true"}})[0] == 307
        # The instance's own endpoints answer here.
        assert api.call("GET", "/ping")[2] == "pong"
        assert api.call("GET", "/leader")[2] == {"leader": "10.0.0.7:9000"}
        assert api.call("GET", "/info")[2]["leading"] is False
        assert api.call("GET", "/metrics")[2]["batch/leading"] == 0.0
    finally:
        api.stop()


def test_with_no_leader_known_the_api_answers_503(tmp_path: Path) -> None:
    api = ApiHarness.start(tmp_path, leading=False, leader=None)
    try:
        status, _h, body = api.call("GET", "/v1/jobs")
        assert status == 503 and "retry" in body["message"]
        assert api.call("GET", "/leader")[0] == 404
    finally:
        api.stop()


class BrokenStore(FileStore):
    def commit(self, changes: Sequence[Change]) -> None:
        raise StoreError("the disk is full")


def test_a_state_write_that_fails_sends_nothing_and_stops_the_instance(tmp_path: Path) -> None:
    api = ApiHarness.start(tmp_path)
    try:
        api.call("POST", "/v1/jobs", {"id": "a", "run": {"cmd": "true"}})
        api.service.store = BrokenStore(tmp_path / "state")
        api.events.clear()

        status, _h, body = api.call("POST", "/v1/jobs/a/runs", {})

        assert status == 503 and "disk is full" in body["message"]
        assert api.events == []  # no Revive, no Launch: nothing acts on what was not stored
        assert api.service.engine is None and api.service.exit_code == 1
        assert api.call("GET", "/v1/jobs")[0] in (307, 503)  # no longer leading
    finally:
        api.stop()


def test_a_503_says_whether_the_request_may_be_repeated(tmp_path: Path) -> None:
    standby = ApiHarness.start(tmp_path / "standby", leading=False, leader=None)
    try:
        status, headers, _body = standby.call("POST", "/v1/jobs", {"id": "a", "run": {"cmd": "true"}})
        assert status == 503 and headers.get("Mensa-Retry-Safe") == "true"  # nothing happened
    finally:
        standby.stop()
    api = ApiHarness.start(tmp_path / "leader")
    try:
        api.call("POST", "/v1/jobs", {"id": "a", "run": {"cmd": "true"}})
        api.service.store = BrokenStore(tmp_path / "leader" / "state")
        status, headers, body = api.call("POST", "/v1/jobs/a/runs", {})
        # The write failed after the engine took the run: it may exist; never repeat blindly.
        assert status == 503 and "may or may not" in body["message"]
        assert headers.get("Mensa-Retry-Safe") is None
    finally:
        api.stop()


def test_an_engine_bug_rebuilds_the_engine_from_the_store(tmp_path: Path) -> None:
    api = ApiHarness.start(tmp_path)
    try:
        api.call("POST", "/v1/jobs", {"id": "a", "run": {"cmd": "true"}})
        broken = api.service.engine
        assert broken is not None

        def explode(job_id: str, now: float, trigger: str = "api") -> Any:
            broken.jobs_by_id_half_changed = True  # what a bug might leave behind
            raise RuntimeError("a bug in the engine")
        broken.start_run = explode  # type: ignore[method-assign]

        assert api.call("POST", "/v1/jobs/a/runs", {})[0] == 500
        rebuilt = api.service.engine
        assert rebuilt is not None and rebuilt is not broken  # restored from the stored records
        assert [job.id for job in rebuilt.jobs()] == ["a"]
        assert api.call("POST", "/v1/jobs/a/runs", {})[0] == 201
    finally:
        api.stop()


def test_status_updates_are_stored_in_one_write_then_acknowledged(tmp_path: Path) -> None:
    from mensa.frameworks.batch_fw import commands as cmds
    from mensa.proto import mensa_pb2

    api = ApiHarness.start(tmp_path)
    try:
        service = api.service
        seen: list[str] = []

        def status_update(status: mensa_pb2.TaskStatus, now: float) -> list[Any]:
            seen.append(status.task_id.value)
            n = len(seen)
            # Each update's step lists a job record before the run it refers to, and the same
            # run again: the group writes each record once, runs before jobs before removals.
            return [cmds.Persist(cmds.KIND_JOB, "j", {"n": n}), cmds.Persist(cmds.KIND_RUN, "j.r", {"n": n}),
                    cmds.Forget(cmds.KIND_RUN, f"j.old{n}")]

        def stop_and_queue() -> None:
            assert service.engine is not None
            service.engine.status_update = status_update  # type: ignore[method-assign]
            for i in range(3):  # queued from "the driver", before the loop gets to drain them
                status = mensa_pb2.TaskStatus(state=mensa_pb2.TASK_RUNNING, uuid=b"u%d" % i)
                status.task_id.value = f"t{i}"
                service.queue_update(status)

        api.events.clear()
        api.on_loop(stop_and_queue)
        wait = __import__("mensa_cluster").wait_until
        wait(lambda: len([e for e in api.events if e[0] == "acknowledge_status_update"]) == 3,
             what="three acknowledgements")
        commits = [e for e in api.events if e[0] == "commit"]
        assert seen == ["t0", "t1", "t2"] and len(commits) == 1  # one write for the three
        assert commits[0][1] == [("run", "j.r", True), ("job", "j", True), ("run", "j.old1", False),
                                 ("run", "j.old2", False), ("run", "j.old3", False)]
        first_ack = next(i for i, e in enumerate(api.events) if e[0] == "acknowledge_status_update")
        assert api.events.index(commits[0]) < first_ack  # stored, then acknowledged
        stored = json.loads((tmp_path / "state" / "run" / "j.r.json").read_text())
        assert stored == {"n": 3}
    finally:
        api.stop()
