"""The batch framework end to end: a real master, two agents, ``mensa batch`` as a subprocess,
driven through its REST API (and ``mensa job``); what ran is checked in the agents' sandboxes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from mensa_cluster import Cluster, wait_until

from mensa.deploy.job_cli import BatchClient
from mensa.deploy.processes import ManagedProcess, mensa_argv

FINISHED = ("SUCCESS", "FAILED", "SKIPPED")


class Batch:
    """One ``mensa batch`` process of a cluster, and its REST API."""

    def __init__(self, cluster: Cluster, name: str = "batch") -> None:
        self.cluster = cluster
        self.work = cluster.root / name
        self.proc = ManagedProcess(name, mensa_argv(
            "batch", "--master", cluster.master_endpoint, "--work-dir", str(self.work),
            "--http-port", "0", "--log-level", "debug"), self.work)
        self.api = BatchClient("http://127.0.0.1:1")
        self.url = ""

    def start(self) -> Batch:
        self.proc.start()
        if self.proc not in self.cluster.processes:
            self.cluster.processes.append(self.proc)
        self.url = f"http://127.0.0.1:{self.proc.endpoints()['http_port']}"
        self.api = BatchClient(self.url)
        wait_until(lambda: self.call("GET", "/info")["leading"], what="the batch framework to lead")
        return self

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.api.call(method, path, body)

    def create(self, job_id: str, cmd: str, **extra: Any) -> dict[str, Any]:
        run = {"cmd": cmd, "cpus": 0.1, "mem": 32, **extra.pop("run", {})}
        created: dict[str, Any] = self.call("POST", "/v1/jobs", {"id": job_id, "run": run, **extra})
        return created

    def start_run(self, job_id: str) -> str:
        return str(self.call("POST", f"/v1/jobs/{job_id}/runs", {})["id"])

    def run(self, job_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.call("GET", f"/v1/jobs/{job_id}/runs/{run_id}")
        return run

    def finished(self, job_id: str, run_id: str, timeout: float = 30) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = self.run(job_id, run_id)
            return run if run["status"] in FINISHED else None
        return wait_until(check, timeout=timeout, what=f"run {run_id} of {job_id} to finish")

    def history(self, job_id: str) -> dict[str, Any]:
        history: dict[str, Any] = self.call("GET", f"/v1/jobs/{job_id}?embed=history")["history"]
        return history


def sandboxes(cluster: Cluster, task_prefix: str) -> list[Path]:
    """Every sandbox (one per task launched) whose task id starts with ``task_prefix``."""
    return sorted(p for p in cluster.root.glob(f"agent*/agents/*/frameworks/*/executors/{task_prefix}*")
                  if p.is_dir())


def stdout_of(sandbox: Path) -> str:
    return (sandbox / "runs" / "latest" / "stdout").read_text()


@pytest.fixture
def batch(cluster: Cluster) -> Batch:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:2048;disk:100;ports:[31000-31009]")
    cluster.start_agent("agent2", "cpus:2;mem:2048;disk:100;ports:[32000-32009]")
    cluster.wait_agents(2)
    return Batch(cluster).start()


def test_a_run_succeeds_and_its_output_is_in_the_sandbox(batch: Batch) -> None:
    batch.create("hello", 'echo "hello from $MESOS_TASK_ID"')
    run_id = batch.start_run("hello")

    run = batch.finished("hello", run_id)

    assert run["status"] == "SUCCESS"
    [task] = run["tasks"]
    assert task["status"] == "TASK_FINISHED" and task["exitCode"] == 0
    assert task["id"] == f"hello.{run_id}.0.1"
    [sandbox] = wait_until(lambda: sandboxes(batch.cluster, "hello."), what="the sandbox")
    assert stdout_of(sandbox).strip() == f"hello from {task['id']}"
    history = batch.history("hello")
    assert history["successCount"] == 1 and history["lastSuccessAt"]


def test_a_failed_task_is_retried_then_succeeds(batch: Batch, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    batch.create("flaky", f'if [ -e {marker} ]; then echo second try; else touch {marker}; exit 3; fi',
                 run={"restart": {"policy": "ON_FAILURE"}})
    run_id = batch.start_run("flaky")

    run = batch.finished("flaky", run_id)

    assert run["status"] == "SUCCESS"
    assert [(t["id"], t["status"], t.get("exitCode")) for t in run["tasks"]] == [
        (f"flaky.{run_id}.0.1", "TASK_FAILED", 3), (f"flaky.{run_id}.0.2", "TASK_FINISHED", 0)]
    _first, second = sandboxes(batch.cluster, "flaky.")
    assert stdout_of(second).strip() == "second try"


def test_a_task_that_fails_without_a_restart_policy_fails_the_run(batch: Batch) -> None:
    batch.create("broken", "exit 5")
    run = batch.finished("broken", batch.start_run("broken"))
    assert run["status"] == "FAILED"
    assert [t["exitCode"] for t in run["tasks"]] == [5]
    assert batch.history("broken")["failureCount"] == 1


def test_a_run_past_its_deadline_fails_and_its_task_is_killed(batch: Batch) -> None:
    batch.create("slow", "sleep 60", run={"restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 2}})
    run_id = batch.start_run("slow")

    run = batch.finished("slow", run_id)

    assert run["status"] == "FAILED" and "deadline" in run["reason"]
    wait_until(lambda: batch.run("slow", run_id)["tasks"][0]["status"] == "TASK_KILLED",
               what="the task killed")


def test_an_array_job_runs_every_index_once(batch: Batch) -> None:
    batch.create("array", 'echo "index=$MENSA_TASK_INDEX"', parallelism=4, completions=20)
    run_id = batch.start_run("array")

    run = batch.finished("array", run_id, timeout=90)

    assert run["status"] == "SUCCESS" and run["completedTasks"] == 20
    assert sorted(t["index"] for t in run["tasks"]) == list(range(20))
    outputs = sorted(stdout_of(s).strip() for s in sandboxes(batch.cluster, "array."))
    assert outputs == sorted(f"index={n}" for n in range(20))


def test_a_dependency_chain_runs_in_order(batch: Batch, tmp_path: Path) -> None:
    trail = tmp_path / "trail"
    batch.create("extract", f"echo extract >> {trail}")
    batch.create("transform", f"echo transform >> {trail}", dependencies=[{"id": "extract"}])
    batch.create("load", f"echo load >> {trail}", dependencies=[{"id": "transform"}])
    batch.start_run("extract")

    def loaded() -> bool:
        return batch.history("load")["successCount"] == 1
    wait_until(loaded, timeout=60, what="the last job of the chain to succeed")

    assert trail.read_text().split() == ["extract", "transform", "load"]
    for job_id in ("extract", "transform", "load"):
        assert len(sandboxes(batch.cluster, f"{job_id}.")) == 1


def test_a_cron_job_fires_again_and_again(batch: Batch, tmp_path: Path) -> None:
    # Six fields: a leading seconds field (Mensa's extension), every two seconds.
    batch.create("tick", "date +%s", schedules=[{"id": "often", "cron": "*/2 * * * * *"}])

    def fired() -> dict[str, Any] | None:
        history = batch.history("tick")
        return history if history["successCount"] >= 3 else None
    history = wait_until(fired, timeout=60, what="three scheduled runs")
    batch.call("DELETE", "/v1/jobs/tick/schedules/often")

    runs = history["successfulFinishedRuns"]
    assert len({r["scheduledAt"] for r in runs}) == len(runs)  # each firing ran once
    detail = batch.run("tick", runs[0]["id"])
    assert detail["trigger"] == "schedule:often"


def test_a_batch_framework_killed_mid_run_takes_the_run_back_and_it_finishes_once(
        batch: Batch, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    batch.create("long", f"while [ ! -e {gate} ]; do sleep 0.1; done; echo finished")
    run_id = batch.start_run("long")
    wait_until(lambda: [t["status"] for t in batch.run("long", run_id)["tasks"]] == ["TASK_RUNNING"],
               what="the task running")
    framework_id = batch.call("GET", "/info")["frameworkId"]

    batch.proc.kill()  # SIGKILL: no goodbye to the master, nothing flushed
    gate.touch()       # the task finishes while its framework is down
    batch.start()      # same work dir: same state, same framework id

    run = batch.finished("long", run_id)

    assert run["status"] == "SUCCESS"
    assert [t["id"] for t in run["tasks"]] == [f"long.{run_id}.0.1"]  # reconciled, not relaunched
    assert batch.call("GET", "/info")["frameworkId"] == framework_id
    [sandbox] = sandboxes(batch.cluster, "long.")
    assert stdout_of(sandbox).strip() == "finished"
    assert [r["id"] for r in batch.call("GET", "/v1/jobs/long/runs?includeFinished=true")] == [run_id]


def test_a_run_started_just_before_a_crash_is_launched_once_after_it(batch: Batch) -> None:
    batch.create("quick", "echo once")
    run_ids = [batch.start_run("quick") for _ in range(3)]
    batch.proc.kill()
    batch.start()

    for run_id in run_ids:
        assert batch.finished("quick", run_id)["status"] == "SUCCESS"
    for run_id in run_ids:
        assert len(sandboxes(batch.cluster, f"quick.{run_id}.")) == 1


def job_cli(batch: Batch, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mensa_argv("job", *args[:1], "--batch", batch.url, *args[1:]), capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_job_run_prints_the_output_and_exits_with_the_status(batch: Batch) -> None:
    ok = job_cli(batch, "run", "--cpus", "0.1", "--mem", "32", "--", "echo", "hello world")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "hello world\n"
    assert "1 succeeded" in ok.stderr

    failed = job_cli(batch, "run", "--cpus", "0.1", "--mem", "32", "--", "sh -c 'echo oops >&2; exit 7'")
    assert failed.returncode == 7, failed.stderr
    assert "failed" in failed.stderr


def test_job_submit_list_runs_logs_and_stop(batch: Batch, tmp_path: Path) -> None:
    spec = tmp_path / "jobs.json"
    spec.write_text('[{"id": "report", "run": {"cmd": "echo report done", "cpus": 0.1, "mem": 32}},'
                    ' {"id": "sleeper", "run": {"cmd": "sleep 60", "cpus": 0.1, "mem": 32}}]')
    submitted = job_cli(batch, "submit", str(spec))
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.split("\n")[:2] == ["created job report", "created job sleeper"]
    assert job_cli(batch, "submit", str(spec)).stdout.startswith("updated job report")

    run_id = batch.start_run("report")
    batch.finished("report", run_id)
    listed = job_cli(batch, "list")
    assert listed.returncode == 0 and "report" in listed.stdout and "sleeper" in listed.stdout
    runs = job_cli(batch, "runs", "report")
    assert run_id in runs.stdout and "SUCCESS" in runs.stdout
    logs = job_cli(batch, "logs", "report")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "report done\n"

    sleeping = batch.start_run("sleeper")
    stopped = job_cli(batch, "stop", "sleeper", sleeping)
    assert stopped.returncode == 0, stopped.stderr
    assert batch.finished("sleeper", sleeping)["status"] == "FAILED"
    missing = job_cli(batch, "runs", "nope")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_a_job_that_fits_no_agent_waits_and_says_why(batch: Batch) -> None:
    batch.create("huge", "true", run={"cpus": 64})
    run_id = batch.start_run("huge")

    def reason() -> str | None:
        for item in batch.call("GET", "/v1/queue"):
            for run in item["runs"]:
                if item["jobId"] == "huge" and run["runId"] == run_id and "cpus" in run["reason"]:
                    return str(run["reason"])
        return None
    why = wait_until(reason, what="the queue to say why the run waits")

    assert "64" in why
    assert batch.run("huge", run_id)["status"] == "INITIAL"
    batch.call("POST", f"/v1/jobs/huge/runs/{run_id}/actions/stop", {})
    assert batch.call("GET", "/v1/queue") == []
