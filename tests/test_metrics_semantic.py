"""Confusion matrix, class IoU, mIoU and pixel accuracy against a pixel loop and the
ADE20K devkit's definitions (intersectionAndUnion, pixelAccuracy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcv.metrics import class_iou, confusion_matrix, miou, pixel_accuracy


def _loop_confusion(p: np.ndarray, g: np.ndarray, c: int, ignore: int | None) -> np.ndarray:
    m = np.zeros((c, c), dtype=np.int64)
    for a, b in zip(p.reshape(-1).tolist(), g.reshape(-1).tolist(), strict=True):
        if b != ignore:
            m[b, a] += 1
    return m


def _ade_devkit(preds: list[np.ndarray], labs: list[np.ndarray], n: int
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-class I and U and pixel accuracy summed over images, as the devkit defines
    them: labels 1..n, ground truth 0 excluded, predictions only where gt > 0."""
    inter, union = np.zeros(n), np.zeros(n)
    correct = labelled = 0
    for p, g in zip(preds, labs, strict=True):
        p = p * (g > 0)
        for c in range(1, n + 1):
            i = np.sum((p == c) & (g == c))
            inter[c - 1] += i
            union[c - 1] += np.sum(p == c) + np.sum(g == c) - i
        correct += np.sum((p == g) & (g > 0))
        labelled += np.sum(g > 0)
    return inter, union, correct / labelled


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), c=st.integers(1, 7), ignore=st.sampled_from([None, 0, 255]),
       shape=st.sampled_from([(5,), (4, 6), (2, 3, 5)]))
def test_confusion_matrix_matches_pixel_loop(seed: int, c: int, ignore: int | None,
                                             shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    p = rng.integers(0, c, size=shape)
    g = rng.integers(0, c, size=shape)
    if ignore is not None:
        g[rng.random(shape) < 0.3] = ignore
        if ignore >= c:
            p[g == ignore] = rng.integers(0, c)  # preds are free where gt is ignored
    m = confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), c, ignore)
    assert m.dtype == torch.int64 and m.shape == (c, c)
    assert np.array_equal(m.numpy(), _loop_confusion(p, g, c, ignore))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), images=st.integers(1, 3))
def test_ade20k_convention_matches_devkit(seed: int, n: int, images: int) -> None:
    rng = np.random.default_rng(seed)
    preds = [rng.integers(0, n + 1, size=(6, 7)) for _ in range(images)]  # 0 may be predicted
    labs = [rng.integers(0, n + 1, size=(6, 7)) for _ in range(images)]
    conf = sum(confusion_matrix(torch.from_numpy(p), torch.from_numpy(g), n + 1, ignore_index=0)
               for p, g in zip(preds, labs, strict=True))
    inter, union, acc = _ade_devkit(preds, labs, n)
    ious = class_iou(conf, ignore_index=0)
    assert np.isnan(ious[0].item())
    present = union > 0
    assert np.allclose(ious[1:].numpy()[present], inter[present] / union[present], atol=1e-12)
    assert np.isnan(ious[1:].numpy()[~present]).all()  # absent classes: no IoU
    assert miou(conf, ignore_index=0).item() == pytest.approx(np.mean(inter[present]
                                                                      / union[present]))
    assert pixel_accuracy(conf).item() == pytest.approx(acc, abs=1e-12)


def test_semantic_edge_cases() -> None:
    g = torch.tensor([[1, 1], [2, 2]])
    p = torch.tensor([[1, 2], [2, 2]])
    conf = confusion_matrix(p, g, 3)
    assert conf.tolist() == [[0, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert class_iou(conf)[1:].tolist() == pytest.approx([1 / 2, 2 / 3])
    assert np.isnan(class_iou(conf)[0].item())  # class 0 absent everywhere
    assert miou(conf).item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert pixel_accuracy(conf).item() == 0.75
    # a single label value everywhere, predicted right
    one = torch.full((3, 3), 4)
    assert miou(confusion_matrix(one, one, 5)).item() == 1.0
    # all pixels ignored: nothing to score
    ignored = confusion_matrix(p, torch.full((2, 2), 255), 3, ignore_index=255)
    assert ignored.sum().item() == 0
    assert np.isnan(pixel_accuracy(ignored).item()) and np.isnan(miou(ignored).item())
    # predictions are free (even out of range) where the ground truth is ignored
    free = confusion_matrix(torch.tensor([255, 1]), torch.tensor([255, 1]), 3, ignore_index=255)
    assert free.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    # empty prediction of the ADE 'other' label: every labelled pixel wrong
    conf0 = confusion_matrix(torch.zeros(2, 2, dtype=torch.long), g, 3, ignore_index=0)
    assert pixel_accuracy(conf0).item() == 0.0 and miou(conf0, ignore_index=0).item() == 0.0


@pytest.mark.parametrize("pred, gt, c, ignore, msg", [
    (torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), 3, None, "integer"),
    (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), 3, None,
     "shapes differ"),
    (torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 3), 3, None, "gt: label 3"),
    (torch.full((2, 2), -1), torch.zeros(2, 2, dtype=torch.long), 3, None, "pred: label -1"),
    (torch.full((2, 2), 255), torch.zeros(2, 2, dtype=torch.long), 3, 255, "pred: label 255"),
    (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 0, None,
     "num_classes"),
])
def test_semantic_bad_input(pred: torch.Tensor, gt: torch.Tensor, c: int, ignore: int | None,
                            msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        confusion_matrix(pred, gt, c, ignore)


def test_conf_must_be_square() -> None:
    with pytest.raises(ValueError, match="square"):
        miou(torch.zeros(3, 4))
