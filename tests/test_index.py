"""ADE20K and Cityscapes on the one data path (issue 18): `cache: false` writes an index
only, and the loader decodes exactly the samples that `cache: true` writes as shards."""

from __future__ import annotations

import pytest
import torch

import datasets
from datasets._common import Staged, load_split


@pytest.mark.parametrize("name, subset", [("ade20k", "sceneparsing"), ("cityscapes", "fine")])
def test_index_decodes_what_the_shards_hold(name, subset, tmp_path):
    module = datasets.get(name)
    cfg = {**module.PARAMS["config"], **module.PARAMS["ci"]}
    module.synth(tmp_path / "raw", cfg, 0)
    module.stage(tmp_path / "raw", tmp_path / "cached", cfg)
    module.stage(tmp_path / "raw", tmp_path / "indexed", {**cfg, "cache": False})
    assert not list((tmp_path / "indexed").rglob("*.pt"))
    for split in ("train", "val"):
        cached = load_split(tmp_path / "cached" / subset, split)
        n = len(cached["image"])
        loader = Staged(tmp_path / "indexed" / subset).loader(split, n, seed=0, shuffle=False)
        (batch,) = list(loader)
        assert batch.keys() == cached.keys()
        for k, v in cached.items():   # label_full: one tensor per sample (sizes differ)
            got, want = (batch[k], v) if torch.is_tensor(v) else (torch.cat(
                [t.flatten() for t in batch[k]]), torch.cat([t.flatten() for t in v]))
            assert torch.equal(got, want), (split, k)


def test_validation_only_ade20k_indexed(realdata, tmp_path):
    ade20k = datasets.get("ade20k")
    ade20k.stage(realdata / "ade20k", tmp_path / "s", {"size": [64, 64], "cache": False})
    data = Staged(tmp_path / "s" / "sceneparsing")
    assert data.splits == ["val"]
    (batch,) = list(data.loader("val", 2, seed=0))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["label"].shape == (2, 64, 64)
