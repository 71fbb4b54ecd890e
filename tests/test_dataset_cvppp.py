"""CVPPP A1: PNG and H5 readers, the synthetic rosette writer, the ablation/traintest stager."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from datasets import cvppp, cvppp_synth
from datasets._common import load_split, read_manifest, save_png
from datasets._images import resize_nearest
from rlcv.errors import DataError


@pytest.fixture
def cfg():
    return {**cvppp.PARAMS["config"], **cvppp.PARAMS["ci"], "profile": "ci"}


@pytest.fixture
def synth_root(tmp_path, cfg):
    root = tmp_path / "cvppp"
    cvppp.synth(root, cfg, seed=0)
    return root


def test_reads_the_genuine_plant_image(realdata):
    image = cvppp.read_rgb(realdata / "cvppp_a1" / "plant003_rgb.png")
    assert image.shape == (448, 448, 3) and image.dtype == np.uint8
    g = image.astype(int)
    assert (g[..., 1] > g[..., 0]).mean() > 0.05  # a green plant is in there
    staged = cvppp.stage_plant(image, np.zeros(image.shape[:2], np.int32), None, 64)
    assert staged["image"].shape == (3, 64, 64) and int(staged["num_leaves"]) == 0


def test_synthetic_plants_round_trip(synth_root, cfg):
    train_dir = synth_root / "training" / "A1"
    truth = list(cvppp_synth.plants(cfg, seed=0))
    assert len(truth) == cfg["num_train"] + cfg["num_test"]
    assert cvppp.list_plants(train_dir) == [n for s, n, _, _ in truth if s == "training"]
    with (
        h5py.File(synth_root / cvppp.TRUTH_H5, "r") as raw,
        cvppp.open_truth(synth_root / cvppp.TRUTH_H5) as read_truth,
    ):
        assert list(raw) == ["A1"]
        for split, name, image, label in truth:
            k = int(label.max())
            assert cfg["leaves"][0] <= k + 3 and k <= cfg["leaves"][1]  # a few may be hidden
            assert np.array_equal(np.unique(label), np.arange(k + 1))
            if split == "training":
                plant = cvppp.read_plant(train_dir, name)
                assert np.array_equal(plant["rgb"], image)
                assert np.array_equal(plant["label"], label)
                assert np.array_equal(plant["fg"], label > 0)
                with Image.open(train_dir / f"{name}_label.png") as im:  # indexed PNG, bg 0
                    assert im.mode == "P" and np.array_equal(np.asarray(im), label)
                with Image.open(train_dir / f"{name}_rgb.png") as im:
                    assert im.mode == "RGBA"
            else:
                assert np.array_equal(raw[f"A1/{name}/label"][()], label)  # h5py directly
                got, fg = read_truth(name)
                assert np.array_equal(got, label) and fg is None
                assert np.array_equal(
                    cvppp.read_rgb(synth_root / "testing" / "A1" / f"{name}_rgb.png"), image
                )


def test_background_is_the_lowest_label_value(tmp_path):
    values = np.full((6, 5), 3, np.uint8)
    values[1:3, 1:3], values[4:, 2:] = 9, 7
    save_png(tmp_path / "p_label.png", values, palette=cvppp_synth.PALETTE)
    save_png(tmp_path / "l_label.png", values)
    for name in ("p_label.png", "l_label.png"):
        got = cvppp.read_label(tmp_path / name)
        assert np.array_equal(got, np.select([values == 3, values == 7], [0, 1], 2))


def test_synthesis_is_deterministic(tmp_path, cfg):
    cvppp.synth(tmp_path / "a", cfg, seed=1)
    cvppp.synth(tmp_path / "b", cfg, seed=1)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 3 * cfg["num_train"] + cfg["num_test"] + 2   # + the .h5, the marker
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_bad_input_gives_one_data_error_and_no_output(tmp_path, synth_root, cfg):
    out = tmp_path / "staged"
    with pytest.raises(DataError, match="nowhere: folder missing .*training/A1/plantNNN"):
        cvppp.stage(tmp_path / "nowhere", out, cfg)
    label = synth_root / "training" / "A1" / "plant002_label.png"
    data = label.read_bytes()
    label.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="plant002_label.png: damaged"):
        cvppp.stage(synth_root, out, cfg)
    assert not out.exists()
    label.write_bytes(data)
    (synth_root / "training" / "A1" / "plant003_fg.png").unlink()
    with pytest.raises(DataError, match="plant003_fg.png: missing"):
        cvppp.stage(synth_root, out, cfg)
    assert not out.exists()
    save_png(synth_root / "training" / "A1" / "plant003_fg.png", np.ones((5, 5), bool))
    with pytest.raises(DataError, match="plant003_fg.png: size"):
        cvppp.read_plant(synth_root / "training" / "A1", "plant003")
    truth = synth_root / cvppp.TRUTH_H5
    truth.write_bytes(b"not an hdf5 file")
    with pytest.raises(DataError, match="not a readable HDF5"):
        with cvppp.open_truth(truth):
            pass
    with h5py.File(truth, "w") as f:
        f.create_dataset("A1/plant001/label", data=np.zeros((4, 4), np.uint8))
    with (
        cvppp.open_truth(truth) as read_truth,
        pytest.raises(DataError, match="/A1/plant002/label"),
    ):
        read_truth("plant002")


def test_stage_ablation_and_traintest(tmp_path, synth_root, cfg):
    out = tmp_path / "staged"
    manifests = cvppp.stage(synth_root, out, cfg)
    n_train, n_test, s = cfg["num_train"], cfg["num_test"], cfg["size"]
    n_val = round(n_train * 25 / 128)
    assert manifests["ablation"]["counts"] == {"train": n_train - n_val, "val": n_val}
    assert manifests["traintest"]["counts"] == {"train": n_train, "test": n_test}
    for subset in cvppp.SUBSETS:
        assert read_manifest(out / subset)["subset"] == subset
    abl = manifests["ablation"]["images"]
    assert len({x["file"] for x in abl}) == n_train
    val = cvppp.ablation_split(cvppp.list_plants(synth_root / "training" / "A1"), 25 / 128, 0)
    assert {x["file"] for x in abl if x["split"] == "val"} == {
        f"training/A1/{n}_rgb.png" for n in val
    }

    test = load_split(out / "traintest", "test")
    assert tuple(test["image"].shape) == (n_test, 3, s, s) and test["image"].dtype == torch.uint8
    assert tuple(test["label"].shape) == (n_test, s, s) and test["label"].dtype == torch.int16
    assert test["fg"].dtype == torch.uint8 and torch.equal(test["fg"].bool(), test["label"] > 0)
    for lab, k in zip(test["label"], test["num_leaves"], strict=True):
        assert torch.equal(torch.unique(lab), torch.arange(int(k) + 1, dtype=torch.int16))
    train = load_split(out / "ablation", "train")
    full = load_split(out / "traintest", "train")
    assert tuple(full["label"].shape) == (n_train, s, s)
    files = [x["file"] for x in manifests["traintest"]["images"] if x["split"] == "train"]
    first = files.index(next(x["file"] for x in abl if x["split"] == "train"))
    assert torch.equal(train["label"][0], full["label"][first])
    sheet = cvppp.draw({k: v[0] for k, v in test.items()})
    assert sheet.shape == (s, s, 3) and sheet.dtype == np.uint8
    # the evaluation splits keep the original-size labels and the crop; training splits not
    assert "gt" not in train and "gt" not in full
    h0, w0 = cfg["image_hw"]
    m = min(h0, w0)
    for split in (test, load_split(out / "ablation", "val")):
        for gt, box, lab in zip(split["gt"], split["box"], split["label"], strict=True):
            assert tuple(gt.shape) == (h0, w0) and gt.dtype == torch.int16
            assert box.tolist() == [(h0 - m) // 2, (w0 - m) // 2, m, m]
            # the staged label is the crop of gt resized (nearest), up to relabelling
            crop = gt[box[0]:box[0] + m, box[1]:box[1] + m].numpy()
            assert torch.equal((lab > 0), torch.from_numpy(resize_nearest(crop, (s, s)) > 0))


def test_acis_split_on_the_real_scale():
    names = [f"plant{i:03d}" for i in range(1, 129)]
    val = cvppp.ablation_split(names, 25 / 128, seed=0)
    assert len(val) == 25 and val == cvppp.ablation_split(names, 25 / 128, seed=0)
    assert val != cvppp.ablation_split(names, 25 / 128, seed=1)


def test_paper_size_halves_then_centre_crops(tmp_path):
    """ACIS Sec. 5.1: "We downsized the original 128 images ... by a factor of two and used
    a centre crop of size 224 x 224". An A1-sized plant (500x530; the genuine plant image,
    when present, resized to it) is halved (2x2 means: PIL's `Image.reduce`) and
    centre-cropped to 224; its crop box maps a staged prediction back onto the original."""
    from rlcv.metrics import to_ground_truth
    from tests.conftest import REALDATA

    h, w, s = 500, 530, 224
    real = REALDATA / "cvppp_a1" / "plant003_rgb.png"
    if real.is_file():
        rgb = np.asarray(Image.open(real).convert("RGB").resize((w, h), Image.BILINEAR))
    else:
        rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    gt = ((yy // 2 // 40) * 3 + xx // 2 // 40) % 6   # leaves constant on 2x2 blocks, 0..5
    staged = cvppp.stage_plant(rgb, gt, gt > 0, s, keep_gt=True, factor=2)

    half = np.asarray(Image.fromarray(rgb).reduce(2))   # 250 x 265
    top, left = (half.shape[0] - s) // 2, (half.shape[1] - s) // 2   # 13, 20
    want = half[top:top + s, left:left + s]
    assert tuple(staged["image"].shape) == (3, s, s)
    assert np.array_equal(staged["image"].permute(1, 2, 0).numpy(), want)
    assert staged["box"].tolist() == [2 * top, 2 * left, 2 * s, 2 * s] == [26, 40, 448, 448]
    assert torch.equal(staged["gt"], torch.from_numpy(gt.astype(np.int16)))
    assert torch.equal(staged["fg"].bool(), staged["label"] > 0)

    back = to_ground_truth(staged["label"], gt.shape, staged["box"]).numpy()
    inside = np.zeros_like(gt, bool)
    inside[26:26 + 448, 40:40 + 448] = True
    assert np.array_equal(back[inside], gt[inside]) and not back[~inside].any()


def test_downsize_one_keeps_the_centre_square_resized():
    """`downsize` 1 (the ci and smoke profiles) stages the centre square resized to S, at
    any image size (so their staged data is unchanged); `downsize` 2 refuses an image too
    small for its crop, in one clear line."""
    from datasets._images import resize_image

    rng = np.random.default_rng(1)
    for (h, w), s in (((40, 38), 32), ((106, 100), 96), ((500, 530), 224)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = rng.integers(0, 4, (h, w))
        staged = cvppp.stage_plant(rgb, label, None, s, keep_gt=True)
        m = min(h, w)
        y0, x0 = (h - m) // 2, (w - m) // 2
        want = resize_image(rgb[y0:y0 + m, x0:x0 + m], (s, s))
        assert np.array_equal(staged["image"].permute(1, 2, 0).numpy(), want), (h, w)
        assert staged["box"].tolist() == [y0, x0, m, m]
        assert torch.equal(staged["label"].long(), torch.from_numpy(
            resize_nearest(label[y0:y0 + m, x0:x0 + m], (s, s))).long())
    with pytest.raises(ValueError, match="too small to downsize by 2"):
        cvppp.stage_plant(rgb[:447], label[:447], None, 224, factor=2)
