"""ACIS inference and scoring (Araslanov et al., CVPR 2019, Sec. 5.3 "Inference", Sec. 6).

Inference runs the actor recurrently from the empty mask with the mean action (the
deviation is discarded) and stops at the first step whose termination unit says stop,
or after `max_steps` steps (21 on CVPPP). Every score comes from `rlcv.metrics`:

Every score is taken at the ground truth's resolution, as the benchmarks do: predictions
(label maps, masks) are brought to the original-size ground truth that staging keeps for
the evaluation splits, by nearest neighbour (`to_ground_truth`; outside the staged crop of
a CVPPP plant: background).

- Tables 1 and 3: the kept masks (upsampled bilinearly to the staged resolution, > 0.5)
  form one label map (each pixel takes the step of highest probability), scored by the
  CVPPP challenge's Symmetric Best Dice and |DiC| (`symmetric_best_dice`,
  `diff_fg_labels`).
- Table 2: one trained model rolled out three ways — both states, the LSTM state zeroed
  at every step ("mask only"), the accumulated mask zeroed ("LSTM only"). Dice* is the
  max-matching Dice of the first N predictions (N = ground-truth count: ground-truth
  stopping; `dice_per_timestep`), |DiC| as in Table 1 on the terminated predictions.
- Fig. 3: `dice_per_timestep` with ground-truth stopping, averaged per step over images
  (`average_per_timestep`), binned into steps 1-10 and 11-20, and kept per step
  (`TIMESTEP` keys) for the report's Fig. 3 plot.
- Table 4 (KITTI): MWCov, MUCov (`coverage`) and AvgFP, AvgFN (`false_positive_negative`)
  of the label map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.acis.train import Prepared, compute_aux, prepare, rollout
from rlcv import engine
from rlcv.metrics import (
    average_per_timestep,
    coverage,
    dice_per_timestep,
    diff_fg_labels,
    false_positive_negative,
    symmetric_best_dice,
    to_ground_truth,
)
from rlcv.models.acis import AUX, Actor, MaskDecoder, state_pyramid
from rlcv.models.segnet import MaskNet


def load_models(state: dict, device) -> tuple[MaskNet, MaskDecoder, Actor]:
    """The pre-processing net, the frozen decoder and the actor of a trained checkpoint,
    on `device`."""
    arch = state["arch"]
    hw = tuple(arch["hw"])
    preproc = MaskNet(arch["preproc_width"], in_ch=3, out_ch=AUX)
    preproc.load_state_dict(state["preproc"])
    decoder = MaskDecoder(hw, arch["latent"], arch["width"], arch["pyramid"])
    decoder.load_state_dict(state["decoder"])
    actor = Actor(hw, arch["latent"], arch["width"], arch["hidden"])
    actor.load_state_dict(state["actor"])
    for m in (preproc, decoder, actor):
        engine.place(m, device).eval()
    return preproc, decoder, actor


def infer(actor: Actor, decoder: MaskDecoder, data: Prepared, steps: int,
          block: str | None = None, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy rollouts of every image: mask probabilities (n, T, h, w) and termination
    logits (n, T) for T = `steps` steps (no early stop; callers cut at termination)."""
    probs, stops = [], []
    with torch.inference_mode():
        for i in range(0, data.image.shape[0], chunk):
            image, aux = data.image[i:i + chunk], data.aux[i:i + chunk]
            ep = rollout(actor, decoder, image, aux, state_pyramid(image, aux),
                         torch.zeros_like(image[:, :1]), steps, block=block)
            probs.append(torch.sigmoid(ep.logits[:, :, 0]).transpose(0, 1))
            stops.append(ep.stop.T)
    return torch.cat(probs), torch.cat(stops)


def upsample(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Working-resolution probabilities (n, T, h, w) -> (n, T, H, W), bilinear."""
    return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)


def n_predicted(stop: torch.Tensor) -> torch.Tensor:
    """Predictions kept per image: the steps before the first "stop" (logit < 0)."""
    halted = stop < 0
    first = torch.where(halted.any(1), halted.float().argmax(1), torch.full_like(
        halted[:, 0], stop.shape[1], dtype=torch.long))
    return first


def label_maps(probs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """One label map per image (n, H, W): pixel = 1 + the kept step of highest
    probability where it exceeds 0.5, else 0. `keep` (n,) counts the kept steps."""
    kept = torch.arange(probs.shape[1], device=keep.device)[None, :] < keep[:, None]
    p = probs * kept[:, :, None, None]
    best, idx = p.max(1)
    return torch.where(best > 0.5, idx + 1, torch.zeros_like(idx))


def ground_truths(split: dict) -> list[tuple[torch.Tensor, tuple | None]]:
    """Per image, the ground truth the scores are computed against and the region of it
    the staged image shows: the original-size labels (`gt`, `box`) where staging kept
    them (CVPPP val / test, KITTI val / test). Staged data without them predates
    ground-truth-resolution scoring and is refused rather than scored at another size."""
    if "gt" not in split:
        from rlcv.errors import DataError

        raise DataError("the staged evaluation split has no original-size ground truth "
                        "(staged before issue 20): run `rlcv stage` for this dataset again")
    return [(g, tuple(b.tolist())) for g, b in zip(split["gt"], split["box"], strict=True)]


def gt_counts(truths: list) -> torch.Tensor:
    """(n,) instances per ground truth (distinct non-zero ids)."""
    return torch.tensor([int((torch.unique(g) > 0).sum()) for g, _ in truths])


def label_scores(labels: torch.Tensor, truths: list, cvppp: bool, kitti: bool) -> dict:
    """Means over images of the label-map metrics, each image's label map (staged
    resolution) brought to its ground truth's size first (`to_ground_truth`, nearest
    neighbour; one image at a time, so memory stays that of one full-size map):
    sbd, abs_dic (`cvppp`) and mwcov, mucov, avgfp, avgfn (`kitti`)."""
    vals: dict[str, list] = {}
    for lab, (g, box) in zip(labels, truths, strict=True):
        full, g = to_ground_truth(lab, g.shape, box), g.long()
        per = {}
        if cvppp:
            per.update(sbd=symmetric_best_dice(full, g), abs_dic=diff_fg_labels(full, g).abs())
        if kitti:
            (mwcov, mucov), (fp, fn) = coverage(full, g), false_positive_negative(full, g)
            per.update(mwcov=mwcov, mucov=mucov, avgfp=fp, avgfn=fn)
        for k, v in per.items():
            vals.setdefault(k, []).append(v)
    return {k: torch.stack(v).double().mean().item() for k, v in vals.items()}


def per_step_dice(probs: torch.Tensor, truths: list, count: torch.Tensor) -> list:
    """Max-matching Dice of each of the first N predictions per image (ground-truth
    stopping), at the ground truth's resolution: a list of (N_i,) tensors."""
    out = []
    for p, (g, box), n in zip(probs, truths, count.tolist(), strict=True):
        n = min(n, p.shape[0])
        out.append(dice_per_timestep(to_ground_truth(p[:n] > 0.5, g.shape, box), g.long())
                   if n else torch.zeros(0))
    return out


def dice_star(steps: list) -> float:
    """Dice* of Table 2: per image the mean matched Dice of its first N predictions,
    averaged over images."""
    vals = [s.mean() for s in steps if s.numel()]
    return torch.stack(vals).mean().item() if vals else 0.0


def dice_bins(steps: list, split: int = 10, last: int = 20) -> dict:
    """Fig. 3 binned: the mean over steps 1..split and split+1..last of the per-step
    mean Dice (steps no image reaches are skipped)."""
    mean, count = average_per_timestep(steps)
    out = {}
    for key, lo, hi in (("dice_early", 0, split), ("dice_late", split, last)):
        sel = (torch.arange(mean.shape[0]) >= lo) & (torch.arange(mean.shape[0]) < hi) & \
            (count > 0)
        if sel.any():
            out[key] = mean[sel].mean().item()
    return out


def evaluate_split(state: dict, split: dict, tables: tuple[str, ...]) -> dict:
    """Scores of a checkpoint on one staged split for the requested tables' metrics:
    "t1" (sbd, abs_dic), "t2" (blocked-state Dice* / |DiC|), "fig3" (dice_early/late),
    "t4" (mwcov, mucov, avgfp, avgfn).

    The terminated predictions stop at the termination unit or after `max_steps` steps;
    the ground-truth-stopped ones (Dice*, Fig. 3) are the first N of a rollout run for as
    many steps as the image with the most instances needs. dice_late is left out when no
    image has more than 10 instances.
    """
    preproc, decoder, actor = load_models(state, split["image"].device)
    data = prepare(split, state["arch"]["downsample"])
    data.aux = compute_aux(preproc, data)
    max_steps = state["config"]["max_steps"]
    size = tuple(split["label"].shape[-2:])
    truths = ground_truths(split)
    count = gt_counts(truths)
    gt_stopping = "t2" in tables or "fig3" in tables
    steps = max(max_steps, int(count.max())) if gt_stopping else max_steps
    out: dict[str, float] = {}
    modes = [("lstm_mask", None)]
    if "t2" in tables:
        modes += [("mask_only", "lstm"), ("lstm_only", "mask")]
    for name, block in modes:
        probs, stop = infer(actor, decoder, data, steps, block)
        probs = upsample(probs, size)
        labels = label_maps(probs, n_predicted(stop[:, :max_steps]))
        scores = label_scores(labels, truths, "t1" in tables or "t2" in tables,
                              name == "lstm_mask" and "t4" in tables)
        if name == "lstm_mask":
            out.update({k: v for k, v in scores.items()
                        if "t1" in tables or k not in ("sbd", "abs_dic")})
        if gt_stopping:
            per_step = per_step_dice(probs, truths, count)
        if "t2" in tables:
            out[f"dice_{name}"] = dice_star(per_step)
            out[f"abs_dic_{name}"] = scores["abs_dic"]
        if name == "lstm_mask" and "fig3" in tables:
            out.update(dice_bins(per_step))
            out.update(dice_per_timestep_scores(per_step))
    return out


TIMESTEP = "dice_timestep_{t}"
"""metrics.json key of Fig. 3's mean Dice of the t-th prediction (t from 1; not a table
row: the report's Fig. 3 plot reads it)."""


def dice_per_timestep_scores(steps: list) -> dict:
    """Fig. 3 unbinned: the mean Dice of the t-th prediction over the images that have a
    t-th instance, every t some image reaches, as `TIMESTEP` keys."""
    mean, count = average_per_timestep(steps)
    return {TIMESTEP.format(t=t + 1): mean[t].item() for t in range(mean.shape[0])
            if count[t] > 0}
