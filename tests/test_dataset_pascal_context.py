"""PASCAL-Context (VOC2010 + the Context release): the synthetic writer's files read back
by the official-layout reader, the 459 -> 59 + background mapping, the stager and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from datasets import _common, pascal_context
from datasets import pascal_context_synth as synth
from rlcv.errors import DataError

CFG = {**pascal_context.PARAMS["config"], **pascal_context.PARAMS["ci"]}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pc") / "raw"
    pascal_context.synth(root, CFG, seed=0)
    return root


@pytest.fixture
def copy_root(synth_root, tmp_path) -> Path:
    return Path(shutil.copytree(synth_root, tmp_path / "raw"))


def test_synthetic_layout_is_the_official_one(synth_root):
    voc = pascal_context.voc_dir(synth_root)
    assert voc == synth_root / "VOCdevkit" / "VOC2010"
    ids = {s: (voc / "ImageSets" / "Main" / f"{s}.txt").read_text().split() for s in ("train",
                                                                                       "val")}
    assert len(ids["train"]) == CFG["synth_train"] and len(ids["val"]) == CFG["synth_val"]
    assert not set(ids["train"]) & set(ids["val"])
    for i in ids["train"] + ids["val"]:
        assert (voc / "JPEGImages" / f"{i}.jpg").is_file()
        assert (synth_root / "trainval" / f"{i}.mat").is_file()
    names59 = pascal_context.read_labels(synth_root / "59_labels.txt", 59)
    assert [names59[k] for k in range(1, 60)] == list(synth.NAMES_59)


def test_reader_maps_a_written_label_map_as_documented(synth_root):
    """Every 459-list id whose name is the N-th of 59_labels.txt becomes N; others and 0
    (unlabelled) become background 0."""
    labels = pascal_context.read_labels(synth_root / "labels.txt")
    names59 = pascal_context.read_labels(synth_root / "59_labels.txt", 59)
    lut = pascal_context.class_map(labels, names59)
    index59 = {name: k for k, name in names59.items()}
    seen_outside = False
    for split in ("train", "val"):
        for stem, image_path, mat_path in pascal_context.list_split(
                pascal_context.voc_dir(synth_root), synth_root, split):
            raw = scipy.io.loadmat(mat_path)["LabelMap"]
            image = _common.read_image(image_path, "jpeg")
            mapped = pascal_context.read_label_map(mat_path, lut, image.shape[:2])
            assert mapped.shape == raw.shape == image.shape[:2] and mapped.dtype == np.uint8
            for v in np.unique(raw):
                want = index59.get(labels.get(int(v)), 0)
                assert (mapped[raw == v] == want).all(), (stem, v, labels.get(int(v)))
                seen_outside |= v > 0 and want == 0
    assert seen_outside          # 'pole' / 'traffic light' occur and map to background
    assert lut[labels_id(labels, "sky")] == index59["sky"] == 47
    assert lut[labels_id(labels, "pole")] == 0 and lut[0] == 0


def labels_id(labels: dict, name: str) -> int:
    return next(i for i, n in labels.items() if n == name)


def test_class_map_resolves_the_59_lists_spellings():
    labels = {1: "table", 2: "bed clothes", 3: "cloth", 4: "sky", 5: "ashtray"}
    lut = pascal_context.class_map(labels, {1: "diningtable", 2: "bedclothes", 3: "clothes",
                                            4: "sky"})
    assert lut.tolist() == [0, 1, 2, 3, 4, 0]
    with pytest.raises(DataError, match="'snow' is not in labels.txt"):
        pascal_context.class_map(labels, {1: "snow"})


def test_stage_splits_sizes_and_full_resolution_val(synth_root, tmp_path):
    manifest = pascal_context.stage(synth_root, tmp_path / "staged", CFG)["context59"]
    assert manifest["counts"] == {"train": CFG["synth_train"], "val": CFG["synth_val"]}
    assert manifest["num_classes"] == 60 and manifest["classes"]["0"] == "background"
    assert manifest["classes"]["59"] == "wood"
    folder = tmp_path / "staged" / "context59"
    h, w = CFG["size"]
    train, val = (_common.load_split(folder, s) for s in ("train", "val"))
    assert train["label"].shape == (CFG["synth_train"], h, w) and "label_full" not in train
    assert int(train["label"].max()) <= 59
    voc = pascal_context.voc_dir(synth_root)
    ids = (voc / "ImageSets" / "Main" / "val.txt").read_text().split()
    for i, full in zip(ids, val["label_full"], strict=True):
        raw = scipy.io.loadmat(synth_root / "trainval" / f"{i}.mat")["LabelMap"]
        assert tuple(full.shape) == raw.shape != (h, w)                 # the original size
    assert pascal_context.draw({k: v[0] for k, v in train.items()}).shape == (h, w, 3)


def test_synthetic_is_deterministic(synth_root, tmp_path):
    """The same bytes every run: the .mat headers carry no creation time (savemat's
    would, and DVC would see a changed dataset)."""
    pascal_context.synth(tmp_path / "again", CFG, seed=0)
    files = sorted(p for p in synth_root.rglob("*") if p.is_file())
    assert any(p.suffix == ".mat" for p in files)
    for p in files:
        again = tmp_path / "again" / p.relative_to(synth_root)
        assert p.read_bytes() == again.read_bytes(), p
        if p.suffix == ".mat":
            assert b"Created on" not in p.read_bytes()[:116]
            assert np.array_equal(scipy.io.loadmat(p)["LabelMap"],
                                  scipy.io.loadmat(again)["LabelMap"])


@pytest.mark.parametrize("case", ["no_mat", "bad_mat", "no_labelmap", "wrong_size",
                                  "bad_labels", "no_voc"])
def test_bad_input_names_the_file(copy_root, tmp_path, case):
    voc = copy_root / "VOCdevkit" / "VOC2010"
    first = (voc / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    mat = copy_root / "trainval" / f"{first}.mat"
    if case == "no_mat":
        mat.unlink()
    elif case == "bad_mat":
        mat.write_bytes(b"not a mat file")
    elif case == "no_labelmap":
        scipy.io.savemat(mat, {"Other": np.zeros((2, 2), np.uint16)})
    elif case == "wrong_size":
        scipy.io.savemat(mat, {"LabelMap": np.zeros((3, 3), np.uint16)})
    elif case == "bad_labels":
        (copy_root / "labels.txt").write_text("1: sky\nnot a line\n")
    else:
        shutil.rmtree(copy_root / "VOCdevkit")
    with pytest.raises(DataError) as err:
        pascal_context.stage(copy_root, tmp_path / "staged", CFG)
    where = {"bad_labels": "labels.txt", "no_voc": str(copy_root)}.get(case, f"{first}.mat")
    assert where in str(err.value)
    assert not (tmp_path / "staged" / "context59").exists()
