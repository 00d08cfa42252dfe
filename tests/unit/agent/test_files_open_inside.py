"""open_inside: what the agent's /files endpoints open is checked after it is opened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mensa.agent.http import FilesError, open_inside, read_chunk


@pytest.fixture
def work(tmp_path: Path) -> Path:
    sandbox = tmp_path / "agents" / "a" / "frameworks" / "f" / "executors" / "t" / "runs" / "latest"
    sandbox.mkdir(parents=True)
    (sandbox / "stdout").write_text("hello\n")
    return tmp_path


def sandbox(work: Path) -> Path:
    return work / "agents/a/frameworks/f/executors/t/runs/latest"


def test_a_regular_file_inside_is_opened_and_read(work: Path) -> None:
    fd = open_inside(str(work), str(sandbox(work) / "stdout"))
    try:
        assert read_chunk(fd, 0, 100) == {"data": "hello\n", "offset": 0}
        assert read_chunk(fd, -1, 100) == {"data": "", "offset": 6}
    finally:
        os.close(fd)


def test_a_fifo_is_refused_without_blocking(work: Path) -> None:
    fifo = sandbox(work) / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FilesError) as refused:
        open_inside(str(work), str(fifo))  # Would block forever if opened for reading normally.
    assert refused.value.status == 400


def test_a_symlink_swapped_in_is_refused(work: Path, tmp_path: Path) -> None:
    # As if a task replaced its stdout with a symlink after the path had been checked.
    secret = tmp_path / "secret"
    secret.write_text("host file")
    (sandbox(work) / "stdout").unlink()
    (sandbox(work) / "stdout").symlink_to(secret)
    with pytest.raises(FilesError) as refused:
        open_inside(str(work), str(sandbox(work) / "stdout"))
    assert refused.value.status == 403


def test_a_file_outside_the_sandboxes_is_refused_after_opening(work: Path, tmp_path: Path) -> None:
    # A directory of the sandbox swapped for a symlink to elsewhere: the open follows it, the
    # check of the opened file catches it.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "data").write_text("not yours")
    (sandbox(work) / "dir").symlink_to(outside)
    with pytest.raises(FilesError) as refused:
        open_inside(str(work), str(sandbox(work) / "dir" / "data"))
    assert refused.value.status == 403
    with pytest.raises(FilesError) as missing:
        open_inside(str(work), str(sandbox(work) / "nope"))
    assert missing.value.status == 404
