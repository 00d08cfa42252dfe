"""``mensa top``'s loop through its ports: a fake fetch, clock and sleep, a screen on a buffer."""

from __future__ import annotations

import io
import json
from typing import Any

from state_docs import NOW, small_cluster

from mensa.deploy.top_cli import ENTER, HOME, LEAVE, Screen, TopLoop, frames_wanted
from mensa.proto.detector import MasterUnreachable


class Ports:
    """A fetch that answers from a script (a /state, or an exception to raise), a clock that
    moves only when the loop sleeps, and the sleeps asked for."""

    def __init__(self, script: list[dict[str, Any] | Exception]) -> None:
        self.script = script
        self.now = NOW
        self.sleeps: list[float] = []

    def fetch(self) -> dict[str, Any]:
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_frames_off_a_terminal_follow_each_other_and_errors_show_in_them() -> None:
    ports = Ports([MasterUnreachable("no answer from the master at m:5050"), small_cluster()])
    out = io.StringIO()
    loop = TopLoop(ports.fetch, Screen(out, tty=False), clock=ports.clock, sleep=ports.sleep)
    assert loop.run(small_cluster(), interval=2, iterations=3) == 3
    frames = [f for f in out.getvalue().split("mensa top  ") if f]
    assert len(frames) == 3 and ports.sleeps == [2, 2]
    assert "! " not in frames[0]
    assert "! no answer from the master at m:5050; showing data from 2s ago; retrying every 2s" in frames[1]
    assert "CPUS" in frames[1]  # the last data stays on screen
    assert "! " not in frames[2]
    assert "\x1b" not in out.getvalue()


def test_on_a_terminal_frames_redraw_in_place_and_the_screen_is_restored() -> None:
    out = io.StringIO()
    screen = Screen(out, tty=True)
    ports = Ports([small_cluster()])
    TopLoop(ports.fetch, screen, clock=ports.clock, sleep=ports.sleep).run(small_cluster(), 1, 2)
    screen.close()
    text = out.getvalue()
    assert text.startswith(ENTER + HOME) and text.count(HOME) == 2 and text.count(ENTER) == 1
    assert text.endswith(LEAVE)


def test_json_frames_are_one_object_per_line() -> None:
    out = io.StringIO()
    ports = Ports([ValueError("not JSON")])
    TopLoop(ports.fetch, Screen(out, tty=True, json_lines=True), clock=ports.clock,
            sleep=ports.sleep).run(small_cluster(), 1, 2)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["error"] is None and first["agents"] == 2 and first["task_counts"]["TASK_RUNNING"] == 2
    assert second["error"] == "not JSON" and second["fetched_at"] == NOW


def test_how_many_frames() -> None:
    assert frames_wanted(once=True, iterations=None, tty=True) == 1
    assert frames_wanted(once=False, iterations=None, tty=False) == 1
    assert frames_wanted(once=False, iterations=None, tty=True) is None
    assert frames_wanted(once=False, iterations=3, tty=False) == 3
