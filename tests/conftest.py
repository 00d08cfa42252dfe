"""Shared by every test folder: the integration helpers (``mensa_cluster``, ``mensa_recorder``)
are importable by name from tests/ha as well."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

INTEGRATION = str(Path(__file__).parent / "integration")
if INTEGRATION not in sys.path:
    sys.path.append(INTEGRATION)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keeps each phase's report on the item (``item.rep_call``) so fixtures can print the logs
    of the processes behind a failed test."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
