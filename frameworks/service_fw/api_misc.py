"""The service framework's REST API beyond apps: deployments, tasks, the launch queue, and the
instance's own endpoints (info, leader, ping, metrics). See api.py for the routes and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prometheus_client.core import Metric

from mensa.deploy.prometheus import framework_families, prometheus_text
from mensa.frameworks.service_fw.api import ApiError, Base, Leading, Service, query_values, unique
from mensa.frameworks.service_fw.api_apps import app_id_of, endpoints_text
from mensa.frameworks.service_fw.records import MAX_VERSIONS
from mensa.frameworks.service_fw.views import queue_json
from mensa.proto import mensa_pb2

TASK_STATES = frozenset(mensa_pb2.TaskState.keys())


# -- deployments -----------------------------------------------------------------------------------

class DeploymentsHandler(Leading):
    def get(self) -> None:
        self.write_json([d.to_json() for d in self.engine.deployments()])


class DeploymentHandler(Leading):
    async def delete(self, deployment_id: str) -> None:
        force = self.flag("force")
        rollback = await self.apply(
            lambda now: self.engine.cancel_deployment(deployment_id, now, force=force))
        if rollback is None:
            self.set_status(202)  # stopped, nothing rolled back
            self.finish()
            return
        self.changed(rollback.id, rollback.version)


# -- tasks -----------------------------------------------------------------------------------------

def task_states(values: list[str]) -> frozenset[str] | None:
    """The task states a ``status`` filter names (``running``, ``staging``, ``TASK_KILLING``,
    ...); None for no filter. 400 for an unknown state."""
    states: set[str] = set()
    for value in values:
        name = value.upper()
        name = name if name.startswith("TASK_") else "TASK_" + name
        if name not in TASK_STATES:
            raise ApiError(400, f"unknown task status {value!r}; use a task state such as running, staging")
        states.add(name)
    return frozenset(states) if states else None


class TasksHandler(Leading):
    def get(self) -> None:
        engine = self.engine
        states = task_states(query_values(self, "status", "status[]"))
        accept = self.request.headers.get("Accept", "")
        if "text/plain" in accept and "application/json" not in accept:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(endpoints_text(engine, engine.app_records()))
            return
        instances = sorted(engine.all_instances(), key=lambda i: (i.app_id, i.staged_at, i.task_id))
        if states is not None:
            instances = [i for i in instances if i.state in states]
        self.write_text(self.views.tasks_text(instances, engine))


class TasksDeleteHandler(Leading):
    async def post(self) -> None:
        doc = self.body_object()
        ids = doc.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(422, "Object is not valid", [("/ids", "a list of task ids is expected")])
        scale, wipe, force = self.flag("scale"), self.flag("wipe"), self.flag("force")
        if scale and wipe:
            raise ApiError(400, "You cannot use scale and wipe at the same time.")
        wanted = unique(ids)

        def change(now: float) -> tuple[Any, Sequence[Any]]:
            killed, dep, commands = self.engine.kill_tasks(wanted, now, scale=scale, wipe=wipe,
                                                          force=force)
            return (killed, dep), commands

        killed, dep = await self.apply(change)
        if dep is not None:
            self.changed(dep.id, dep.version)
        else:
            self.write_text(self.views.tasks_text(killed, self.engine))


# -- the launch queue ------------------------------------------------------------------------------

class QueueHandler(Leading):
    def get(self) -> None:
        now = self.now()
        embeds = {e.removeprefix("queue.") for e in query_values(self, "embed")}
        entries = self.engine.queue(now)
        self.write_json({"queue": [queue_json(e, now, last_unused_offers="lastUnusedOffers" in embeds)
                                   for e in entries]})


class QueueDelayHandler(Leading):
    async def delete(self, raw_id: str) -> None:
        app_id = app_id_of(raw_id)
        if all(e.app_id != app_id for e in self.engine.queue(self.now())):
            raise ApiError(404, f"Application {app_id} not found in tasks queue.")
        await self.apply(lambda now: (None, self.engine.reset_delay(app_id, now)))
        self.set_status(204)
        self.finish()


# -- the instance ----------------------------------------------------------------------------------

class PingHandler(Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, no-store, must-revalidate")
        self.finish("pong")


class InfoHandler(Base):
    """Marathon's ``/v2/info``, with its fields only (the ``marathon`` Python client refuses any
    other): this instance's address is ``leader`` when it leads, and always
    ``marathon_config.webui_url`` (``http://host:port``, as the master shows the framework's);
    its uptime is in ``/v2/metrics``."""

    async def get(self) -> None:
        from mensa.frameworks.service_fw.service import VERSION

        service = self.service
        leader = await asyncio.get_running_loop().run_in_executor(None, service.leader)
        opts = service.opts
        host, _sep, port = service.address.rpartition(":")
        zk = getattr(opts, "zk", None)
        self.write_json({
            "name": getattr(opts, "name", "mensa"),
            "version": VERSION,
            "buildref": "unknown",
            "elected": service.leading,
            "leader": leader,
            "frameworkId": service.framework_id,
            "marathon_config": {
                "master": getattr(opts, "master", None),
                "framework_name": getattr(opts, "name", None),
                "ha": zk is not None,
                "checkpoint": True,
                "failover_timeout": getattr(opts, "failover_timeout", None),
                "hostname": getattr(opts, "hostname", None) or host or getattr(opts, "ip", None),
                "mesos_role": getattr(opts, "role", "*"),
                "mesos_user": getattr(opts, "user", "") or None,
                "webui_url": f"http://{service.address}" if service.address else None,
                "features": [],
            },
            "zookeeper_config": {
                "zk": zk,
                "zk_session_timeout": round(float(getattr(opts, "zk_session_timeout", 10.0)) * 1000),
                "zk_max_versions": MAX_VERSIONS,
            },
            "http_config": {"http_port": int(port) if port.isdigit() else getattr(opts, "http_port", None),
                            "https_port": None},
            "event_subscriber": {"type": "sse", "http_endpoints": None},
        })


class LeaderHandler(Base):
    async def get(self) -> None:
        leader = await asyncio.get_running_loop().run_in_executor(None, self.service.leader)
        if leader is None:
            self.write_json({"message": "There is no leader"}, status=404)
            return
        self.write_json({"leader": leader})


# Engine figures that go up and down (every ``counter_*`` one is a count since it started).
GAUGES = frozenset({"leading", "uptime_secs", "apps", "instances", "instances_running", "instances_staging",
                    "instances_unreachable", "instances_waiting", "deployments", "event_subscribers"})


def metrics_snapshot(service: Service, now: float) -> dict[str, float]:
    """Flat counters and gauges: the service's, its event stream's and, while leading, the
    engine's (``counter_launched`` becomes ``service/launched``; a name the service already
    uses gets ``engine_`` in front)."""
    out: dict[str, float] = {
        "service/leading": 1.0 if service.leading else 0.0,
        "service/uptime_secs": round(now - service.started_at, 3),
    }
    for name, value in sorted(dict(service.counters).items()):
        out[f"service/{name}"] = float(value)
    events = getattr(service, "events", None)
    if events is not None:
        out["service/event_subscribers"] = float(len(events.subscribers))
        out["service/events_published"] = float(events.published)
        out["service/event_subscribers_dropped"] = float(events.dropped)
    engine = service.engine
    if engine is not None:
        for name, number in sorted(engine.metrics().items()):
            short = name.removeprefix("counter_")
            key = f"service/{short}" if f"service/{short}" not in out else f"service/engine_{short}"
            out[key] = float(number)
    return out


def metric_families(metrics: dict[str, float]) -> list[Metric]:
    """The snapshot as Prometheus families (``deploy.prometheus.framework_families``)."""
    return framework_families("service", metrics, GAUGES)


class MetricsHandler(Base):
    """Prometheus text (or OpenMetrics, as ``Accept`` asks)."""

    def get(self) -> None:
        body, content_type = prometheus_text(metric_families(metrics_snapshot(self.service, self.now())),
                                             self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.finish(body)


class MetricsJsonHandler(Base):
    def get(self) -> None:
        self.write_json(metrics_snapshot(self.service, self.now()))
