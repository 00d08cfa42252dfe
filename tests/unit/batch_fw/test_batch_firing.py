"""The catch-up policy of a schedule's due firings, on its own: at most the latest firing starts
(within its starting deadline), the earlier ones are missed, and the last-fired time moves on."""

from __future__ import annotations

from batch_harness import at

from mensa.frameworks.batch_fw import CronSchedule
from mensa.frameworks.batch_fw.firing import MAX_CATCHUP, Due, due

EVERY_MINUTE = CronSchedule.parse("* * * * *")
NOON = at("2026-11-21T12:00:00+00:00")


def test_nothing_is_due_before_the_next_firing() -> None:
    assert due(EVERY_MINUTE, NOON, NOON + 59, 60) is None


def test_a_firing_on_time_starts() -> None:
    assert due(EVERY_MINUTE, NOON, NOON + 60.2, 60) == Due(NOON + 60, False, (), None, NOON + 60, NOON + 120)


def test_only_the_latest_of_several_firings_starts_and_a_late_one_is_marked_late() -> None:
    d = due(EVERY_MINUTE, NOON, NOON + 300, 60)
    assert d == Due(NOON + 300, False, (NOON + 60, NOON + 120, NOON + 180, NOON + 240), None, NOON + 300,
                    NOON + 360)
    late = due(EVERY_MINUTE, NOON, NOON + 359, 30)
    assert late is not None and late.start_at == NOON + 300 and late.late


def test_older_missed_firings_are_summarised_and_a_long_backlog_is_taken_in_steps() -> None:
    d = due(EVERY_MINUTE, NOON, NOON + 60 * 30, 60)
    assert d is not None and len(d.missed) == 10 and d.missed_before == (19, NOON + 60, NOON + 60 * 19)
    every_second = CronSchedule.parse("* * * * * *")
    first = due(every_second, NOON, NOON + 5000, 60)
    assert first is not None and first.start_at is None  # all of this step was superseded
    assert first.last_fired == NOON + MAX_CATCHUP and first.next_at == NOON + 5000  # go on at once
