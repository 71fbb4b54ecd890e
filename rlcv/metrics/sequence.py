"""Per-timestep quality of sequential instance predictions (ACIS Fig. 3).

Reference followed: Araslanov et al., "Actor-Critic Instance Segmentation", CVPR 2019,
Section 5 and Fig. 3 ("Dice score ... averaged for each timestep"). The model predicts
one instance mask per step; the prediction of step t is scored by its Dice with the
ground-truth instance it is matched to, where the matching is the one-to-one assignment
maximising the total Dice over the whole sequence (the Hungarian matching of the ACIS
reward, Eq. 4, with F = Dice), solved by `scipy.optimize.linear_sum_assignment`.

Conventions: a step left unmatched (more predictions than instances) scores 0; an empty
prediction has Dice 0 with every instance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.optimize import linear_sum_assignment

from rlcv.metrics._checks import as_tensor
from rlcv.metrics.masks import instance_overlaps


def dice_per_timestep(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Dice of the prediction of each step with its matched instance, float64 `[T]`.

    `pred`: boolean stack `[T, H, W]` of one image's predicted masks in prediction
    order. `gt`: the image's instances, an integer label map `[H, W]` (0 = background)
    or a boolean stack `[N, H, W]`.
    """
    p = as_tensor(pred, "pred")
    if p.dtype != torch.bool or p.dim() != 3:
        raise ValueError(f"pred: expected a boolean stack [T, H, W] of predicted masks, "
                         f"got {p.dtype} of shape {tuple(p.shape)}")
    ov = instance_overlaps(p, gt)
    if ov.batch_shape != torch.Size([]):
        raise ValueError("gt: expected one image, a label map [H, W] or a stack [N, H, W]")
    d = ov.dice()[0][:, ov.valid_g[0]]
    out = torch.zeros(d.shape[0], dtype=torch.float64)
    if d.numel():
        rows, cols = linear_sum_assignment(d.cpu().numpy(), maximize=True)
        rows_t, cols_t = torch.as_tensor(rows), torch.as_tensor(cols)
        out[rows_t] = d.cpu()[rows_t, cols_t]
    return out


def average_per_timestep(values: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over images of per-step values of varying length (Fig. 3's bars).

    Returns the mean `[T_max]` over the images that have a step t, and that count.
    """
    if not values:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    vs = [as_tensor(v, "values").double().reshape(-1) for v in values]
    t_max = max(v.numel() for v in vs)
    padded = torch.nn.utils.rnn.pad_sequence(vs, batch_first=True) if t_max else \
        torch.zeros(len(vs), 0, dtype=torch.float64)
    lengths = torch.tensor([v.numel() for v in vs])
    present = torch.arange(t_max)[None, :] < lengths[:, None]
    count = present.sum(0)
    mean = (padded * present).sum(0) / count.clamp(min=1)
    return mean, count
