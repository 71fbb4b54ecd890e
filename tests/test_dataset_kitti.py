"""KITTI car instances: Ren & Zemel and instanceSeg2015 readers, synthetic writer, stager."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import kitti, kitti_synth
from datasets._common import load_split, read_manifest, save_png
from rlcv.errors import DataError


@pytest.fixture
def cfg():
    return {**kitti.PARAMS["config"], **kitti.PARAMS["ci"], "profile": "ci"}


@pytest.fixture
def synth_root(tmp_path, cfg):
    root = tmp_path / "kitti"
    kitti.synth(root, cfg, seed=0)
    return root


def test_reads_the_genuine_frames(realdata):
    root = realdata / "kitti"
    for name, hw in (("000000.png", (370, 1224)), ("000007.png", (375, 1242))):
        frame = kitti.read_frame(root / "training" / "image_2" / name)  # palette PNGs
        assert frame.shape == (*hw, 3) and frame.dtype == np.uint8 and frame.std() > 10
        staged = kitti.stage_frame(frame, np.zeros(hw, np.int32), (32, 96))
        assert staged["image"].shape == (3, 32, 96)
    # the sample ships no instance ground truth: the 2015 reader says which folder it wants
    with pytest.raises(DataError, match="training/instance: folder missing"):
        kitti.list_2015(root)


def test_synthetic_frames_round_trip(synth_root, cfg):
    truth = list(kitti_synth.frames(cfg, seed=0))
    counts = {"train": cfg["num_train"], "valid_man": cfg["num_valid"], "test_man": cfg["num_test"]}
    for split, fname, _ in kitti_synth.SPLITS:
        ids = kitti.read_ids(synth_root / fname)
        assert ids == [f for s, f, _, _ in truth if s == split] and len(ids) == counts[split]
    table = {tuple(c) for c in kitti_synth.COLOURS} | {(0, 0, 0)}
    for split, frame, image, gt in truth:
        got_image, got = kitti.read_example(
            synth_root, frame, "gt" if split == "train" else "gt_man"
        )
        assert np.array_equal(got_image, image) and np.array_equal(got, gt)
        assert 1 <= gt.max() <= cfg["max_cars"]
        with Image.open(
            synth_root / ("gt" if split == "train" else "gt_man") / f"{frame:06d}.png"
        ) as im:
            rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
        assert {tuple(c) for c in np.unique(rgb, axis=0)} <= table  # one colour per car, black bg


def test_cars_shrink_with_depth_and_occlude():
    rng = np.random.default_rng(0)
    heights, rows, occluded = [], [], 0
    for _ in range(20):
        _, exact, _ = kitti_synth.scene(rng, 96, 320, max_cars=20)
        for k in range(1, exact.max() + 1):
            ys = np.nonzero(exact == k)[0]
            heights.append(ys.max() - ys.min() + 1)
            rows.append(ys.max())
        occluded += int(exact.max())
    # nearer cars stand lower in the frame and are taller
    assert np.corrcoef(rows, heights)[0, 1] > 0.5 and occluded > 40


def test_instance_seg_2015_round_trip(tmp_path):
    try:
        from cityscapesscripts.helpers.labels import name2label
    except ImportError:
        name2label = None
    if name2label is not None:
        assert name2label["car"].id == kitti.CAR_ID == 26
    cars = np.zeros((8, 12), np.int32)
    cars[1:4, 1:5], cars[5:7, 6:11] = 1, 2
    value = kitti.encode_instance2015(cars)
    value[0, :] = 7 * 256  # road (stuff, instance 0)
    value[7, 0:3] = 24 * 256 + 1  # a person instance: not a car
    root = tmp_path / "kitti2015"
    save_png(root / "training" / "instance" / "000000_10.png", value)
    save_png(root / "training" / "image_2" / "000000_10.png", np.zeros((8, 12, 3), np.uint8))
    assert kitti.list_2015(root) == ["000000_10.png"]
    image, got = kitti.read_example2015(root, "000000_10.png")
    assert np.array_equal(got, cars) and image.shape == (8, 12, 3)
    save_png(root / "training" / "instance" / "000000_10.png", np.zeros((8, 12), np.uint8))
    with pytest.raises(DataError, match="not a 16-bit map"):
        kitti.read_example2015(root, "000000_10.png")


def test_synthesis_is_deterministic(tmp_path, cfg):
    kitti.synth(tmp_path / "a", cfg, seed=2)
    kitti.synth(tmp_path / "b", cfg, seed=2)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    n = cfg["num_train"] + cfg["num_valid"] + cfg["num_test"]
    assert len(files) == 2 * n + 4   # + rlcv's output marker
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_bad_input_gives_one_data_error_and_no_output(tmp_path, synth_root, cfg):
    out = tmp_path / "staged"
    with pytest.raises(DataError, match="nowhere: folder missing .*Ren & Zemel"):
        kitti.stage(tmp_path / "nowhere", out, cfg)
    gt = synth_root / "gt_man" / f"{kitti.read_ids(synth_root / 'test_man.txt')[0]:06d}.png"
    data = gt.read_bytes()
    gt.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{gt.name}: damaged"):
        kitti.stage(synth_root, out, cfg)
    assert not out.exists()
    save_png(gt, np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(DataError, match=f"{gt.name}: size"):
        kitti.stage(synth_root, out, cfg)
    gt.write_bytes(data)
    split = synth_root / "valid_man.txt"
    text = split.read_text()
    split.write_text(text + "frame_x\n")
    with pytest.raises(DataError, match="valid_man.txt: not a list of integer frame ids"):
        kitti.stage(synth_root, out, cfg)
    split.unlink()   # a missing split is skipped (issue 18); the others are staged
    counts = kitti.stage(synth_root, out, cfg)["cars"]["counts"]
    assert "val" not in counts and counts["train"] > 0
    shutil.rmtree(out)
    split.write_text(text + "999999\n")  # listed but no such frame
    with pytest.raises(DataError, match="999999.png: missing"):
        kitti.stage(synth_root, out, cfg)
    assert not out.exists()


def test_stage_splits_and_fields(tmp_path, synth_root, cfg):
    out = tmp_path / "staged"
    manifest = kitti.stage(synth_root, out, cfg)["cars"]
    assert (
        read_manifest(out / "cars")["counts"]
        == manifest["counts"]
        == {"train": cfg["num_train"], "val": cfg["num_valid"], "test": cfg["num_test"]}
    )
    h, w = cfg["size_hw"]
    for split, n in manifest["counts"].items():
        data = load_split(out / "cars", split)
        assert tuple(data["image"].shape) == (n, 3, h, w) and data["image"].dtype == torch.uint8
        assert tuple(data["label"].shape) == (n, h, w) and data["label"].dtype == torch.int16
        for lab, k in zip(data["label"], data["num_instances"], strict=True):
            assert torch.equal(torch.unique(lab), torch.arange(int(k) + 1, dtype=torch.int16))
        # val and test keep the frames' original-size instances for scoring; train does not
        assert ("gt" in data) == (split != "train")
        for gt, box in zip(data.get("gt", []), data.get("box", []), strict=True):
            assert tuple(gt.shape) == tuple(cfg["image_hw"]) and gt.dtype == torch.int16
            assert box.tolist() == [0, 0, *cfg["image_hw"]]
    files = [x["file"] for x in manifest["images"]]
    ids = [int(f.split("/")[1][:6]) for f in files]
    assert ids == sorted(ids) and len(set(files)) == len(files)
    sheet = kitti.draw({k: v[0] for k, v in data.items()})
    assert sheet.shape == (h, w, 3) and sheet.dtype == np.uint8
