"""ADE20K (ADEChallengeData2016): genuine files, synthetic round trip, stager, bad input,
and the context structure CiSS-Net exploits (look-alike classes told apart by layout)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import _common, ade20k
from datasets import ade20k_synth as synth
from rlcv.errors import DataError

CFG = {**ade20k.PARAMS["config"], **ade20k.PARAMS["ci"]}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ade") / "raw"
    ade20k.synth(root, CFG, seed=0)
    return root


@pytest.fixture
def copy_root(synth_root, tmp_path) -> Path:
    """A private copy of the synthetic root a test may damage."""
    return Path(shutil.copytree(synth_root, tmp_path / "raw"))


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- genuine files


def test_reads_genuine_files(realdata):
    base = ade20k.locate(realdata / "ade20k")
    classes = ade20k.read_object_info(base)
    assert len(classes) == 150 and classes[1] == "wall" and classes[150] == "flag"
    assert classes[22] == "water"  # the real file's "22 \t" row still parses
    scenes = ade20k.read_scene_categories(base)
    assert len(scenes) == 22210 and scenes["ADE_val_00000001"] == "abbey"
    items = ade20k.list_split(base, "validation")
    assert [s for s, _, _ in items] == ["ADE_val_00000001", "ADE_val_00000002"]
    image, label = ade20k.read_sample(*items[0][1:])
    assert image.shape == (512, 683, 3) and image.dtype == np.uint8
    assert label.shape == (512, 683) and label.dtype == np.uint8
    assert set(np.unique(label)) == {0, 1, 2, 3, 5, 7, 10, 18}


def test_synthetic_classes_carry_official_ids_and_names(realdata):
    official = ade20k.read_object_info(ade20k.locate(realdata / "ade20k"))
    for idx, (name, _) in synth.CLASSES.items():
        assert official[idx] == name
    assert set(synth.ROLE_IDS.values()) <= set(synth.CLASSES) | {0}


def test_stage_genuine_images(realdata, tmp_path):
    """The stager on genuine files (validation copied as a tiny training split)."""
    base = tmp_path / "ADEChallengeData2016"
    shutil.copytree(realdata / "ade20k" / "ADEChallengeData2016", base)
    for kind, ext in (("images", "jpg"), ("annotations", "png")):
        (base / kind / "training").mkdir()
        src = base / kind / "validation" / f"ADE_val_00000001.{ext}"
        shutil.copy(src, base / kind / "training" / f"ADE_train_00000001.{ext}")
    manifest = ade20k.stage(tmp_path, tmp_path / "staged", {"size": [48, 64]})["sceneparsing"]
    assert manifest["counts"] == {"train": 1, "val": 2}
    assert len(manifest["classes"]) == 150
    val = _common.load_split(tmp_path / "staged" / "sceneparsing", "val")
    assert val["image"].shape == (2, 3, 48, 64) and val["label"].shape == (2, 48, 64)
    assert set(np.unique(val["label"].numpy())) <= {0, 1, 2, 3, 5, 7, 10, 14, 18}
    # and at the annotations' own sizes, where the benchmark scores
    assert [tuple(lab.shape) for lab in val["label_full"]][0] == (512, 683)


# ---------------------------------------------------------------- synthetic writer


def test_synthetic_layout_and_round_trip(synth_root):
    base = ade20k.locate(synth_root)
    assert base == synth_root / "ADEChallengeData2016"
    assert (base / "objectInfo150.csv").read_text().startswith("Idx,Ratio,Train,Val,Stuff,Name\n")
    classes = ade20k.read_object_info(base)
    assert classes == {k: name for k, (name, _) in synth.CLASSES.items()}
    scenes = ade20k.read_scene_categories(base)
    for folder, n in (("training", CFG["synth_train"]), ("validation", CFG["synth_val"])):
        items = ade20k.list_split(base, folder)
        assert [s for s, _, _ in items] == [
            f"ADE_{ade20k.SPLITS[folder]}_{i + 1:08d}" for i in range(n)]
        for i, (stem, image_path, ann_path) in enumerate(items):
            image, label = ade20k.read_sample(image_path, ann_path)
            ref_image, ref_label, scene = synth.make_scene(0, folder, i, CFG["synth_size"])
            assert scenes[stem] == scene
            np.testing.assert_array_equal(label, ref_label)  # PNG: exact
            mse = np.mean((image.astype(float) - ref_image) ** 2)
            assert 10 * np.log10(255**2 / mse) > 22, f"{stem}: JPEG too far from the scene"


def test_synthetic_is_deterministic(synth_root, tmp_path):
    ade20k.synth(tmp_path / "again", CFG, seed=0)
    assert _tree_hash(tmp_path / "again") == _tree_hash(synth_root)
    ade20k.synth(tmp_path / "other", CFG, seed=1)
    assert _tree_hash(tmp_path / "other") != _tree_hash(synth_root)


def test_synth_is_atomic(tmp_path, monkeypatch):
    calls = []

    def boom(*args):
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        return real(*args)

    real = synth.make_scene
    monkeypatch.setattr(synth, "make_scene", boom)
    with pytest.raises(RuntimeError):
        ade20k.synth(tmp_path / "raw", CFG, seed=0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- stager


def test_stage_splits_manifest_and_single_reads(synth_root, tmp_path, monkeypatch):
    reads: list[str] = []
    real = _common.read_image
    monkeypatch.setattr(_common, "read_image",
                        lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k))
    cfg = {**CFG, "shard_size": 4}
    manifest = ade20k.stage(synth_root, tmp_path / "staged", cfg)["sceneparsing"]
    assert len(reads) == len(set(reads)) == 2 * (CFG["synth_train"] + CFG["synth_val"])
    folder = tmp_path / "staged" / "sceneparsing"
    assert manifest == _common.read_manifest(folder)
    assert manifest["counts"] == {"train": CFG["synth_train"], "val": CFG["synth_val"]}
    assert manifest["shards"]["train"] == ["train-000.pt", "train-001.pt"]
    assert manifest["images"][0] == {"file": "training/ADE_train_00000001", "split": "train"}
    assert manifest["num_classes"] == 150 and manifest["ignore_index"] == 0
    h, w = CFG["size"]
    for split, n in manifest["counts"].items():
        data = _common.load_split(folder, split)
        assert data["image"].shape == (n, 3, h, w) and str(data["image"].dtype) == "torch.uint8"
        assert data["label"].shape == (n, h, w) and str(data["label"].dtype) == "torch.uint8"
        assert int(data["label"].max()) <= 150
        assert ("label_full" in data) == (split == "val")
    raw = np.array(Image.open(synth_root / "ADEChallengeData2016" / "annotations" / "validation"
                              / "ADE_val_00000001.png"))
    full = data["label_full"]
    assert np.array_equal(np.asarray(full[0]), raw) and raw.shape != (h, w)


def test_draw_blends_labels(synth_root, tmp_path):
    ade20k.stage(synth_root, tmp_path / "staged", CFG)
    data = _common.load_split(tmp_path / "staged" / "sceneparsing", "train")
    sample = {k: v[0] for k, v in data.items()}
    out = ade20k.draw(sample)
    assert out.shape == (*CFG["size"], 3) and out.dtype == np.uint8
    assert not np.array_equal(out, sample["image"].permute(1, 2, 0).numpy())


# ---------------------------------------------------------------- bad input


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _relabel(path: Path, value: int) -> None:
    label = np.array(Image.open(path))
    label[0, 0] = value
    Image.fromarray(label).save(path)


DAMAGE = {
    "truncated annotation": ("annotations/training/ADE_train_00000002.png", _truncate),
    "truncated image": ("images/validation/ADE_val_00000001.jpg", _truncate),
    "missing annotation": ("annotations/training/ADE_train_00000003.png", Path.unlink),
    "bad class id": ("annotations/validation/ADE_val_00000002.png", lambda p: _relabel(p, 200)),
    "wrong size": ("annotations/training/ADE_train_00000001.png",
                   lambda p: Image.new("L", (5, 5)).save(p)),
    "bad objectInfo150": ("objectInfo150.txt",
                          lambda p: p.write_text(p.read_text() + "151\tx\ty\tz\tname\n")),
    "no objectInfo150 header": ("objectInfo150.txt",
                                lambda p: p.write_text("1\t0.1\t1\t1\twall\n")),
    "missing annotations folder": ("annotations/training", shutil.rmtree),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_bad_input_names_file_and_layout_and_writes_nothing(copy_root, tmp_path, case):
    rel, damage = DAMAGE[case]
    target = copy_root / "ADEChallengeData2016" / rel
    damage(target)
    with pytest.raises(DataError) as err:
        ade20k.stage(copy_root, tmp_path / "staged", CFG)
    msg = str(err.value)
    assert str(target) in msg and "expected" in msg and "\n" not in msg
    assert not (tmp_path / "staged" / "sceneparsing").exists()


def test_wrong_root(tmp_path):
    with pytest.raises(DataError, match="ADEChallengeData2016"):
        ade20k.stage(tmp_path, tmp_path / "staged", CFG)


def test_bad_scene_categories(tmp_path):
    (tmp_path / "sceneCategories.txt").write_text("ADE_train_00000001 street extra\n")
    with pytest.raises(DataError, match="sceneCategories.txt: line 1"):
        ade20k.read_scene_categories(tmp_path)


# ---------------------------------------------------------------- context structure


def _bc(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Bhattacharyya coefficient of two samples of integer codes (1 = same distribution)."""
    ha, hb = np.bincount(a, minlength=bins), np.bincount(b, minlength=bins)
    return float(np.sqrt(ha / ha.sum() * hb / hb.sum()).sum())


def test_lookalike_classes_are_told_apart_only_by_context():
    scenes = [synth.make_scene(0, "training", i, (48, 48)) for i in range(120)]
    colour, row, labels, per_image = [], [], [], []
    for image, label, _ in scenes:
        q = image.astype(np.int64) // 32  # 8 levels per channel
        colour.append((q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]).ravel())
        row.append((np.arange(label.shape[0])[:, None] * 8 // label.shape[0]
                    * np.ones_like(label)).ravel())
        labels.append(label.ravel())
        per_image.append(set(np.unique(label).tolist()))
    colour, row, labels = map(np.concatenate, (colour, row, labels))
    sky, water, road, floor = (labels == c for c in (3, 22, 7, 4))
    # sky and water (its reflection) share colour statistics, unlike sky and other stuff
    assert _bc(colour[sky], colour[water], 512) > 0.85
    for other in (1, 6, 10, 17):
        assert _bc(colour[sky], colour[labels == other], 512) < 0.3
    # ... but not position: sky lies above the horizon, water below it
    assert _bc(row[sky], row[water], 8) < 0.3
    for image_label in (s[1] for s in scenes):
        rows_sky = np.nonzero((image_label == 3).any(1))[0]
        rows_water = np.nonzero((image_label == 22).any(1))[0]
        if len(rows_sky) and len(rows_water):
            assert rows_sky.max() <= rows_water.min()
    # road and floor share colour statistics; the scene (neighbours) tells them apart
    assert _bc(colour[road], colour[floor], 512) > 0.9
    for present in per_image:
        assert not {4, 7} <= present
        if 4 in present:
            assert {1, 6} <= present and 3 not in present  # walls, ceiling, no sky
        if 7 in present:
            assert {2, 3} <= present  # buildings and sky
