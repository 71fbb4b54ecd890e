"""EU-RL Table 1, the supervised DeepMask rows (Xie et al. 2018, Section 4.1).

- **GT Bbox-Deepmask**: the mask network trained on tight ground-truth-box crops
  ("a pretrained Deepmask model ... trained on the tight-bounding-box cropped images")
  and evaluated on ground-truth boxes: the upper bound of the table.
- **Finetune-Deepmask**: that network fine-tuned to predict the mask from the whole
  image (the crop is the full image), evaluated the same way.

The score is the mean mask IoU (`rlcv.metrics.mask_iou`) between the pasted-back mask
and the full-image ground truth, over the val images of the single-object subset D.
The pretrained network of GT Bbox-Deepmask is also the recognition network every other
row of Table 1 starts from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from rlcv import engine, optim
from rlcv.metrics import mask_iou
from rlcv.models.crops import crop, full_boxes, paste
from rlcv.models.deepmask import TRUNKS, mask_net


@dataclass
class DeepMaskConfig:
    """Settings of the DeepMask rows."""

    crop_size: int = 48
    """Side of the square crop fed to the mask network (pixels, divisible by 8)."""
    width: int = 24
    """Channels of the mask network's first stage (doubles twice; `trunk: small`)."""
    trunk: str = "small"
    """The mask network: `small` (the suite's encoder-decoder, `rlcv.models.segnet`) or
    `vgg11` (DeepMask's published architecture, `rlcv.models.deepmask`)."""
    weights: str = "none"
    """Pretrained trunk weights (torchvision name, e.g. VGG11_Weights.IMAGENET1K_V1) or none."""
    steps: int = 600
    """Optimisation steps."""
    batch_size: int = 32
    """Crops per step."""
    lr: float = 2e-3
    """Learning rate."""
    optimizer: str = "adam"
    """adam (the small profiles) or sgd (DeepMask's published training), `rlcv.optim`."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 0.0
    """Weight decay."""
    jitter: float = 0.08
    """Box jitter during pretraining: relative shift and scale noise of the GT box."""
    eval_every: int = 100
    """Steps between evaluations on a fixed slice of val (logged to history.csv)."""

    def __post_init__(self):
        if self.trunk not in TRUNKS:
            raise ValueError(f"trunk: expected one of {', '.join(TRUNKS)}, got {self.trunk!r}")


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


def jitter_boxes(boxes: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """Shift and scale boxes by up to `amount` of their size (DeepMask's jittered crops)."""
    x0, y0, x1, y1 = boxes.unbind(1)
    w, h = x1 - x0, y1 - y0
    noise = ((torch.rand(boxes.shape[0], 4, generator=g) * 2 - 1) * amount).to(boxes.device)
    cx = (x0 + x1) / 2 + noise[:, 0] * w
    cy = (y0 + y1) / 2 + noise[:, 1] * h
    w, h = w * (1 + noise[:, 2]), h * (1 + noise[:, 3])
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def predict_masks(model: nn.Module, images: torch.Tensor, boxes: torch.Tensor, crop_size: int,
                  batch: int = 64) -> torch.Tensor:
    """Full-image binary masks (N, H, W) predicted on crops `boxes` of `images`."""
    model.eval()
    out = []
    h, w = images.shape[-2:]
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch):
            imgs, bx = _to_float(images[i:i + batch]), boxes[i:i + batch].float()
            probs = torch.sigmoid(model(crop(imgs, bx, crop_size))[:, 0])
            out.append(paste(probs, bx, h, w) > 0.5)
    return torch.cat(out)


def _box_source(images: torch.Tensor, boxes: torch.Tensor, source: str) -> torch.Tensor:
    if source == "gt":
        return boxes
    return full_boxes(images.shape[0], *images.shape[-2:], images.device)


def _fit(cfg: DeepMaskConfig, data, run, model: nn.Module, source: str, phase: str) -> None:
    train = data.feed("train")
    val = data.load("val")
    opt = optim.build(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum,
                      cfg.weight_decay)
    probe = slice(0, min(64, val["image"].shape[0]))

    def step_fn(step: int) -> dict:
        model.train()
        g = engine.generator(run.seed, phase, step)
        batch = train.draw(g, cfg.batch_size, (run.seed, phase), step, cfg.steps)
        images = _to_float(batch["image"])
        boxes = _box_source(images, batch["box"], source)
        boxes = jitter_boxes(boxes, cfg.jitter if source == "gt" else 0.0, g)
        if torch.rand((), generator=g) < 0.5:   # horizontal flip of image, mask and box
            images, masks = images.flip(-1), batch["mask"].flip(-1)
            wdt = images.shape[-1]
            boxes = torch.stack([wdt - boxes[:, 2], boxes[:, 1], wdt - boxes[:, 0], boxes[:, 3]], 1)
        else:
            masks = batch["mask"]
        target = crop(masks[:, None].float(), boxes, cfg.crop_size)[:, 0]
        logits = model(crop(images, boxes, cfg.crop_size))[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def eval_fn() -> dict:
        imgs = val["image"][probe]
        pred = predict_masks(model, imgs, _box_source(imgs, val["box"][probe], source),
                             cfg.crop_size)
        return {"iou": mask_iou(pred, val["mask"][probe]).mean().item()}

    engine.fit(run, phase, {"model": model, "opt": opt}, cfg.steps, step_fn, eval_fn,
               cfg.eval_every)


def train_gt_bbox(cfg: DeepMaskConfig, data, run) -> str:
    """Pretrain the mask network on jittered tight ground-truth-box crops."""
    model = engine.place(mask_net(vars(cfg), load=True), run.device)
    _fit(cfg, data, run, model, "gt", "pretrain")
    return engine.save_checkpoint(run, cfg, model=model.state_dict(), box_source="gt")


def train_finetune(cfg: DeepMaskConfig, data, run) -> str:
    """Fine-tune the pretrained mask network to predict the mask from the whole image."""
    pretrained = engine.load_checkpoint(run.inputs["gt-bbox-deepmask"])
    arch = {k: pretrained["config"].get(k, getattr(cfg, k)) for k in ("trunk", "width",
                                                                       "weights")}
    cfg = replace(cfg, **arch)   # the network's architecture is its source's
    model = engine.place(mask_net(arch), run.device)
    model.load_state_dict(pretrained["model"])
    _fit(cfg, data, run, model, "full", "finetune")
    return engine.save_checkpoint(run, cfg, model=model.state_dict(), box_source="full")


def evaluate(ckpt: str, data) -> dict:
    """Mean mask IoU on val, boxes from the checkpoint's source (GT box or whole image)."""
    state = engine.load_checkpoint(ckpt)
    cfg = state["config"]
    model = engine.place(mask_net(cfg), data.device)
    model.load_state_dict(state["model"])
    val = data.load("val")
    boxes = _box_source(val["image"], val["box"], state["box_source"])
    pred = predict_masks(model, val["image"], boxes, cfg["crop_size"])
    return {"avg_iou": mask_iou(pred, val["mask"]).mean().item()}
