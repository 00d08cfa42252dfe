"""The service framework's I/O shell: the shared ``FrameworkHost`` running a ``ServiceEngine``.

Everything the host promises holds here (see ``frameworks.hosting``): engine changes go through
``apply``; their ``Persist``/``Forget`` commands are written in one batch before any ``Launch``,
``Kill`` or event is sent, so an instance is stored before its task launches and a restart never
forgets or duplicates one; status updates are applied in groups and acknowledged once stored; a
timer calls ``engine.tick`` (launch backoff, launch timeouts, unreachable instances, kill
retries); a failed write stops the instance. What is the service framework's own: its engine,
its refusals (``SpecError``, ``NotFound``, ``Exists``, ``Conflict``), the order of a write
(versions, apps, deployments, then instances, then removals), the ``/v2/events`` bus that
``Emit`` commands feed once their step is stored, and the Marathon REST API.

Usage::

    service = ServiceService(ServiceOptions(master="127.0.0.1:5050", work_dir=Path("/var/lib/svc")))
    exit_code = asyncio.run(service.run())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mensa.frameworks.hosting import FrameworkHost, HostOptions, HttpServer, NotLeading
from mensa.frameworks.reading import SpecError
from mensa.frameworks.service_fw.commands import KIND_APP, KIND_VERSION, Emit
from mensa.frameworks.service_fw.deployments import KIND_DEPLOYMENT
from mensa.frameworks.service_fw.engine import Conflict, Exists, NotFound, ServiceEngine
from mensa.frameworks.service_fw.sse import EventBus
from mensa.frameworks.store import Change, Drop

__all__ = ["VERSION", "NotLeading", "ServiceOptions", "ServiceService"]

VERSION = "0.1.0"

_ORDER = {KIND_VERSION: 0, KIND_APP: 1, KIND_DEPLOYMENT: 2}


@dataclass(slots=True)
class ServiceOptions(HostOptions):
    """What ``mensa service`` was started with."""

    http_port: int = 8080
    name: str = "mensa-service"


def _write_order(change: Change) -> int:
    if isinstance(change, Drop):
        return 4
    return _ORDER.get(change.kind, 3)  # instances after the apps they belong to


class ServiceService(FrameworkHost[ServiceEngine]):
    """See the module docstring."""

    def __init__(self, opts: HostOptions) -> None:
        super().__init__(opts, name="service", make_engine=lambda: ServiceEngine(role=opts.role),
                         refusals=(SpecError, NotFound, Exists, Conflict), write_order=_write_order)
        self.events = EventBus()

    def start_http(self) -> tuple[HttpServer, int]:
        from mensa.frameworks.service_fw.api import start_http

        return start_http(self, self.opts.ip, self.opts.http_port)

    def closing(self) -> None:
        self.events.close_all()  # open /v2/events streams end cleanly

    def handle_command(self, command: Any) -> bool:
        if isinstance(command, Emit):
            self.events.publish(command.event_type, command.doc)
            return True
        return False
