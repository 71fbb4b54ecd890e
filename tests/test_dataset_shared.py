"""The helpers every dataset module shares: subset writers (_common), images (_images)."""

import json

import numpy as np
import pytest
import torch

from datasets import _images
from datasets._common import load_split, read_manifest, stage_subset, stage_subsets


def _samples(n):
    for i in range(n):
        yield ("val" if i % 3 == 0 else "train"), f"img{i}.png", {
            "image": torch.full((3, 4, 4), i, dtype=torch.uint8),
            "boxes": torch.zeros(i % 2 + 1, 4)}


def test_stage_subsets_writes_what_stage_subset_writes(tmp_path):
    one = stage_subset(tmp_path / "one" / "s", {"subset": "s"}, _samples(7), shard_size=2)
    finished = []
    many = stage_subsets(
        tmp_path / "many", {"s": {"subset": "s"}, "empty": {"subset": "empty"}},
        (("s", *row) for row in _samples(7)), shard_size=2, finish=finished.append)
    assert many["s"] == one == read_manifest(tmp_path / "many" / "s")
    assert many["empty"]["counts"] == {} and len(finished) == 1
    assert one["counts"] == {"val": 3, "train": 4} and one["shards"]["train"] == [
        "train-000.pt", "train-001.pt"]
    for split in one["counts"]:
        a, b = load_split(tmp_path / "one" / "s", split), load_split(tmp_path / "many" / "s", split)
        assert torch.equal(a["image"], b["image"])
        assert [x.shape for x in a["boxes"]] == [x.shape for x in b["boxes"]]
    assert json.loads((tmp_path / "many" / "s" / "manifest.json").read_text()) == one


def test_stage_subsets_leaves_nothing_on_error(tmp_path):
    def rows():
        yield from (("s", *row) for row in _samples(3))
        raise OSError("source vanished")

    with pytest.raises(OSError):
        stage_subsets(tmp_path / "out", {"s": {}}, rows())
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.iterdir())


def test_letterbox_aligns_and_reports_its_transform():
    image = np.full((30, 60, 3), 200, np.uint8)
    top, t = _images.letterbox(image, 40)
    assert top.shape == (40, 40, 3) and t.tolist() == pytest.approx([40 / 60, 20 / 30, 0, 0])
    assert (top[:20] == 200).all() and (top[20:] == 0).all()
    centred, t = _images.letterbox(image, 40, centre=True)
    assert t.tolist() == pytest.approx([40 / 60, 20 / 30, 0, 10])
    assert (centred[10:30] == 200).all() and (centred[:10] == 0).all()
    mask = np.zeros((30, 60), bool)
    mask[6:18, 12:36] = True
    small, _ = _images.letterbox(mask, 40)
    assert small.dtype == bool and small.sum() == pytest.approx(mask.sum() * (2 / 3) ** 2, rel=0.1)


def test_nearest_resize_never_invents_labels_and_relabel_is_dense():
    label = np.random.default_rng(0).choice([0, 7, 300, 12], size=(37, 23))
    for size in ((10, 50), (37, 23), (80, 9)):
        out = _images.resize_nearest(label, size)
        assert out.shape == size and set(np.unique(out)) <= set(np.unique(label))
    dense, k = _images.relabel(label)
    assert k == 3 and np.array_equal(np.unique(dense), np.arange(4))
    assert np.array_equal(dense == 0, label == 0)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (1, 2, 3)
    assert _images.pack_colours(rgb).tolist() == [[0, 0x010203], [0, 0]]


def test_overlay_and_boxes_draw_on_a_copy():
    image = np.full((16, 16, 3), 100, np.uint8)
    label = np.zeros((16, 16), np.int64)
    label[4:12, 4:12] = 3
    for edges in ("dark", "colour"):
        out = _images.overlay(image, label, edges=edges)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert (out[0, 0] == 100).all() and not (out[8, 8] == 100).all()
    boxed = _images.draw_boxes(image, [[2, 2, 30, 8]], (255, 0, 0))
    assert (boxed[2, 5] == (255, 0, 0)).all() and (boxed[8, 15] == (255, 0, 0)).all()
    assert (image == 100).all()
