"""Micro-benchmark of Allocator.allocate(): prints how long a pass takes. Asserts nothing.

    .venv/bin/python -m mensa.bench.allocator_bench [--agents 1000 10000] [--frameworks 10 100]

For each size it times three passes:
  fresh     every agent free, every framework wants offers (each agent is allocated)
  refilled  everything recovered without filters, then a full pass again
  declined  every framework has declined every agent with a long filter, so each agent
            consults every framework and nobody is offered anything (the scan's worst case;
            built by one decline round per framework, skipped above --max-pairs agents x
            frameworks to keep the run quick)
"""

from __future__ import annotations

import argparse
import random
import time

from mensa.master.allocator import Allocator
from mensa.proto.resources import Resources

AGENT = Resources.parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]")


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


def run_one(agents: int, frameworks: int, seed: int, max_pairs: int) -> None:
    alloc = build(agents, frameworks, seed)
    fresh, n_fresh = timed(alloc, 0.0)
    recover_all(alloc, agents, None, 1.0)
    refilled, n_refilled = timed(alloc, 1.0)
    line = (
        f"agents={agents:>6} frameworks={frameworks:>4}  "
        f"fresh {fresh * 1000:8.1f} ms ({n_fresh} offers, "
        f"{fresh / agents * 1e6:5.1f} us/agent)  "
        f"refilled {refilled * 1000:8.1f} ms ({n_refilled})  "
    )
    if agents * frameworks > max_pairs:
        print(line + "declined skipped")
        return
    recover_all(alloc, agents, 3600.0, 2.0)
    for _ in range(frameworks - 1):
        alloc.allocate(2.0)
        recover_all(alloc, agents, 3600.0, 2.0)
    declined, n_declined = timed(alloc, 3.0)
    print(line + f"declined {declined * 1000:8.1f} ms ({n_declined})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--frameworks", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pairs", type=int, default=100_000)
    args = parser.parse_args(argv)
    for agents in args.agents:
        for frameworks in args.frameworks:
            run_one(agents, frameworks, args.seed, args.max_pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
