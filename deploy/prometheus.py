"""Prometheus exposition shared by the master's and the agent's ``/metrics``.

Each scrape builds its metric families from a snapshot and renders them through a private
registry (nothing global), in the format the scraper's ``Accept`` header asks for:
prometheus-client's negotiation, the classic text format (``text/plain; version=0.0.4``) unless
the scraper asks for text 1.0.0 or OpenMetrics.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector


class _Families(Collector):
    """A collector that yields families built beforehand (one scrape's worth)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def prometheus_text(families: list[Metric], accept: str | None = None) -> tuple[bytes, str]:
    """Renders ``families``; returns the body and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
