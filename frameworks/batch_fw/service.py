"""The batch framework's I/O shell: the shared ``FrameworkHost`` running a ``BatchEngine``.

Everything the host promises holds here (see ``frameworks.hosting``): engine changes go through
``apply``; their ``Persist``/``Forget`` commands are written in one batch before any ``Launch``,
``Kill`` or other command is sent, so the intent to start a run is durable before any of its
tasks launch; status updates are applied in groups and acknowledged once stored; a timer calls
``engine.tick`` for cron firings, deadlines and retry backoff; a failed write stops the
instance. What is the batch framework's own: its engine, the refusals that change nothing
(``SpecError``, ``NotFound``, ``Conflict``), the order of a write (runs before jobs before
removals: a job record never reaches the store before the runs it refers to) and its REST API.

Usage::

    service = BatchService(BatchOptions(master="127.0.0.1:5050", work_dir=Path("/var/lib/batch")))
    exit_code = asyncio.run(service.run())
"""

from __future__ import annotations

from dataclasses import dataclass

from mensa.frameworks.batch_fw import commands as cmds
from mensa.frameworks.batch_fw.engine import BatchEngine, Conflict, NotFound
from mensa.frameworks.batch_fw.jobs import SpecError
from mensa.frameworks.hosting import (
    CALLBACK_TIMEOUT,
    MAX_TIMER_DELAY,
    REFUSE_SECONDS_DEFAULT,
    FrameworkHost,
    HostOptions,
    HostScheduler,
    HttpServer,
    NotLeading,
)
from mensa.frameworks.store import Change, Drop

__all__ = ["CALLBACK_TIMEOUT", "MAX_TIMER_DELAY", "REFUSE_SECONDS_DEFAULT", "VERSION", "BatchOptions",
           "BatchScheduler", "BatchService", "NotLeading"]

VERSION = "0.1.0"

BatchScheduler = HostScheduler  # the driver's callbacks, as every bundled framework has them


@dataclass(slots=True)
class BatchOptions(HostOptions):
    """What ``mensa batch`` was started with."""

    http_port: int = 9000
    name: str = "mensa-batch"


def _write_order(change: Change) -> int:
    if isinstance(change, Drop):
        return 3
    return 0 if change.kind == cmds.KIND_RUN else 1 if change.kind == cmds.KIND_JOB else 2


class BatchService(FrameworkHost[BatchEngine]):
    """See the module docstring."""

    def __init__(self, opts: HostOptions) -> None:
        super().__init__(opts, name="batch", make_engine=BatchEngine,
                         refusals=(SpecError, NotFound, Conflict), write_order=_write_order)

    def start_http(self) -> tuple[HttpServer, int]:
        from mensa.frameworks.batch_fw.api import start_http

        return start_http(self, self.opts.ip, self.opts.http_port)
