"""Instance-segmentation coverage and false-positive/negative rates (KITTI car instances).

Reference followed: Ren & Zemel, "End-to-End Instance Segmentation with Recurrent
Attention", CVPR 2017, Section 5 (after Silberman et al. 2014 and Zhang et al. 2016),
and its public evaluation code (`analysis.py`: `f_coverage`, `f_fp`, `f_fn`), as
reported by ACIS (Araslanov et al. 2019, Table 4):

- MUCov = (1/|G|) Σ_{g ∈ G} max_{s ∈ S} IoU(g, s): per ground-truth instance the best
  IoU over all predictions, averaged over the instances of the image.
- MWCov = Σ_{g ∈ G} (|g| / Σ_{g'} |g'|) max_{s ∈ S} IoU(g, s): the same weighted by
  instance area.
- AvgFP = fraction of the (non-empty) predictions whose IoU with every ground-truth
  instance is exactly 0; AvgFN = fraction of ground-truth instances whose IoU with every
  prediction is exactly 0.

All are computed per image; the dataset value is the mean over images (take `.mean()`).
Conventions: an image without ground truth has MWCov = MUCov = 0 and AvgFN = 0 (the
reference code divides by max(|G|, 1)); an image without predictions has AvgFP = 0.
Ren & Zemel's code reports AvgFP/AvgFN as counts per image, while the ACIS paper and the
metric's definition speak of fractions; `fractions=False` gives the counts.

Instances are given as integer label maps `(..., H, W)` (0 = background, every other
id present is an instance) or as boolean stacks `(..., N, H, W)` of possibly overlapping
masks (empty masks are padding). All pairwise IoUs come from `instance_overlaps`.
"""

from __future__ import annotations

import torch

from rlcv.metrics.masks import instance_overlaps


def coverage(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ren & Zemel (MWCov, MUCov) per image, each float64 of shape `(...)` in [0, 1].

    `pred`, `gt`: integer label maps `(..., H, W)` with 0 = background, or boolean
    instance stacks `(..., N, H, W)`.
    """
    ov = instance_overlaps(pred, gt)
    iou = ov.iou() * ov.valid_p[:, :, None]
    best = iou.amax(1) if iou.shape[1] else torch.zeros_like(ov.area_g)
    best = best * ov.valid_g
    n_g = ov.valid_g.sum(1).double()
    area = ov.area_g * ov.valid_g
    mucov = best.sum(1) / n_g.clamp(min=1)
    total = area.sum(1)
    mwcov = torch.where(total > 0, (best * area).sum(1) / total.clamp(min=1),
                        torch.zeros_like(total))
    return mwcov.reshape(ov.batch_shape), mucov.reshape(ov.batch_shape)


def false_positive_negative(pred: torch.Tensor, gt: torch.Tensor, fractions: bool = True
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ren & Zemel (AvgFP, AvgFN) per image, float64 of shape `(...)`.

    AvgFP: non-empty predictions overlapping no ground-truth instance (IoU exactly 0),
    as a fraction of the non-empty predictions; AvgFN: ground-truth instances
    overlapping no prediction, as a fraction of the instances. `fractions=False`
    returns the counts per image instead (what the reference code sums).
    """
    ov = instance_overlaps(pred, gt)
    hit = (ov.inter > 0) & ov.valid_p[:, :, None] & ov.valid_g[:, None, :]
    fp = (ov.valid_p & ~hit.any(2)).sum(1).double()
    fn = (ov.valid_g & ~hit.any(1)).sum(1).double()
    if fractions:
        fp = fp / ov.valid_p.sum(1).clamp(min=1)
        fn = fn / ov.valid_g.sum(1).clamp(min=1)
    return fp.reshape(ov.batch_shape), fn.reshape(ov.batch_shape)
