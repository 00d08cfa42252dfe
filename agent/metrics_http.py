"""The agent's ``/metrics/snapshot`` (Mesos names, JSON) and ``/metrics`` (Prometheus text).

The figures are ``agent.metrics.agent_metrics_json``'s. Prometheus names: gauges
``mensa_agent_uptime_seconds``, ``mensa_agent_registered``,
``mensa_agent_tasks{state=staging|starting|running|killing}``,
``mensa_agent_{cpus,mem,disk}_{total,used,percent}`` (MB for mem and disk; ``percent`` is the
fraction used), ``mensa_agent_containers_running``, ``mensa_agent_frameworks_active``,
``mensa_agent_status_updates_pending``, ``mensa_agent_status_updates_retrying``; the counter
``mensa_agent_tasks_completed_total{state=finished|failed|killed|lost|error|dropped|gone}``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import tornado.web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mensa.agent.metrics import COMPLETED_STATES, LIVE_STATES, SCALARS, AgentMetrics, agent_metrics_json
from mensa.agent.state import AgentState
from mensa.deploy.prometheus import prometheus_text, resource_families

GAUGES = (  # snapshot key -> Prometheus gauge
    ("slave/uptime_secs", "mensa_agent_uptime_seconds", "Seconds since the agent started."),
    ("slave/registered", "mensa_agent_registered", "1 while registered with a master."),
    ("slave/containers_running", "mensa_agent_containers_running", "Task containers running."),
    ("slave/frameworks_active", "mensa_agent_frameworks_active", "Frameworks with live tasks here."),
    ("slave/status_updates_pending", "mensa_agent_status_updates_pending",
     "Status updates not yet acknowledged."),
    ("slave/status_updates_retrying", "mensa_agent_status_updates_retrying",
     "Tasks whose oldest unacknowledged update was sent more than once."),
)


def agent_families(snapshot: dict[str, float]) -> list[Metric]:
    """Returns the Prometheus families for the agent's /metrics/snapshot document."""
    families: list[Metric] = [GaugeMetricFamily(name, doc, value=snapshot[key]) for key, name, doc in GAUGES]
    tasks = GaugeMetricFamily("mensa_agent_tasks", "Live tasks by state.", labels=["state"])
    for state in LIVE_STATES:
        tasks.add_metric([state], snapshot[f"slave/tasks_{state}"])
    completed = CounterMetricFamily("mensa_agent_tasks_completed", "Tasks that ended, by state.",
                                    labels=["state"])
    for state in COMPLETED_STATES:
        completed.add_metric([state], snapshot[f"slave/tasks_{state}"])
    families += [tasks, completed]
    families += resource_families("mensa_agent", "slave", snapshot, SCALARS, "The agent's")
    return families


class _MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, state: AgentState, metrics: AgentMetrics) -> None:
        self.state = state
        self.metrics = metrics

    def snapshot(self) -> dict[str, float]:
        self.metrics.observe_completed(self.state.completed)
        return agent_metrics_json(self.state, self.metrics, now=time.time())


class SnapshotHandler(_MetricsHandler):
    """``GET /metrics/snapshot``."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.snapshot()))


class PrometheusHandler(_MetricsHandler):
    """``GET /metrics``."""

    def get(self) -> None:
        accept = self.request.headers.get("Accept")
        body, content_type = prometheus_text(agent_families(self.snapshot()), accept)
        self.set_header("Content-Type", content_type)
        self.finish(body)


def metrics_routes(state: AgentState, metrics: AgentMetrics) -> list[tuple[str, Any, dict[str, Any]]]:
    """Returns the agent's metrics routes for ``tornado.web.Application``."""
    args = {"state": state, "metrics": metrics}
    return [
        (r"/metrics/snapshot", SnapshotHandler, args),
        (r"/metrics", PrometheusHandler, args),
    ]
