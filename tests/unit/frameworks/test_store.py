"""FileStore: records as files, written atomically, read back whole; bad names and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mensa.frameworks.store import Drop, FileStore, Put, StoreError, check_name


def test_records_round_trip_by_kind_and_key(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "state")
    store.put("job", "nightly", {"id": "nightly", "run": {"cmd": "true"}})
    store.put("run", "nightly.20240101", {"status": "ACTIVE"})
    store.put("job", "weekly", {"id": "weekly"})

    again = FileStore(tmp_path / "state").load()

    assert again == {
        "job": {"nightly": {"id": "nightly", "run": {"cmd": "true"}}, "weekly": {"id": "weekly"}},
        "run": {"nightly.20240101": {"status": "ACTIVE"}},
    }
    assert (tmp_path / "state" / "job" / "nightly.json").is_file()


def test_a_put_replaces_and_a_forget_removes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("run", "a.1", {"status": "ACTIVE"})
    store.put("run", "a.1", {"status": "SUCCESS"})
    store.put("run", "a.2", {"status": "ACTIVE"})
    store.forget("run", "a.2")
    store.forget("run", "never-written")  # no error

    assert store.load() == {"run": {"a.1": {"status": "SUCCESS"}}}


def test_a_batch_applies_in_order(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.commit([Put("run", "x", {"n": 1}), Drop("run", "x"), Put("run", "y", {"n": 2}),
                  Put("run", "y", {"n": 3})])

    assert store.load() == {"run": {"y": {"n": 3}}}


def test_an_empty_store_loads_as_nothing(tmp_path: Path) -> None:
    assert FileStore(tmp_path / "missing").load() == {}


def test_a_leftover_temporary_file_is_ignored_and_removed(tmp_path: Path) -> None:
    # A crash between writing the temporary file and renaming it leaves this behind.
    store = FileStore(tmp_path)
    store.put("run", "a.1", {"status": "ACTIVE"})
    leftover = tmp_path / "run" / ".a.1.json.4242.0.tmp"
    leftover.write_text('{"status": "SUC')

    assert store.load() == {"run": {"a.1": {"status": "ACTIVE"}}}
    assert not leftover.exists()


def test_a_corrupt_record_is_reported_and_skipped(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("job", "good", {"id": "good"})
    (tmp_path / "job" / "torn.json").write_bytes(b'{"id": "to')
    (tmp_path / "job" / "list.json").write_text("[1, 2]")

    records = store.load()

    assert records == {"job": {"good": {"id": "good"}}}
    reported = {Path(path).name for path, _why in store.unreadable}
    assert reported == {"torn.json", "list.json"}
    assert any("not an object" in why for _path, why in store.unreadable)


def test_files_hold_plain_json(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("job", "j", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "job" / "j.json").read_text()) == {"a": [1, 2], "b": 1}
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["j.json"]  # no temporary file left


@pytest.mark.parametrize("key", ["", "a/b", "../up", ".hidden", "a\\b", "tab\there", "nl\n", "x" * 201])
def test_keys_that_could_escape_or_hide_are_refused(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(ValueError):
        store.put("job", key, {})
    with pytest.raises(ValueError):
        store.put(key, "k", {})
    assert store.load() == {}


def test_a_bad_change_fails_the_whole_batch_before_anything_is_written(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(ValueError):
        store.commit([Put("job", "fine", {"id": "fine"}), Put("job", "bad/key", {})])
    with pytest.raises(ValueError, match="not JSON"):
        store.commit([Put("job", "fine", {"id": "fine"}), Put("job", "nan", {"x": float("nan")})])
    assert store.load() == {}


def test_a_write_that_fails_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(StoreError, match="cannot write"):
        FileStore(blocker).put("job", "j", {})


def test_names_with_dots_and_dashes_are_fine() -> None:
    assert check_name("key", "nightly-report.backup.7.0") == "nightly-report.backup.7.0"
