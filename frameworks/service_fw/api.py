"""The service framework's REST API (tornado), Marathon's ``/v2`` for apps, tasks and deployments.

    GET    /v2/apps[?embed=apps.tasks&embed=apps.counts|deployments|lastTaskFailure|failures|readiness]
                   [&id=part][&cmd=part][&label=selector]           {"apps": [...]}
    POST   /v2/apps[?force=true]                     201: the app, Location, Marathon-Deployment-Id
    PUT    /v2/apps[?force=true&partialUpdate=false] several apps at once (a list): one deployment
    PATCH  /v2/apps                                  the same, existing apps only
    GET    /v2/apps/{id}[?embed=...]                 {"app": ...} (with tasks, counts, deployments,
                                                     lastTaskFailure); /v2/apps/{group}/* lists a group
    PUT    /v2/apps/{id}[?force&partialUpdate=false] change (or create: 201) an app
    PATCH  /v2/apps/{id}                             change an existing app
    DELETE /v2/apps/{id}[?force=true]                remove it (a deployment stopping it)
    GET    /v2/apps/{id}/versions[/{version}]        {"versions": [newest first]}; one version
    GET    /v2/apps/{id}/tasks                       {"tasks": [...]} (text/plain: Marathon's lines)
    DELETE /v2/apps/{id}/tasks[?host=h&scale=true&wipe=true]   kill its tasks (all, or on host h)
    DELETE /v2/apps/{id}/tasks/{taskId}[?scale=true&wipe=true]
    POST   /v2/apps/{id}/restart[?force=true]        replace every instance, rolling
    GET    /v2/deployments;  DELETE /v2/deployments/{id}[?force=true]
    GET    /v2/tasks[?status=running&status=staging...];  POST /v2/tasks/delete[?scale&wipe] {"ids": []}
    GET    /v2/queue[?embed=lastUnusedOffers];  DELETE /v2/queue/{id}/delay
    GET    /v2/events[?event_type=...]               Server-Sent Events (sse.py)
    GET    /v2/info, /v2/leader, /ping, /metrics (Prometheus), /v2/metrics (JSON)

A change answers what Marathon answers: ``{"version", "deploymentId"}`` with a
``Marathon-Deployment-Id`` header (201 and a Location when a PUT created the app); cancelling a
deployment answers 200 with the rollback's (202 and no body with ``force=true``, or when there is
nothing to roll back). Errors are Marathon's ``{"message": ...}``: 400 (a body that is not JSON:
``"Invalid JSON"`` with ``details``; bad query parameters), 404 (``App '/x' does not exist``),
409 (an app that exists; apps locked by a deployment: ``deployments: [{"id"}]``, override with
``force=true``), 422 (``"Object is not valid"`` with ``details: [{"path", "errors"}]``), 503
(no leader; a failed state write). An instance that does not lead answers ``/v2`` with 307 to
the leader (Marathon proxies instead; clients follow the redirect), or 503 while none is
known; ``/ping``, ``/v2/info``, ``/v2/leader``, ``/metrics`` and ``/v2/metrics`` answer
everywhere. Each successful change of an app's definition (create, update, restart) publishes
Marathon's ``api_post_event``.

Handlers are thin: they parse, run engine changes through ``service.apply_returning`` (which
stores, then acts), and render with ``views.py``. ``make_app(service)`` builds the application;
``start_http(service, ip, port)`` serves it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog
import tornado.httpserver
import tornado.netutil
import tornado.web

from mensa.frameworks.reading import SpecError
from mensa.frameworks.rest_api import ApiError, JsonHandler, shared_error
from mensa.frameworks.service_fw.engine import Conflict, Exists, NotFound
from mensa.frameworks.service_fw.views import AppViews

if TYPE_CHECKING:
    from mensa.frameworks.service_fw.engine import ServiceEngine
    from mensa.frameworks.service_fw.sse import EventBus

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEPLOYMENT_HEADER = "Marathon-Deployment-Id"
MAX_BODY_BYTES = 4 * 1024 * 1024  # a bulk PUT of many apps; one app is at most 64 KiB


class Service(Protocol):
    """What the handlers need of the service framework's shell (``FrameworkHost`` and its
    service subclass)."""

    engine: ServiceEngine | None
    events: EventBus
    counters: Any  # name -> count
    started_at: float
    framework_id: str | None
    opts: Any  # HostOptions: name, role, master, zk, http_port, ...
    address: str

    @property
    def leading(self) -> bool: ...

    def leader(self) -> str | None: ...

    def require_engine(self) -> ServiceEngine: ...

    async def apply_returning(self, fn: Callable[[float], tuple[T, Sequence[Any] | None]]) -> T: ...


def error_for(exc: BaseException) -> ApiError | None:
    """The API error an exception stands for (None: an unexpected one, a 500)."""
    if isinstance(exc, NotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, Exists):
        return ApiError(409, str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, str(exc), extra={"deployments": [{"id": d} for d in exc.deployments]})
    return shared_error(exc)


def with_prefix(exc: SpecError, prefix: str) -> SpecError:
    """``exc`` with every path under ``prefix`` (``/0`` for the first app of a list)."""
    return SpecError(exc.message, [(prefix + (path if path != "/" else ""), reason)
                                   for path, reason in exc.details])


class Base(JsonHandler):
    content_type = "application/json; charset=utf-8"

    def initialize(self, service: Service) -> None:
        self.service = service

    def api_error(self, exc: BaseException) -> ApiError | None:
        return error_for(exc)

    @property
    def views(self) -> AppViews:
        views: AppViews = self.settings["app_views"]
        return views

    def compute_etag(self) -> str | None:
        return None  # no ETag: hashing a 6 MB app list costs more than it saves (Marathon sends none)

    def now(self) -> float:
        """The time now (the application's ``clock``)."""
        clock: Callable[[], float] = self.settings.get("clock", time.time)
        return clock()

    def write_json(self, body: Any, status: int = 200) -> None:
        self.write_text(json.dumps(body), status)

    def write_text(self, text: str, status: int = 200) -> None:
        """Answers with JSON already encoded."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(text)

    def flag(self, name: str, default: bool = False) -> bool:
        """A true/false query parameter (``?force`` alone is true); 400 for anything else."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value not in ("true", "false", "1", "0", ""):
            raise ApiError(400, f"query parameter {name} must be true or false, not {raw!r}")
        return value in ("true", "1", "")

    def publish(self, event_type: str, doc: dict[str, Any]) -> None:
        events = getattr(self.service, "events", None)
        if events is not None:
            events.publish(event_type, doc)


class Leading(Base):
    """A handler that needs the engine: a standby redirects to the leader (or answers 503)."""

    @property
    def engine(self) -> ServiceEngine:
        """The service's engine now (a rebuild may have replaced the one there was before an
        ``await``): read at each use, never kept across one."""
        return self.service.require_engine()

    async def prepare(self) -> None:
        if self.service.engine is None:
            await self.answer_as_standby(self.service.leader, "service")

    async def apply(self, fn: Callable[[float], tuple[T, Sequence[Any] | None]]) -> T:
        """Runs ``fn(now) -> (value, commands)`` (an engine change) through the service."""
        return await self.service.apply_returning(fn)

    def changed(self, deployment_id: str, version: str, status: int = 200) -> None:
        """Answers a change with Marathon's deployment result."""
        self.set_header(DEPLOYMENT_HEADER, deployment_id)
        self.write_json({"version": version, "deploymentId": deployment_id}, status=status)


def query_values(handler: tornado.web.RequestHandler, *names: str) -> list[str]:
    """Every value of the query parameters ``names`` (repeated or comma-separated)."""
    out: list[str] = []
    for name in names:
        for value in handler.get_query_arguments(name):
            out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- wiring ----------------------------------------------------------------------------------------

APP = r"(/.+?)"  # an app id: a path, so it holds '/' (the keyword routes come first)
SEGMENT = r"([^/]+)"


def service_routes() -> list[tuple[str, type[tornado.web.RequestHandler]]]:
    """The URL patterns, in matching order: an app id's keyword suffixes (tasks, versions,
    restart) are tried before the id alone."""
    from mensa.frameworks.service_fw import api_apps, api_misc, sse

    return [
        (r"/v2/apps/?", api_apps.AppsHandler),
        (rf"/v2/apps{APP}/tasks/?", api_apps.AppTasksHandler),
        (rf"/v2/apps{APP}/tasks/{SEGMENT}/?", api_apps.AppTaskHandler),
        (rf"/v2/apps{APP}/versions/?", api_apps.AppVersionsHandler),
        (rf"/v2/apps{APP}/versions/{SEGMENT}/?", api_apps.AppVersionHandler),
        (rf"/v2/apps{APP}/restart/?", api_apps.AppRestartHandler),
        (rf"/v2/apps{APP}/?", api_apps.AppHandler),
        (r"/v2/deployments/?", api_misc.DeploymentsHandler),
        (rf"/v2/deployments/{SEGMENT}/?", api_misc.DeploymentHandler),
        (r"/v2/tasks/?", api_misc.TasksHandler),
        (r"/v2/tasks/delete/?", api_misc.TasksDeleteHandler),
        (r"/v2/queue/?", api_misc.QueueHandler),
        (rf"/v2/queue{APP}/delay/?", api_misc.QueueDelayHandler),
        (r"/v2/events/?", sse.EventsHandler),
        (r"/v2/info/?", api_misc.InfoHandler),
        (r"/v2/leader/?", api_misc.LeaderHandler),
        (r"/ping/?", api_misc.PingHandler),
        (r"/metrics/?", api_misc.MetricsHandler),
        (r"/v2/metrics/?", api_misc.MetricsJsonHandler),
    ]


def make_app(service: Service, *, sse_keepalive: float | None = None,
             clock: Callable[[], float] = time.time) -> tornado.web.Application:
    """The REST API of ``service``. ``sse_keepalive`` overrides the event stream's keep-alive
    interval (seconds); ``clock`` is what handlers read the time from (the queue's delays, the
    events' timestamps), the shell's clock."""
    settings: dict[str, Any] = {"app_views": AppViews(), "clock": clock}
    if sse_keepalive is not None:
        settings["sse_keepalive"] = sse_keepalive
    return tornado.web.Application([(path, handler, {"service": service})
                                    for path, handler in service_routes()], **settings)


def start_http(service: Service, ip: str, port: int) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Serves the API on ``ip:port`` (0 picks a free port); returns the server and the port."""
    server = tornado.httpserver.HTTPServer(make_app(service), max_body_size=MAX_BODY_BYTES)
    sockets = tornado.netutil.bind_sockets(port, address=ip, family=socket.AF_INET)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
