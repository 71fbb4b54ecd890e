"""COCO staged in each subset's own frame (issue 17): `single` letterboxed (COCO's own
640 x 640 on the paper profile), `detection` by its shorter side (Rao et al.'s 800, longer
side at most 1333), here at small stand-ins (48; 80 / 100) on the synthetic ci COCO; the
detector built from the staged frame trains and scores on the variable-size images without
resizing them."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch

import methods.pgdetector.detector as P
from datasets import coco
from datasets._common import Staged, load_split, read_manifest
from datasets._images import chw, letterbox, resize
from datasets._index import IndexDataset, read_index
from datasets.coco_frames import FRAME_KEYS, subset_frame
from methods.pgdetector.losses import pg_loss
from rlcv import engine
from rlcv.errors import DataError

CI = {**coco.PARAMS["config"], **coco.PARAMS["ci"]}   # top level: 64 px letterbox
FRAMES = {"single": {"image_size": 48},
          "detection": {"image_size": 80, "resize": "shorter", "max_size": 100}}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco-frames") / "raw"
    coco.synth(root, CI, 0)
    return root


@pytest.fixture(scope="module")
def staged(raw):
    out = raw.parent / "staged"
    coco.stage(raw, out, {**CI, **FRAMES})
    return out


@pytest.fixture(scope="module")
def source(raw) -> dict:
    """image id -> (its `images` entry, its annotations in file order), both splits."""
    out = {}
    for folder in ("train2017", "val2017"):
        doc = json.loads((raw / "annotations" / f"instances_{folder}.json").read_text())
        anns = defaultdict(list)
        for a in doc["annotations"]:
            anns[a["image_id"]].append(a)
        out.update({im["id"]: (im, anns[im["id"]]) for im in doc["images"]})
    return out


def _shorter_scale(h: int, w: int) -> float:
    return min(80 / min(h, w), 100 / max(h, w))


def _xyxy(anns: list[dict]) -> torch.Tensor:
    return torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                        dtype=torch.float64).reshape(-1, 4)


def test_a_subset_block_overrides_the_top_level_frame_key_by_key():
    cfg = {"image_size": 64, "resize": "shorter", "max_size": 90,
           "single": {"image_size": 32, "resize": "letterbox"}}
    assert subset_frame(cfg, "single", "root") == {
        "image_size": 32, "resize": "letterbox", "max_size": 90}
    assert subset_frame(cfg, "detection", "root") == {
        "image_size": 64, "resize": "shorter", "max_size": 90}
    for bad in ({"image_size": 32, "size": 4}, {"image_size": 0}, {"resize": "crop"},
                {"max_size": 12.5}):
        with pytest.raises(DataError, match="coco params|unknown resize"):
            subset_frame({**cfg, "detection": bad}, "detection", "root")


def test_each_subset_manifest_records_its_own_frame(staged):
    det, single = (read_manifest(staged / s) for s in ("detection", "single"))
    assert {k: det[k] for k in FRAME_KEYS} == {
        "image_size": 80, "resize": "shorter", "max_size": 100}
    assert {k: single[k] for k in FRAME_KEYS} == {
        "image_size": 48, "resize": "letterbox", "max_size": None}
    assert "shorter side" in det["coordinates"] and "letterbox" in single["coordinates"]
    assert det["fields"]["image"] == "uint8 [3,H,W] shorter-side-resized RGB"
    assert single["fields"]["image"] == "uint8 [3,S,S] letterboxed RGB"


def test_detection_samples_and_val_gt_are_in_the_shorter_side_frame(staged, source):
    sizes, shorter_bound, longer_bound = set(), 0, 0
    for split in ("train", "val"):
        data = load_split(staged / "detection", split)
        assert isinstance(data["image"], list)   # varied sizes: one tensor per image
        for img, boxes, areas, iid in zip(data["image"], data["boxes"], data["areas"],
                                          data["image_id"].tolist(), strict=True):
            info, anns = source[iid]
            s = _shorter_scale(info["height"], info["width"])
            out_hw = (round(info["height"] * s), round(info["width"] * s))
            assert tuple(img.shape) == (3, *out_hw)
            torch.testing.assert_close(boxes.double(), _xyxy(anns) * s, rtol=1e-6, atol=1e-4)
            want_areas = torch.tensor([a["area"] for a in anns], dtype=torch.float64) * s**2
            torch.testing.assert_close(areas.double(), want_areas, rtol=1e-6, atol=1e-3)
            sizes.add(out_hw)
            shorter_bound += min(out_hw) == 80 and max(out_hw) < 100
            longer_bound += max(out_hw) == 100 and min(out_hw) < 80
    assert len(sizes) > 1 and shorter_bound and longer_bound   # both limits were met
    gt = json.loads((staged / "detection" / "val_gt.json").read_text())
    assert "shorter side 80" in gt["info"]["description"]
    gt_anns = defaultdict(list)
    for a in gt["annotations"]:
        gt_anns[a["image_id"]].append(a)
    assert gt["images"]
    for entry in gt["images"]:
        info, anns = source[entry["id"]]
        s = _shorter_scale(info["height"], info["width"])
        assert (entry["height"], entry["width"]) == (round(info["height"] * s),
                                                     round(info["width"] * s))
        got = gt_anns[entry["id"]]
        assert [a["area"] for a in got] == pytest.approx(
            [a["area"] * s**2 for a in anns], rel=1e-5)
        assert [a["bbox"] for a in got] == [pytest.approx([v * s for v in a["bbox"]], rel=1e-5,
                                                          abs=1e-4) for a in anns]


def test_single_samples_are_in_the_letterbox_frame(staged, source):
    n = 0
    for split in ("train", "val"):
        data = load_split(staged / "single", split)
        assert data["image"].shape[1:] == (3, 48, 48) and data["mask"].shape[1:] == (48, 48)
        for box, mask, iid in zip(data["box"], data["mask"], data["image_id"].tolist(),
                                  strict=True):
            info, anns = source[iid]
            (ann,) = [a for a in anns if not a["iscrowd"]]
            want = _xyxy([ann])[0] * 48 / max(info["height"], info["width"])
            torch.testing.assert_close(box.double(), want, rtol=1e-6, atol=1e-4)
            ys, xs = torch.nonzero(mask, as_tuple=True)
            mask_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert (mask_box.double() - want).abs().max() <= 2   # rasterised, then resized
            n += 1
    assert n > 0


def test_both_subsets_read_one_source_image_once(raw, tmp_path, monkeypatch):
    calls = []
    real = coco.read_image
    monkeypatch.setattr(coco, "read_image", lambda path, *a: calls.append(path) or real(path, *a))
    monkeypatch.setattr(coco, "_LAST", {})
    manifests = coco.stage(raw, tmp_path / "cached", {**CI, **FRAMES})
    assert len(calls) == len(set(calls)) == sum(manifests["detection"]["counts"].values())
    coco.stage(raw, tmp_path / "indexed", {**CI, **FRAMES, "cache": False})
    index = {s: tmp_path / "indexed" / s for s in coco.SUBSETS}
    det = {r["image_id"]: (split, k, r) for split in ("train", "val")
           for k, r in enumerate(read_index(index["detection"] / f"{split}-index.jsonl"))}
    single_manifest = read_manifest(index["single"])
    split = next(iter(single_manifest["index"]))
    singles = IndexDataset(single_manifest, index["single"], split)
    assert singles.records
    for record in singles.records:
        twin = det[record["image_id"]][2]
        assert (record["file"], record["hw"]) == (twin["file"], twin["hw"])
        assert record["out_hw"] == [48, 48] and min(twin["out_hw"]) <= 80
    # decoded from that one file, each in its own frame
    record = singles.records[0]
    pixels = real(raw / record["file"], "")
    assert torch.equal(singles[0]["image"], chw(letterbox(pixels, 48)[0]))
    split, k, twin = det[record["image_id"]]
    detection = IndexDataset(read_manifest(index["detection"]), index["detection"], split)
    assert torch.equal(detection[k]["image"], chw(resize(pixels, twin["out_hw"])))


def test_detector_trains_and_scores_on_the_staged_frame_without_resizing(staged, tmp_path):
    data = Staged(staged / "detection")
    assert P._image_size(data) == (80, 100)
    cfg = P.PGDetectorConfig(width=4, head_dim=16, roi_size=3, proposals=16, rois_per_image=8,
                             batch_size=3, base_steps=2, steps=1, k=2)
    run = engine.Run(row="pgdet-standard", seed=0, dir=tmp_path / "run",
                     device=torch.device("cpu"), checkpoint_every=10**6)
    ckpt = P.train_standard(cfg, data, run)
    model, _ = P.load_model(ckpt, P._image_size(data))
    assert model.transform.min_size == (80,) and model.transform.max_size == 100
    train = data.load("train")
    images = [P._image(x) for x in train["image"][:6]]
    assert len({tuple(x.shape) for x in images}) > 1
    for mode in (True, False):   # training and inference: the staged size, no resize
        model.train(mode)
        sized, _ = model.transform(images)
        assert sized.image_sizes == [tuple(x.shape[-2:]) for x in images]
    # a policy-gradient step (Eq. 10) on a batch of varied sizes
    model.train()
    gt = P._val_gt(data)
    g = engine.generator(0, "test", 0)
    batch = P._batch(data.feed("train").draw(g, 3, (0, "test"), 0, 1), g,
                     P.frcnn.class_lut(gt))
    loss, logs = pg_loss(model, *batch, cfg, g)
    loss.backward()
    assert torch.isfinite(loss) and logs["candidates"] > 0
    scores = P.evaluate(str(ckpt), data)
    assert scores and set(scores) <= set(P.METRICS.values())
    assert all(0 <= v <= 1 for v in scores.values())
    first4 = P.coco_scores(model, data.chunks("val", 2, stop=4), gt, {"nms": "greedy"})
    assert first4.keys() <= scores.keys()


def test_letterbox_profiles_keep_one_frame_for_both_subsets(raw, tmp_path):
    manifests = coco.stage(raw, tmp_path / "s", CI)
    for m in manifests.values():
        assert {k: m[k] for k in FRAME_KEYS} == {
            "image_size": 64, "resize": "letterbox", "max_size": None}
    det = load_split(tmp_path / "s" / "detection", "train")
    assert isinstance(det["image"], torch.Tensor) and det["image"].shape[1:] == (3, 64, 64)
