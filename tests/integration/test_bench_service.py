"""``mensa bench service`` at a tiny size: it starts its cluster, launches and deletes an app on
real agents, fills and serves an engine in process, prints each figure line and exits 0; the
figures themselves are never asserted."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from mensa.deploy.processes import mensa_argv

RUN_TIMEOUT = 240.0
SPREAD = r"p50 \d+ ms, p99 \d+ ms, max \d+ ms"


def run_bench(*args: str) -> tuple[int, str]:
    """Runs the benchmark through the CLI; on a timeout it is sent SIGTERM, which stops what it
    started (by pid) as Ctrl-C does, before the test fails."""
    proc = subprocess.Popen(mensa_argv("bench", "service", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"mensa bench service did not finish within {RUN_TIMEOUT:g} s:\n{out}")
    return proc.returncode, out


@pytest.mark.timeout(RUN_TIMEOUT + 90)
def test_the_service_benchmark_prints_its_figures() -> None:
    code, out = run_bench("--instances", "10", "--agents", "2", "--apps", "20", "--tasks-per-app", "3",
                          "--fill-batch", "7", "--requests", "5", "--profile")

    assert code == 0, out
    lines = out.splitlines()

    def line(start: str) -> str:
        found = [x.strip() for x in lines if x.strip().startswith(start)]
        assert found, f"no line starting {start!r} in:\n{out}"
        return found[0]

    assert lines[0] == "mensa bench service"
    assert "2 real agents" in line("conditions:") and "cores" in line("conditions:")
    assert re.search(r"all 10 instances RUNNING: [\d.]+ s after the POST", line("all 10 instances RUNNING"))
    assert re.search(r"first instance RUNNING: \d+ ms after the POST", line("first instance RUNNING"))
    assert re.search(SPREAD + r" \(10 instances\)", line("each instance, POST -> RUNNING"))
    assert "TASK_RUNNING 10 " in line("status updates on the stream")
    assert re.search(r"app and tasks gone: [\d.]+ s; on the stream: TASK_KILLED 10 ",
                     line("DELETE of the app"))
    assert "20 apps x 3 instances" in line("listing, in process")
    assert line("one answer of /v2/apps?embed=apps.tasks:").endswith(": 20 apps, 60 tasks")
    for path in ("/v2/apps?embed=apps.tasks", "/v2/apps", "/v2/tasks"):
        assert re.search(SPREAD + r"; [\d.]+ MB$", line(f"GET {path}:")), path
    assert line("where the serving thread's time went")  # --profile
    assert re.search(r"\d+ function calls", out)
    assert re.search(r"10 instances POST -> all RUNNING +[\d.]+ s +< 3 s: (met|MISSED)",
                     line("10 instances POST -> all RUNNING"))
    assert re.search(r"p99 +\d+ ms +< 200 ms: (met|MISSED)", line("GET /v2/apps?embed=apps.tasks p99"))
