"""Semantic segmentation: dataset-level confusion matrix, per-class IoU, mIoU, pixel accuracy.

Reference followed: the ADE20K scene-parsing benchmark (Zhou et al., CVPR 2017; MIT
`sceneparsing` devkit, `intersectionAndUnion` and `pixelAccuracy`), as reported by
CiSS-Net (Zhou et al. 2019, Tables 1, 4, 6). Scores are dataset-level: the confusion
matrices of all images are added (accumulate with `+`) and the scores are computed once
from the sum, never averaged per image.

ADE20K convention: ground-truth label 0 ("other"/unlabelled) is excluded from the
evaluation and the classes are 1..150. With labels kept as stored, call
`confusion_matrix(pred, gt, num_classes=151, ignore_index=0)`: pixels whose ground
truth is 0 are dropped (as the devkit's `imPred * (imLab > 0)` does), a prediction of 0
on a labelled pixel still counts as an error for that pixel's class, and
`miou(conf, ignore_index=0)` averages classes 1..150 only. This gives the devkit's
per-class IoU and pixel accuracy exactly.

One deliberate difference: a class absent from both the ground truth and the
predictions of the whole evaluated set has no IoU (NaN) and is left out of the mean,
where the devkit's `I / (U + eps)` would count it as 0. On the real validation set every
class occurs, so the two agree; on small synthetic sets ours does not punish a method
for classes that were never there.
"""

from __future__ import annotations

import torch

from rlcv.metrics._checks import as_tensor, label_map, same_shape
from rlcv.metrics.masks import bincount


def _range_error(name: str, t: torch.Tensor, n: int, ignore_index: int | None) -> None:
    if t.numel() == 0:
        return
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        extra = f" (ignore_index={ignore_index})" if ignore_index is not None else ""
        raise ValueError(f"{name}: label {bad} outside [0, {n - 1}] for num_classes={n}{extra}")


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Confusion matrix int64 `[C, C]` (rows = ground truth, columns = prediction).

    `pred`, `gt`: integer label maps of the same shape (any batch shape). Pixels whose
    ground truth equals `ignore_index` are dropped; every other label must lie in
    `[0, num_classes)`. Add the matrices of several images for dataset-level scores.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes: must be a positive int, got {num_classes!r}")
    p, g = label_map(pred, "pred", min_dim=1), label_map(gt, "gt", min_dim=1)
    same_shape(p, g)
    p, g = p.reshape(-1), g.reshape(-1)
    c = num_classes
    m = _fast_confusion(p, g, c, ignore_index)
    if m is not None:
        return m
    # slow path: name the offending label, or predictions outside [0, C) on ignored pixels
    if ignore_index is None:
        _range_error("gt", g, c, None)
        _range_error("pred", p, c, None)
    keep = g != ignore_index
    _range_error("gt", torch.where(keep, g, 0), c, ignore_index)
    _range_error("pred", torch.where(keep, p, 0), c, ignore_index)
    idx = torch.where(keep, g * c + p, c * c)  # ignored pixels go to a dropped extra bin
    return bincount(idx, minlength=c * c + 1)[: c * c].view(c, c)


def _fast_confusion(p: torch.Tensor, g: torch.Tensor, c: int,
                    ignore_index: int | None) -> torch.Tensor | None:
    """Confusion matrix with one fused index `p + c * g` and one bincount, or None when
    the labels need the slow, validating path. The bincount itself validates the ground
    truth: a negative label makes it raise, a label >= c makes the table too long."""
    if p.numel() == 0:
        return torch.zeros(c, c, dtype=torch.long, device=p.device)
    pmin, pmax = (int(v) for v in torch.aminmax(p))
    if pmin < 0 or pmax >= c:
        return None
    try:
        counts = bincount(torch.add(p, g, alpha=c), minlength=c * c)
    except (ValueError, RuntimeError):
        return None
    if counts.shape[0] > c * c:  # only acceptable as the row of an ignore_index >= c
        extra = counts[c * c:]
        if ignore_index is None or ignore_index < c:
            return None
        lo, hi = (ignore_index - c) * c, (ignore_index - c + 1) * c
        if bool(extra[:lo].any()) or bool(extra[hi:].any()):
            return None
        counts = counts[: c * c]
    m = counts.view(c, c)
    if ignore_index is not None and 0 <= ignore_index < c:
        m[ignore_index] = 0  # dropping ignored ground truth = emptying its row
    return m


def _conf(conf: object) -> torch.Tensor:
    t = as_tensor(conf, "conf")
    if t.dim() != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"conf: expected a square [C, C] matrix, got shape {tuple(t.shape)}")
    return t.double()


def class_iou(conf: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Per-class IoU float64 `[C]` from a confusion matrix: TP / (TP + FP + FN).

    NaN for a class with an empty union and for `ignore_index` (when it is a class index).
    """
    m = _conf(conf)
    tp = m.diagonal()
    union = m.sum(0) + m.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    if ignore_index is not None and 0 <= ignore_index < m.shape[0]:
        iou[ignore_index] = float("nan")
    return iou


def miou(conf: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """Mean IoU (0-d float64) over the classes that have an IoU (see `class_iou`)."""
    return torch.nanmean(class_iou(conf, ignore_index))


def pixel_accuracy(conf: torch.Tensor) -> torch.Tensor:
    """Pixel accuracy (0-d float64): correct / evaluated pixels; NaN when all were ignored."""
    m = _conf(conf)
    total = m.sum()
    if total == 0:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return m.diagonal().sum() / total
