"""``mensa logs`` end to end: a master, an agent, frameworks launching tasks, the CLI reading their
output through the master and the agent's /files API."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from mensa_cluster import Cluster, wait_until
from mensa_recorder import Launcher

from mensa.deploy.processes import mensa_argv
from mensa.frameworks import SchedulerDriver
from mensa.proto import mensa_pb2

pytestmark = pytest.mark.integration

TICKS = 5


@pytest.fixture
def running(cluster: Cluster) -> Iterator[tuple[Cluster, list[SchedulerDriver], list[Launcher]]]:
    cluster.start_master()
    # The hostname "agent1" does not resolve: the CLI reaches the agent by its advertised IP.
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100")
    cluster.wait_agents(1)
    drivers: list[SchedulerDriver] = []
    launchers: list[Launcher] = []
    yield cluster, drivers, launchers
    for driver in drivers:
        driver.stop()
        driver.join()


def launch(cluster: Cluster, drivers: list[SchedulerDriver], launchers: list[Launcher],
           name: str, tasks: dict[str, str]) -> tuple[str, Launcher]:
    launcher = Launcher(tasks)
    driver = SchedulerDriver(launcher, mensa_pb2.FrameworkInfo(name=name, user="root"),
                             cluster.master_endpoint)
    driver.start()
    drivers.append(driver)
    launchers.append(launcher)
    framework_id: str = wait_until(lambda: driver.framework_id, what="registration")
    return framework_id, launcher


def logs(cluster: Cluster, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mensa_argv("logs", *args, "--master", cluster.master_endpoint),
                          check=False, capture_output=True, text=True, timeout=timeout)


def test_logs_prints_stdout_stderr_and_the_last_lines_of_a_finished_task(running: Any) -> None:
    cluster, drivers, launchers = running
    _, launcher = launch(cluster, drivers, launchers, "echoes", {
        "echo": "for i in 1 2 3 4; do echo line$i; done; echo 'oops' >&2",
    })
    launcher.wait_state("echo", "TASK_FINISHED")
    out = logs(cluster, "echo")
    assert (out.returncode, out.stdout) == (0, "line1\nline2\nline3\nline4\n"), out.stderr
    err = logs(cluster, "echo", "--stderr")
    assert (err.returncode, err.stdout) == (0, "oops\n"), err.stderr
    tail = logs(cluster, "echo", "--lines", "2")
    assert (tail.returncode, tail.stdout) == (0, "line3\nline4\n"), tail.stderr


def test_unknown_and_ambiguous_tasks_are_clear_errors(running: Any) -> None:
    cluster, drivers, launchers = running
    first_id, first = launch(cluster, drivers, launchers, "one", {"dup": "echo from one"})
    second_id, second = launch(cluster, drivers, launchers, "two", {"dup": "echo from two"})
    first.wait_state("dup", "TASK_FINISHED")
    second.wait_state("dup", "TASK_FINISHED")

    missing = logs(cluster, "nope")
    assert missing.returncode == 1 and "task nope not found" in missing.stderr
    assert missing.stdout == ""

    ambiguous = logs(cluster, "dup")
    assert ambiguous.returncode == 1 and "--framework" in ambiguous.stderr
    assert first_id in ambiguous.stderr and second_id in ambiguous.stderr

    chosen = logs(cluster, "dup", "--framework", second_id)
    assert (chosen.returncode, chosen.stdout) == (0, "from two\n"), chosen.stderr


def test_follow_streams_a_running_task_and_exits_when_it_finishes(running: Any) -> None:
    cluster, drivers, launchers = running
    # The task prints one line, waits until the test has seen the CLI print it, then ticks on.
    _, launcher = launch(cluster, drivers, launchers, "ticker", {
        "ticker": "echo tick1; while [ ! -e go ]; do sleep 0.05; done; "
                  f"for i in $(seq 2 {TICKS}); do echo tick$i; sleep 0.2; done",
    })
    launcher.wait_state("ticker", "TASK_RUNNING")
    follow = subprocess.Popen(
        mensa_argv("logs", "ticker", "--follow", "--poll-interval", "0.05", "--master",
                   cluster.master_endpoint),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "tick1\n"
        [sandbox] = cluster.root.glob("agent1/agents/*/frameworks/*/executors/ticker/runs/latest")
        (sandbox / "go").touch()
        out, err = follow.communicate(timeout=20)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, err
    assert out == "".join(f"tick{i}\n" for i in range(2, TICKS + 1))
    assert launcher.wait_state("ticker", "TASK_FINISHED")


def test_an_unreachable_agent_is_reported(cluster: Cluster) -> None:
    cluster.start_master()
    # It advertises a loopback address its HTTP server does not listen on.
    cluster.start_agent("agent1", "cpus:1;mem:256;disk:100", "--advertise-ip", "127.0.0.2")
    cluster.wait_agents(1)
    drivers: list[SchedulerDriver] = []
    try:
        _, launcher = launch(cluster, drivers, [], "lost", {"hello": "echo hello"})
        launcher.wait_state("hello", "TASK_FINISHED")
        out = logs(cluster, "hello")
        assert out.returncode == 1, out.stdout
        assert "cannot reach agent" in out.stderr and "127.0.0.2" in out.stderr
    finally:
        for driver in drivers:
            driver.stop()
            driver.join()


def test_a_bad_or_unreachable_zk_master_is_a_clear_error() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(mensa_argv("logs", "t1", *args), capture_output=True, text=True,
                              timeout=30, check=False)

    out = run("--master", "zk://127.0.0.1:2181")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("mensa logs: bad --master 'zk://127.0.0.1:2181'")
    assert "needs a path" in out.stderr
    out = run("--master", "zk://127.0.0.1:1/mensa", "--timeout", "0.5")
    assert out.returncode == 1
    assert out.stderr == ("mensa logs: cannot reach the master at zk://127.0.0.1:1/mensa: "
                          "ZooKeeper at 127.0.0.1:1 did not answer within 0.5s\n")
