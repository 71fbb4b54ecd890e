"""The training losses of the policy-gradient detector's rows (Rao et al. 2018, Section
3.3, Algorithm 1; `methods.pgdetector.detector` trains with them, by name in `LOSSES`):

- `standard_loss`: Eq. 1, the classification cross-entropy and smooth L1 of the sampled
  RoIs, plus the RPN's losses;
- `ohem_loss`: online hard example mining (Shrivastava et al. 2016) over all proposals;
- `pg_loss`: Algorithm 1, Eq. 10's policy-gradient term on the inference candidates'
  logits plus γ times the cross-entropy.

Each takes (model, images, targets, cfg, generator) and returns the loss and the scalars
logged to history.csv.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss

from rlcv.models.detector import decode_candidates, roi_outputs
from rlcv.models.nms import ohem_select
from rlcv.rl.reinforce import batch_advantages, pg_logit_loss


def standard_loss(model, images, targets, cfg, g) -> tuple[torch.Tensor, dict]:
    """Eq. 1 on the sampled RoIs (cross-entropy + smooth L1) plus the RPN's losses."""
    out = roi_outputs(model, images, targets)
    cls, box = fastrcnn_loss(out["class_logits"], out["box_regression"], out["labels"],
                             out["regression_targets"])
    return cls + box + sum(out["rpn_losses"].values()), {"cls": cls.item(), "box": box.item()}


def ohem_loss(model, images, targets, cfg, g) -> tuple[torch.Tensor, dict]:
    """OHEM (Shrivastava et al. 2016): the per-RoI loss over all `ohem_proposals` RoIs of
    an image, the `ohem_rois` hardest after NMS 0.7 train (the original: 128 of 2000)."""
    pre, post = model.rpn._pre_nms_top_n, model.rpn._post_nms_top_n
    saved = dict(pre), dict(post)
    if cfg.ohem_proposals:   # the RPN keeps more proposals for OHEM to rank (training only)
        post["training"] = cfg.ohem_proposals
        pre["training"] = max(pre["training"], 2 * cfg.ohem_proposals)
    try:
        out = roi_outputs(model, images, targets, sample=False)
    finally:
        pre.update(saved[0])
        post.update(saved[1])
    keep = cfg.ohem_rois or cfg.rois_per_image
    logits, labels = out["class_logits"], torch.cat(out["labels"]).clamp(min=0)
    reg = out["box_regression"].reshape(logits.shape[0], -1, 4)
    fg = labels > 0
    ce = F.cross_entropy(logits, labels, reduction="none")
    l1 = F.smooth_l1_loss(reg[torch.arange(len(labels), device=labels.device), labels],
                          torch.cat(out["regression_targets"]), beta=1 / 9,
                          reduction="none").sum(1) * fg
    hard, start = [], 0
    for rois in out["rois"]:
        n = rois.shape[0]
        pick = ohem_select(rois, (ce + l1)[start:start + n], keep, cfg.ohem_nms)
        hard.append(pick + start)
        start += n
    hard = torch.cat(hard)
    cls, box = ce[hard].mean(), l1[hard].sum() / hard.numel()
    return cls + box + sum(out["rpn_losses"].values()), {"cls": cls.item(), "box": box.item()}


def pg_loss(model, images, targets, cfg, g) -> tuple[torch.Tensor, dict]:
    """Algorithm 1, steps 4-9. The reward is computed over the candidates the final NMS
    sees at inference: the RPN's post-NMS proposals of each image, classified and decoded
    by the box head, no ground-truth box among them (issue 19); r(b) - r' per candidate
    drives Eq. 10's policy term on their logits. The sampled training RoIs (ground truth
    added, 1:3) keep Eq. 10's γ cross-entropy term and the smooth L1 box loss; the RPN's
    losses are unchanged."""
    out = roi_outputs(model, images, targets, candidates=True)
    _, box = fastrcnn_loss(out["class_logits"], out["box_regression"], out["labels"],
                           out["regression_targets"])
    ce = F.cross_entropy(out["class_logits"], torch.cat(out["labels"]))
    cand = out["candidates"]
    logits, labels = cand["class_logits"], torch.cat(cand["labels"])
    t0 = time.perf_counter()
    with torch.no_grad():
        probs = F.softmax(logits.detach(), -1)
        # Eq. 7: a foreground candidate is its gt class; a background one would be reported
        # as its best foreground class, so that is the action whose selection is scored
        actions = torch.where(labels > 0, labels, probs[:, 1:].argmax(1) + 1)
        boxes = decode_candidates(model, cand["box_regression"], cand["rois"],
                                  out["image_sizes"], actions)
        scores = probs.gather(1, actions[:, None])[:, 0]
        sizes = [b.shape[0] for b in boxes]
        cands = [{"boxes": b, "scores": p, "classes": a, "gt_boxes": t["boxes"],
                  "gt_labels": t["labels"]}
                 for b, a, p, t in zip(boxes, actions.split(sizes), scores.split(sizes),
                                       out["targets"], strict=True)]
        heads = model.roi_heads
        res = batch_advantages(cands, cfg.k, g, heads.nms_thresh, heads.score_thresh)
    reward_s = time.perf_counter() - t0
    adv = torch.cat([r["advantage"] for r in res]).to(logits.device)
    cls = pg_logit_loss(logits, actions, adv) + cfg.gamma * ce
    loss = cls + box + sum(out["rpn_losses"].values())
    return loss, {"cls": cls.item(), "box": box.item(),
                  "r_nms": sum(r["baseline"] for r in res) / len(res),
                  "r_sampled": sum(float(r["rewards"].mean()) for r in res) / len(res),
                  "adv_nonzero": float((adv != 0).float().mean()),
                  "candidates": float(sum(sizes)) / len(sizes),
                  "reward_ms": 1000 * reward_s}


LOSSES = {"standard": standard_loss, "ohem": ohem_loss, "pg": pg_loss}
"""The losses by the name params.yaml gives (`loss`)."""
