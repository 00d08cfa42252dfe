"""Mensa benchmarks: `mensa bench COMMAND`; each prints figures and the conditions."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def standalone(name: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace], int], argv: list[str] | None) -> int:
    """Runs a benchmark outside the CLI (``python -m mensa.bench.NAME``), with the logging flags
    ``mensa`` gives every command."""
    parser = argparse.ArgumentParser(prog=f"mensa bench {name}", description=doc.split("\n", maxsplit=1)[0])
    add_arguments(parser)
    parser.add_argument("--log-format", choices=("console", "json"), default="console")
    parser.add_argument("--log-level", default="warning")
    return run(parser.parse_args(argv))
