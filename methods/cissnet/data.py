"""CiSS-Net's three datasets seen the same way (Zhou et al., CVPR 2019, Section 3.1).

`Task.of(manifest)` maps the staged labels of ADE20K (`ade20k/sceneparsing`: official
ids 1..150, 0 = other, ignored), PASCAL-Context (`pascal_context/context59`: 0 =
background, 1..59, all 60 scored) and Cityscapes (`cityscapes/fine`: trainIds 0..18,
255 = ignore) to contiguous class indices for the networks, and `Task.score` maps
predicted indices back and scores them with `rlcv.metrics` only: ADE20K / PASCAL-Context
mIoU and pixel accuracy (dataset-level confusion matrix, the scene-parsing devkit),
Cityscapes IoU class / iIoU class / IoU category (cityscapesscripts, on labelIds).

Scores are taken at the ground truth's resolution, as the benchmarks do: `Task.predict`
upsamples the feature-resolution logits (bilinear) to each val annotation's original size
(the staged `label_full` / `instance_full` fields, present when staging resized them) and
takes the argmax there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlcv.errors import DataError
from rlcv.metrics import CityscapesAccumulator, confusion_matrix, miou, pixel_accuracy

IGNORE = -1
"""Class index of pixels excluded from losses, rewards and scores."""


@dataclass
class Task:
    """The class space of one staged dataset."""

    dataset: str
    num_classes: int
    """Classes the networks predict (contiguous indices 0..num_classes-1)."""
    lut: torch.Tensor
    """Stored label value (0..255) -> class index, IGNORE for ignored values."""
    to_output: torch.Tensor
    """Class index -> the value scored (ADE20K official id; Cityscapes labelId)."""

    @classmethod
    def of(cls, manifest: dict) -> Task:
        """The task of a staged `ade20k/sceneparsing` or `cityscapes/fine` manifest."""
        name = manifest.get("dataset")
        lut = torch.full((256,), IGNORE, dtype=torch.long)
        if name == "ade20k":
            # the classes objectInfo150.txt lists (all 150 on the real data)
            ids = sorted(int(k) for k in manifest["classes"])
            lut[torch.tensor(ids)] = torch.arange(len(ids))
            lut[int(manifest.get("ignore_index", 0))] = IGNORE
            return cls(name, len(ids), lut, torch.tensor(ids))
        if name == "pascal_context":
            n = int(manifest["num_classes"])      # 60: background 0 and the 59 classes
            lut[:n] = torch.arange(n)
            return cls(name, n, lut, torch.arange(n))
        if name == "cityscapes":
            n = int(manifest["num_classes"])
            lut[:n] = torch.arange(n)
            return cls(name, n, lut, torch.tensor(manifest["train_to_id"][:n]))
        raise DataError(manifest.get("source", "manifest"),
                        f"CiSS-Net runs on ade20k, pascal_context or cityscapes, not {name!r}")

    def targets(self, label: torch.Tensor) -> torch.Tensor:
        """Stored labels (N, H, W) -> class indices (long), IGNORE where excluded."""
        return self.lut.to(label.device)[label.long()]

    def scored_gt(self, split: dict):
        """The ground truth scored: the original-resolution annotations when staging
        resized them (`label_full`, `instance_full` for Cityscapes), else the staged ones;
        a stacked tensor (N, H, W) or a list of (H_i, W_i) maps."""
        name = "instance" if self.dataset == "cityscapes" else "label"
        full = f"{name}_full"
        return split[full] if full in split else split[name]

    def predict(self, logits: torch.Tensor, split: dict, batch: int = 8):
        """Feature-resolution logits (N, C, h, w) -> class indices at the size of each
        scored ground-truth map (bilinear logits, then argmax): a tensor, or a list when
        the annotations' sizes differ."""
        gt = self.scored_gt(split)
        if isinstance(gt, torch.Tensor):
            return torch.cat([upsample(logits[i:i + batch], gt.shape[-2:])
                              for i in range(0, logits.shape[0], batch)])
        return [upsample(logits[i:i + 1], g.shape[-2:])[0] for i, g in enumerate(gt)]

    def score(self, pred, split: dict, main_only: bool = False) -> dict[str, float]:
        """Scores of predicted class indices (`predict`: at the scored ground truth's size)
        against `split` (staged fields); `main_only`: just `main_metric` (Cityscapes then
        skips the instance statistics)."""
        gt = self.scored_gt(split)
        if len(pred) != len(gt):
            raise ValueError(f"{len(pred)} predictions for {len(gt)} ground-truth maps")
        lut = self.to_output.to(gt[0].device)
        if self.dataset in ("ade20k", "pascal_context"):
            n, ignore = (151, 0) if self.dataset == "ade20k" else (self.num_classes, None)
            conf = sum(confusion_matrix(lut[p.long()], g.long(), n, ignore_index=ignore)
                       for p, g in zip(pred, gt, strict=True))
            scores = {"miou": float(miou(conf, ignore_index=ignore)),
                      "pixel_acc": float(pixel_accuracy(conf))}
            return {"miou": scores["miou"]} if main_only else scores
        acc = CityscapesAccumulator()
        for p, g in zip(pred, gt, strict=True):
            inst = g.long()
            acc.update(lut[p.long()], torch.where(inst >= 1000, inst // 1000, inst),
                       None if main_only else inst)
        s = acc.compute()
        if main_only:
            return {"iou_class": s["mean_class_iou"]}
        return {"iou_class": s["mean_class_iou"], "iiou_class": s["mean_class_iiou"],
                "iou_category": s["mean_category_iou"]}

    @property
    def main_metric(self) -> str:
        """The metric of Tables 1, 4 and 5 for this dataset."""
        return "iou_class" if self.dataset == "cityscapes" else "miou"


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    """Logits (N, C, h, w) -> class indices (N, *size): bilinear upsampling, then argmax."""
    # channels-last: each pixel's class scores lie together for the upsampling and argmax
    up = torch.nn.functional.interpolate(logits.contiguous(memory_format=torch.channels_last),
                                         size=tuple(size), mode="bilinear",
                                         align_corners=False)
    return up.permute(0, 2, 3, 1).argmax(-1)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float in [-0.5, 0.5]."""
    return images.float() / 255.0 - 0.5


def features(domain: torch.nn.Module, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Domain features X_I of uint8 `images` from the frozen `domain` network.

    Computed once per run (the network is frozen), under `no_grad` rather than
    inference mode so that the result can feed layers that are being trained.
    """
    domain.eval()
    with torch.no_grad():
        return torch.cat([domain(to_input(images[i:i + batch]))
                          for i in range(0, images.shape[0], batch)])


def feature_targets(targets: torch.Tensor, stride: int) -> torch.Tensor:
    """Full-resolution class indices -> the index at the centre of each feature cell."""
    return targets[..., stride // 2::stride, stride // 2::stride]
