"""Benchmark of Allocator.allocate(): seconds per full allocation pass. Asserts nothing.

    .venv/bin/python -m mensa.bench.allocator_bench [--grid 1000/100 5000/500 ...] [--repeat 3]

The grid (agents/frameworks; one role, no filters, every framework wants more than it gets, so
every agent is offered): each pass starts with every agent free (everything offered in the last
pass is recovered, untimed, in between); the best of ``--repeat`` passes is printed beside
Mesos 1.8's published figures for the same grid, with the ratio of the 10k/1k pass to the 1k/100
pass (linear growth in agents would be 10).

The decline storm (``--storm AGENTS/FRAMEWORKS``, default 2000/200): every framework has
declined every agent with a long filter, so nobody can be offered anything. ``first`` is the
first pass after the last decline (every agent consults every framework); ``steady`` the passes
after it while nothing changes (the allocator remembers that the agent is blocked).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from mensa.master.allocator import Allocator
from mensa.proto.resources import Resources

AGENT = Resources.parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]")
GRID = ("1000/100", "5000/500", "10000/1000", "20000/2000")
# Mesos 1.8 per-pass figures for the same grid (HierarchicalAllocator benchmarks, as quoted).
MESOS_1_8 = {(1000, 100): 0.1, (5000, 500): 0.4, (10000, 1000): 1.1, (20000, 2000): 3.8}


def build(agents: int, frameworks: int, seed: int) -> Allocator:
    alloc = Allocator(rng=random.Random(seed))
    for i in range(agents):
        alloc.add_agent(f"agent-{i}", AGENT)
    for i in range(frameworks):
        alloc.add_framework(f"framework-{i}")
    return alloc


def recover_all(alloc: Allocator, agents: int, refuse_seconds: float | None, now: float) -> None:
    for i in range(agents):
        agent_id = f"agent-{i}"
        for framework_id, resources in alloc.allocated(agent_id).items():
            alloc.recover(agent_id, framework_id, resources, refuse_seconds, now)


def timed(alloc: Allocator, now: float) -> tuple[float, int]:
    start = time.perf_counter()
    offers = alloc.allocate(now)
    return time.perf_counter() - start, len(offers)


def grid_cell(agents: int, frameworks: int, seed: int, repeat: int) -> tuple[float, int]:
    """Returns the best seconds per full pass and the offers it made."""
    alloc = build(agents, frameworks, seed)
    best, offers = float("inf"), 0
    for i in range(repeat):
        seconds, offers = timed(alloc, float(i))
        best = min(best, seconds)
        recover_all(alloc, agents, None, float(i))
    return best, offers


def storm(agents: int, frameworks: int, seed: int) -> tuple[float, float, int]:
    """Returns (first pass seconds, steady pass seconds, offers) for the decline storm.

    Built in one round per framework: it joins, is offered every agent (its id sorts first
    among equal shares, so building costs no scan) and declines them all for an hour.
    """
    alloc = Allocator(rng=random.Random(seed))
    for i in range(agents):
        alloc.add_agent(f"agent-{i}", AGENT)
    for k in range(frameworks):
        alloc.add_framework(f"framework-{frameworks - 1 - k:06d}")
        alloc.allocate(0.0)
        recover_all(alloc, agents, 3600.0, 0.0)
    first, offers = timed(alloc, 1.0)
    steady = statistics.median(timed(alloc, 2.0 + i)[0] for i in range(3))
    return first, steady, offers


def _pair(text: str) -> tuple[int, int]:
    agents, frameworks = text.split("/")
    return int(agents), int(frameworks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grid", nargs="*", default=list(GRID), metavar="AGENTS/FRAMEWORKS")
    parser.add_argument("--storm", default="2000/200", metavar="AGENTS/FRAMEWORKS",
                        help="decline-storm size ('' to skip)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    print(f"{'agents/frameworks':>18} {'mensa s/pass':>13} {'mesos 1.8':>10} {'offers':>7}")
    results: dict[tuple[int, int], float] = {}
    for cell in args.grid:
        agents, frameworks = _pair(cell)
        seconds, offers = grid_cell(agents, frameworks, args.seed, args.repeat)
        results[(agents, frameworks)] = seconds
        mesos = MESOS_1_8.get((agents, frameworks))
        mesos_text = f"{mesos:10.1f}" if mesos is not None else f"{'-':>10}"
        print(f"{cell:>18} {seconds:13.3f} {mesos_text} {offers:7d}", flush=True)
    small, large = results.get((1000, 100)), results.get((10000, 1000))
    if small and large:
        print(f"ratio 10k/1k : 1k/100 = {large / small:.1f} (target <= 12; Mesos 1.8: "
              f"{MESOS_1_8[(10000, 1000)] / MESOS_1_8[(1000, 100)]:.0f})")
    if args.storm:
        agents, frameworks = _pair(args.storm)
        first, steady, offers = storm(agents, frameworks, args.seed)
        print(f"decline storm {args.storm}: first pass {first:.3f} s, steady {steady:.4f} s "
              f"per pass ({offers} offers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
