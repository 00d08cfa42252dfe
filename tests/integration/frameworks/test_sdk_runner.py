"""``mensa scheduler run`` (via ``python -m mensa.frameworks.runner``) as a real process,
running the hello example against a scripted master on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_fake_master import WAIT, Call, Event, FakeMaster, offer, status

from mensa.proto import mensa_pb2

pytestmark = pytest.mark.integration

HELLO = "mensa.frameworks.examples.hello:HelloScheduler"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, tasks: int = 3) -> subprocess.Popen[str]:
        env = {**os.environ, "MENSA_HELLO_TASKS": str(tasks)}
        cmd = [sys.executable, "-m", "mensa.frameworks.runner", "--log-format", "json", *args]
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)


def log_events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_hello_example_launches_counts_and_tears_down(master: FakeMaster, spawn: Any) -> None:
    proc = spawn(HELLO, "--master", master.address)
    identity, subscribe = master.subscribe()
    info = subscribe.subscribe.framework_info
    assert (info.name, info.role) == ("HelloScheduler", "*")

    # 0.25 cpus fit two 0.1-cpu tasks, the next offer the third; the last one is not needed.
    offers = [
        offer("o1", "a1", "cpus:0.25;mem:1024"),
        offer("o2", "a2", "cpus:1;mem:1024"),
        offer("o3", "a3", "cpus:1;mem:1024"),
    ]
    master.send_event(identity, type=Event.OFFERS, offers=Event.Offers(offers=offers))
    launched: dict[str, str] = {}
    for offer_id, count in (("o1", 2), ("o2", 1)):
        _, accept = master.next_call(Call.ACCEPT)
        assert [o.value for o in accept.accept.offer_ids] == [offer_id]
        tasks = accept.accept.operations[0].launch.task_infos
        assert len(tasks) == count
        for task in tasks:
            assert "hello from $MESOS_TASK_ID" in task.command.value
            launched[task.task_id.value] = task.agent_id.value
    master.next_call(Call.SUPPRESS)
    _, decline = master.next_call(Call.DECLINE)
    assert [o.value for o in decline.decline.offer_ids] == ["o3"]
    assert launched == {"hello-0": "a1", "hello-1": "a1", "hello-2": "a2"}

    # Terminal updates (one duplicated, as at-least-once delivery may) end the framework.
    updates = [
        ("hello-0", mensa_pb2.TASK_FINISHED),
        ("hello-0", mensa_pb2.TASK_FINISHED),
        ("hello-1", mensa_pb2.TASK_FAILED),
        ("hello-2", mensa_pb2.TASK_FINISHED),
    ]
    for n, (task_id, state) in enumerate(updates):
        update = status(task_id, state, launched[task_id], uuid=f"u{n}".encode())
        master.send_event(identity, type=Event.UPDATE, update=Event.Update(status=update))
    acks = [master.next_call(Call.ACKNOWLEDGE)[1].acknowledge.uuid for _ in updates]
    assert acks == [b"u0", b"u1", b"u2", b"u3"]
    _, teardown = master.next_call(Call.TEARDOWN)
    assert teardown.framework_id.value == "fw-1"

    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, stderr
    (done,) = [e for e in log_events(stderr) if e["event"] == "hello_done"]
    assert (done["finished"], done["failed"]) == (2, 1)


def test_sigterm_tears_the_framework_down(master: FakeMaster, spawn: Any) -> None:
    proc = spawn(HELLO, "--master", master.address, "--name", "greeter", "--role", "dev")
    identity, subscribe = master.subscribe()
    assert subscribe.subscribe.framework_info.name == "greeter"
    assert subscribe.subscribe.framework_info.role == "dev"
    master.send_event(identity, type=Event.HEARTBEAT)
    _, pong = master.next_message(skip_pongs=False)  # SUBSCRIBED was handled before this
    assert pong.HasField("pong")
    proc.send_signal(signal.SIGTERM)
    _, teardown = master.next_call(Call.TEARDOWN)
    assert teardown.framework_id.value == "fw-1"
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, stderr


def test_error_from_master_exits_1(master: FakeMaster, spawn: Any) -> None:
    proc = spawn(HELLO, "--master", master.address)
    identity, _ = master.subscribe()
    master.send_event(identity, type=Event.ERROR, error=Event.Error(message="removed"))
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1, stderr


def test_framework_id_file_makes_sigterm_a_failover_and_a_restart_resubscribe(
    master: FakeMaster, spawn: Any, tmp_path: Path
) -> None:
    path = tmp_path / "framework_id"
    proc = spawn(HELLO, "--master", master.address, "--framework-id-file", str(path))
    identity, subscribe = master.subscribe(framework_id="fw-9")
    assert subscribe.subscribe.framework_info.failover_timeout == 604800.0  # the default
    master.send_event(identity, type=Event.HEARTBEAT)
    master.next_message(skip_pongs=False)  # SUBSCRIBED was handled before this pong
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, stderr
    got = master.recv(timeout=0.2)
    assert got is None or not got[1].HasField("call"), got  # no TEARDOWN: the tasks live on
    assert path.read_text() == "fw-9\n"

    proc = spawn(HELLO, "--master", master.address, "--framework-id-file", str(path))
    identity, again = master.next_call(Call.SUBSCRIBE)
    assert again.subscribe.framework_info.id.value == "fw-9"
    error = Event.Error(message="framework fw-9 has been removed; subscribe without an id")
    master.send_event(identity, type=Event.ERROR, error=error)
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1, stderr
    (removed,) = [e for e in log_events(stderr) if e["event"] == "framework_removed"]
    assert f"delete {path}" in removed["hint"]


def test_bad_master_and_id_file_are_clear_errors(spawn: Any, tmp_path: Path) -> None:
    proc = spawn(HELLO, "--master", "zk://127.0.0.1/mensa")
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert "must be HOST:PORT" in stderr
    garbage = tmp_path / "framework_id"
    garbage.write_text("two ids\n")
    proc = spawn(HELLO, "--master", "127.0.0.1:1", "--framework-id-file", str(garbage))
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert f"framework id file {garbage}" in stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Sched", "cannot import 'no_such_module_xyz'"),
        ("mensa.frameworks.examples.hello:Nope", "has no attribute 'Nope'"),
        ("mensa.frameworks.examples.hello:log", "not a Scheduler"),
        ("just-a-name", "is not MODULE:CLASS"),
    ],
)
def test_bad_target_is_a_clear_error(spawn: Any, target: str, message: str) -> None:
    proc = spawn(target, "--master", "127.0.0.1:1")
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 2
    assert message in stderr and "Traceback" not in stderr
