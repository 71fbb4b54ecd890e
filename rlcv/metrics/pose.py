"""MPII human pose: single-person PCKh and the multi-person AP protocol.

References followed (the official MPII evaluation toolkit, MATLAB):
- PCKh: Andriluka et al., CVPR 2014; `evaluatePCKh.m`, `getDistPCKh.m`, `computePCK.m`.
  A joint is correct when ||pred - gt|| <= thr * head size, head size = 0.6 x the
  diagonal of the person's head box (`util_get_head_size`, SC_BIAS = 0.6). Only
  annotated joints count (`visible` here means *annotated*, MPII's `jnt_missing == 0`,
  not the occlusion flag); a predicted NaN is a miss. The toolkit evaluates 14 joints,
  leaving out pelvis and thorax.
- Multi-person AP: Pishchulin et al., "DeepCut", CVPR 2016 (and Insafutdinov et al.,
  ECCV 2016); `evaluateAP.m`, `assignGTmulti.m`, `getRPC.m`, `VOCap.m`, the protocol of
  EU-RL's Table 2 (Xie et al. 2018). Per image, every predicted person is scored against
  every ground-truth person by the fraction of that person's annotated joints within
  thr x head size; each prediction keeps its best person, each person keeps the
  prediction that scored it highest (first on ties), and a pair with score 0 is no
  match. Every predicted joint is then a detection with its own score, positive when
  its person is matched and the joint lies within the threshold. Per joint, detections
  of the whole dataset are ranked by score (stable, descending), and AP is the area
  under the monotone precision/recall curve (VOC 2010+ `VOCap`).

Groups, as in the toolkit's tables (joints in MPII order, see `MPII_JOINTS`): Head =
upper neck + head top, Shoulder, Elbow, Wrist, Hip, Knee, Ankle = left + right. For
PCKh a group is the mean of its two joints' PCKh and Total pools the 14 evaluated
joints (`computePCK.m`; so does UBody, wrists + elbows + shoulders); for AP a group is
the mean of its joints' AP and Total the mean of the 14 joint APs (`evaluateAP.m`).
(Several Python ports report Head as head top only; we follow the MATLAB toolkit.)
Values are fractions in [0, 1]; the papers print percentages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlcv.metrics._checks import as_tensor, real

MPII_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder",
               "l_elbow", "l_wrist")
GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (8, 9), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15),
    "Hip": (2, 3), "Knee": (1, 4), "Ankle": (0, 5),
}
UBODY = (10, 11, 12, 13, 14, 15)
EVALUATED = tuple(j for j in range(16) if j not in (6, 7))
SC_BIAS = 0.6


def _head_size(boxes: torch.Tensor) -> torch.Tensor:
    return SC_BIAS * torch.linalg.vector_norm(boxes[..., 2:] - boxes[..., :2], dim=-1)


def _mask(x: object, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = as_tensor(x, name)
    if t.dtype != torch.bool or tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected a bool tensor of shape {shape}, "
                         f"got {t.dtype} {tuple(t.shape)}")
    return t


def pckh(pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor,
         head_boxes: torch.Tensor, thr: float = 0.5) -> dict[str, float | torch.Tensor]:
    """MPII PCKh@thr of N people: `pred`, `gt` `[N, 16, 2]` (x, y), `visible` bool `[N, 16]`
    (joint annotated), `head_boxes` `[N, 4]` (x1, y1, x2, y2).

    Returns Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, UBody, Total (fractions;
    NaN for a group without annotated joints) and `per_joint` `[16]` (NaN for joints
    never annotated).
    """
    p = real(pred, "pred", shape_tail=(16, 2), ndim=3, finite=False)
    g = real(gt, "gt", shape_tail=(16, 2), ndim=3, finite=False)
    n = p.shape[0]
    if g.shape[0] != n:
        raise ValueError(f"gt: expected {n} people like pred, got {g.shape[0]}")
    vis = _mask(visible, "visible", (n, 16))
    hb = real(head_boxes, "head_boxes", shape_tail=(4,), ndim=2)
    if hb.shape[0] != n:
        raise ValueError(f"head_boxes: expected {n} boxes, got {hb.shape[0]}")
    if bool((vis & ~torch.isfinite(g).all(-1)).any()):
        raise ValueError("gt: annotated joints must have finite coordinates")
    size = _head_size(hb)
    if bool((size[vis.any(1)] <= 0).any()):
        raise ValueError("head_boxes: zero-size head box for a person with annotated joints")
    dist = torch.linalg.vector_norm(p - torch.where(vis[..., None], g, 0), dim=-1)
    dist = torch.nan_to_num(dist, nan=float("inf")) / size.clamp(min=1e-300)[:, None]
    ok = (dist <= thr) & vis
    hits, count = ok.sum(0).double(), vis.sum(0).double()
    per_joint = torch.where(count > 0, hits / count.clamp(min=1),
                            torch.full_like(count, float("nan")))
    out: dict[str, float | torch.Tensor] = {}
    for name, joints in GROUPS.items():
        out[name] = float(per_joint[list(joints)].mean())

    def pooled(joints: tuple[int, ...]) -> float:
        c = float(count[list(joints)].sum())
        return float(hits[list(joints)].sum()) / c if c else float("nan")

    out["UBody"] = pooled(UBODY)
    out["Total"] = pooled(EVALUATED)
    out["per_joint"] = per_joint
    return out


def _vocap(rec: torch.Tensor, prec: torch.Tensor) -> float:
    """VOC 2010+ AP: area under the precision envelope at the recall change points."""
    z = rec.new_zeros(1)
    mrec = torch.cat([z, rec, z + 1])
    mpre = torch.cat([z, prec, z])
    env = torch.flip(torch.cummax(torch.flip(mpre, [0]), 0).values, [0])
    step = mrec[1:] - mrec[:-1]
    return float(torch.where(step != 0, step * env[1:], torch.zeros_like(step)).sum())


def _assign(pj: torch.Tensor, ps: torch.Tensor, gj: torch.Tensor, gv: torch.Tensor,
            hb: torch.Tensor, thr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
    """`assignGTmulti` for one image: (scores, labels, joint index) of every predicted
    joint in (person, joint) order, and the number of annotated gt joints per joint."""
    has_pred = torch.isfinite(pj).all(-1)  # [P, 16]
    npred, ngt = pj.shape[0], gj.shape[0]
    if npred and ngt:
        d = torch.linalg.vector_norm(pj[:, None] - gj[None], dim=-1)  # [P, G, 16]
        d = d / _head_size(hb)[None, :, None]
        both = has_pred[:, None, :] & gv[None]
        match = both & (d <= thr)
        match[..., [6, 7]] = False  # pelvis and thorax are not evaluated
        n_ann = gv[:, list(EVALUATED)].sum(1).double()
        pck = match.sum(2).double() / n_ann.clamp(min=1)[None]  # 0/0 -> 0: never matches
        # each prediction keeps only its best person (first on ties)
        keep = torch.zeros_like(pck)
        best = pck.argmax(1, keepdim=True)
        keep.scatter_(1, best, pck.gather(1, best))
        val, who = keep.max(0)  # each person keeps its best prediction (first on ties)
        matched_gt = torch.full((npred,), -1, dtype=torch.long)
        ok = val > 0
        matched_gt[who[ok]] = torch.arange(ngt)[ok]
        lab = match[torch.arange(npred), matched_gt.clamp(min=0)] & (matched_gt >= 0)[:, None]
    else:
        lab = torch.zeros(npred, 16, dtype=torch.bool)
    sel = has_pred[:, list(EVALUATED)]
    joint = torch.tensor(EVALUATED).expand(npred, -1)
    n_gt = gv.sum(0)
    return (ps[:, list(EVALUATED)][sel], lab[:, list(EVALUATED)][sel], joint[sel], n_gt)


def mpii_multi_person_ap(pred_joints: Sequence[torch.Tensor], pred_scores: Sequence[torch.Tensor],
                         gt_joints: Sequence[torch.Tensor], gt_visible: Sequence[torch.Tensor],
                         head_boxes: Sequence[torch.Tensor], thr: float = 0.5
                         ) -> dict[str, float | torch.Tensor]:
    """MPII multi-person mAP over a dataset, one list entry per image.

    Per image: `pred_joints` `[P, 16, 2]` (NaN = joint not predicted), `pred_scores`
    `[P, 16]` (one confidence per predicted joint), `gt_joints` `[G, 16, 2]`,
    `gt_visible` bool `[G, 16]` (annotated), `head_boxes` `[G, 4]` x1y1x2y2.
    Returns Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Total (fractions) and
    `per_joint` AP `[16]` (NaN for pelvis, thorax and joints never annotated).
    """
    lists = (pred_joints, pred_scores, gt_joints, gt_visible, head_boxes)
    if len({len(x) for x in lists}) != 1:
        raise ValueError("pred_joints, pred_scores, gt_joints, gt_visible and head_boxes "
                         "need one entry per image each")
    scores, labels, joints = [], [], []
    n_gt = torch.zeros(16, dtype=torch.float64)
    for i, (pj, ps, gj, gv, hb) in enumerate(zip(*lists, strict=True)):
        pj = real(pj, f"pred_joints[{i}]", shape_tail=(16, 2), ndim=3, finite=False)
        ps = real(ps, f"pred_scores[{i}]", shape_tail=(16,), ndim=2, finite=False)
        gj = real(gj, f"gt_joints[{i}]", shape_tail=(16, 2), ndim=3, finite=False)
        gv = _mask(gv, f"gt_visible[{i}]", (gj.shape[0], 16))
        hb = real(hb, f"head_boxes[{i}]", shape_tail=(4,), ndim=2)
        if ps.shape[0] != pj.shape[0] or hb.shape[0] != gj.shape[0]:
            raise ValueError(f"image {i}: {pj.shape[0]} predicted people with "
                             f"{ps.shape[0]} score rows, {gj.shape[0]} people with "
                             f"{hb.shape[0]} head boxes")
        if bool((gv & ~torch.isfinite(gj).all(-1)).any()):
            raise ValueError(f"gt_joints[{i}]: annotated joints must have finite coordinates")
        if bool((_head_size(hb) <= 0).any()):
            raise ValueError(f"head_boxes[{i}]: zero-size head box")
        if bool((torch.isfinite(pj).all(-1) & ~torch.isfinite(ps)).any()):
            raise ValueError(f"pred_scores[{i}]: predicted joints need finite scores")
        s, lab, j, n = _assign(pj, ps, gj, gv, hb, thr)
        scores.append(s)
        labels.append(lab)
        joints.append(j)
        n_gt += n
    s, lab, j = torch.cat(scores), torch.cat(labels), torch.cat(joints)
    # rank per joint: stable by descending score (MATLAB sort 'descend'), then by joint
    o = torch.sort(-s, stable=True).indices
    o = o[torch.sort(j[o], stable=True).indices]
    s, lab, j = s[o], lab[o], j[o]
    per_joint = torch.full((16,), float("nan"), dtype=torch.float64)
    for jt in EVALUATED:
        if n_gt[jt] == 0:
            continue
        hit = lab[j == jt].double()
        npos = torch.cumsum(hit, 0)
        prec = npos / torch.arange(1, hit.numel() + 1, dtype=torch.float64)
        per_joint[jt] = _vocap(npos / n_gt[jt], prec)
    out: dict[str, float | torch.Tensor] = {name: float(per_joint[list(js)].mean())
                              for name, js in GROUPS.items()}
    out["Total"] = float(per_joint[list(EVALUATED)].nanmean())
    out["per_joint"] = per_joint
    return out
