"""What every Mensa process does the same way: configure logging, publish its endpoints.

``configure_logging("json")`` makes structlog emit one JSON object per line (for shipping to a
log store); ``"console"`` (the default) is readable on a terminal. ``write_endpoints`` records
the ports a process actually bound (``--port 0`` picks free ones) in ``<work-dir>/endpoints.json``
so scripts and tests can find them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import structlog

LOG_FORMATS = ("console", "json")


def configure_logging(fmt: str = "console", level: str = "info", component: str | None = None) -> None:
    """Configures structlog (and stdlib logging underneath) for this process."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; choose one of {', '.join(LOG_FORMATS)}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")  # noqa: TRY004
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if component:
        structlog.contextvars.bind_contextvars(component=component)
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def write_endpoints(work_dir: str | Path, **endpoints: Any) -> Path:
    """Atomically writes ``<work_dir>/endpoints.json`` with the given values and the pid."""
    path = Path(work_dir) / "endpoints.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **endpoints}, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_endpoints(work_dir: str | Path) -> dict[str, Any]:
    """Reads ``<work_dir>/endpoints.json``; raises FileNotFoundError until it exists."""
    data: dict[str, Any] = json.loads((Path(work_dir) / "endpoints.json").read_text())
    return data
