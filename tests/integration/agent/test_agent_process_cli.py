"""``mensa agent`` as a real process: HTTP on a free port, /health, /state, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from mensa.deploy.processes import ManagedProcess, kill_processes_under, mensa_argv
from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.transport import bind_router, decode, encode

pytestmark = pytest.mark.integration


class SyncMaster:
    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock, self.port = bind_router(self.ctx, "127.0.0.1", 0)
        self.identity = b""

    def expect(self, kind: str, timeout: float = 15.0) -> internal_pb2.Envelope:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(100):
                self.identity, payload = self.sock.recv_multipart()
                envelope = decode(payload)
                if envelope.WhichOneof("message") == kind:
                    return envelope
        raise AssertionError(f"no {kind} within {timeout}s")

    def send(self, **message: Any) -> None:
        self.sock.send_multipart([self.identity, encode(internal_pb2.Envelope(**message))])

    def ack(self, update: internal_pb2.StatusUpdate) -> None:
        ack = internal_pb2.StatusUpdateAcknowledgement(uuid=update.status.uuid)
        ack.framework_id.CopyFrom(update.framework_id)
        ack.task_id.CopyFrom(update.status.task_id)
        self.send(status_update_acknowledgement=ack)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.fixture
def master() -> Iterator[SyncMaster]:
    m = SyncMaster()
    yield m
    m.close()


@pytest.fixture
def agent_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "agent"
    assert kill_processes_under(tmp_path) == []


def test_agent_process_serves_http_runs_a_task_and_kills_it_on_sigterm(
    master: SyncMaster, agent_dir: Path
) -> None:
    argv = mensa_argv(
        "agent",
        "--master",
        f"127.0.0.1:{master.port}",
        "--work-dir",
        str(agent_dir),
        "--http-port",
        "0",
        "--attributes",
        "rack:r1;generation:2",
        "--hostname",
        "cli-host",
        "--kill-grace-period",
        "0.5",
        "--status-update-retry-interval",
        "0.2",
        "--log-level",
        "debug",
    )
    agent = ManagedProcess("agent", argv, agent_dir).start()
    try:
        endpoints = agent.endpoints()
        http = f"http://127.0.0.1:{endpoints['http_port']}"
        assert endpoints["http_port"] > 0
        assert get_json(f"{http}/health") == {"healthy": True}

        reg = master.expect("register_agent").register_agent
        assert reg.agent_info.hostname == "cli-host"
        assert reg.http_port == endpoints["http_port"]
        # No --resources: detected from the machine.
        assert {r.name for r in reg.agent_info.resources} >= {"cpus", "mem", "disk", "ports"}
        reply = internal_pb2.AgentRegistered(ping_interval_seconds=1, ping_timeout_seconds=30)
        reply.agent_id.value = "agent-cli"
        master.send(agent_registered=reply)

        run = internal_pb2.RunTask()
        run.framework.id.value = "fw"
        run.framework.name = "cli-test"
        run.task.task_id.value = "sleepy"
        run.task.name = "sleepy"
        run.task.command.value = "echo $$ > pid; exec sleep 60"
        master.send(run_task=run)
        for expected in (mensa_pb2.TASK_STARTING, mensa_pb2.TASK_RUNNING):
            update = master.expect("status_update").status_update
            assert update.status.state == expected
            master.ack(update)

        state = get_json(f"{http}/state")
        assert state["id"] == "agent-cli" and state["hostname"] == "cli-host"
        assert state["attributes"] == {"rack": "r1", "generation": 2.0}
        assert state["resources"]["ports"] == "[31000-32000]"
        (task,) = state["tasks"]
        assert task["id"] == "sleepy" and task["state"] == "TASK_RUNNING"
        assert task["framework_id"] == "fw" and task["pid"] > 0
        assert task["sandbox"].endswith("/frameworks/fw/executors/sleepy/runs/latest")
        assert state["frameworks"][0]["name"] == "cli-test"
        pid_file = Path(task["sandbox"]) / "pid"
        for _ in range(500):  # RUNNING means spawned; the shell writes its pid a moment later.
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.02)
        pid = int(pid_file.read_text())

        files = get_json(f"{http}/files/read?path={task['sandbox']}/pid&offset=0")
        assert files == {"data": f"{pid}\n", "offset": 0}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{http}/files/read?path=/etc/passwd", timeout=5)
        assert refused.value.code == 403

        assert json.loads((agent_dir / "endpoints.json").read_text())["agent_id"] == "agent-cli"

        agent.signal(signal.SIGTERM)
        killed = master.expect("status_update").status_update
        assert killed.status.state == mensa_pb2.TASK_KILLED
        assert agent.proc is not None and agent.proc.wait(15) == 0
        # The host's view of the task's process (inside a PID namespace `$$` is the task's own).
        with pytest.raises(ProcessLookupError):
            os.kill(task["pid"], 0)
        log = (agent_dir / "agent.log").read_text()
        assert "agent_stopping_killing_tasks" in log
    finally:
        agent.stop()


def test_bad_flags_exit_with_an_error(tmp_path: Path) -> None:
    argv = mensa_argv(
        "agent", "--master", "127.0.0.1:1", "--work-dir", str(tmp_path), "--resources", "cpus:lots"
    )
    agent = ManagedProcess("agent", argv, tmp_path).start()
    assert agent.proc is not None and agent.proc.wait(20) == 2
    agent.stop()
    assert "resources" in (tmp_path / "agent.log").read_text()
