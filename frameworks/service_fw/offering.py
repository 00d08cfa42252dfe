"""Offers for the service engine: launching waiting instances, and saying why they wait (pure).

``OfferBook.want(app, spec, version, n, now)`` is set by the converger: the app waits for ``n``
new instances of ``spec`` (its configuration ``version``). ``handle(offers, now)`` matches each
offer against the waiting apps (deployments first, then the longest waiting), app by app on what
is left of the offer (``matching.match_offer``: resources, ports, roles, constraints). Each new
instance is recorded (and stored) before the ``Launch`` that carries it. An offer that takes
nothing is declined: for ``DECLINE_WHILE_WAITING`` seconds while apps wait (agents change), for
``DECLINE_IDLE`` seconds when nothing does; and the framework suppresses offers while nothing
waits and revives them when something starts waiting.

An app in launch backoff (``LaunchDelays``) takes no offer until its delay is over. For
``/v2/queue``, each waiting app counts, per Marathon reason (InsufficientCpus,
UnfulfilledConstraint, ...), the offers it could not use since it started waiting, and keeps the
latest ``RECENT_OFFERS`` of them with their reasons.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from mensa.frameworks.placement import OfferView
from mensa.frameworks.service_fw.apps import AppSpec, app_key
from mensa.frameworks.service_fw.commands import Decline, Launch, Revive, Suppress
from mensa.frameworks.service_fw.instances import Instance
from mensa.frameworks.service_fw.matching import match_offer
from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError

if TYPE_CHECKING:
    from mensa.frameworks.service_fw.engine import ServiceEngine

log = structlog.get_logger(__name__)

DECLINE_WHILE_WAITING = 5.0
DECLINE_IDLE = 120.0
LAUNCH_REFUSE = 5.0
RECENT_OFFERS = 10


@dataclass(slots=True)
class Want:
    spec: AppSpec
    version: str
    count: int
    since: float


@dataclass(slots=True)
class QueueEntry:
    """An app waiting for offers, as ``/v2/queue`` shows it."""

    app_id: str
    spec: AppSpec
    count: int
    since: float
    delay_until: float | None
    overdue: bool
    rejections: dict[str, int]
    offers_processed: int
    unused_offers: int
    last_unused_at: float | None
    last_used_at: float | None
    recent: list[dict[str, Any]]
    message: str


@dataclass(slots=True)
class Stats:
    processed: int = 0
    unused: int = 0
    last_unused_at: float | None = None
    last_used_at: float | None = None
    rejections: collections.Counter[str] = field(default_factory=collections.Counter)
    recent: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_OFFERS))


class OfferBook:
    """See the module docstring."""

    def __init__(self, engine: ServiceEngine) -> None:
        self.engine = engine
        self.wants: dict[str, Want] = {}
        self.stats: dict[str, Stats] = {}
        self.suppressed: bool | None = None  # None: unknown (after subscribing)
        self._revive = False

    def want(self, app_id: str, spec: AppSpec | None, version: str, count: int, now: float) -> None:
        """Sets how many new instances ``app_id`` waits for (0 or no spec: none)."""
        if spec is None or count <= 0:
            if self.wants.pop(app_id, None) is not None:
                self.stats.pop(app_id, None)
            return
        current = self.wants.get(app_id)
        if current is None:
            self.wants[app_id] = Want(spec, version, count, now)
            self.stats[app_id] = Stats()
            self._revive = True
        else:
            if count > current.count:
                self._revive = True
            current.spec, current.version, current.count = spec, version, count

    def forget(self, app_id: str) -> None:
        self.wants.pop(app_id, None)
        self.stats.pop(app_id, None)

    def resubscribed(self) -> None:
        self.suppressed = None

    def wants_offers(self) -> bool:
        return bool(self.wants)

    def _ready(self, now: float) -> list[tuple[str, Want]]:
        engine = self.engine
        ready = [(a, w) for a, w in self.wants.items() if not engine.delays.is_delayed(a, now)]
        return sorted(ready, key=lambda aw: (aw[0] not in engine.locks, aw[1].since, aw[0]))

    def delays_over(self, now: float) -> list[str]:
        """Waiting apps whose backoff has ended (the offer interest may change)."""
        return [a for a in self.wants if not self.engine.delays.is_delayed(a, now)]

    def next_delay_end(self, now: float) -> float | None:
        ends = [t for a in self.wants if (t := self.engine.delays.ready_at(a, now)) is not None]
        return min(ends) if ends else None

    def update_interest(self, now: float) -> None:
        """Revives when an app starts (or resumes) waiting, suppresses when none waits."""
        ready = bool(self._ready(now))
        if ready and (self._revive or self.suppressed is not False):
            self.engine.emit(Revive())
            self.suppressed = False
        elif not self.wants and self.suppressed is not True:
            self.engine.emit(Suppress())
            self.suppressed = True
        self._revive = False

    def handle(self, offers: list[mensa_pb2.Offer], now: float) -> None:
        engine = self.engine
        engine.counters["offers"] += len(offers)
        for offer in offers:
            offer_id = offer.id.value
            try:
                view = OfferView.of(offer)
            except ResourceError as exc:
                log.warning("offer_unreadable", offer_id=offer_id, error=str(exc))
                engine.emit(Decline((offer_id,), DECLINE_WHILE_WAITING))
                continue
            tasks: list[mensa_pb2.TaskInfo] = []
            ready = self._ready(now)
            for app_id, want in ready:
                if want.count <= 0:
                    continue
                stats = self.stats.setdefault(app_id, Stats())
                stats.processed += 1
                placed = [i for i in engine.by_app.get(app_id, {}).values() if i.active]
                result = match_offer(want.spec, want.version, view, placed, want.count,
                                     functools.partial(self._task_id, app_key(app_id)), engine.role)
                if not result.placed:
                    stats.unused += 1
                    stats.last_unused_at = now
                    for reason in result.reasons:
                        stats.rejections[reason] += 1
                    stats.recent.append({"offerId": offer_id, "agentId": view.agent_id,
                                         "hostname": view.hostname, "reasons": list(result.reasons),
                                         "message": result.message, "timestamp": now})
                    continue
                stats.last_used_at = now
                for placed_task in result.placed:
                    inst = Instance(task_id=placed_task.task.task_id.value, app_id=app_id,
                                    version=want.version, agent_id=view.agent_id,
                                    hostname=view.hostname, attributes=view.attributes,
                                    host_ports=tuple(placed_task.host_ports), staged_at=now)
                    engine.add_instance(inst)
                    engine.save_instance(inst)
                    engine.converger.launched(inst)
                    tasks.append(placed_task.task)
                engine.counters["launched"] += len(result.placed)
                want.count -= len(result.placed)
                view = result.left
                if want.count <= 0:
                    self.wants.pop(app_id, None)
                    self.stats.pop(app_id, None)
            if tasks:
                engine.emit(Launch(offer_id, tuple(tasks), LAUNCH_REFUSE))
            else:
                engine.counters["offers_declined"] += 1
                engine.emit(Decline((offer_id,), DECLINE_WHILE_WAITING if self.wants else DECLINE_IDLE))

    def _task_id(self, key: str) -> str:
        return f"{key}.{self.engine.new_id()}"

    def queue(self, now: float) -> list[QueueEntry]:
        engine = self.engine
        out: list[QueueEntry] = []
        for app_id in sorted(self.wants):
            want = self.wants[app_id]
            stats = self.stats.get(app_id) or Stats()
            delay_until = engine.delays.ready_at(app_id, now)
            out.append(QueueEntry(
                app_id=app_id, spec=want.spec, count=want.count, since=want.since,
                delay_until=delay_until, overdue=False,
                rejections=dict(stats.rejections), offers_processed=stats.processed,
                unused_offers=stats.unused, last_unused_at=stats.last_unused_at,
                last_used_at=stats.last_used_at, recent=list(stats.recent),
                message=self._why(app_id, want, stats, delay_until)))
        return out

    def _why(self, app_id: str, want: Want, stats: Stats, delay_until: float | None) -> str:
        if delay_until is not None:
            return (f"{want.count} instance(s) wait for the launch backoff after failures "
                    f"(until {delay_until:.0f})")
        if not stats.processed:
            return f"{want.count} instance(s) wait for offers (none received since waiting)"
        if stats.recent:
            latest = stats.recent[-1]
            return f"{want.count} instance(s) wait: the latest offer was declined: {latest['message']}"
        return f"{want.count} instance(s) wait for offers"
