"""Policy-gradient detector, Tables 1 and 2 (Rao et al. 2018, "Learning globally optimized
object detector via policy gradient", Section 3.3, Eqs. 5-11, Algorithm 1; Section 4.2).

Faster R-CNN (`rlcv.models.detector`) on the COCO `detection` split, in its staged frame
(the paper profile: Detectron's shorter side 800, longer side at most 1333, images of
varied sizes, batched by torchvision with padding); the detector's transform is set to
that frame (`_image_size`), so it never resizes the staged images again. The rows:

- **standard**: a base detector trained with the usual loss (Eq. 1: cross-entropy +
  smooth L1, plus the RPN's losses), then `steps` more steps of the same loss on the
  fine-tuning schedule. The paper fine-tunes baselines that no longer improve; ours are
  not converged on a CPU budget, so this continuation is the control: every fine-tuned
  row starts from the same base weights and optimizer state and gets the same steps,
  schedule and batches, only its loss differs.
- **OHEM**: the base fine-tuned with online hard example mining (`rlcv.models.nms`).
- **ours (γ)**: the base fine-tuned with Algorithm 1: the classification cross-entropy is
  replaced by the policy-gradient loss of Eq. 10 on the logits (`rlcv.rl.reinforce`),
  whose gradient is Eq. 11, ((r(b) - r') + γ)(p_b - 1); the box and RPN losses are kept.
- **+ soft NMS**: a trained row evaluated with soft-NMS instead of greedy NMS.
- **with FPN**: the same on the feature-pyramid detector.

Scores: `rlcv.metrics.coco_eval` (pycocotools) of the val detections against the staged
`val_gt.json`: AP, AP50, AP75, APs, APm, APl. A number pycocotools reports as -1 (no
ground truth in that size range, e.g. APl on 96-pixel synthetic images) is left out
rather than reported as a score.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import rlcv.models.detector as frcnn
from methods.pgdetector.losses import LOSSES
from rlcv import dist, engine, optim
from rlcv.metrics import coco_eval
from rlcv.models.detector import build_detector, detect, greedy_nms
from rlcv.models.nms import soft_nms

METRICS = {"AP": "ap", "AP50": "ap50", "AP75": "ap75", "APs": "aps", "APm": "apm", "APl": "apl"}
ARCH = ("backbone", "fpn", "width", "head_dim", "roi_size", "anchor_sizes", "proposals",
        "rois_per_image", "num_classes", "weights", "rpn_width", "rpn_anchors_per_image",
        "rpn_pre_nms_test", "rpn_min_size")


@dataclass
class PGDetectorConfig:
    """Settings of the policy-gradient detector rows (architecture, base, fine-tuning)."""

    backbone: str = "small"
    """'small' (CPU-sized CNN) or 'resnet101' (the paper's)."""
    weights: str = "none"
    """resnet101's pretrained weights (BN and stages 1-2 then frozen) or "none" (random)."""
    fpn: bool = False
    """Faster R-CNN with a feature pyramid (the paper's 'with FPN' rows)."""
    width: int = 16
    """Channels of the small backbone's first stage."""
    head_dim: int = 128
    """Width of the box head's two fully connected layers (1024 in the paper)."""
    roi_size: int = 5
    """RoIAlign output side."""
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64)
    """Anchor sides in pixels (one per pyramid level with FPN), aspect ratios 1:2, 1:1, 2:1."""
    proposals: int = 100
    """RPN proposals kept after its NMS, per image (train and test)."""
    rois_per_image: int = 32
    """RoIs per image for the box head, 1:3 positives to negatives (OHEM: the B hardest)."""
    rpn_width: int | None = None
    """Channels of the RPN's 3x3 conv (the paper: 512); None: the backbone's (torchvision)."""
    rpn_anchors_per_image: int | None = None
    """Anchors sampled per image to train the RPN (the paper: 256); None: 2 x rois_per_image."""
    rpn_pre_nms_test: int | None = None
    """RPN proposals per image (FPN: per level) before its NMS at test; None: 2 x proposals."""
    rpn_min_size: float = 1e-3
    """Proposals with a side shorter than this (pixels) are dropped (the paper: 2)."""
    num_classes: int | None = None
    """Classes including the background; None: the annotation file's categories + 1."""
    batch_size: int = 8
    """Images per step."""
    base_steps: int = 600
    """Steps of standard training of the base detector (standard rows only)."""
    base_lr: float = 2e-3
    """Learning rate of the base training (constant but for `base_milestones`)."""
    base_milestones: tuple[int, ...] = ()
    """Base-training steps at which its rate is divided by 10 (the paper: 50k, 65k)."""
    optimizer: str = "adamw"
    """'adamw' or 'sgd' (the paper's, with `momentum`; rlcv.optim)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 1e-4
    """Weight decay."""
    steps: int = 100
    """Fine-tuning steps from the base (same for standard, OHEM and ours)."""
    lr: float = 1e-3
    """Fine-tuning learning rate (continuing the base's optimizer state)."""
    decay_at: float = 2 / 3
    """Fraction of the fine-tuning after which its rate drops 10x (the paper: 15k of 22.5k)."""
    loss: str = "standard"
    """Fine-tuning loss: 'standard', 'ohem' or 'pg' (Eq. 10)."""
    gamma: float = 1.0
    """Weight γ of the cross-entropy term in Eq. 10 (0: policy gradient alone)."""
    k: int = 10
    """Sampled selections per image for r(b) (Section 3.3)."""
    nms: str = "greedy"
    """Final NMS at evaluation: 'greedy' or 'soft'."""
    soft_method: str = "gaussian"
    """Soft-NMS decay: 'gaussian' or 'linear' (Bodla et al. 2017)."""
    soft_sigma: float = 0.5
    """Gaussian soft-NMS sigma."""
    soft_iou: float = 0.3
    """Linear soft-NMS overlap threshold N_t."""
    ohem_nms: float = 0.7
    """OHEM's NMS threshold on loss-ranked RoIs."""
    ohem_proposals: int = 0
    """RPN proposals per image OHEM ranks (Shrivastava et al. 2016: 2000; 0: `proposals`)."""
    ohem_rois: int = 0
    """Hardest RoIs per image OHEM back-propagates (the original: 128; 0: `rois_per_image`)."""
    eval_every: int = 0
    """Steps between AP evaluations on a slice of val (0: at the end of each phase)."""


def _arch(cfg, gt: dict) -> dict:
    src = asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else cfg
    arch = {k: (list(src[k]) if k == "anchor_sizes" else src[k]) for k in ARCH}
    arch["num_classes"] = arch["num_classes"] or len(frcnn.class_ids(gt)) + 1
    return arch


def _model(arch: dict, frame: tuple[int, float], load: bool = False):
    """The detector of `arch` for images of `frame` (its transform's min_size, max_size:
    `_image_size`), its pretrained weights loaded when `load` (a new run). An `arch`
    saved before the RPN settings existed builds the detector it was trained as."""
    min_size, max_size = frame
    return build_detector(arch["backbone"], arch["fpn"], arch["num_classes"], min_size,
                          arch["width"], arch["head_dim"], arch["roi_size"],
                          tuple(arch["anchor_sizes"]), arch["proposals"], arch["rois_per_image"],
                          weights=arch.get("weights", "none"), load=load, max_size=max_size,
                          rpn_width=arch.get("rpn_width"),
                          rpn_anchors_per_image=arch.get("rpn_anchors_per_image"),
                          rpn_pre_nms_test=arch.get("rpn_pre_nms_test"),
                          rpn_min_size=arch.get("rpn_min_size", 1e-3))


def _image_size(data) -> tuple[int, float]:
    """The staged detection frame as the detector's (min_size, max_size), so torchvision
    does not resize the staged images again (`rlcv.models.detector.frame_sizes`): S x S
    letterboxed squares, or the paper's shorter side 800, longer side at most 1333."""
    return frcnn.frame_sizes(data.manifest)


def _image(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def _target(split: dict, i: int, lut: torch.Tensor) -> dict:
    """Training target of sample i: non-crowd, non-degenerate boxes and their classes."""
    b = split["boxes"][i]
    keep = (split["iscrowd"][i] == 0) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    labels = split["labels"][i][keep].long()
    return {"boxes": b[keep].float(), "labels": lut.to(labels.device)[labels]}


def _batch(batch: dict, g: torch.Generator, lut: torch.Tensor,
           batch_size: int | None = None) -> tuple[list, list]:
    """A drawn batch (`Feed.draw`) with random horizontal flips; its `image` is a stacked
    tensor or (images of varied sizes) a list of them. `batch` may be this process's slice
    of a global batch of `batch_size` (flips are drawn for all of it, then sliced)."""
    flips = torch.rand(batch_size or len(batch["image"]), generator=g) < 0.5
    if batch_size is not None:
        flips = dist.shard(flips)
    flips = flips.tolist()
    images, targets = [], []
    for i, flip in enumerate(flips):
        img, t = _image(batch["image"][i]), _target(batch, i, lut)
        if flip:
            w = img.shape[-1]
            img = img.flip(-1)
            b = t["boxes"]
            t = {**t, "boxes": torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)}
        images.append(img)
        targets.append(t)
    return images, targets


EVAL_CHUNK = 32   # val images decoded and detected at a time


def _val_gt(data) -> dict:
    return json.loads((Path(data.path) / data.manifest.get("val_gt", "val_gt.json")).read_text())


def _nms_fn(cfg: dict):
    if cfg["nms"] == "greedy":
        return greedy_nms
    if cfg["nms"] != "soft":
        raise ValueError(f"nms: expected 'greedy' or 'soft', got {cfg['nms']!r}")
    return functools.partial(_soft, method=cfg["soft_method"], sigma=cfg["soft_sigma"],
                             iou_threshold=cfg["soft_iou"])


def _soft(boxes, scores, labels, iou, method, sigma, iou_threshold):
    # `iou` (the greedy threshold) is unused: soft-NMS decays by overlap instead
    return soft_nms(boxes, scores, labels, method, sigma, iou_threshold)


def coco_scores(model, chunks, gt: dict, nms_cfg: dict) -> dict:
    """COCO AP numbers (metric ids, fractions; -1s dropped) of `model` on the val samples
    of `chunks` (`Staged.chunks`: dicts of `image` and `image_id`, a few at a time) with the
    final NMS of `nms_cfg`."""
    cats = frcnn.class_ids(gt)   # detector class k -> the file's category id
    nms, dt, ids = _nms_fn(nms_cfg), [], []
    for chunk in chunks:
        images = [_image(x) for x in chunk["image"]]
        dets = detect(model, images, nms, batch=len(images))
        chunk_ids = [int(i) for i in chunk["image_id"]]
        ids += chunk_ids
        dt += [{"image_id": iid, "category_id": cats[c - 1] if 0 < c <= len(cats) else c,
                "score": float(s),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
               for iid, d in zip(chunk_ids, dets, strict=True)
               for b, s, c in zip(d["boxes"].tolist(), d["scores"].tolist(),
                                  d["labels"].tolist(), strict=True)]
    res = coco_eval(gt, dt, "bbox", img_ids=ids)
    return {METRICS[k]: v for k, v in res.items() if v >= 0}


def _fit(cfg: PGDetectorConfig, data, run, model, phase: str, steps: int, lr: float,
         loss: str, opt_state: dict | None = None, decay_at: float = 1.0,
         milestones: tuple[int, ...] = ()):
    """Train `model` for `steps` with loss `loss` (`cfg.optimizer` at `lr`, 10x lower from
    `decay_at` of the phase on, and at each of `milestones`); `opt_state` continues a
    previous phase's optimizer. Returns the optimizer."""
    train = data.feed("train")
    gt = _val_gt(data)
    opt = optim.build(cfg.optimizer, model.parameters(), lr, cfg.momentum, cfg.weight_decay)
    lut = frcnn.class_lut(gt)
    if opt_state is not None:
        # a copy: torch's load_state_dict keeps the given state tensors, and the steps
        # would update the caller's `opt_state` (the base's, saved for the fine-tuned rows)
        opt.load_state_dict(copy.deepcopy(opt_state))
    loss_fn = LOSSES[loss]

    def step_fn(step: int) -> dict:
        model.train()
        drops = (step >= decay_at * steps) + sum(step >= m for m in milestones)
        for group in opt.param_groups:
            group["lr"] = lr * 0.1**drops
        g = engine.generator(run.seed, phase, step)
        batch = train.draw(g, cfg.batch_size, (run.seed, phase), step, steps, shard=True)
        images, targets = _batch(batch, g, lut, cfg.batch_size)   # this process's part
        t0 = time.perf_counter()
        total, logs = loss_fn(model, images, targets, cfg, g)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"loss": total.item(), **logs, "step_ms": 1000 * (time.perf_counter() - t0)}

    def eval_fn() -> dict:
        probe = data.chunks("val", EVAL_CHUNK, stop=32)
        return {"ap": coco_scores(model, probe, gt, {"nms": "greedy"}).get("ap", 0.0)}

    engine.fit(run, phase, {"model": model, "opt": opt}, steps, step_fn, eval_fn,
               cfg.eval_every or steps)
    return opt


def train_standard(cfg: PGDetectorConfig, data, run) -> Path:
    """Train the base detector, then continue the standard loss for `steps` (the control
    every fine-tuned row is compared with); the checkpoint keeps the final weights and
    the base weights with their optimizer state, which the fine-tuned rows continue."""
    arch = _arch(cfg, _val_gt(data))
    model = engine.place(_model(arch, _image_size(data), load=True), run.device)
    opt = _fit(cfg, data, run, model, "base", cfg.base_steps, cfg.base_lr, "standard",
               milestones=cfg.base_milestones)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base_opt = copy.deepcopy(opt.state_dict())
    _fit(cfg, data, run, model, "finetune", cfg.steps, cfg.lr, "standard", base_opt,
         cfg.decay_at)
    return engine.save_checkpoint(run, cfg, arch=arch, model=model.state_dict(),
                                  base=base, base_opt=base_opt)


def _source(run) -> dict:
    (path,) = run.inputs.values()
    return engine.load_checkpoint(path)


def train_finetune(cfg: PGDetectorConfig, data, run) -> Path:
    """Fine-tune the required standard row's base (weights and optimizer state) with
    `cfg.loss` (OHEM or the policy gradient) for `steps`, on the same schedule and
    batches as the standard row's control; the architecture comes from that checkpoint."""
    src = _source(run)
    model = engine.place(_model(src["arch"], _image_size(data)), run.device)
    model.load_state_dict(src["base"])
    _fit(cfg, data, run, model, "finetune", cfg.steps, cfg.lr, cfg.loss, src["base_opt"],
         cfg.decay_at)
    return engine.save_checkpoint(run, cfg, arch=src["arch"], model=model.state_dict(),
                                  base=src["base"])


def train_eval_variant(cfg: PGDetectorConfig, data, run) -> Path:
    """No training: the required row's final weights, evaluated with this row's NMS."""
    src = _source(run)
    return engine.save_checkpoint(run, cfg, arch=src["arch"], model=src["model"])


def load_model(ckpt: str | Path, frame: tuple[int, float], device="cpu"):
    """The detector of a checkpoint of these rows for images of `frame` (`_image_size`),
    on `device`, and its row config."""
    state = engine.load_checkpoint(ckpt)
    model = engine.place(_model(state["arch"], frame), device)
    model.load_state_dict(state["model"])
    return model.eval(), state["config"]


def evaluate(ckpt: str, data) -> dict:
    """COCO AP, AP50, AP75, APs, APm, APl on the staged val split, with the row's NMS."""
    model, cfg = load_model(ckpt, _image_size(data), data.device)
    return coco_scores(model, data.chunks("val", EVAL_CHUNK), _val_gt(data), cfg)


def figures(params, results: Path) -> list[tuple[Path, str]]:
    """The paper's Fig. 3 (`methods.pgdetector.plots`): report hook of this family."""
    from methods.pgdetector.plots import detection_figure

    return detection_figure(params, results)
