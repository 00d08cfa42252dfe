"""The master's metrics endpoints: ``/metrics/snapshot``, ``/metrics`` (Prometheus) and
``/state-summary``.

* ``GET /metrics/snapshot``: flat JSON with Mesos's metric names (``master/elected``,
  ``master/tasks_running``, ``master/cpus_used``, ``allocator/mesos/allocation_run_ms/p99``, ...;
  the list is in ``metrics_snapshot.py``). Answered by every master, leading or not: a standby
  reports ``master/elected`` 0 and its uptime, and is never redirected (a scraper watches each
  master on its own).
* ``GET /metrics``: the same figures in Prometheus's text format (or OpenMetrics, if the
  scraper's ``Accept`` header asks for it), also on a standby. Names:

  - gauges ``mensa_master_elected``, ``mensa_master_uptime_seconds``,
    ``mensa_master_agents{state=active|connected|disconnected|inactive|unreachable|recovering}``,
    ``mensa_master_frameworks{state=active|inactive|connected|disconnected}``,
    ``mensa_master_tasks{state=staging|starting|running|killing}`` (live tasks now),
    ``mensa_master_{cpus,mem,disk}_{total,used,percent}`` (mem and disk in MB and ``percent`` the
    fraction used, 0..1, as in Mesos), ``mensa_master_outstanding_offers``,
    ``mensa_master_role_dominant_share{role}``;
  - counters (since election) ``mensa_master_tasks_completed_total{state=finished|failed|killed|
    lost|error|dropped|unreachable|gone}``, ``mensa_master_offers_{sent,accepted,declined,
    rescinded}_total``, ``mensa_master_tasks_launched_total``, ``mensa_master_tasks_invalid_total``,
    ``mensa_master_status_updates_total``, ``mensa_master_invalid_messages_total``,
    ``mensa_master_agent_removals_total``, ``mensa_master_allocation_runs_total``,
    ``mensa_master_messages_total{kind}`` (``call:ACCEPT``, ``status_update``, ``pong``, ...);
  - histograms (seconds, since election) ``mensa_master_allocation_seconds``,
    ``mensa_master_offer_to_accept_seconds``, ``mensa_master_launch_to_running_seconds``.

* ``GET /state-summary`` (and Mesos's ``/master/state-summary``): agents and frameworks with their
  resources and task counts, no tasks (``state_json.state_summary_json``); a standby redirects
  like ``/state``.

Dashboards poll these; a big cluster's snapshot or summary takes milliseconds to build on the
master's one loop, so each is reused while recent (``Recent``): polling costs at most a tenth of
the loop whatever the rate, and the figures are never older than nine build times.

``server.start_http`` mounts ``metrics_routes()`` on every master.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from mensa.deploy.prometheus import prometheus_text, resource_families
from mensa.master.http.metrics_snapshot import (
    COMPLETED_STATES,
    LIVE_STATES,
    SCALARS,
    metrics_json,
    standby_metrics_json,
)
from mensa.master.http.recent import Recent
from mensa.master.http.server import _Base
from mensa.master.http.state_json import state_summary_json
from mensa.master.metrics import Histogram, MasterMetrics

if TYPE_CHECKING:
    from mensa.master.service import MasterService

AGENT_STATES = ("active", "connected", "disconnected", "inactive", "unreachable", "recovering")
FRAMEWORK_STATES = ("active", "inactive", "connected", "disconnected")
COUNTERS = (  # snapshot key -> Prometheus counter (prometheus_client appends _total)
    ("master/offers_sent", "mensa_master_offers_sent", "Offers sent to frameworks."),
    ("master/offers_accepted", "mensa_master_offers_accepted", "Offers used by an ACCEPT."),
    ("master/offers_declined", "mensa_master_offers_declined", "Offers declined."),
    ("master/offers_rescinded", "mensa_master_offers_rescinded", "Offers rescinded or expired."),
    ("master/tasks_launched", "mensa_master_tasks_launched", "Tasks launched."),
    ("master/tasks_invalid", "mensa_master_tasks_invalid", "Tasks refused as invalid."),
    ("master/status_updates", "mensa_master_status_updates", "Status updates recorded."),
    ("master/invalid_messages", "mensa_master_invalid_messages", "Messages refused."),
    ("master/agent_removals", "mensa_master_agent_removals", "Agents marked unreachable."),
    ("allocator/mesos/allocation_runs", "mensa_master_allocation_runs", "Allocation passes."),
)
HISTOGRAMS = (  # MasterMetrics field -> Prometheus histogram
    ("allocation", "mensa_master_allocation_seconds", "Time an allocation pass took."),
    ("offer_to_accept", "mensa_master_offer_to_accept_seconds",
     "Time from an offer's creation to the ACCEPT that used it."),
    ("launch_to_running", "mensa_master_launch_to_running_seconds",
     "Time from a task's launch to the master hearing it runs."),
)
ROLE_PREFIX, ROLE_SUFFIX = "allocator/mesos/roles/", "/shares/dominant"
T = TypeVar("T")


def histogram_family(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    """Returns ``histogram`` as a Prometheus histogram family (cumulative ``le`` buckets)."""
    buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.total)


def master_families(snapshot: dict[str, float], metrics: MasterMetrics | None) -> list[Metric]:
    """Returns the Prometheus families for a /metrics/snapshot document (and the master's
    histograms and message counts when it leads; see the module docstring for the names)."""
    families: list[Metric] = [
        GaugeMetricFamily("mensa_master_elected", "1 when this master leads.",
                          value=snapshot["master/elected"]),
        GaugeMetricFamily("mensa_master_uptime_seconds", "Seconds since this master started.",
                          value=snapshot["master/uptime_secs"]),
    ]
    if metrics is None:
        return families

    def labelled(family: GaugeMetricFamily | CounterMetricFamily, key: str,
                 values: Iterable[str]) -> GaugeMetricFamily | CounterMetricFamily:
        for value in values:
            family.add_metric([value], snapshot[key.format(value)])
        return family

    families += [
        labelled(GaugeMetricFamily("mensa_master_agents", "Agents by state.", labels=["state"]),
                 "master/agents_{}", AGENT_STATES),
        labelled(GaugeMetricFamily("mensa_master_frameworks", "Frameworks by state.",
                                   labels=["state"]), "master/frameworks_{}", FRAMEWORK_STATES),
        labelled(GaugeMetricFamily("mensa_master_tasks", "Live tasks by state.", labels=["state"]),
                 "master/tasks_{}", LIVE_STATES),
        labelled(CounterMetricFamily("mensa_master_tasks_completed",
                                     "Tasks that reached a terminal (or unreachable) state.",
                                     labels=["state"]), "master/tasks_{}", COMPLETED_STATES),
        GaugeMetricFamily("mensa_master_outstanding_offers", "Offers not yet accepted or declined.",
                          value=snapshot["master/outstanding_offers"]),
    ]
    families += resource_families("mensa_master", "master", snapshot, SCALARS, "Agents'")
    for key, name, documentation in COUNTERS:
        families.append(CounterMetricFamily(name, documentation, value=snapshot[key]))
    messages = CounterMetricFamily("mensa_master_messages", "Messages received, by kind.",
                                   labels=["kind"])
    for kind, count in sorted(metrics.messages.items()):
        messages.add_metric([kind], count)
    families.append(messages)
    shares = GaugeMetricFamily("mensa_master_role_dominant_share", "Each role's dominant share.",
                               labels=["role"])
    for key, value in snapshot.items():
        if key.startswith(ROLE_PREFIX) and key.endswith(ROLE_SUFFIX):
            shares.add_metric([key[len(ROLE_PREFIX):-len(ROLE_SUFFIX)]], value)
    families.append(shares)
    for field_name, name, documentation in HISTOGRAMS:
        families.append(histogram_family(name, documentation, getattr(metrics, field_name)))
    return families


_snapshots: Recent[dict[str, float]] = Recent()
_summaries: Recent[bytes] = Recent()


def snapshot_of(master: MasterService) -> tuple[dict[str, float], MasterMetrics | None]:
    """Returns the master's /metrics/snapshot (a recent one; see ``Recent``) and its metrics
    (None unless it leads)."""
    state = master.state
    if state is None or not master.leading:
        return standby_metrics_json(now=time.time(), started_at=master.started_at), None
    snapshot = _snapshots.get(state, lambda: metrics_json(state, now=time.time(),
                                                          started_at=master.started_at))
    return snapshot, state.metrics


class SnapshotHandler(_Base):
    """``GET /metrics/snapshot``: Mesos-named metrics as flat JSON (leading or not)."""

    def get(self) -> None:
        self.write_json(snapshot_of(self.master)[0])


class PrometheusHandler(_Base):
    """``GET /metrics``: the same figures, with histograms, for Prometheus (leading or not)."""

    def get(self) -> None:
        snapshot, metrics = snapshot_of(self.master)
        body, content_type = prometheus_text(master_families(snapshot, metrics),
                                             self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.finish(body)


class StateSummaryHandler(_Base):
    """``GET /state-summary``: agents and frameworks with task counts (redirects on a standby)."""

    def get(self) -> None:
        state = self.leading_state()
        if state is not None:
            self.set_header("Content-Type", "application/json")
            self.finish(_summaries.get(state, lambda: json.dumps(state_summary_json(state)).encode()))


def metrics_routes() -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """Returns ``(path, handler, extra initialize kwargs)`` for the metrics endpoints; the caller
    adds ``master``."""
    return [
        (r"/metrics/snapshot", SnapshotHandler, {}),
        (r"/metrics", PrometheusHandler, {}),
        (r"/state-summary", StateSummaryHandler, {}),
        (r"/master/state-summary", StateSummaryHandler, {}),
    ]
