"""The offer book: outstanding offers, and what became of the ones that are gone (pure state).

An offer is one agent's resources, allocated to one framework, under a fresh id. It leaves the
book exactly once: used by an ACCEPT, declined, rescinded (its agent went away, its framework
disconnected) or timed out. The book remembers recently retired ids and why, so a framework
that reuses one gets a precise answer ("was already used") instead of "unknown".

Usage::

    book = OfferBook()
    offer = book.add("O1", framework_id="F1", agent_id="A1", resources=r, now=10.0)
    book.retire("O1", Retired.USED)
    book.why_gone("O1")   # Retired.USED
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from mensa.proto.resources import Resources

RETIRED_MEMORY = 100_000


class Retired(enum.Enum):
    """Why an offer left the book."""

    USED = "was already used"
    DECLINED = "was declined"
    RESCINDED = "was rescinded"
    EXPIRED = "expired"


@dataclass(slots=True)
class OutstandingOffer:
    """An offer that a framework may still accept or decline."""

    offer_id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    created_at: float


class OfferBook:
    """Outstanding offers, indexed by id, framework and agent."""

    def __init__(self, retired_memory: int = RETIRED_MEMORY) -> None:
        self._offers: dict[str, OutstandingOffer] = {}
        self._by_framework: dict[str, set[str]] = {}
        self._by_agent: dict[str, set[str]] = {}
        self._retired: OrderedDict[str, Retired] = OrderedDict()
        self._retired_memory = retired_memory

    def __len__(self) -> int:
        return len(self._offers)

    def __iter__(self) -> Iterator[OutstandingOffer]:
        return iter(self._offers.values())

    def add(
        self,
        offer_id: str,
        *,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        now: float,
        role: str = "*",
    ) -> OutstandingOffer:
        """Records a new offer; the id must be fresh."""
        if offer_id in self._offers or offer_id in self._retired:
            raise ValueError(f"offer id {offer_id} was used before")
        offer = OutstandingOffer(offer_id, framework_id, agent_id, role, resources, now)
        self._offers[offer_id] = offer
        self._by_framework.setdefault(framework_id, set()).add(offer_id)
        self._by_agent.setdefault(agent_id, set()).add(offer_id)
        return offer

    def get(self, offer_id: str) -> OutstandingOffer | None:
        return self._offers.get(offer_id)

    def why_gone(self, offer_id: str) -> Retired | None:
        """Returns why a no longer outstanding offer left the book, if it is remembered."""
        return self._retired.get(offer_id)

    def retire(self, offer_id: str, why: Retired) -> OutstandingOffer:
        """Removes an outstanding offer and remembers why; KeyError when it is not outstanding."""
        offer = self._offers.pop(offer_id)
        self._unindex(self._by_framework, offer.framework_id, offer_id)
        self._unindex(self._by_agent, offer.agent_id, offer_id)
        self._retired[offer_id] = why
        if len(self._retired) > self._retired_memory:
            self._retired.popitem(last=False)
        return offer

    def for_framework(self, framework_id: str) -> list[OutstandingOffer]:
        """Returns the framework's outstanding offers, oldest first."""
        ids = self._by_framework.get(framework_id, ())
        return sorted((self._offers[i] for i in ids), key=lambda o: o.created_at)

    def for_agent(self, agent_id: str) -> list[OutstandingOffer]:
        """Returns the outstanding offers of an agent's resources."""
        return [self._offers[i] for i in self._by_agent.get(agent_id, ())]

    def older_than(self, deadline: float) -> list[OutstandingOffer]:
        """Returns the offers created before ``deadline`` (for offer timeouts)."""
        return [o for o in self._offers.values() if o.created_at < deadline]

    def offered_on(self, agent_id: str) -> Resources:
        """Returns the sum of the agent's resources that are currently offered."""
        total = Resources.empty()
        for offer in self.for_agent(agent_id):
            total = total + offer.resources
        return total

    @staticmethod
    def _unindex(index: dict[str, set[str]], key: str, offer_id: str) -> None:
        ids = index.get(key)
        if ids is not None:
            ids.discard(offer_id)
            if not ids:
                del index[key]
