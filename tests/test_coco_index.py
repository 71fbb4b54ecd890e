"""The one data path (issue 18): staging writes an index of records; the paper profile
keeps only the index (no pixel copied) and a DataLoader decodes the samples per batch;
the small profiles decode the same records once into shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from datasets import coco
from datasets._common import Staged, load_split
from datasets._index import make_loader
from tests.conftest import REPO

CI = {**coco.PARAMS["config"], **coco.PARAMS["ci"]}


def _paper_cfg(**extra) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["datasets"]["coco"]
    return {**raw.get("config", {}), **raw["paper"], "profile": "paper", **extra}


def _one_image_folder(root, h=300, w=450, box=(60, 45, 150, 120)):
    """A COCO folder with one val image holding one polygon object."""
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(root / "val2017" / "a.jpg")
    x, y, bw, bh = box
    ann = {"id": 7, "image_id": 1, "category_id": 3, "bbox": [x, y, bw, bh], "area": bw * bh,
           "iscrowd": 0, "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]}
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": h, "width": w}],
           "annotations": [ann], "categories": [{"id": 3, "name": "car"}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    return root


def test_paper_stage_writes_no_pixels_and_an_800px_sample_round_trips(tmp_path):
    root = _one_image_folder(tmp_path / "coco")
    cfg = _paper_cfg()   # single: 640 letterbox (COCO's own); detection: shorter side 800
    assert cfg["cache"] is False   # the paper profile stages an index only
    coco.stage(root, tmp_path / "staged", cfg)
    files = sorted(p.name for p in (tmp_path / "staged").rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pt", ".jpg", ".png"))], files
    assert "val-index.jsonl" in files
    source_box = torch.tensor([60, 45, 210, 165], dtype=torch.float32)
    single = Staged(tmp_path / "staged" / "single")
    (split,) = single.splits   # subset D re-splits its one image (issue 19's 9,334 / 4,694)
    (batch,) = list(single.loader(split, batch_size=1, seed=0, workers=1))
    assert batch["image"].shape == (1, 3, 640, 640) and batch["image"].dtype == torch.uint8
    want_box = source_box * 640 / 450
    torch.testing.assert_close(batch["box"][0], want_box)
    mask = batch["mask"][0]
    assert mask.shape == (640, 640) and mask.dtype == torch.bool
    ys, xs = torch.nonzero(mask, as_tuple=True)
    mask_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    assert (mask_box - want_box).abs().max() <= 2   # the polygon, rasterised then resized
    (det,) = list(Staged(tmp_path / "staged" / "detection").loader("val", 1, seed=0))
    assert det["image"].shape == (1, 3, 800, 1200)
    torch.testing.assert_close(det["boxes"][0], (source_box * 800 / 300)[None])
    gt = json.loads((tmp_path / "staged" / "detection" / "val_gt.json").read_text())
    assert (gt["images"][0]["height"], gt["images"][0]["width"]) == (800, 1200)


@pytest.fixture(scope="module")
def ci_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco") / "raw"
    coco.synth(root, CI, 0)
    return root


def test_index_and_cache_decode_the_same_samples(ci_root, tmp_path):
    coco.stage(ci_root, tmp_path / "cached", CI)
    coco.stage(ci_root, tmp_path / "indexed", {**CI, "cache": False})
    assert list((tmp_path / "cached" / "single").glob("*.pt"))
    assert not list((tmp_path / "indexed" / "single").glob("*.pt"))
    for subset in coco.SUBSETS:
        cached = load_split(tmp_path / "cached" / subset, "train")
        n = len(cached["image"])
        loader = Staged(tmp_path / "indexed" / subset).loader("train", n, seed=0, shuffle=False)
        (batch,) = list(loader)
        assert batch.keys() == cached.keys()
        for k, v in cached.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(batch[k], v), k
            else:
                assert all(torch.equal(a, b) for a, b in zip(batch[k], v, strict=True)), k


def test_loader_order_is_seeded_and_sharded(ci_root, tmp_path):
    coco.stage(ci_root, tmp_path / "s", {**CI, "cache": False})
    ds = Staged(tmp_path / "s" / "single").dataset("train")

    def ids(seed, rank=0, world=1, epoch=0):
        loader = make_loader(ds, 4, seed, rank=rank, world=world)
        loader.sampler.set_epoch(epoch)
        return [int(i) for b in loader for i in b["image_id"]]

    assert ids(0) == ids(0) and ids(0) != ids(1) and ids(0) != ids(0, epoch=1)
    assert sorted(ids(0)) == sorted(int(s["image_id"]) for s in ds)
    halves = ids(0, 0, 2) + ids(0, 1, 2)
    assert sorted(halves) == sorted(ids(0))   # two shards: disjoint, together everything
