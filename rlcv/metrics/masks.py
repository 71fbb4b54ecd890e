"""Binary-mask overlap: IoU (Jaccard) and Dice (Sørensen), batched, and the pairwise
instance-overlap table the instance metrics are built on.

Definitions: IoU = |P ∩ G| / |P ∪ G|, Dice = 2|P ∩ G| / (|P| + |G|) over the last two
(spatial) dimensions. When both masks are empty the prediction is exactly right, so
`mask_iou` and `dice` define both as 1. (The CVPPP challenge's own Dice, used inside
`symmetric_best_dice` and `fg_bg_dice`, gives 0 for two empty masks; that convention is
kept there because it is the challenge's official code, see `cvppp.py`.)

`instance_overlaps` computes, for every image, the intersection of every predicted
instance with every ground-truth instance in one pass: one `bincount` over the pixel
label pairs for label maps, one matrix product for stacks of (possibly overlapping)
binary masks. No per-instance or per-pixel Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlcv.metrics._checks import as_tensor, binary_mask, is_integer, label_map, same_shape

DENSE_TABLE = 2**20
"""Label maps are counted over their whole id ranges (no `unique`) while the pair table
images x pred ids x gt ids stays below this size."""


def _check(pred: object, gt: object) -> tuple[torch.Tensor, torch.Tensor]:
    p, g = binary_mask(pred, "pred"), binary_mask(gt, "gt")
    same_shape(p, g, "mask")
    return p, g


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of binary masks `(..., H, W)` -> `(...)` float64; 1 when both are empty."""
    p, g = _check(pred, gt)
    inter = (p & g).flatten(-2).sum(-1).double()
    union = (p | g).flatten(-2).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Dice of binary masks `(..., H, W)` -> `(...)` float64; 1 when both are empty."""
    p, g = _check(pred, gt)
    inter = (p & g).flatten(-2).sum(-1).double()
    total = p.flatten(-2).sum(-1).double() + g.flatten(-2).sum(-1).double()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


@dataclass
class Overlaps:
    """Pairwise overlap of the instances of a batch of images.

    `inter[b, i, j]` is |P_i ∩ G_j| in image b; `area_p`, `area_g` the instance areas;
    `valid_p`, `valid_g` mark the slots that hold a real instance (padding, background
    and empty masks are invalid). `batch_shape` is the leading shape of the input.
    """

    inter: torch.Tensor
    area_p: torch.Tensor
    area_g: torch.Tensor
    valid_p: torch.Tensor
    valid_g: torch.Tensor
    batch_shape: torch.Size

    def iou(self) -> torch.Tensor:
        """Pairwise IoU `[B, P, G]` (0 where the union is empty)."""
        union = self.area_p[:, :, None] + self.area_g[:, None, :] - self.inter
        return torch.where(union > 0, self.inter / union.clamp(min=1), torch.zeros_like(union))

    def dice(self) -> torch.Tensor:
        """Pairwise Dice `[B, P, G]` (0 where both masks are empty)."""
        total = self.area_p[:, :, None] + self.area_g[:, None, :]
        return torch.where(total > 0, 2 * self.inter / total.clamp(min=1),
                           torch.zeros_like(total))


def bincount(idx: torch.Tensor, minlength: int = 0,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """`torch.bincount`, computed by NumPy for CPU tensors.

    NumPy's is single-threaded and at least as fast; torch's CPU kernel goes through
    the thread pool, which stalls badly when other processes hold the cores.
    """
    if idx.device.type != "cpu":
        return torch.bincount(idx, weights=weights, minlength=minlength)
    w = None if weights is None else weights.double().numpy()
    return torch.from_numpy(np.bincount(idx.numpy(), weights=w, minlength=minlength))


def pair_counts(p_idx: torch.Tensor, g_idx: torch.Tensor, mp: int, mg: int) -> torch.Tensor:
    """Joint histogram `[B, mp, mg]` of per-pixel indices `p_idx`, `g_idx` `[B, HW]`."""
    b = p_idx.shape[0]
    offset = torch.arange(b, device=p_idx.device)[:, None] * (mp * mg)
    flat = (offset + p_idx * mg + g_idx).reshape(-1)
    return bincount(flat, minlength=b * mp * mg).view(b, mp, mg)


def _span(lab: torch.Tensor) -> tuple[int, int]:
    """Lowest id and width of the id range of label maps."""
    if lab.numel() == 0:
        return 0, 1
    lo, hi = (int(v) for v in torch.aminmax(lab))
    return lo, hi - lo + 1


def _compact(lab: torch.Tensor, dense: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image compact instance indices of label maps `[B, HW]`.

    Returns the index map `[B, HW]`, the id of every slot `[B, M]` and which slots exist.
    Dense when allowed and the id range is narrow, through `unique` otherwise.
    """
    b = lab.shape[0]
    lo, span = _span(lab)
    if dense:
        ids = torch.arange(lo, lo + span, device=lab.device).expand(b, span)
        return lab - lo, ids, torch.ones(b, span, dtype=torch.bool, device=lab.device)
    key = torch.arange(b, device=lab.device)[:, None] * span + (lab - lo)
    ukey, inv = torch.unique(key, sorted=True, return_inverse=True)
    img = ukey // span
    cnt = bincount(img, minlength=b)
    start = torch.cumsum(cnt, 0) - cnt
    rank = torch.arange(ukey.numel(), device=lab.device) - start[img]
    m = int(cnt.max())
    ids = torch.zeros(b, m, dtype=torch.long, device=lab.device)
    exists = torch.zeros(b, m, dtype=torch.bool, device=lab.device)
    ids[img, rank] = ukey % span + lo
    exists[img, rank] = True
    return rank[inv], ids, exists


def _as_instances(x: object, name: str) -> tuple[str, torch.Tensor]:
    """Classify an instance input: integer label map or boolean stack of masks."""
    t = as_tensor(x, name)
    if t.dtype == torch.bool:
        if t.dim() < 3:
            raise ValueError(f"{name}: a boolean stack of instance masks needs shape "
                             f"(..., N, H, W), got {tuple(t.shape)}")
        return "stack", t
    if not is_integer(t):
        raise ValueError(f"{name}: instances must be an integer label map (..., H, W) or a "
                         f"boolean mask stack (..., N, H, W), got {t.dtype}")
    return "labels", label_map(t, name)


def _labels_to_stack(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label maps `[B, HW]` -> one-hot stacks `[B, M, HW]` and slot validity (id != 0)."""
    idx, ids, exists = _compact(lab, dense=False)
    stack = torch.zeros(lab.shape[0], ids.shape[1], lab.shape[1], dtype=torch.bool,
                        device=lab.device)
    stack.scatter_(1, idx[:, None, :], True)
    return stack, exists & (ids != 0)


def instance_overlaps(pred: object, gt: object) -> Overlaps:
    """Pairwise instance overlaps of `pred` and `gt`, batched.

    Each input is either an integer label map `(..., H, W)` whose non-zero ids are the
    instances (0 = background; ids need not be consecutive), or a boolean stack
    `(..., N, H, W)` of possibly overlapping instance masks (empty masks = padding).
    The leading `...` of the two inputs must agree.
    """
    kp, p = _as_instances(pred, "pred")
    kg, g = _as_instances(gt, "gt")
    hw_p = p.shape[-2:]
    if hw_p != g.shape[-2:]:
        raise ValueError(f"pred and gt image sizes differ: {tuple(hw_p)} vs {tuple(g.shape[-2:])}")
    lead_p = p.shape[:-3] if kp == "stack" else p.shape[:-2]
    lead_g = g.shape[:-3] if kg == "stack" else g.shape[:-2]
    if lead_p != lead_g:
        raise ValueError(f"pred and gt batch shapes differ: {tuple(lead_p)} vs {tuple(lead_g)}")
    b = int(torch.Size(lead_p).numel())
    hw = int(hw_p.numel())
    if kp == kg == "labels":
        pl, gl = p.reshape(b, hw), g.reshape(b, hw)
        dense = b * _span(pl)[1] * _span(gl)[1] <= DENSE_TABLE
        pi, pid, pex = _compact(pl, dense)
        gi, gid, gex = _compact(gl, dense)
        inter = pair_counts(pi, gi, pid.shape[1], gid.shape[1]).double()
        area_p, area_g = inter.sum(2), inter.sum(1)
        valid_p = pex & (pid != 0) & (area_p > 0)
        valid_g = gex & (gid != 0) & (area_g > 0)
        return Overlaps(inter, area_p, area_g, valid_p, valid_g, torch.Size(lead_p))
    if kp == "stack":
        ps, vp = p.reshape(b, p.shape[-3], hw), None
    else:
        ps, vp = _labels_to_stack(p.reshape(b, hw))
    if kg == "stack":
        gs, vg = g.reshape(b, g.shape[-3], hw), None
    else:
        gs, vg = _labels_to_stack(g.reshape(b, hw))
    # float32 sums of 0/1 products are exact below 2**24 pixels
    dt = torch.float32 if ps.shape[-1] < 2**24 else torch.float64
    inter = torch.bmm(ps.to(dt), gs.to(dt).transpose(1, 2)).double()
    area_p, area_g = ps.sum(-1).double(), gs.sum(-1).double()
    valid_p = (area_p > 0) if vp is None else vp & (area_p > 0)
    valid_g = (area_g > 0) if vg is None else vg & (area_g > 0)
    return Overlaps(inter, area_p, area_g, valid_p, valid_g, torch.Size(lead_p))


def to_ground_truth(pred: torch.Tensor, size, box=None) -> torch.Tensor:
    """Predictions `(..., h, w)` (label maps or binary masks, any dtype) made at a working
    resolution -> `(..., H, W)` at the ground truth's size `size` = (H, W), by nearest
    neighbour (pixel-centre sampling): the benchmarks score predictions at the ground
    truth's resolution, never the ground truth resized to the prediction.

    `box` = (top, left, height, width) is the region of the ground truth the prediction
    covers (e.g. the centre crop a dataset was staged from); pixels outside it are 0
    (background). Default: the whole image.
    """
    p = as_tensor(pred, "pred")
    if p.dim() < 2:
        raise ValueError(f"pred: expected (..., h, w), got shape {tuple(p.shape)}")
    big_h, big_w = (int(v) for v in size)
    top, left, h, w = (int(v) for v in box) if box is not None else (0, 0, big_h, big_w)
    if min(top, left) < 0 or h < 1 or w < 1 or top + h > big_h or left + w > big_w:
        raise ValueError(f"box {(top, left, h, w)} does not lie inside the ground truth's "
                         f"size {(big_h, big_w)}")
    ph, pw = p.shape[-2:]
    dev = p.device
    rows = ((torch.arange(h, device=dev) + 0.5) * ph / h).long().clamp(max=ph - 1)
    cols = ((torch.arange(w, device=dev) + 0.5) * pw / w).long().clamp(max=pw - 1)
    out = p.new_zeros(*p.shape[:-2], big_h, big_w)
    out[..., top:top + h, left:left + w] = p[..., rows[:, None], cols[None, :]]
    return out
