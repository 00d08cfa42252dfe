"""Shared by every test folder: the integration helpers (``mensa_cluster``, ``mensa_recorder``)
and the pymesos driver (``pymesos_process``) are importable by name from any folder, and the
``cluster`` fixture (real processes on loopback, stopped by pid) is available everywhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

for folder in ("integration", "compat"):
    path = str(Path(__file__).parent / folder)
    if path not in sys.path:
        sys.path.append(path)

from mensa_cluster import Cluster  # noqa: E402 (importable once the path is set)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keeps each phase's report on the item (``item.rep_call``) so fixtures can print the logs
    of the processes behind a failed test."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A Cluster rooted in the test's temp dir; its processes' logs are printed if the test fails."""
    c = Cluster(tmp_path)
    yield c
    c.shutdown()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(c.dump_logs())
