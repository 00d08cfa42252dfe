"""Sandbox garbage collection: the age and disk-pressure policy, and the scan that feeds it."""

from __future__ import annotations

import os
from pathlib import Path

from mensa.agent.gc import DiskUsage, GcPolicy, SandboxInfo, collect, scan_sandboxes, select_for_removal

DAY = 24 * 3600.0
NOW = 100 * DAY
WEEK = GcPolicy(max_age_seconds=7 * DAY, disk_headroom=0.1)
ROOMY = DiskUsage(total_bytes=1000, used_bytes=100)  # 10% used, far under the 90% line


def sandbox(path: str, days_ago: float | None, size: int = 10) -> SandboxInfo:
    return SandboxInfo(path=path, finished_at=None if days_ago is None else NOW - days_ago * DAY,
                       size_bytes=size)


def test_only_sandboxes_finished_longer_ago_than_the_delay_go_when_the_disk_has_room() -> None:
    sandboxes = [sandbox("fresh", 1), sandbox("old", 8), sandbox("exactly-a-week", 7),
                 sandbox("ancient", 30)]
    assert select_for_removal(sandboxes, NOW, WEEK, ROOMY) == ["ancient", "old", "exactly-a-week"]


def test_nothing_goes_when_everything_is_recent_and_the_disk_has_room() -> None:
    assert select_for_removal([sandbox("a", 0.5), sandbox("b", 6.9)], NOW, WEEK, ROOMY) == []


def test_disk_pressure_removes_the_oldest_finished_sandboxes_until_under_the_budget() -> None:
    # 950 of 1000 bytes used, the line is 900: 50 bytes must go. Oldest first: "c" (3 days,
    # 30 bytes) leaves 920, still over; then "a" (2 days, 40 bytes) leaves 880, under. "b"
    # (1 day) stays.
    sandboxes = [sandbox("a", 2, size=40), sandbox("b", 1, size=500), sandbox("c", 3, size=30)]
    disk = DiskUsage(total_bytes=1000, used_bytes=950)
    assert select_for_removal(sandboxes, NOW, WEEK, disk) == ["c", "a"]


def test_aged_sandboxes_count_towards_the_budget_before_younger_ones_are_taken() -> None:
    # 950 used, line 900; the 8-day-old one goes by age and frees 60 bytes: enough.
    sandboxes = [sandbox("young", 1, size=100), sandbox("aged", 8, size=60)]
    disk = DiskUsage(total_bytes=1000, used_bytes=950)
    assert select_for_removal(sandboxes, NOW, WEEK, disk) == ["aged"]


def test_live_sandboxes_are_never_selected_even_under_pressure_or_when_old() -> None:
    sandboxes = [sandbox("live-big", None, size=10_000), sandbox("done", 1, size=5)]
    full = DiskUsage(total_bytes=1000, used_bytes=1000)
    assert select_for_removal(sandboxes, NOW, WEEK, full) == ["done"]
    assert select_for_removal([sandbox("live", None)], NOW, GcPolicy(max_age_seconds=0), ROOMY) == []


def make_run(root: Path, task: str, days_ago: float, size: int = 100) -> Path:
    run = root / "agents" / "a1" / "frameworks" / "fw" / "executors" / task / "runs" / "latest"
    run.mkdir(parents=True)
    (run / "stdout").write_bytes(b"x" * size)
    (run / "stderr").write_bytes(b"")
    for path in (run / "stdout", run / "stderr", run):
        os.utime(path, (NOW - days_ago * DAY, NOW - days_ago * DAY))
    return run


def test_scan_sizes_and_dates_sandboxes_and_marks_live_ones(tmp_path: Path) -> None:
    old = make_run(tmp_path, "old", 10, size=123)
    live = make_run(tmp_path, "live", 20)
    (tmp_path / "agents" / "a1" / "frameworks" / "fw" / "stray-file").write_text("not a sandbox")
    infos = {Path(s.path).parent.parent.name: s for s in scan_sandboxes(str(tmp_path), [str(live)])}
    assert set(infos) == {"old", "live"}
    assert infos["old"].size_bytes == 123 and infos["old"].finished_at == NOW - 10 * DAY
    assert infos["live"].finished_at is None
    assert infos["old"].path == str(old)


def test_collect_removes_old_sandboxes_and_their_empty_parents_but_never_live_ones(tmp_path: Path) -> None:
    old = make_run(tmp_path, "old", 10)
    recent = make_run(tmp_path, "recent", 1)
    live = make_run(tmp_path, "live", 30)
    removed = collect(str(tmp_path), {str(live)}, NOW, WEEK, ROOMY)
    assert removed == [str(old)]
    assert not old.parent.parent.exists()  # executors/old is gone with its run
    assert recent.exists() and live.exists()
    # Under pressure everything finished goes, the live sandbox still stays.
    assert collect(str(tmp_path), {str(live)}, NOW, WEEK, DiskUsage(1000, 1000)) == [str(recent)]
    assert live.exists()


def test_collect_without_a_sandboxes_tree_does_nothing(tmp_path: Path) -> None:
    assert collect(str(tmp_path / "missing"), set(), NOW, WEEK, ROOMY) == []
