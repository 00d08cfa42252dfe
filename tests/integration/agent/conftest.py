from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mensa.deploy.dockerd import Dockerd, missing


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private Docker Engine (own socket and directories) with mensa-test/busybox:latest.

    Skips, saying why, when dockerd or busybox-static is not installed.
    """
    reason = missing()
    if reason:
        print(f"skipping Docker tests: {reason}")
        pytest.skip(reason)
    # A short root: the socket path must fit in 107 bytes.
    engine = Dockerd.start(Path(tempfile.mkdtemp(prefix="mensa-dockerd-", dir="/tmp")))
    try:
        yield engine
    finally:
        engine.stop()
