"""A standalone batch instance leads at once, and only one instance may use a work dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from mensa.frameworks.leadership import LeadershipError, Standalone


def test_a_standalone_instance_leads_and_holds_its_work_dir(tmp_path: Path) -> None:
    elected: list[str] = []
    first = Standalone(tmp_path, "127.0.0.1:9000")
    first.start(lambda: elected.append("first"), lambda why: None)
    assert elected == ["first"] and first.leader() == "127.0.0.1:9000"

    second = Standalone(tmp_path, "127.0.0.1:9001")
    with pytest.raises(LeadershipError, match="another mensa batch"):
        second.start(lambda: elected.append("second"), lambda why: None)
    assert elected == ["first"]

    first.stop()
    second.start(lambda: elected.append("second"), lambda why: None)
    assert elected == ["first", "second"]
    second.stop()
