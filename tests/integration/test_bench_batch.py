"""``mensa bench batch`` at a tiny size: it starts its cluster, runs every phase, prints each
figure line and exits 0 (all runs succeeded); the figures themselves are never asserted."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from mensa.deploy.processes import mensa_argv

RUN_TIMEOUT = 240.0


def run_bench(*args: str) -> tuple[int, str]:
    """Runs the benchmark through the CLI; on a timeout it is sent SIGTERM, which stops what it
    started (by pid) as Ctrl-C does, before the test fails."""
    proc = subprocess.Popen(mensa_argv("bench", "batch", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"mensa bench batch did not finish within {RUN_TIMEOUT:g} s:\n{out}")
    return proc.returncode, out


@pytest.mark.timeout(RUN_TIMEOUT + 90)
def test_the_batch_benchmark_prints_its_figures() -> None:
    code, out = run_bench("--jobs", "20", "--agents", "2", "--concurrency", "4", "--cron-seconds", "6",
                          "--raw-tasks", "10")

    assert code == 0, out
    lines = out.splitlines()

    def line(start: str) -> str:
        found = [x.strip() for x in lines if x.strip().startswith(start)]
        assert found, f"no line starting {start!r} in:\n{out}"
        return found[0]

    assert lines[0] == "mensa bench batch"
    assert "2 real agents" in line("conditions:") and "cores" in line("conditions:")
    assert re.search(r"40 requests in [\d.]+ s = [\d,]+ requests/s", line("submission:"))
    assert re.search(r": [\d,.]+ runs/s; total [\d.]+ s", line("runs completed end to end"))
    assert re.search(r"20 tasks launched", line("the framework meanwhile:"))
    assert line("failures:").startswith("failures: 0 requests, 0 runs FAILED, 0 runs unfinished")
    firings = re.match(r"firings: (\d+) runs, \d+ skipped, 0 duplicates; expected (\d+)", line("firings:"))
    assert firings and int(firings[1]) >= 1 and int(firings[2]) >= 1, out
    assert re.search(r"p50 -?\d+ ms, p99 -?\d+ ms, max -?\d+ ms", line("run created vs scheduledAt:"))
    assert re.search(r"p50 -?\d+ ms, p99 -?\d+ ms", line("task started (RUNNING) vs scheduledAt:"))
    assert "simulated agents of issue 9 do not exist yet" in line(">= 500 runs/s on simulated agents")
    assert line("p99 cron lateness < 1 s:")
    ceilings = line("ceilings:")
    assert re.search(r"GET /ping on the same API: [\d,]+ requests/s", ceilings)
    assert re.search(r"10 `true` tasks through the SDK alone .*: [\d,]+ tasks/s", ceilings)
