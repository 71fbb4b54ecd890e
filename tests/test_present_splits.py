"""Staging the splits that are present (issue 18): an evaluation-only folder holding
only a validation split stages that split; a row that needs the missing split fails
with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from datasets import _common, cityscapes, kitti
from rlcv.errors import DataError
from rlcv.workers import python_path
from tests.conftest import REPO


def _rlcv(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": python_path(REPO), "RLCV_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rlcv.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_cli_stages_ade20k_validation_only(realdata, tmp_path):
    out = tmp_path / "staged"
    done = _rlcv("stage", "ade20k", "--root", str(realdata / "ade20k"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "training" in done.stderr and "not present" in done.stderr
    manifest = _common.read_manifest(out / "sceneparsing")
    assert manifest["counts"] == {"val": 2} and list(manifest["shards"]) == ["val"]
    assert _common.load_split(out / "sceneparsing", "val")["image"].shape[0] == 2
    with pytest.raises(DataError) as err:
        _common.load_split(out / "sceneparsing", "train")
    msg = str(err.value)
    assert "no split 'train'" in msg and "\n" not in msg and str(realdata / "ade20k") in msg


def test_cityscapes_val_only(realdata, tmp_path):
    manifests = cityscapes.stage(realdata / "cityscapes", tmp_path / "s", {"size": [32, 64]})
    assert manifests["fine"]["counts"] == {"val": 1}


def test_a_root_with_no_split_is_refused(tmp_path):
    (tmp_path / "ADEChallengeData2016" / "images").mkdir(parents=True)
    from datasets import ade20k

    (tmp_path / "ADEChallengeData2016" / "objectInfo150.txt").write_text(
        "Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n")
    with pytest.raises(DataError, match="none of the splits training, validation"):
        ade20k.stage(tmp_path, tmp_path / "s", {"size": [8, 8]})
    (tmp_path / "kitti" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="none of the splits train, val, test"):
        kitti.stage(tmp_path / "kitti", tmp_path / "s2", {"size_hw": [8, 8]})
