"""OfferBook: the offers a scheduler holds, so the driver can fill a task's agent and forget
offers once used (thread-safe: callbacks and the driver's loop share it).

Usage::

    book = OfferBook()
    book.add(event.offers.offers)
    agent_of = book.snapshot()      # offer id -> agent id
    book.forget([offer.id])
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable

from mensa.proto import mensa_pb2


class OfferBook:
    """Outstanding offers (offer id -> agent id), thread-safe; forgets the oldest past ``limit``."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._agents: collections.OrderedDict[str, str] = collections.OrderedDict()

    def add(self, offers: Iterable[mensa_pb2.Offer]) -> None:
        with self._lock:
            for offer in offers:
                self._agents[offer.id.value] = offer.agent_id.value
            while len(self._agents) > self._limit:
                self._agents.popitem(last=False)

    def forget(self, offer_ids: Iterable[mensa_pb2.OfferID]) -> None:
        with self._lock:
            for oid in offer_ids:
                self._agents.pop(oid.value, None)

    def clear(self) -> None:
        with self._lock:
            self._agents.clear()

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self._agents)
