"""CiSS-Net's two datasets seen the same way (Zhou et al., CVPR 2019, Section 3.1).

`Task.of(manifest)` maps the staged labels of ADE20K (`ade20k/sceneparsing`: official
ids 1..150, 0 = other, ignored) and Cityscapes (`cityscapes/fine`: trainIds 0..18, 255 =
ignore) to contiguous class indices for the networks, and `Task.score` maps predicted
indices back and scores them with `rlcv.metrics` only: ADE20K mIoU and pixel accuracy
(dataset-level confusion matrix, the scene-parsing devkit), Cityscapes IoU class / iIoU
class / IoU category (cityscapesscripts, on labelIds).
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
        if name == "cityscapes":
            n = int(manifest["num_classes"])
            lut[:n] = torch.arange(n)
            return cls(name, n, lut, torch.tensor(manifest["train_to_id"][:n]))
        raise DataError(manifest.get("source", "manifest"),
                        f"CiSS-Net runs on ade20k or cityscapes, not {name!r}")

    def targets(self, label: torch.Tensor) -> torch.Tensor:
        """Stored labels (N, H, W) -> class indices (long), IGNORE where excluded."""
        return self.lut.to(label.device)[label.long()]

    def score(self, pred: torch.Tensor, split: dict, main_only: bool = False) -> dict[str, float]:
        """Scores of predicted class indices (N, H, W) against `split` (staged fields);
        `main_only`: just `main_metric` (Cityscapes then skips the instance statistics)."""
        out = self.to_output.to(pred.device)[pred.long()]
        if self.dataset == "ade20k":
            conf = confusion_matrix(out, split["label"].long(), 151, ignore_index=0)
            scores = {"miou": float(miou(conf, ignore_index=0)),
                      "pixel_acc": float(pixel_accuracy(conf))}
            return {"miou": scores["miou"]} if main_only else scores
        inst = split["instance"].long()
        gt = torch.where(inst >= 1000, inst // 1000, inst)
        acc = CityscapesAccumulator()
        acc.update(out, gt, None if main_only else inst)
        s = acc.compute()
        if main_only:
            return {"iou_class": s["mean_class_iou"]}
        return {"iou_class": s["mean_class_iou"], "iiou_class": s["mean_class_iiou"],
                "iou_category": s["mean_category_iou"]}

    @property
    def main_metric(self) -> str:
        """The metric of Tables 1, 4 and 5 for this dataset."""
        return "miou" if self.dataset == "ade20k" else "iou_class"


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
