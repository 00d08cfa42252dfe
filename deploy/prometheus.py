"""Prometheus exposition shared by the master's and the agent's ``/metrics``.

Each scrape builds its metric families from a snapshot and renders them through a private
registry (nothing global), in the format the scraper's ``Accept`` header asks for:
prometheus-client's negotiation, the classic text format (``text/plain; version=0.0.4``) unless
the scraper asks for text 1.0.0 or OpenMetrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector


class _Families(Collector):
    """A collector that yields families built beforehand (one scrape's worth)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def resource_families(prefix: str, key_prefix: str, snapshot: Mapping[str, float],
                      scalars: tuple[str, ...], whose: str) -> list[Metric]:
    """``<prefix>_<cpus|mem|disk>_<total|used|percent>`` gauges from the snapshot's
    ``<key_prefix>/<scalar>_<total|used|percent>`` figures (mem and disk in MB)."""
    families: list[Metric] = []
    for scalar in scalars:
        unit = "" if scalar == "cpus" else " (MB)"
        families += [
            GaugeMetricFamily(f"{prefix}_{scalar}_total", f"{whose} {scalar}{unit}.",
                              value=snapshot[f"{key_prefix}/{scalar}_total"]),
            GaugeMetricFamily(f"{prefix}_{scalar}_used", f"{scalar} used by live tasks{unit}.",
                              value=snapshot[f"{key_prefix}/{scalar}_used"]),
            GaugeMetricFamily(f"{prefix}_{scalar}_percent", f"Fraction of {scalar} used (0..1).",
                              value=snapshot[f"{key_prefix}/{scalar}_percent"]),
        ]
    return families


def prometheus_text(families: list[Metric], accept: str | None = None) -> tuple[bytes, str]:
    """Renders ``families``; returns the body and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def framework_families(framework: str, metrics: Mapping[str, float], gauges: frozenset[str]) -> list[Metric]:
    """A bundled framework's snapshot as Prometheus families: ``<framework>/x`` becomes
    ``mensa_<framework>_x``, a gauge when ``x`` is in ``gauges``, else a counter
    (``..._total``)."""
    families: list[Metric] = []
    for key, value in metrics.items():
        short = key.removeprefix(f"{framework}/")
        name = f"mensa_{framework}_" + short.replace("/", "_").replace(".", "_")
        family = GaugeMetricFamily if short in gauges else CounterMetricFamily
        families.append(family(name, f"The {framework} framework's {short.replace('_', ' ')}.", value=value))
    return families
