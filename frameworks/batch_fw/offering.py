"""Offers: which waiting task slots launch where (pure).

``place`` packs the launchable slots of the ready runs (the run that became ready first, first;
a run's slots by index, at most ``parallelism`` live) into the offers, each into the first offer
whose agent satisfies the run's placement constraints and has room; each launch becomes a new
attempt of its slot, recorded (and so persisted) before its Launch. A task whose TaskInfo cannot
be built (building it raised) is skipped before anything changed, and the reason is kept for the
queue (``Book.unlaunchable``), so one bad task never stops the other launches of a call. Used
offers get one Launch each, the others one Decline; both refuse what is left for
``refuse_seconds`` while something still waits, ``idle_refuse_seconds`` otherwise. Each agent's
latest offer is remembered for a while, so the queue can say why a task fits nowhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog

from mensa.frameworks.batch_fw.book import Book, RunKey
from mensa.frameworks.batch_fw.commands import Decline, Launch
from mensa.frameworks.batch_fw.placement import OfferView, carve, matches, needs, task_info
from mensa.frameworks.batch_fw.runs import INITIAL, LIVE, STARTING, WAITING, Attempt, Run, Slot
from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError, Resources

log = structlog.get_logger(__name__)


def place(book: Book, seen: dict[str, tuple[OfferView, float]], offers: list[mensa_pb2.Offer], now: float, *,
          refuse_seconds: float, idle_refuse_seconds: float, memory_seconds: float) -> None:
    """Launches what fits in ``offers`` and declines the rest (commands go to ``book.effects``);
    ``seen`` (agent id -> latest offer, when) is updated and aged by ``memory_seconds``."""
    book.counters["offers_received"] += len(offers)
    declined: list[str] = []
    views: list[tuple[str, OfferView]] = []
    for offer in offers:
        try:
            view = OfferView.of(offer)
        except ResourceError as exc:
            log.warning("offer_unreadable", offer_id=offer.id.value, error=str(exc))
            declined.append(offer.id.value)
            continue
        seen[view.agent_id] = (view, now)
        views.append((offer.id.value, view))
    for agent_id in [a for a, (_v, at) in seen.items() if at < now - memory_seconds]:
        del seen[agent_id]
    candidates: list[tuple[Run, Slot] | None] = list(_candidates(book, now))
    launches: list[tuple[str, list[mensa_pb2.TaskInfo]]] = []
    touched: dict[RunKey, Run] = {}
    for offer_id, view in views:
        free = view.free
        tasks: list[mensa_pb2.TaskInfo] = []
        unfit: set[tuple[Any, ...]] = set()  # (constraints, needs) known not to fit this offer
        for i, candidate in enumerate(candidates):
            if candidate is None:
                continue
            run, slot = candidate
            outcome = _try(book, run, slot, view, free, unfit, now)
            if outcome is None:
                continue
            candidates[i] = None
            if isinstance(outcome, str):  # this task cannot be launched: the others still can
                book.unlaunchable[run.key] = outcome
                continue
            info, free = outcome
            book.unlaunchable.pop(run.key, None)
            tasks.append(info)
            touched[run.key] = run
        if tasks:
            launches.append((offer_id, tasks))
        else:
            declined.append(offer_id)
    for run in touched.values():
        book.refresh(run, now)
    refuse = refuse_seconds if book.ready else idle_refuse_seconds
    book.effects += [Launch(offer_id, tuple(tasks), refuse) for offer_id, tasks in launches]
    if declined:
        book.counters["offers_declined"] += len(declined)
        book.effects.append(Decline(tuple(declined), refuse))


def _candidates(book: Book, now: float) -> Iterator[tuple[Run, Slot]]:
    """The slots that may launch now, in order."""
    for key in list(book.ready):
        run = book.runs[key]
        if run.launch_closed(now):
            continue
        room = run.spec.parallelism - run.live()
        for slot in run.slots:
            if room <= 0:
                break
            if slot.phase == WAITING and slot.not_before <= now:
                room -= 1
                yield run, slot


def _try(book: Book, run: Run, slot: Slot, view: OfferView, free: Resources, unfit: set[tuple[Any, ...]],
         now: float) -> tuple[mensa_pb2.TaskInfo, Resources] | str | None:
    """Launches ``slot`` into the offer if it fits: returns its TaskInfo and what is left free;
    None when it does not fit (its shape joins ``unfit``); the reason, when building the task
    raised (then nothing changed, and the offers of this call are not tried for it again)."""
    try:
        need = needs(run.spec.run)
        shape = (run.spec.run.constraints, tuple(sorted(need.items())))
        if shape in unfit:
            return None
        taken = carve(free, need) if matches(run.spec.run.constraints, view) else None
        if taken is None:
            unfit.add(shape)
            return None
        left = free - taken
        return _launch(book, run, slot, view, taken, now), left
    except Exception as exc:  # one bad task must not stop the other launches
        return f"task {slot.index} cannot be launched: {type(exc).__name__}: {exc}"


def _launch(book: Book, run: Run, slot: Slot, view: OfferView, resources: Resources,
            now: float) -> mensa_pb2.TaskInfo:
    """Records a new attempt of ``slot`` on the offer's agent; returns its TaskInfo, built before
    anything changes (raising leaves the books as they were)."""
    task_id = slot.next_task_id(f"{run.job_id}.{run.id}")
    info = task_info(run.spec, run.id, slot.index, task_id, view, resources)
    for old in slot.add(Attempt(task_id, view.agent_id, now)):
        book.tasks.pop(old.task_id, None)
    slot.phase = LIVE
    run.launches += 1
    if run.status == INITIAL:
        run.status = STARTING
    book.tasks[task_id] = (run.key, slot.index)
    book.dirty_runs[run.key] = None
    book.counters["tasks_launched"] += 1
    log.debug("task_launched", job_id=run.job_id, run_id=run.id, task_id=task_id, agent_id=view.agent_id)
    return info
