"""Atomic writes leave nothing half-written."""

import pytest

from rlcv import io as rio


def test_atomic_dir_failure_leaves_previous_output(tmp_path):
    final = tmp_path / "out"
    with rio.atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with rio.atomic_dir(final) as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("boom")
    assert (final / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with rio.atomic_dir(tmp_path / "new"):
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_write_json_replaces_whole_file(tmp_path):
    p = tmp_path / "m.json"
    rio.write_json(p, {"b": 1, "a": [1, 2]})
    rio.write_json(p, {"a": 1})
    assert p.read_text() == '{\n  "a": 1\n}\n'
    assert [x.name for x in tmp_path.iterdir()] == ["m.json"]
