"""CVPPP leaf-segmentation challenge metrics: Symmetric Best Dice, foreground Dice, DiC.

Reference followed: the challenge's official evaluation code (Scharr et al., "Leaf
segmentation in plant phenotyping: a collation study", MVA 2016; the LSC/CVPPP
`evaluation` scripts `BestDice`, `SymmetricBestDice`, `FGBGDice`, `DiffFGLabels`), as
used by ACIS (Araslanov et al. 2019, Tables 1-3). Its definitions, kept exactly:

- In each label image the lowest label value is the background; every id from min+1 to
  max is an instance, including ids that do not occur (they are empty masks).
- Dice(a, b) = 2|a ∩ b| / (|a| + |b|), and 0 when both masks are empty.
- BestDice(P, G) = (1 / (maxP - minP)) Σ_{i=minP+1..maxP} max_{j=minG+1..maxG} Dice(P_i, G_j),
  0 when P holds a single label value (no foreground) and the inner max is 0 when G has
  no foreground.
- SBD = min(BestDice(P, G), BestDice(G, P)).
- FGBGDice = Dice of the foregrounds (label != min), 0 when both are empty.
- DiC = (maxP - minP) - (maxG - minG), the difference of foreground label counts; the
  tables report |DiC|, its absolute value, averaged over images.

All functions take integer label maps `(..., H, W)` and return one value per image,
shape `(...)`. The Dice of every pred/gt label pair comes from one `bincount` over the
label pairs of the pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlcv.metrics._checks import label_map, same_shape
from rlcv.metrics.masks import pair_counts

MAX_TABLE = 2**27
"""Largest pred-id x gt-id x images table built before refusing (memory guard)."""


def _flat(pred: object, gt: object) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
    p, g = label_map(pred, "pred"), label_map(gt, "gt")
    same_shape(p, g)
    if p.shape[-1] * p.shape[-2] == 0:
        raise ValueError(f"pred: images must not be empty, got shape {tuple(p.shape)}")
    lead = p.shape[:-2]
    b = int(torch.Size(lead).numel())
    return p.reshape(b, -1), g.reshape(b, -1), lead


def _dice_table(p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor]:
    """Dice of every (pred id, gt id) pair `[B, Sp, Sg]`, offsets from each image's min.

    Also returns the label spans `maxP - minP` and `maxG - minG` per image.
    """
    pmin, gmin = p.amin(1), g.amin(1)
    sp, sg = p.amax(1) - pmin, g.amax(1) - gmin
    mp, mg = int(sp.max()) + 1, int(sg.max()) + 1
    if p.shape[0] * mp * mg > MAX_TABLE:
        raise ValueError(f"label ids span too wide a range ({mp} pred x {mg} gt values); "
                         "CVPPP counts every id from min+1 to max, relabel consecutively")
    counts = pair_counts(p - pmin[:, None], g - gmin[:, None], mp, mg).double()
    total = counts.sum(2)[:, :, None] + counts.sum(1)[:, None, :]
    d = torch.where(total > 0, 2 * counts / total.clamp(min=1), torch.zeros_like(total))
    return d, sp, sg


def _best(d: torch.Tensor, s_in: torch.Tensor) -> torch.Tensor:
    """BestDice from a Dice table whose rows are the evaluated label image."""
    # drop the background row/column; the padded zero column keeps max() defined
    fg = F.pad(d[:, 1:, 1:], (0, 1))
    score = fg.amax(2).sum(1)
    return torch.where(s_in > 0, score / s_in.clamp(min=1).double(), torch.zeros_like(score))


def best_dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CVPPP BestDice(pred, gt) of label maps `(..., H, W)` -> `(...)` float64 (not symmetric)."""
    p, g, lead = _flat(pred, gt)
    d, sp, _ = _dice_table(p, g)
    return _best(d, sp).reshape(lead)


def symmetric_best_dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CVPPP Symmetric Best Dice of label maps `(..., H, W)` -> `(...)` float64 in [0, 1].

    Background is each image's lowest label; every id up to the max counts (missing ids
    are empty masks). An image whose prediction or ground truth has no foreground
    scores 0, as in the challenge code.
    """
    p, g, lead = _flat(pred, gt)
    d, sp, sg = _dice_table(p, g)
    sbd = torch.minimum(_best(d, sp), _best(d.transpose(1, 2), sg))
    return sbd.reshape(lead)


def fg_bg_dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CVPPP foreground/background Dice of label maps `(..., H, W)` -> `(...)` float64.

    Foreground = label different from the image's lowest label; 0 when both
    foregrounds are empty (challenge convention).
    """
    p, g, lead = _flat(pred, gt)
    fp, fg = p != p.amin(1, keepdim=True), g != g.amin(1, keepdim=True)
    inter = (fp & fg).sum(1).double()
    total = fp.sum(1).double() + fg.sum(1).double()
    out = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.zeros_like(total))
    return out.reshape(lead)


def diff_fg_labels(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CVPPP DiC: (maxP - minP) - (maxG - minG) per image, int64 `(...)`; |DiC| = `.abs()`."""
    p, g, lead = _flat(pred, gt)
    return ((p.amax(1) - p.amin(1)) - (g.amax(1) - g.amin(1))).reshape(lead)
