"""Fixtures the SDK tests share: a scripted master, and drivers stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sdk_fake_master import FakeMaster

from mensa.frameworks import DriverStatus, SchedulerDriver
from mensa.proto import mensa_pb2

# Fast reconnection for tests; a test passes what it needs on top.
FAST = {"backoff_initial": 0.1, "backoff_max": 0.3, "flush_timeout": 0.5}


@pytest.fixture
def master() -> Iterator[FakeMaster]:
    m = FakeMaster()
    yield m
    m.close()


@pytest.fixture
def drivers() -> Iterator[Callable[..., SchedulerDriver]]:
    """``drivers(scheduler, address, name=..., **options)`` makes a SchedulerDriver (FAST
    settings unless overridden, FrameworkInfo ``name`` unless ``info=`` is given); every driver
    made is aborted after the test, and must stop."""
    made: list[SchedulerDriver] = []

    def make(scheduler: Any, address: str | None, name: str = "test-fw", **options: Any) -> SchedulerDriver:
        info = options.pop("info", mensa_pb2.FrameworkInfo(name=name))
        made.append(SchedulerDriver(scheduler, info, address, **{**FAST, **options}))
        return made[-1]

    yield make
    for driver in made:
        driver.abort()
        assert driver.join(timeout=5) is not DriverStatus.RUNNING
