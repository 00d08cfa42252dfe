"""Cron schedules driven by an injected clock: firings across daylight saving changes,
startingDeadlineSeconds, missed firings after an outage, concurrencyPolicy FORBID, the enabled
flag, and schedule edits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from batch_harness import Harness, at, job_doc, launched_ids, offer

from mensa.frameworks.batch_fw import Conflict, NotFound
from mensa.proto import mensa_pb2

FINISHED, RUNNING = mensa_pb2.TASK_FINISHED, mensa_pb2.TASK_RUNNING


def scheduled(cron: str, zone: str = "UTC", **extra: Any) -> dict[str, Any]:
    return job_doc("cron", schedules=[{"id": "s", "cron": cron, "timezone": zone, **extra}])


def serve(h: Harness, until: float) -> None:
    """The shell's loop up to ``until``: wake when asked, give every waiting task an offer, and
    let each launched task run and finish at once."""
    n = 0
    while True:
        n += 1
        for task_id in launched_ids(h.offers(offer(f"o{n}"))):
            h.update(task_id, RUNNING)
            h.update(task_id, FINISHED)
        wake = h.engine.next_wakeup()
        if wake is None or wake > until:
            break
        h.tick(max(wake, h.now))
    h.now = until


def runs_of(h: Harness, job_id: str = "cron") -> list[dict[str, Any]]:
    """Every run kept (active and finished), oldest first."""
    return sorted(h.engine.runs(job_id, include_finished=True), key=lambda r: (r["createdAt"], r["id"]))


def fired_at(h: Harness, status: str = "SUCCESS") -> list[str | None]:
    return [r.get("scheduledAt") for r in runs_of(h) if r["status"] == status]


def test_a_daily_0230_new_york_job_across_spring_forward() -> None:
    h = Harness(now=at("2026-03-06T12:00:00-05:00"))
    h.put(scheduled("30 2 * * *", "America/New_York"))
    serve(h, at("2026-03-10T12:00:00-04:00"))
    assert fired_at(h) == ["2026-03-07T07:30:00.000+0000",  # 02:30 EST
                           "2026-03-08T07:00:00.000+0000",  # 03:00 EDT: 02:30 did not exist
                           "2026-03-09T06:30:00.000+0000",  # 02:30 EDT
                           "2026-03-10T06:30:00.000+0000"]
    assert all(r["trigger"] == "schedule:s" for r in runs_of(h))


def test_a_daily_0230_new_york_job_across_fall_back_runs_once_a_day() -> None:
    h = Harness(now=at("2026-10-30T12:00:00-04:00"))
    h.put(scheduled("30 2 * * *", "America/New_York"))
    serve(h, at("2026-11-02T12:00:00-05:00"))
    assert fired_at(h) == ["2026-10-31T06:30:00.000+0000",  # 02:30 EDT
                           "2026-11-01T07:30:00.000+0000",  # 02:30 EST, once
                           "2026-11-02T07:30:00.000+0000"]


def test_a_job_in_the_repeated_hour_runs_once_on_the_fall_back_day() -> None:
    h = Harness(now=at("2026-10-31T12:00:00-04:00"))
    h.put(scheduled("30 1 * * *", "America/New_York"))
    serve(h, at("2026-11-01T12:00:00-05:00"))
    assert fired_at(h) == ["2026-11-01T05:30:00.000+0000"]  # 01:30 EDT only


def test_a_scheduled_run_that_cannot_start_within_its_deadline_is_skipped_with_why() -> None:
    h = Harness(now=at("2026-11-21T11:59:30+00:00"))
    h.put(scheduled("0 12 * * *", startingDeadlineSeconds=60))
    h.offers(offer(resources="cpus:0.5;mem:4096"))  # too small
    h.run_until(at("2026-11-21T12:00:00+00:00"))
    [run] = runs_of(h)
    assert run["status"] == "INITIAL"
    assert h.engine.queue()[0]["runs"][0]["mustStartBy"] == "2026-11-21T12:01:00.000+0000"
    h.run_until(at("2026-11-21T12:01:00+00:00"))
    [run] = runs_of(h)
    assert run["status"] == "SKIPPED"
    assert run["reason"] == ("could not start within startingDeadlineSeconds (60 s) of its firing at "
                             "2026-11-21T12:00:00.000+0000: needs cpus 1 but the largest offer seen had 0.5")
    assert h.engine.history("cron")["skippedCount"] == 1
    assert not h.engine.wants_offers()


def test_a_run_that_launched_in_time_is_not_skipped() -> None:
    h = Harness(now=at("2026-11-21T11:59:30+00:00"))
    h.put(scheduled("0 12 * * *", startingDeadlineSeconds=60))
    h.run_until(at("2026-11-21T12:00:30+00:00"))
    [task_id] = launched_ids(h.offers(offer()))
    h.update(task_id, RUNNING)
    h.run_until(at("2026-11-21T12:05:00+00:00"))
    assert runs_of(h)[0]["status"] == "ACTIVE"


def test_forbid_skips_a_firing_while_a_run_is_active_and_allow_does_not() -> None:
    for policy, expected in (("FORBID", ["ACTIVE", "SKIPPED"]), ("ALLOW", ["ACTIVE", "STARTING"])):
        h = Harness(now=at("2026-11-21T11:59:30+00:00"))
        h.put(scheduled("*/5 * * * *", concurrencyPolicy=policy))
        h.run_until(at("2026-11-21T12:00:00+00:00"))
        [task_id] = launched_ids(h.offers(offer()))
        h.update(task_id, RUNNING)
        h.run_until(at("2026-11-21T12:05:00+00:00"))
        h.offers(offer("o2"))
        runs = runs_of(h)
        assert [r["status"] for r in runs] == expected
        if policy == "FORBID":
            assert runs[1]["reason"] == f"concurrencyPolicy FORBID: run {runs[0]['id']} is still active"
            assert runs[1]["scheduledAt"] == "2026-11-21T12:05:00.000+0000"


def test_after_an_outage_the_latest_missed_firing_starts_once_and_the_others_are_recorded() -> None:
    h = Harness(now=at("2026-11-21T11:59:30+00:00"))
    h.put(scheduled("* * * * *", startingDeadlineSeconds=120))
    serve(h, at("2026-11-21T12:00:00+00:00"))
    assert len(fired_at(h)) == 1
    # Down from 12:00:10 to 12:05:30: the firings at 12:01..12:05 were missed.
    h.restart(at("2026-11-21T12:05:30+00:00"))
    serve(h, at("2026-11-21T12:05:31+00:00"))
    runs = runs_of(h)
    assert fired_at(h, "SKIPPED") == [f"2026-11-21T12:0{m}:00.000+0000" for m in range(1, 5)]
    assert all(r["reason"] == "missed: superseded by the later firing at 2026-11-21T12:05:00.000+0000"
               for r in runs if r["status"] == "SKIPPED")
    assert fired_at(h) == ["2026-11-21T12:00:00.000+0000", "2026-11-21T12:05:00.000+0000"]
    # Another restart at once: nothing fires twice.
    h.restart()
    serve(h, at("2026-11-21T12:05:59+00:00"))
    assert len(runs_of(h)) == len(runs)


def test_a_firing_missed_beyond_its_starting_deadline_is_skipped_not_started() -> None:
    h = Harness(now=at("2026-11-21T11:00:00+00:00"))
    h.put(scheduled("0 12 * * *", startingDeadlineSeconds=300))
    h.restart(at("2026-11-21T12:06:00+00:00"))
    [run] = runs_of(h)
    assert run["status"] == "SKIPPED" and run["scheduledAt"] == "2026-11-21T12:00:00.000+0000"
    assert run["reason"] == ("startingDeadlineSeconds (300 s) exceeded: the firing at "
                             "2026-11-21T12:00:00.000+0000 was handled 360 s late")
    assert h.engine.next_wakeup() == at("2026-11-22T12:00:00+00:00")


def test_a_firing_due_during_downtime_starts_once_within_its_deadline() -> None:
    h = Harness(now=at("2026-11-21T11:00:00+00:00"))
    h.put(scheduled("0 12 * * *", startingDeadlineSeconds=300))
    h.restart(at("2026-11-21T12:02:00+00:00"))
    [run] = runs_of(h)
    assert run["status"] == "INITIAL" and run["scheduledAt"] == "2026-11-21T12:00:00.000+0000"
    h.restart(at("2026-11-21T12:02:30+00:00"))  # and again: still one run
    assert [r["id"] for r in runs_of(h)] == [run["id"]]


def test_a_restart_between_the_run_write_and_the_job_write_does_not_fire_twice() -> None:
    h = Harness(now=at("2026-11-21T11:00:00+00:00"))
    h.put(scheduled("0 12 * * *"))
    stale_job = dict(h.records["job"]["cron"])
    h.run_until(at("2026-11-21T12:00:00+00:00"))
    h.records["job"]["cron"] = stale_job  # the job's record lost its last write
    h.restart(at("2026-11-21T12:00:05+00:00"))
    assert len(runs_of(h)) == 1
    assert h.records["job"]["cron"]["lastFired"]["s"] == at("2026-11-21T12:00:00+00:00")  # repaired


def test_thousands_of_missed_firings_are_summarised_and_only_the_latest_starts() -> None:
    h = Harness(now=at("2026-11-21T12:00:00+00:00"))
    h.put(scheduled("* * * * * *"))  # every second
    h.restart(at("2026-11-21T14:00:00.500+00:00"))  # two hours later: 7200 firings due
    runs = runs_of(h)
    started = [r for r in runs if r["status"] != "SKIPPED"]
    assert [r["scheduledAt"] for r in started] == ["2026-11-21T14:00:00.000+0000"]
    skipped = [r for r in runs if r["status"] == "SKIPPED"]
    assert len(skipped) < 100  # summaries, not one record per firing
    assert skipped[0]["reason"].startswith("missed: 990 firings from 2026-11-21T12:00:01.000+0000")
    summaries = [re.match(r"missed: (\d+) firings", r["reason"]) for r in skipped]
    counted = sum(int(m.group(1)) if m else 1 for m in summaries)
    assert counted == 7199


def test_a_disabled_schedule_does_not_fire_and_re_enabling_does_not_catch_up() -> None:
    h = Harness(now=at("2026-11-21T11:00:00+00:00"))
    h.put(scheduled("0 12 * * *", enabled=False))
    assert h.engine.next_wakeup() is None
    serve(h, at("2026-11-22T13:00:00+00:00"))
    assert runs_of(h) == []
    h.put_schedule("cron", {"id": "s", "cron": "0 12 * * *", "enabled": True})
    assert h.engine.next_wakeup() == at("2026-11-23T12:00:00+00:00")


def test_schedule_edits() -> None:
    h = Harness(now=at("2026-11-21T11:00:00+00:00"))
    h.put(job_doc("cron"))
    with pytest.raises(NotFound):
        h.put_schedule("nope", {"id": "s", "cron": "0 12 * * *"})
    h.put_schedule("cron", {"id": "s", "cron": "0 12 * * *"}, create=True)
    with pytest.raises(Conflict):
        h.put_schedule("cron", {"id": "s", "cron": "0 13 * * *"}, create=True)
    with pytest.raises(NotFound):
        h.put_schedule("cron", {"id": "t", "cron": "0 13 * * *"}, create=False)
    h.put_schedule("cron", {"id": "s", "cron": "0 13 * * *"}, create=False)
    assert h.engine.next_wakeup() == at("2026-11-21T13:00:00+00:00")
    # An update of the job without "schedules" keeps them; with a list, replaces them.
    h.put(job_doc("cron", run={"cmd": "echo v2"}))
    assert [s.id for s in h.engine.job("cron").schedules or ()] == ["s"]
    assert h.engine.job_view("cron")["schedules"][0]["cron"] == "0 13 * * *"
    h.apply(h.engine.delete_schedule("cron", "s", h.now))
    with pytest.raises(NotFound):
        h.engine.delete_schedule("cron", "s", h.now)
    serve(h, at("2026-11-22T00:00:00+00:00"))
    assert runs_of(h) == []
