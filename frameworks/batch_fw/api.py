"""The batch framework's REST API (tornado), in Metronome's shapes.

    GET    /v1/jobs[?embed=activeRuns&embed=history&embed=historySummary&embed=schedules]
    POST   /v1/jobs                                   201 with the job
    GET    /v1/jobs/{id}[?embed=...]
    PUT    /v1/jobs/{id}                              replaces the job (its schedules stay)
    DELETE /v1/jobs/{id}[?stopCurrentJobRuns=true]    409 while runs are active, unless stopped
    GET    /v1/jobs/{id}/schedules                    POST adds one (201)
    GET    /v1/jobs/{id}/schedules/{sid}              PUT replaces it, DELETE removes it
    GET    /v1/jobs/{id}/runs                         the active runs; POST starts one now (201)
    GET    /v1/jobs/{id}/runs/{runId}                 an active or finished run
    POST   /v1/jobs/{id}/runs/{runId}/actions/stop    stops a run (kills its tasks)
    GET    /v1/queue                                  runs waiting to start, and why
    GET    /ping (pong), /info, /leader, /metrics (JSON; Prometheus text with ?format=prometheus
           or an Accept of text/plain)

Errors are Metronome's ``{"message": ..., "details": [{"path": ..., "errors": [...]}]}``: 400 for
a body that is not JSON, 404 for an unknown job, schedule or run, 409 for a conflict (a job that
exists, a job with active runs), 422 for an invalid job or schedule. A POST with ``schedules`` in
the job creates them with it, all or nothing. An instance that does not lead answers the
``/v1`` endpoints with 307 to the leader (503 while none is known); ``/ping``, ``/info``,
``/leader`` and ``/metrics`` answer everywhere.

Handlers are thin: they parse, call the engine through ``BatchService.apply`` (which persists,
then acts) or read its queries, and render.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client.core import Metric

from mensa.deploy.prometheus import framework_families, prometheus_text
from mensa.frameworks.batch_fw import jobs
from mensa.frameworks.batch_fw.engine import Conflict, NotFound
from mensa.frameworks.batch_fw.runs import iso
from mensa.frameworks.rest_api import ApiError, JsonHandler, shared_error

if TYPE_CHECKING:
    from mensa.frameworks.batch_fw.engine import BatchEngine
    from mensa.frameworks.batch_fw.service import BatchService

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 512 * 1024  # well under the store's record limit, whatever the encoding
EMBEDS = ("activeRuns", "history", "historySummary", "schedules")  # schedules: always there


def error_for(exc: BaseException) -> ApiError | None:
    """The API error an exception stands for (None: an unexpected one, a 500)."""
    if isinstance(exc, NotFound):
        return ApiError(404, str(exc) or "Object not found")
    if isinstance(exc, Conflict):
        return ApiError(409, str(exc) or "Conflict")
    return shared_error(exc)


class _Base(JsonHandler):
    def initialize(self, service: BatchService) -> None:
        self.service = service

    def api_error(self, exc: BaseException) -> ApiError | None:
        return error_for(exc)

    def flag(self, name: str) -> bool:
        value = self.get_query_argument(name, "false").strip().lower()
        if value not in ("true", "false", "1", "0", ""):
            raise ApiError(400, f"query parameter {name} must be true or false, not {value!r}")
        return value in ("true", "1")

    def embeds(self) -> set[str]:
        wanted: set[str] = set()
        for value in self.get_query_arguments("embed"):
            for item in value.split(","):
                part = item.strip()
                if not part:
                    continue
                if part not in EMBEDS:
                    raise ApiError(400, f"unknown embed {part!r}; choose from {', '.join(EMBEDS)}")
                wanted.add(part)
        return wanted


class _Leading(_Base):
    """A handler that needs the engine: a standby redirects to the leader (or answers 503)."""

    @property
    def engine(self) -> BatchEngine:
        """The service's engine now (a rebuild may have replaced the one there was before an
        ``await``): read at each use, never kept across one."""
        return self.service.require_engine()

    async def prepare(self) -> None:
        if self.service.engine is None:
            await self.answer_as_standby(self.service.leader, "batch")

    async def apply(self, fn: Callable[[float], Any]) -> Any:
        """Runs an engine change returning commands (or ``(value, commands)`` when
        ``returning``) through the service."""
        return await self.service.apply_returning(fn)


# -- rendering -------------------------------------------------------------------------------------

def find_schedule(engine: BatchEngine, job_id: str, schedule_id: str) -> jobs.ScheduleSpec:
    """A job's schedule; NotFound for an unknown job or schedule."""
    for schedule in engine.job(job_id).schedules or ():
        if schedule.id == schedule_id:
            return schedule
    raise NotFound(f"job {job_id!r} has no schedule {schedule_id!r}")


def _same_id(doc: dict[str, Any], wanted: str) -> None:
    doc.setdefault("id", wanted)
    if doc["id"] != wanted:
        raise ApiError(422, "Object is not valid",
                       [("/id", f"the id in the body ({doc['id']!r}) differs from the path's ({wanted!r})")])


# -- /v1/jobs --------------------------------------------------------------------------------------

class JobsHandler(_Leading):
    def get(self) -> None:
        embeds = self.embeds()
        self.write_json([self.engine.job_view(j.id, embeds) for j in self.engine.jobs()])

    async def post(self) -> None:
        spec = jobs.parse_job(self.body_object())
        await self.apply(lambda now: (None, self.engine.put_job(spec, now, create=True)))
        self.write_json(self.engine.job_view(spec.id), status=201)


class JobHandler(_Leading):
    def get(self, job_id: str) -> None:
        self.write_json(self.engine.job_view(job_id, self.embeds()))

    async def put(self, job_id: str) -> None:
        doc = self.body_object()
        _same_id(doc, job_id)
        spec = jobs.parse_job(doc)
        await self.apply(lambda now: (None, self.engine.put_job(spec, now, create=False)))
        self.write_json(self.engine.job_view(job_id))

    async def delete(self, job_id: str) -> None:
        stop = self.flag("stopCurrentJobRuns")
        doc = self.engine.job_view(job_id)
        await self.apply(lambda now: (None, self.engine.delete_job(job_id, now, stop_active=stop)))
        self.write_json(doc)


# -- schedules -------------------------------------------------------------------------------------

class SchedulesHandler(_Leading):
    def get(self, job_id: str) -> None:
        self.write_json([jobs.schedule_json(s) for s in self.engine.job(job_id).schedules or ()])

    async def post(self, job_id: str) -> None:
        spec = jobs.parse_schedule(self.body_object())
        await self.apply(lambda now: (None, self.engine.put_schedule(job_id, spec, now, create=True)))
        self.write_json(jobs.schedule_json(find_schedule(self.engine, job_id, spec.id)), status=201)


class ScheduleHandler(_Leading):
    def get(self, job_id: str, schedule_id: str) -> None:
        self.write_json(jobs.schedule_json(find_schedule(self.engine, job_id, schedule_id)))

    async def put(self, job_id: str, schedule_id: str) -> None:
        doc = self.body_object()
        _same_id(doc, schedule_id)
        spec = jobs.parse_schedule(doc)
        await self.apply(lambda now: (None, self.engine.put_schedule(job_id, spec, now, create=False)))
        self.write_json(jobs.schedule_json(find_schedule(self.engine, job_id, schedule_id)))

    async def delete(self, job_id: str, schedule_id: str) -> None:
        doc = jobs.schedule_json(find_schedule(self.engine, job_id, schedule_id))
        await self.apply(lambda now: (None, self.engine.delete_schedule(job_id, schedule_id, now)))
        self.write_json(doc)


# -- runs ------------------------------------------------------------------------------------------

class RunsHandler(_Leading):
    def get(self, job_id: str) -> None:
        self.write_json(self.engine.runs(job_id, include_finished=self.flag("includeFinished")))

    async def post(self, job_id: str) -> None:
        run = await self.apply(lambda now: self.engine.start_run(job_id, now, trigger="api"))
        self.write_json(run.to_json(), status=201)


class RunHandler(_Leading):
    def get(self, job_id: str, run_id: str) -> None:
        self.write_json(self.engine.run(job_id, run_id))


class StopRunHandler(_Leading):
    async def post(self, job_id: str, run_id: str) -> None:
        await self.apply(lambda now: (None, self.engine.stop_run(job_id, run_id, now)))
        self.write_json(self.engine.run(job_id, run_id))


class QueueHandler(_Leading):
    def get(self) -> None:
        self.write_json(self.engine.queue())


# -- service endpoints -----------------------------------------------------------------------------

class PingHandler(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.finish("pong")


class InfoHandler(_Base):
    def get(self) -> None:
        from mensa.frameworks.batch_fw.service import VERSION

        service = self.service
        self.write_json({
            "version": VERSION,
            "libVersion": VERSION,
            "name": service.opts.name,
            "frameworkId": service.framework_id,
            "leading": service.leading,
            "address": service.address,
            "master": service.opts.master,
            "zk": service.opts.zk,
            "startedAt": iso(service.started_at),
            # Stored records the last restore could not read: kept untouched, their tasks
            # reconciled, never killed; an operator repairs them and restarts the leader.
            "problems": service.engine.problems() if service.engine is not None else [],
        })


class LeaderHandler(_Base):
    async def get(self) -> None:
        leader = await asyncio.get_running_loop().run_in_executor(None, self.service.leader)
        if leader is None:
            self.write_json({"message": "no batch framework instance leads right now"}, status=404)
            return
        self.write_json({"leader": leader})


class MetricsHandler(_Base):
    def get(self) -> None:
        metrics = metrics_snapshot(self.service)
        fmt = self.get_query_argument("format", "")
        accept = self.request.headers.get("Accept", "")
        if fmt == "prometheus" or (not fmt and "text/plain" in accept):
            body, content_type = prometheus_text(metric_families(metrics), accept)
            self.set_header("Content-Type", content_type)
            self.finish(body)
            return
        self.write_json(metrics)


def metrics_snapshot(service: BatchService) -> dict[str, float]:
    """Flat counters and gauges: the service's and, while leading, the engine's."""
    out: dict[str, float] = {
        "batch/leading": 1.0 if service.leading else 0.0,
        "batch/uptime_secs": round(time.time() - service.started_at, 3),
    }
    for name, value in sorted(service.counters.items()):
        out[f"batch/{name}"] = float(value)
    engine = service.engine
    if engine is not None:
        for name, number in sorted(engine.metrics().items()):
            out[f"batch/{name}"] = float(number)
    return out


# Figures that go up and down; every other one is a count since the instance started.
GAUGES = frozenset({"leading", "uptime_secs", "jobs", "runs_active", "runs_waiting", "tasks_reconciling",
                    "tasks_killing", "records_unreadable", "tasks_held"})


def metric_families(metrics: dict[str, float]) -> list[Metric]:
    """The snapshot as Prometheus families (``deploy.prometheus.framework_families``)."""
    return framework_families("batch", metrics, GAUGES)


# -- wiring ----------------------------------------------------------------------------------------

ID = r"([^/]+)"


def batch_routes() -> list[tuple[str, type[tornado.web.RequestHandler]]]:
    return [
        (r"/v1/jobs/?", JobsHandler),
        (rf"/v1/jobs/{ID}/?", JobHandler),
        (rf"/v1/jobs/{ID}/schedules/?", SchedulesHandler),
        (rf"/v1/jobs/{ID}/schedules/{ID}/?", ScheduleHandler),
        (rf"/v1/jobs/{ID}/runs/?", RunsHandler),
        (rf"/v1/jobs/{ID}/runs/{ID}/?", RunHandler),
        (rf"/v1/jobs/{ID}/runs/{ID}/actions/stop/?", StopRunHandler),
        (r"/v1/queue/?", QueueHandler),
        (r"/ping", PingHandler),
        (r"/info", InfoHandler),
        (r"/v1/info", InfoHandler),
        (r"/leader", LeaderHandler),
        (r"/metrics", MetricsHandler),
    ]


def make_app(service: BatchService) -> tornado.web.Application:
    return tornado.web.Application([(path, handler, {"service": service})
                                    for path, handler in batch_routes()])


def start_http(service: BatchService, ip: str, port: int) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Serves the API on ``ip:port`` (0 picks a free port); returns the server and the port."""
    server = tornado.httpserver.HTTPServer(make_app(service), max_body_size=MAX_BODY_BYTES)
    sockets = tornado.netutil.bind_sockets(port, address=ip, family=socket.AF_INET)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
