from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mensa_cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.shutdown()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(c.dump_logs())
