"""Which firings of a schedule are due, and which of them may still start (pure).

The catch-up policy, applied whenever the engine looks at a schedule (every firing in normal
operation; after an outage, all the firings missed while the framework was down at once):

- the firings due are those after the schedule's last-fired time, up to ``now``;
- at most one of them starts: the latest, and only if ``now`` is within its
  startingDeadlineSeconds (otherwise it is recorded as SKIPPED, "starting deadline exceeded");
- every earlier one is recorded as SKIPPED ("missed"): the latest ``MAX_SKIP_RECORDS`` one by
  one, any older ones together in one summary record;
- the last-fired time moves to the latest firing due, so nothing fires twice, and a firing due
  during an outage starts once when the framework is back (within its deadline).

At most ``MAX_CATCHUP`` firings are looked at in one step; when more are due (a schedule every
second after hours of downtime), all of them are missed and the next step continues.
"""

from __future__ import annotations

from dataclasses import dataclass

from mensa.frameworks.batch_fw.cron import CronSchedule

MAX_CATCHUP = 1000
MAX_SKIP_RECORDS = 10


@dataclass(frozen=True, slots=True)
class Due:
    """What a schedule's due firings come to (see the module docstring)."""

    start_at: float | None  # the firing that may start now (None: all were missed)
    late: bool  # start_at is past its starting deadline: record it SKIPPED instead
    missed: tuple[float, ...]  # earlier firings, each recorded SKIPPED
    missed_before: tuple[int, float, float] | None  # (count, first, last) of older missed ones
    last_fired: float  # the schedule's new last-fired time
    next_at: float  # when to look at the schedule again


def due(cron: CronSchedule, last_fired: float, now: float, starting_deadline: float) -> Due | None:
    """Returns what is due at ``now`` for a schedule last fired at ``last_fired``, or None."""
    times: list[float] = []
    t = cron.next_after(last_fired)
    while t <= now and len(times) < MAX_CATCHUP:
        times.append(t)
        t = cron.next_after(t)
    if not times:
        return None
    more = t <= now  # stopped at MAX_CATCHUP with more firings due
    start_at = None if more else times[-1]
    superseded = times if more else times[:-1]
    missed = tuple(superseded[-MAX_SKIP_RECORDS:])
    older = superseded[:-MAX_SKIP_RECORDS]
    summary = (len(older), older[0], older[-1]) if older else None
    late = start_at is not None and now > start_at + starting_deadline
    return Due(start_at, late, missed, summary, times[-1], now if more else t)
