"""Cron schedules in a timezone: next firings, including both daylight saving changes in
America/New_York in 2026 (spring forward Sunday March 8, fall back Sunday November 1)."""

from __future__ import annotations

import itertools
import math

import pytest
from batch_harness import at

from mensa.frameworks.batch_fw import CronSchedule


def firings(cron: CronSchedule, start: float, count: int) -> list[float]:
    out, t = [], start
    for _ in range(count):
        t = cron.next_after(t)
        out.append(t)
    return out


def test_a_daily_0230_job_runs_once_at_0300_on_the_spring_forward_day() -> None:
    cron = CronSchedule.parse("30 2 * * *", "America/New_York")
    got = firings(cron, at("2026-03-06T12:00:00-05:00"), 4)
    assert got == [
        at("2026-03-07T02:30:00-05:00"),
        at("2026-03-08T03:00:00-04:00"),  # 02:30 does not exist that day: the first minute after the gap
        at("2026-03-09T02:30:00-04:00"),
        at("2026-03-10T02:30:00-04:00"),
    ]


def test_a_daily_0230_job_runs_once_on_the_fall_back_day() -> None:
    cron = CronSchedule.parse("30 2 * * *", "America/New_York")
    got = firings(cron, at("2026-10-31T12:00:00-04:00"), 3)
    assert got == [
        at("2026-11-01T02:30:00-05:00"),  # 02:30 happens once (after the repeated 01:00 hour)
        at("2026-11-02T02:30:00-05:00"),
        at("2026-11-03T02:30:00-05:00"),
    ]


def test_a_job_inside_the_repeated_hour_runs_only_at_its_first_occurrence() -> None:
    cron = CronSchedule.parse("30 1 * * *", "America/New_York")
    first = at("2026-11-01T01:30:00-04:00")
    assert cron.next_after(at("2026-10-31T12:00:00-04:00")) == first
    assert cron.next_after(first) == at("2026-11-02T01:30:00-05:00")
    # Asked from inside the repeated hour (01:10 EST, after the first 01:30 EDT): the next day.
    assert cron.next_after(at("2026-11-01T01:10:00-05:00")) == at("2026-11-02T01:30:00-05:00")


def test_interval_jobs_follow_elapsed_time_through_the_repeated_hour() -> None:
    cron = CronSchedule.parse("*/30 * * * *", "America/New_York")
    got = firings(cron, at("2026-11-01T00:45:00-04:00"), 5)
    assert got == [at("2026-11-01T01:00:00-04:00"), at("2026-11-01T01:30:00-04:00"),
                   at("2026-11-01T01:00:00-05:00"), at("2026-11-01T01:30:00-05:00"),
                   at("2026-11-01T02:00:00-05:00")]
    assert all(b - a == 1800 for a, b in itertools.pairwise(got))


def test_utc_six_fields_and_aliases() -> None:
    assert CronSchedule.parse("*/5 * * * * *").next_after(at("2026-01-01T00:00:01+00:00")) == at(
        "2026-01-01T00:00:05+00:00")
    assert CronSchedule.parse("@daily", "UTC").next_after(at("2026-01-01T00:00:00+00:00")) == at(
        "2026-01-02T00:00:00+00:00")
    assert CronSchedule.parse("@hourly").next_after(at("2026-01-01T00:10:00+00:00")) == at(
        "2026-01-01T01:00:00+00:00")
    # A fractional start: the next firing is still strictly after it.
    assert CronSchedule.parse("* * * * *").next_after(at("2026-01-01T00:00:59+00:00") + 0.5) == at(
        "2026-01-01T00:01:00+00:00")


def test_a_schedule_in_another_zone_fires_at_its_local_time() -> None:
    cron = CronSchedule.parse("0 9 * * 1-5", "Asia/Tokyo")
    assert cron.next_after(at("2026-11-21T00:00:00+00:00")) == at("2026-11-23T09:00:00+09:00")  # a Monday


def test_a_leap_day_schedule_fires_in_the_next_leap_year() -> None:
    cron = CronSchedule.parse("0 0 29 2 *")
    assert cron.next_after(at("2026-01-01T00:00:00+00:00")) == at("2028-02-29T00:00:00+00:00")
    assert math.isfinite(cron.next_after(at("2028-03-01T00:00:00+00:00")))


@pytest.mark.parametrize(("expr", "zone"), [
    ("", "UTC"), ("* * * *", "UTC"), ("60 * * * *", "UTC"), ("* * * * 8", "UTC"), ("@reboot", "UTC"),
    ("0 0 30 2 *", "UTC"), ("* * * * *", "Nowhere/City"), ("* * * * *", ""), ("* * * * *", "../etc/passwd"),
])
def test_bad_expressions_and_timezones_raise_value_error(expr: str, zone: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        CronSchedule.parse(expr, zone)


def test_a_six_field_job_at_a_fixed_second_runs_once_on_the_fall_back_day() -> None:
    cron = CronSchedule.parse("0 30 1 * * *", "America/New_York")
    got = firings(cron, at("2026-10-31T12:00:00-04:00"), 2)
    assert got == [at("2026-11-01T01:30:00-04:00"), at("2026-11-02T01:30:00-05:00")]
    with_seconds = CronSchedule.parse("15 30 1 * * *", "America/New_York")
    assert firings(with_seconds, at("2026-11-01T01:30:15-04:00"), 1) == [at("2026-11-02T01:30:15-05:00")]


def test_a_six_field_job_in_the_skipped_hour_runs_at_0300_on_the_spring_forward_day() -> None:
    cron = CronSchedule.parse("0 30 2 * * *", "America/New_York")
    got = firings(cron, at("2026-03-07T12:00:00-05:00"), 2)
    assert got == [at("2026-03-08T03:00:00-04:00"), at("2026-03-09T02:30:00-04:00")]
    assert CronSchedule.parse("20 30 2 * * *", "America/New_York").next_after(
        at("2026-03-07T12:00:00-05:00")) == at("2026-03-08T03:00:20-04:00")


def test_sub_minute_schedules_follow_elapsed_time_across_daylight_saving() -> None:
    cron = CronSchedule.parse("*/30 * * * * *", "America/New_York")
    got = firings(cron, at("2026-11-01T01:59:00-04:00"), 4)
    assert got == [at("2026-11-01T01:59:30-04:00"), at("2026-11-01T01:00:00-05:00"),
                   at("2026-11-01T01:00:30-05:00"), at("2026-11-01T01:01:00-05:00")]
