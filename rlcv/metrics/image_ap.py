"""COCO AP of one image and one class, batched over sampled detection subsets.

Reference followed: pycocotools `COCOeval` (bbox, v2.0.x: `computeIoU`, `evaluateImg`,
`accumulate`, `summarize` stats[0]) applied to a single image with a single category,
the reward of the policy-gradient detector (Rao et al. 2018, Section 3, Eq. 5: r_I =
mAP_I of the sampled detections of image I, COCO's 0.50:0.95 variant). The mAP of an
image over several classes is, as in COCOeval, the mean of `image_ap` over the classes
that have ground truth in it (classes with detections only are left out, -1 entries).
Reproduced exactly:

- IoU thresholds `np.linspace(.5, .95, 10)`, recall thresholds `np.linspace(0, 1, 101)`,
  area range 'all' ([0, 1e10]), maxDets 100: only the 100 highest-scoring detections
  of a set count;
- detections sorted by descending score with a stable sort (pycocotools' mergesort on
  -score): ties keep their input order;
- greedy matching in that order: a detection takes, among the still unmatched ground
  truths with IoU >= t, the one of highest IoU (ties: the later ground truth, as
  pycocotools' `>=` scan does);
- box IoU in float64 with `maskApi.c`'s formula on (x, y, w, h) boxes obtained as
  (x1, y1, x2 - x1, y2 - y1);
- precision made monotone from the right, sampled at the first detection reaching each
  recall threshold (`searchsorted(..., 'left')`), 0 beyond the last recall reached;
  AP = mean over the 10 x 101 samples; precision = tp / (tp + fp + np.spacing(1)).

No ground truth: pycocotools has no AP for the image and reports -1; `image_ap` returns
`empty_gt_value`, -1 by default for parity (pass e.g. 0.0 for a reward). Ground truths
are non-crowd; boxes with area above 1e10 (outside 'all') are refused.

Batching: everything is tensor ops over K subsets x 10 thresholds x N detections, except
the greedy matching, which is sequential over detections (each match removes a ground
truth). That loop runs only over the detections with IoU >= 0.5 with some ground truth
(the others can never match), each step a few array ops over all K x 10 x G at once.
The recall sampling uses no float search: see the comment in `image_ap`.
"""

from __future__ import annotations

import numpy as np
import torch

from rlcv.metrics._checks import as_tensor, real

IOU_THRS = torch.from_numpy(np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1))
REC_THRS = torch.from_numpy(np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1))
MAX_DETS = 100
AREA_MAX = 1e5**2


def box_iou_coco(dt: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU `[N, G]` of xyxy boxes, float64, with pycocotools' bbox formula."""
    dx, dy, dw, dh = dt[:, 0], dt[:, 1], dt[:, 2] - dt[:, 0], dt[:, 3] - dt[:, 1]
    gx, gy, gw, gh = gt[:, 0], gt[:, 1], gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    w = torch.minimum((dw + dx)[:, None], (gw + gx)[None]) - torch.maximum(dx[:, None], gx[None])
    h = torch.minimum((dh + dy)[:, None], (gh + gy)[None]) - torch.maximum(dy[:, None], gy[None])
    inter = w * h
    union = (dw * dh)[:, None] + (gw * gh)[None] - inter
    iou = inter / union
    return torch.where((w > 0) & (h > 0), iou, torch.zeros_like(iou))


def _greedy_match(ok: torch.Tensor, valid: torch.Tensor, prio: torch.Tensor) -> np.ndarray:
    """pycocotools' greedy matching for K sets x T thresholds at once.

    `ok` `[D, T, G]`: IoU >= threshold; `valid` `[K, D]`: detection in set; `prio`
    `[D, G]`: 1 + the gt's rank in the detection's preference (IoU, then later index).
    Returns whether each detection matched, bool `[K, T, D]`. The loop over detections is
    inherent (each match removes a ground truth); its body works on `[K, T, G]` arrays
    in NumPy, whose per-call overhead is a fraction of torch's at this size.
    """
    okv = ok.cpu().numpy()[:, None] & valid.T.cpu().numpy()[:, :, None, None]  # [D, K, T, G]
    pr = prio.to(torch.int32).cpu().numpy()
    d, k, t, g = okv.shape
    avail = np.ones((k, t, g), dtype=bool)
    hit = np.zeros((d, k, t), dtype=bool)
    for i in range(d):
        sc = (avail & okv[i]) * pr[i]
        best = sc.max(2, initial=0)
        hit[i] = best > 0
        avail &= (sc != best[:, :, None]) | (sc == 0)
    return hit.transpose(1, 2, 0)


def _boxes(x: object, name: str) -> torch.Tensor:
    b = real(x, name, shape_tail=(None, 4), ndim=2)
    wh = b[:, 2:] - b[:, :2]
    if bool((wh < 0).any()):
        raise ValueError(f"{name}: boxes must be xyxy with x2 >= x1 and y2 >= y1")
    if bool((wh[:, 0] * wh[:, 1] > AREA_MAX).any()):
        raise ValueError(f"{name}: box area above 1e10 lies outside COCO's 'all' area range")
    return b


def image_ap(boxes: torch.Tensor, scores: torch.Tensor, gt_boxes: torch.Tensor,
             select: torch.Tensor | None = None, empty_gt_value: float = -1.0
             ) -> torch.Tensor:
    """COCO AP@[.5:.95] (maxDets 100) of one image, one class; pycocotools-exact.

    `boxes` `[N, 4]` xyxy detections with `scores` `[N]`; `gt_boxes` `[G, 4]` xyxy.
    `select` bool `[K, N]` evaluates K detection subsets at once (row k = the
    detections in set k); without it the single set of all N detections is scored.
    Returns float64 `[K]` with `select`, a 0-d tensor without.
    """
    dt, gt = _boxes(boxes, "boxes"), _boxes(gt_boxes, "gt_boxes")
    sc = real(scores, "scores", ndim=1)
    n = dt.shape[0]
    if sc.shape[0] != n:
        raise ValueError(f"scores: expected {n} scores for {n} boxes, got {sc.shape[0]}")
    if select is None:
        sel = torch.ones(1, n, dtype=torch.bool)
    else:
        sel = as_tensor(select, "select")
        if sel.dtype != torch.bool or sel.dim() != 2 or sel.shape[1] != n:
            raise ValueError(f"select: expected a bool [K, {n}] mask, "
                             f"got {sel.dtype} of shape {tuple(sel.shape)}")
    dev = dt.device
    sel = sel.to(dev)
    k, g = sel.shape[0], gt.shape[0]
    if g == 0:
        out = torch.full((k,), float(empty_gt_value), dtype=torch.float64, device=dev)
        return out if select is not None else out[0]
    if n == 0:
        out = torch.zeros(k, dtype=torch.float64, device=dev)
        return out if select is not None else out[0]
    # stable descending order (pycocotools: argsort(-score, kind='mergesort'))
    order = torch.sort(-sc, stable=True).indices
    # (index_select/index_copy_: advanced indexing is far slower on small tensors)
    dt, sel = dt.index_select(0, order), sel.index_select(1, order)
    valid = sel & (torch.cumsum(sel.long(), 1) <= MAX_DETS)
    thr = IOU_THRS.to(dev).clamp(max=1 - 1e-10)
    t = thr.shape[0]
    iou = box_iou_coco(dt, gt)  # [N, G]
    # priority of each gt for each detection: higher IoU first, ties -> later gt
    rank = torch.empty((n, g), dtype=torch.long, device=dev)
    rank.scatter_(1, torch.sort(iou, dim=1, stable=True).indices,
                  torch.arange(g, device=dev).expand(n, g).contiguous())
    ok = iou[:, None, :] >= thr[None, :, None]  # [N, T, G]
    cand = torch.nonzero(ok[:, 0].any(1) & valid.any(0)).flatten()
    tp = torch.zeros((k, t, n), dtype=torch.bool, device=dev)
    if cand.numel():
        hits = _greedy_match(ok.index_select(0, cand), valid.index_select(1, cand),
                             rank.index_select(0, cand) + 1)
        tp.index_copy_(2, cand, torch.from_numpy(hits).to(dev))
    fp = valid[:, None, :] & ~tp
    tps = torch.cumsum(tp.double(), 2)
    fps = torch.cumsum(fp.double(), 2)
    pr = tps / (fps + tps + float(np.spacing(1)))
    env = torch.flip(torch.cummax(torch.flip(pr, [2]), 2).values, [2])  # monotone from right
    # searchsorted(rc, recThrs, 'left') without a float search: rc = tps / g takes the
    # values j / g only, so the first index with rc >= r is where tps first reaches
    # jmin(r) = min{j : j / g >= r} (the same float64 quotients pycocotools compares)
    rec = REC_THRS.to(dev)
    jmin = (torch.arange(g + 1, dtype=torch.float64, device=dev)[None, :] / g
            < rec[:, None]).sum(1)
    first = torch.full((k, t, g + 2), n, dtype=torch.long, device=dev)
    slot = torch.where(tp, tps.long(), g + 1)  # non-TP positions land in a dropped slot
    first.scatter_(2, slot, torch.arange(n, device=dev).expand(k, t, n).contiguous())
    first[:, :, 0] = 0
    pos = first.index_select(2, jmin)  # [K, T, R]
    q = torch.gather(env, 2, pos.clamp(max=n - 1))
    q = torch.where(pos < n, q, torch.zeros_like(q))
    out = q.mean((1, 2))
    return out if select is not None else out[0]
