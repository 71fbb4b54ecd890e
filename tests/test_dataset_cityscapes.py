"""Cityscapes (leftImg8bit + gtFine): label table, genuine frame, synthetic round trip through
our reader, torchvision.datasets.Cityscapes and cityscapesScripts, stager, bad input, and
the context structure CiSS-Net exploits (road vs sidewalk told apart by layout)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import Cityscapes as TvCityscapes

from datasets import _common, cityscapes
from datasets import cityscapes_synth as synth
from rlcv.errors import DataError

CFG = {**cityscapes.PARAMS["config"], **cityscapes.PARAMS["ci"]}
FIRST = "gtFine/train/aachen/aachen_000000_000019_gtFine_"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes") / "raw"
    cityscapes.synth(root, CFG, seed=0)
    return root


@pytest.fixture
def copy_root(synth_root, tmp_path) -> Path:
    return Path(shutil.copytree(synth_root, tmp_path / "raw"))


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- label table, genuine frame


def test_label_table_matches_the_public_definition():
    ours = [tuple(lb) for lb in cityscapes.LABELS]
    tv = [(c.name, c.id, c.train_id, c.category, c.category_id, c.has_instances,
           c.ignore_in_eval, c.color) for c in TvCityscapes.classes]
    assert ours == tv
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    assert ours == [tuple(lb) for lb in labels.labels]
    assert len(cityscapes.TRAIN_NAMES) == 19 and cityscapes.TRAIN_NAMES[0] == "road"
    ids = np.array([lb.id for lb in cityscapes.LABELS if 0 <= lb.train_id < 255])
    np.testing.assert_array_equal(cityscapes.TRAIN_TO_ID[cityscapes.ID_TO_TRAIN[ids]], ids)


def test_reads_genuine_frame(realdata):
    root = realdata / "cityscapes"
    frames = cityscapes.frames(root, "val")
    assert [f["name"] for f in frames] == ["frankfurt_000000_000294"]
    f = cityscapes.read_frame(frames[0])
    assert f["image"].shape == (128, 256, 3) and f["image"].dtype == np.uint8
    ids, inst = f["label_ids"], f["instance_ids"]
    assert ids.shape == inst.shape == (128, 256) and inst.dtype == np.int32
    assert {24000, 26002} <= set(np.unique(inst).tolist())
    np.testing.assert_array_equal(np.where(inst >= 1000, inst // 1000, inst), ids)
    # our trainIds against the shipped labelTrainIds: the sample was downscaled file by
    # file, so boundaries differ slightly; every id's majority trainId must match
    shipped = np.array(Image.open(next(root.rglob("*_labelTrainIds.png"))))
    ours = cityscapes.train_ids(ids)
    assert (ours == shipped).mean() > 0.99
    for i in np.unique(ids):
        values, counts = np.unique(shipped[ids == i], return_counts=True)
        assert values[counts.argmax()] == cityscapes.ID_TO_TRAIN[i]


def test_genuine_frame_has_no_color_or_polygons(realdata):
    """The sample ships only labelIds/instanceIds: asking for color names the file."""
    frames = cityscapes.frames(realdata / "cityscapes", "val", targets=("semantic", "color"))
    with pytest.raises(DataError, match="gtFine_color.png: missing"):
        cityscapes.read_frame(frames[0])


# ---------------------------------------------------------------- synthetic round trip


def test_round_trip_reader_torchvision_and_cityscapesscripts(synth_root):
    targets = ["semantic", "instance", "polygon", "color"]
    for split, n in (("train", CFG["synth_train"]), ("val", CFG["synth_val"])):
        ours = cityscapes.frames(synth_root, split, targets=targets)
        tv = TvCityscapes(str(synth_root), split=split, mode="fine", target_type=targets)
        order = np.argsort(tv.images)
        assert len(ours) == len(tv) == n
        expected = {synth.frame_name(split, i)[1]: i for i in range(n)}
        for frame, k in zip(ours, order, strict=True):
            ref = synth.make_frame(0, split, expected[frame["name"]], CFG["synth_size"])
            got = cityscapes.read_frame(frame)
            image, (sem, inst, poly, color) = tv[int(k)]
            for key in ("image", "label_ids", "color"):
                np.testing.assert_array_equal(got[key], ref[key])
            np.testing.assert_array_equal(got["instance_ids"], ref["instance_ids"])
            assert got["polygons"] == poly == ref["polygons"]
            np.testing.assert_array_equal(np.array(image), ref["image"])
            np.testing.assert_array_equal(np.array(sem), ref["label_ids"])
            np.testing.assert_array_equal(np.array(inst), ref["instance_ids"])
            np.testing.assert_array_equal(np.array(color), ref["color"])
    # the PNGs are the polygons rasterised the way cityscapesScripts does it
    prep = pytest.importorskip("cityscapesscripts.preparation.json2labelImg")
    prep_inst = pytest.importorskip("cityscapesscripts.preparation.json2instanceImg")
    from cityscapesscripts.helpers.annotation import Annotation

    for path in sorted(synth_root.rglob("*_polygons.json")):
        ann = Annotation()
        ann.fromJsonFile(str(path))
        stem = str(path)[: -len("polygons.json")]
        labels = np.array(prep.createLabelImage(ann, "ids"))
        np.testing.assert_array_equal(labels, np.array(Image.open(stem + "labelIds.png")))
        inst = np.array(prep_inst.createInstanceImage(ann, "ids"))
        np.testing.assert_array_equal(inst, np.array(Image.open(stem + "instanceIds.png")))


def test_synthetic_is_deterministic_with_instances(synth_root, tmp_path):
    cityscapes.synth(tmp_path / "again", CFG, seed=0)
    assert _tree_hash(tmp_path / "again") == _tree_hash(synth_root)
    inst = np.array(Image.open(synth_root / f"{FIRST}instanceIds.png"))
    assert inst.dtype == np.uint16 and (inst // 1000 == 26).any()  # cars are instances
    assert Image.open(synth_root / f"{FIRST}color.png").mode == "RGBA"


def test_synth_is_atomic(tmp_path, monkeypatch):
    real = synth.make_frame
    calls = []
    monkeypatch.setattr(synth, "make_frame", lambda *a: calls.append(a) or (
        real(*a) if len(calls) < 3 else 1 / 0))
    with pytest.raises(ZeroDivisionError):
        cityscapes.synth(tmp_path / "raw", CFG, seed=0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- stager


def test_stage_splits_manifest_and_fields(synth_root, tmp_path, monkeypatch):
    reads: list[str] = []
    real = _common.read_image
    monkeypatch.setattr(_common, "read_image",
                        lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k))
    manifest = cityscapes.stage(synth_root, tmp_path / "staged", CFG)["fine"]
    assert len(reads) == len(set(reads)) == 3 * (CFG["synth_train"] + CFG["synth_val"])
    folder = tmp_path / "staged" / "fine"
    assert manifest == _common.read_manifest(folder)
    assert manifest["counts"] == {"train": CFG["synth_train"], "val": CFG["synth_val"]}
    assert manifest["images"][0] == {"file": "train/aachen/aachen_000000_000019", "split": "train"}
    assert manifest["ignore_index"] == 255 and manifest["instance_classes"] == list(range(11, 19))
    h, w = CFG["size"]
    for split, n in manifest["counts"].items():
        data = _common.load_split(folder, split)
        assert data["image"].shape == (n, 3, h, w) and str(data["image"].dtype) == "torch.uint8"
        assert data["label"].shape == (n, h, w) and str(data["label"].dtype) == "torch.uint8"
        assert data["instance"].shape == (n, h, w) and str(data["instance"].dtype) == "torch.int32"
        label, inst = data["label"].numpy(), data["instance"].numpy()
        assert set(np.unique(label)) <= set(range(19)) | {255}
        assert (label == 255).any()  # the ego vehicle is void
        ids = np.where(inst >= 1000, inst // 1000, inst)
        np.testing.assert_array_equal(cityscapes.ID_TO_TRAIN[ids], label)
        # val keeps the instance map at its original size (scores are taken there)
        assert ("instance_full" in data) == (split == "val")
    full = data["instance_full"]
    assert tuple(full.shape[1:]) == tuple(CFG["synth_size"]) != (h, w)
    first_val = next(i["file"] for i in manifest["images"] if i["split"] == "val")
    raw = np.array(Image.open(synth_root / "gtFine" / f"{first_val}_gtFine_instanceIds.png"))
    np.testing.assert_array_equal(full[0].numpy(), raw)
    out = cityscapes.draw({k: v[0] for k, v in data.items()})
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


# ---------------------------------------------------------------- bad input


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _relabel(path: Path) -> None:
    ids = np.array(Image.open(path))
    ids[0, 0] = 200
    Image.fromarray(ids).save(path)


DAMAGE = {
    "truncated labelIds": (f"{FIRST}labelIds.png", _truncate),
    "missing instanceIds": (f"{FIRST}instanceIds.png", Path.unlink),
    "truncated image": ("leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png",
                        _truncate),
    "unknown label id": (f"{FIRST}labelIds.png", _relabel),
    "wrong size": (f"{FIRST}instanceIds.png", lambda p: Image.new("I;16", (4, 4)).save(p)),
    "missing gtFine split": ("gtFine/val", shutil.rmtree),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_bad_input_names_file_and_layout_and_writes_nothing(copy_root, tmp_path, case):
    rel, damage = DAMAGE[case]
    damage(copy_root / rel)
    with pytest.raises(DataError) as err:
        cityscapes.stage(copy_root, tmp_path / "staged", CFG)
    msg = str(err.value)
    assert str(copy_root / rel) in msg and "expected" in msg and "\n" not in msg
    assert not (tmp_path / "staged" / "fine").exists()


@pytest.mark.parametrize("text, problem", [
    ("{not json", "malformed JSON"),
    ('{"imgHeight": 4, "imgWidth": 4}', "malformed polygons"),
    ('{"imgHeight": 4, "imgWidth": 4, "objects": [{"label": "unicorn", "polygon": [[0, 0]]}]}',
     "unknown label 'unicorn'"),
    ('{"imgHeight": 4, "imgWidth": 4, "objects": [{"label": "car", "polygon": [1, 2]}]}',
     "polygon is not a list"),
])
def test_bad_polygons_json(copy_root, text, problem):
    path = copy_root / f"{FIRST}polygons.json"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        cityscapes.read_polygons(path)
    assert str(path) in str(err.value) and "expected" in str(err.value)


def test_wrong_root(tmp_path):
    with pytest.raises(DataError, match="leftImg8bit"):
        cityscapes.stage(tmp_path, tmp_path / "staged", CFG)


# ---------------------------------------------------------------- context structure


def _bc(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    ha, hb = np.bincount(a, minlength=bins), np.bincount(b, minlength=bins)
    return float(np.sqrt(ha / ha.sum() * hb / hb.sum()).sum())


def test_road_and_sidewalk_are_told_apart_only_by_context():
    frames = [synth.make_frame(0, "train", i, (64, 128)) for i in range(60)]
    image = np.stack([f["image"] for f in frames]).astype(np.int64) // 32
    ids = np.stack([f["label_ids"] for f in frames])
    inst = np.stack([f["instance_ids"] for f in frames]).astype(np.int64)
    colour = image[..., 0] * 64 + image[..., 1] * 8 + image[..., 2]
    road, walk = ids == 7, ids == 8
    # same colour/texture statistics for road and sidewalk, unlike road and other classes
    assert _bc(colour[road], colour[walk], 512) > 0.95
    for other in (11, 21, 23):
        assert _bc(colour[road], colour[ids == other], 512) < 0.5
    # ... the sidewalk flanks the road: in every row it lies outside the road's span
    x = np.broadcast_to(np.arange(ids.shape[2]), ids.shape)
    lo = np.where(road, x, 10**6).min(2, keepdims=True)
    hi = np.where(road, x, -1).max(2, keepdims=True)
    has_road = road.any(2, keepdims=True)
    flank = walk & has_road & ((x < lo) | (x > hi))
    assert flank.sum() / (walk & has_road).sum() > 0.99
    # ... cars stand on the road: below a car's lowest pixels lies road (or the bonnet)
    car = inst // 1000 == 26
    bottom = car[:, :-1] & ~car[:, 1:]
    under = ids[:, 1:][bottom]
    under = under[~np.isin(under, (24, 26))]  # nearer people/cars hide the ground
    assert len(under) and np.isin(under, (7, 1)).mean() > 0.97
    per_frame = [len(np.unique(i[c])) for i, c in zip(inst, car, strict=True)]
    assert min(per_frame) >= 1 and np.mean(per_frame) > 2  # several cars (iIoU instances)
