"""The two comparisons of the policy-gradient detector's Table 1 (Rao et al. 2018, Section
4.2) that change selection rather than the objective's form:

- soft-NMS (Bodla et al. 2017, "Improving object detection with one line of code",
  Algorithm 1 and Eqs. 2-3): instead of deleting every box that overlaps the selected
  box M by IoU >= N_t, decay its score: linear s_i <- s_i (1 - iou(M, b_i)) if
  iou >= N_t (else unchanged), Gaussian s_i <- s_i exp(-iou(M, b_i)^2 / sigma); boxes
  whose score falls below a small threshold are dropped at the end;
- OHEM (Shrivastava et al. 2016, "Training region-based object detectors with online
  hard example mining", Section 4.1): rank all RoIs of an image by their current loss,
  remove near-duplicates with NMS at IoU 0.7 on that ranking (overlapping RoIs have
  correlated losses) and keep the B hardest for the backward pass.

Both work per image on tensors; soft-NMS is per class through the usual coordinate
offset (boxes of different classes never overlap), so one pass handles all classes.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou, nms


def _offset_by_class(boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # shift each class to its own region so IoU across classes is 0 (as batched_nms does)
    span = boxes.max() - boxes.min() + 1 if boxes.numel() else boxes.new_tensor(1.0)
    return boxes + (labels.to(boxes) * span)[:, None]


def soft_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
             method: str = "gaussian", sigma: float = 0.5, iou_threshold: float = 0.3,
             score_threshold: float = 0.001, max_dets: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS per class: indices of the kept boxes in selection order and their decayed
    scores (selection order is descending decayed score, since scores only decrease).

    `method` "gaussian" (weight exp(-iou^2 / sigma)) or "linear" (weight 1 - iou when
    iou >= `iou_threshold`, else 1); boxes below `score_threshold` are dropped; at most
    `max_dets` boxes are selected (all by default).
    """
    if method not in ("gaussian", "linear"):
        raise ValueError(f"method: expected 'gaussian' or 'linear', got {method!r}")
    n = boxes.shape[0]
    limit = n if max_dets is None else min(n, max_dets)
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device), scores.new_zeros(0)
    iou = box_iou(*(2 * [_offset_by_class(boxes.float(), labels)]))
    if method == "gaussian":
        decay = torch.exp(-(iou**2) / sigma)
    else:
        decay = torch.where(iou >= iou_threshold, 1 - iou, torch.ones_like(iou))
    s = scores.clone().float()
    alive = torch.ones(n, dtype=torch.bool, device=scores.device)
    keep, kept = [], []
    for _ in range(limit):
        cur = torch.where(alive, s, torch.full_like(s, -1.0))
        m = int(cur.argmax())
        if cur[m] < score_threshold:
            break
        keep.append(m)
        kept.append(s[m].item())
        alive[m] = False
        s = s * decay[m]
    return (torch.tensor(keep, dtype=torch.long, device=scores.device),
            torch.tensor(kept, dtype=scores.dtype, device=scores.device))


def ohem_select(rois: torch.Tensor, losses: torch.Tensor, batch: int,
                iou_threshold: float = 0.7) -> torch.Tensor:
    """Indices of the `batch` hardest RoIs of one image: NMS at `iou_threshold` on the
    RoIs ranked by `losses` (detached), then the top `batch`, hardest first."""
    keep = nms(rois.detach().float(), losses.detach().float(), iou_threshold)
    return keep[:batch]
