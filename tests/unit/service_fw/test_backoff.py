"""Launch backoff on its own: growth by backoffFactor, the maxLaunchDelaySeconds cap, and the
resets (new version, an app that ran well)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mensa.frameworks.service_fw.apps import AppSpec
from mensa.frameworks.service_fw.backoff import STABLE_SECONDS, LaunchDelays

SPEC = AppSpec(id="/a", cmd="crash", backoff_seconds=2.0, backoff_factor=2.0, max_launch_delay_seconds=20.0)


def test_no_failure_no_delay() -> None:
    delays = LaunchDelays()
    assert delays.ready_at("/a") is None
    assert not delays.is_delayed("/a", 0.0)
    assert delays.current("/a") == 0.0


def test_the_first_failure_waits_backoff_seconds() -> None:
    delays = LaunchDelays()
    assert delays.failed("/a", SPEC, 100.0) == 102.0
    assert delays.current("/a") == 2.0
    assert delays.is_delayed("/a", 101.9)
    assert not delays.is_delayed("/a", 102.0)
    assert delays.ready_at("/a") == 102.0
    assert delays.ready_at("/a", 101.0) == 102.0
    assert delays.ready_at("/a", 102.0) is None  # over
    assert not delays.is_delayed("/b", 101.0)  # per app


def test_each_failure_multiplies_the_delay_up_to_the_cap() -> None:
    delays = LaunchDelays()
    now, seen = 0.0, []
    for _ in range(6):
        ready = delays.failed("/a", SPEC, now)
        seen.append(delays.current("/a"))
        assert ready == now + delays.current("/a")  # counted from the latest failure
        now = ready + 1.0  # relaunched when allowed, failed a second later
    assert seen == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_a_cap_below_the_first_delay_caps_it_too() -> None:
    spec = AppSpec(id="/a", backoff_seconds=30.0, max_launch_delay_seconds=10.0)
    delays = LaunchDelays()
    assert delays.failed("/a", spec, 0.0) == 10.0


def test_marathon_defaults() -> None:
    spec = AppSpec(id="/a")  # backoff 1 s, factor 1.15, cap 300 s
    delays = LaunchDelays()
    for n in range(60):
        delays.failed("/a", spec, float(n))
    assert delays.current("/a") == 300.0
    delays.reset("/a")
    delays.failed("/a", spec, 100.0)
    delays.failed("/a", spec, 101.0)
    assert delays.current("/a") == pytest.approx(1.15)


def test_reset_forgets_the_delay() -> None:
    delays = LaunchDelays()
    delays.failed("/a", SPEC, 0.0)
    delays.failed("/a", SPEC, 1.0)
    delays.reset("/a")
    assert not delays.is_delayed("/a", 1.5)
    assert delays.ready_at("/a") is None
    assert delays.failed("/a", SPEC, 2.0) == 4.0  # from backoffSeconds again
    delays.reset("/unknown")  # harmless


def test_running_long_enough_makes_the_next_failure_a_first_one() -> None:
    delays = LaunchDelays()
    for t in (0.0, 10.0, 30.0):
        delays.failed("/a", SPEC, t)
    assert delays.current("/a") == 8.0
    delays.running("/a", 40.0)
    delays.running("/a", 90.0)  # a later notice does not move the start
    delays.failed("/a", SPEC, 40.0 + STABLE_SECONDS)
    assert delays.current("/a") == 2.0


def test_running_briefly_does_not_reset() -> None:
    delays = LaunchDelays()
    delays.failed("/a", SPEC, 0.0)
    delays.running("/a", 3.0)
    delays.failed("/a", SPEC, 3.0 + STABLE_SECONDS - 1)
    assert delays.current("/a") == 4.0
    # The notice belonged to the time before that failure: it counts no more.
    delays.failed("/a", SPEC, 500.0)
    assert delays.current("/a") == 8.0


def test_a_long_backoff_must_be_outlived_to_reset() -> None:
    spec = AppSpec(id="/a", backoff_seconds=100.0, backoff_factor=2.0, max_launch_delay_seconds=1000.0)
    delays = LaunchDelays()
    delays.failed("/a", spec, 0.0)
    delays.running("/a", 100.0)
    delays.failed("/a", spec, 190.0)  # ran 90 s: over a minute but under backoffSeconds
    assert delays.current("/a") == 200.0
    delays.running("/a", 400.0)
    delays.failed("/a", spec, 500.0)
    assert delays.current("/a") == 100.0


def test_a_running_notice_without_a_delay_does_nothing() -> None:
    delays = LaunchDelays()
    delays.running("/a", 0.0)
    assert delays.failed("/a", SPEC, 100.0) == 102.0
    assert delays.to_json()["/a"]["runningSince"] is None


def test_json_round_trip() -> None:
    delays = LaunchDelays()
    delays.failed("/a", SPEC, 0.0)
    delays.failed("/a", SPEC, 5.0)
    delays.running("/a", 7.0)
    delays.failed("/b", SPEC, 1.0)
    doc = json.loads(json.dumps(delays.to_json()))
    back = LaunchDelays.from_json(doc)
    assert back.to_json() == delays.to_json()
    assert back.ready_at("/a") == 9.0 and back.current("/b") == 2.0
    back.failed("/a", SPEC, 7.0 + STABLE_SECONDS)  # the running notice survived
    assert back.current("/a") == 2.0
    with pytest.raises(KeyError):
        LaunchDelays.from_json({"/a": {"delay": 1.0}})


@given(backoff=st.floats(0.0, 100.0), factor=st.floats(1.0, 5.0), cap=st.floats(0.0, 3600.0),
       gaps=st.lists(st.floats(0.0, 59.0), min_size=1, max_size=30))
def test_the_delay_never_shrinks_without_a_reset_and_never_passes_the_cap(
        backoff: float, factor: float, cap: float, gaps: list[float]) -> None:
    spec = AppSpec(id="/a", backoff_seconds=backoff, backoff_factor=factor, max_launch_delay_seconds=cap)
    delays = LaunchDelays()
    now, last = 0.0, 0.0
    for gap in gaps:
        ready = delays.failed("/a", spec, now)
        current = delays.current("/a")
        assert min(backoff, cap) <= current <= cap
        assert current >= last
        assert ready == now + current
        last = current
        now = ready + gap
