"""``mensa top``: a live view of the cluster, refreshed every ``--interval`` seconds.

    mensa top --master 10.0.0.1:5050                 # redraws in place until Ctrl-C
    mensa top --master zk://zk1:2181/mensa --once    # one frame, then exit
    mensa top --json --iterations 3 --interval 1     # one JSON object per frame, three frames

Each frame shows the cluster's totals and usage per resource with bars, tasks per state, the
frameworks with the largest dominant shares, the fullest agents and the tasks that changed
state last (laid out by the pure ``mensa.deploy.top_view``). On a terminal the frame is redrawn
in place (ANSI escapes, the alternate screen, fitted to the window); when stdout is not a
terminal, or with ``--once``, one frame is printed and the command exits, unless
``--iterations N`` asks for N frames. If the master cannot be read at the start the command
prints one line on stderr and exits 1; once running, a failed read (the master restarting, a
new leader being elected) is shown in the frame and retried on the next tick. Ctrl-C exits 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from mensa.deploy.state_cli import StateSource, add_master_arguments, quiet_kazoo, silence_stdout
from mensa.deploy.top_view import TopSummary, render_frame, summarize
from mensa.proto.detector import MasterUnreachable

# Enter the alternate screen and hide the cursor; leave both. Home, clear to end of line/screen.
ENTER, LEAVE = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_master_arguments(parser, "print one JSON object per frame (a line each) instead of text")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between frames (default 2)")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--iterations", type=int, metavar="N", help="print N frames, then exit")


class Screen:
    """Where frames go: redrawn in place on a terminal, else printed one after another (a blank
    line between frames); ``json`` prints one JSON object per line instead."""

    def __init__(self, out: TextIO, tty: bool, json_lines: bool = False) -> None:
        self.out = out
        self.tty = tty and not json_lines
        self.json_lines = json_lines
        self._entered = False

    def size(self) -> tuple[int | None, int | None]:
        """Returns the terminal's (width, height), or (None, None) when not drawing on one."""
        if not self.tty:
            return None, None
        size = shutil.get_terminal_size()
        return size.columns, size.lines

    def draw(self, lines: list[str]) -> None:
        if self.tty:
            if not self._entered:
                self.out.write(ENTER)
                self._entered = True
            self.out.write(HOME + (CLEAR_LINE + "\n").join(lines) + CLEAR_LINE + CLEAR_BELOW)
        else:
            self.out.write("\n".join(lines) + "\n\n")
        self.out.flush()

    def write_json(self, doc: dict[str, Any]) -> None:
        self.out.write(json.dumps(doc) + "\n")
        self.out.flush()

    def close(self) -> None:
        if self._entered:
            self.out.write(LEAVE)
            self.out.flush()
            self._entered = False


class TopLoop:
    """Fetches, summarizes and draws frames. Its ports (``fetch``, ``clock``, ``sleep``, the
    screen) are handed in, so a test drives it without a master or a real clock."""

    def __init__(self, fetch: Callable[[], dict[str, Any]], screen: Screen, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.fetch = fetch
        self.screen = screen
        self.clock = clock
        self.sleep = sleep

    def run(self, first: dict[str, Any], interval: float, iterations: int | None) -> int:
        """Draws a frame from ``first``, then every ``interval`` seconds from a new fetch, until
        ``iterations`` frames are drawn (None: until interrupted). Returns the frame count."""
        summary: TopSummary | None = summarize(first)
        fetched_at: float | None = self.clock()
        error: str | None = None
        drawn = 0
        while True:
            self._draw(summary, interval, error, fetched_at)
            drawn += 1
            if iterations is not None and drawn >= iterations:
                return drawn
            self.sleep(interval)
            try:
                summary, fetched_at, error = summarize(self.fetch()), self.clock(), None
            except (MasterUnreachable, OSError, ValueError) as exc:
                error = str(exc) or type(exc).__name__

    def _draw(self, summary: TopSummary | None, interval: float, error: str | None,
              fetched_at: float | None) -> None:
        now = self.clock()
        if self.screen.json_lines:
            doc = summary.to_json() if summary is not None else {}
            self.screen.write_json({"time": now, "error": error, "fetched_at": fetched_at, **doc})
            return
        width, height = self.screen.size()
        self.screen.draw(render_frame(summary, now=now, interval=interval, error=error, fetched_at=fetched_at,
                                      width=width, height=height))


def frames_wanted(once: bool, iterations: int | None, tty: bool) -> int | None:
    """Returns how many frames to draw: one with ``--once`` or off a terminal (unless
    ``--iterations`` says), else ``--iterations`` (None: until Ctrl-C)."""
    if once:
        return 1
    if iterations is not None:
        return max(1, iterations)
    return None if tty else 1


def run(args: argparse.Namespace) -> int:
    quiet_kazoo()
    if args.interval <= 0:
        print("mensa top: --interval must be positive", file=sys.stderr)
        return 1
    source = StateSource(args.master, args.timeout)
    tty = sys.stdout.isatty()
    screen = Screen(sys.stdout, tty, json_lines=args.json)
    try:
        try:
            first = source.fetch()
        except (MasterUnreachable, OSError, ValueError) as exc:
            print(f"mensa top: {exc}", file=sys.stderr)
            return 1
        frames = frames_wanted(args.once, args.iterations, tty)
        TopLoop(source.fetch, screen).run(first, args.interval, frames)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        silence_stdout()
    finally:
        try:
            screen.close()
        except OSError:
            silence_stdout()
    return 0
