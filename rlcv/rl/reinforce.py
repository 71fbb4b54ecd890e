"""REINFORCE for detection-candidate selection: the policy-gradient detector of Rao et
al. 2018 ("Learning globally optimized object detector via policy gradient"), Section 3.3,
Eqs. 5-11 and Algorithm 1 (steps 6 and 8).

The detector is the policy: candidate b (a RoI with its class, Eq. 7) is selected with
probability p_b, its softmax score; an action a is a set of selected candidates, reward
r(a) the image's COCO AP@[.5:.95] (Eq. 5, `rlcv.metrics.image_ap`, the mean over the
classes with ground truth). Per image:

1. the NMS result of all candidates (greedy per-class NMS, as at test time) is the
   baseline action; its AP is r' (Eq. 9);
2. k = 10 actions are sampled by the scores: every candidate is drawn independently
   with probability p_b and the drawn ones go through the same NMS, so each sample is a
   detection result the detector could have produced (the detector is trained "aware of
   the NMS", Section 3.3);
3. r(b) = (1/k) sum_j delta(a_j, b) r(a_j) (the sampled estimate of sum_a p(a) r(a)
   delta(a, b)); the baseline enters the same sum, so the advantage is
   A(b) = (1/k) sum_j delta(a_j, b) (r(a_j) - r'): boxes in better-than-NMS samples are
   pushed up, boxes in worse ones down, and boxes never sampled get nothing. The literal
   r(b) - r' would subtract r' from never-sampled boxes too, which biases the estimate
   (p(a) = prod p_b is not normalised) and is unbounded: -r' log p_b of every unlikely
   background candidate can fall forever (on the smoke data it drove the loss to -150
   and the val AP from 0.11 to 0.01 within 100 fine-tuning steps);
4. boxes already selected by the NMS baseline get zero reward (Section 3.3, end of
   "Policy Gradient with a Baseline"): only the γ cross-entropy term trains them.

`pg_logit_loss` turns A(b) into a loss on the logits whose gradient is Eq. 11:
((r(b) - r') + γ)(p_b - 1) on the logit of b's class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import nms

from rlcv.metrics import image_ap


def pg_logit_loss(logits: torch.Tensor, actions: torch.Tensor, advantage: torch.Tensor,
                  gamma: float = 0.0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 10 as a loss on the classifier logits `[N, C]`, averaged over the N rows:
    mean_b [-A_b log softmax(x_b)[actions_b] + γ CE(x_b, labels_b)].

    `actions` is each row's candidate class (its gt class for a foreground RoI, Eq. 7),
    `advantage` A_b = r(b) - r' (no gradient flows through it), `labels` the cross-entropy
    targets (default `actions`). For a row whose action is its label the gradient on the
    logit of that class is (A_b + γ)(p_b - 1) / N: Eq. 11.
    """
    logp = F.log_softmax(logits, -1)
    chosen = logp.gather(1, actions[:, None])[:, 0]
    loss = -(advantage.detach().to(logp) * chosen).mean()
    if gamma:
        loss = loss + gamma * F.nll_loss(logp, actions if labels is None else labels)
    return loss


def sample_selections(scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k independent draws of every candidate with probability p_b: bool `[k, N]`."""
    u = torch.rand((k, scores.shape[0]), generator=generator)
    return u < scores.detach().float().cpu()[None]


def nms_selections(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                   drawn: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy NMS within each group (a class, or an image's class) applied to every row of
    `drawn` `[K, N]` at once: one NMS call with every (row, group) shifted to its own
    region of the plane, so boxes of different rows or groups never overlap. Returns
    bool `[K, N]` survivors."""
    row, idx = torch.nonzero(drawn, as_tuple=True)
    out = torch.zeros_like(drawn)
    if idx.numel():
        b = boxes[idx]
        span = float(b.max() - b.min()) + 1.0
        offset = (row * (int(groups.max()) + 1) + groups[idx]).to(b) * span
        keep = nms(b + offset[:, None], scores[idx], iou)
        out[row[keep], idx[keep]] = True
    return out


def image_rewards(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                  select: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor
                  ) -> torch.Tensor:
    """r(a) of each selection row `[K, N]`: the image's mAP, i.e. `image_ap` averaged over
    the classes with ground truth (classes without are left out, as COCOeval does)."""
    total = torch.zeros(select.shape[0], dtype=torch.float64)
    present = torch.unique(gt_labels)
    for c in present.tolist():
        mine = classes == c
        total += image_ap(boxes[mine], scores[mine], gt_boxes[gt_labels == c],
                          select=select[:, mine], empty_gt_value=0.0)
    return total / max(len(present), 1)


def batch_advantages(images: list[dict], k: int, generator: torch.Generator,
                     nms_iou: float = 0.5, score_thresh: float = 0.0) -> list[dict]:
    """Algorithm 1's reward for a batch of images: A(b) for every candidate (module
    docstring): the k + 1 selections of all images drawn and NMS-ed at once, each image
    scored in one `image_ap` call per class.

    Each entry of `images` holds candidates `boxes` `[N, 4]`, `scores` p_b, `classes`
    and the ground truth `gt_boxes`, `gt_labels` (non-crowd). Returns per image
    `advantage` `[N]` (float32, zero for the NMS-selected boxes), `baseline` r',
    `rewards` r(a_j) `[k]`, `nms` (bool `[N]`, the baseline selection) and `samples`
    (bool `[k, N]`).
    """
    sizes = [im["boxes"].shape[0] for im in images]
    boxes = torch.cat([im["boxes"] for im in images]).detach().float().cpu()
    scores = torch.cat([im["scores"] for im in images]).detach().float().cpu()
    classes = torch.cat([im["classes"] for im in images]).cpu()
    which = torch.repeat_interleave(torch.arange(len(images)), torch.tensor(sizes))
    # candidates at or below the score threshold are in no selection: left out
    el = torch.nonzero(scores > score_thresh).flatten()
    drawn = torch.cat([torch.ones(1, len(el), dtype=torch.bool),
                       sample_selections(scores[el], k, generator)])
    groups = which[el] * (int(classes.max()) + 1 if classes.numel() else 1) + classes[el]
    chosen = torch.zeros((k + 1, len(scores)), dtype=torch.bool)
    chosen[:, el] = nms_selections(boxes[el], scores[el], groups, drawn, nms_iou)
    out, start = [], 0
    for im, n in zip(images, sizes, strict=True):
        part = slice(start, start + n)
        start += n
        sel = chosen[:, part]
        mine = scores[part] > score_thresh
        r = image_rewards(boxes[part][mine], scores[part][mine], classes[part][mine],
                          sel[:, mine], im["gt_boxes"].float().cpu(), im["gt_labels"].cpu())
        baseline, rewards, samples = r[0], r[1:], sel[1:]
        adv = (samples.double() * (rewards - baseline)[:, None]).sum(0) / k
        # rewards of boxes already selected (by the NMS baseline) are set to zero
        adv[sel[0]] = 0.0
        out.append({"advantage": adv.float(), "baseline": float(baseline),
                    "rewards": rewards, "nms": sel[0], "samples": samples})
    return out


def selection_advantages(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                         gt_boxes: torch.Tensor, gt_labels: torch.Tensor, k: int,
                         generator: torch.Generator, nms_iou: float = 0.5,
                         score_thresh: float = 0.0) -> dict:
    """`batch_advantages` of one image."""
    return batch_advantages([{"boxes": boxes, "scores": scores, "classes": classes,
                              "gt_boxes": gt_boxes, "gt_labels": gt_labels}], k, generator,
                            nms_iou, score_thresh)[0]
