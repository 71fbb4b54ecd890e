"""The first stage of EU-RL's instance-segmentation pipeline and its differentiable link.

EU-RL (Xie et al. 2018), Section 4.1: "a network to directly regress a bounding box"
(Regress-Deepmask, and the start box of Regress-Agent-Deepmask), and the spatial
transformer baseline (Regress-STN-Deepmask) that makes the crop g(I; Ω) differentiable
in Ω so the regressor and DeepMask can be trained end to end (Jaderberg et al. 2015).

`BoxRegressor` maps a whole image to one box, parameterised as the normalised centre and
size (cx/W, cy/H, w/W, h/H) through a sigmoid so every box lies inside the image;
`stn_crop` samples exactly the points `rlcv.models.crops.crop` (roi_align, aligned=True)
samples, but with `affine_grid`/`grid_sample`, so gradients reach the box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BoxRegressor(nn.Module):
    """(N, 3, H, W) images in [0, 1] -> (N, 4) boxes xyxy in pixels, inside the image."""

    def __init__(self, width: int = 16, hidden: int = 128):
        super().__init__()
        w = width

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w),
                                      block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(4 * w * 16, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 4))

    def normalised(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 4) normalised (cx, cy, w, h) in (0, 1)."""
        return torch.sigmoid(self.head(self.features(images - 0.5)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        return decode(self.normalised(images), h, w)


def encode(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """xyxy pixel boxes -> normalised (cx, cy, w, h), the regressor's target."""
    x0, y0, x1, y1 = boxes.unbind(1)
    return torch.stack([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
                        (x1 - x0) / width, (y1 - y0) / height], 1)


def decode(norm: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised (cx, cy, w, h) -> xyxy pixels, clipped to the image (differentiably)."""
    cx, cy, bw, bh = norm.unbind(1)
    x0 = (cx - bw / 2).clamp(0, 1) * width
    x1 = (cx + bw / 2).clamp(0, 1) * width
    y0 = (cy - bh / 2).clamp(0, 1) * height
    y1 = (cy + bh / 2).clamp(0, 1) * height
    return torch.stack([x0, y0, x1, y1], 1)


def stn_crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Spatial-transformer crop: like `crops.crop`, differentiable in `images` and `boxes`.

    The affine map sends the output's pixel centres to x0 + (i + 0.5) * w / size (and the
    same in y), the bin centres `crops.crop` samples (roi_align, aligned=True, one sample
    per bin): inside the image the two crops are equal.
    """
    n, c, h, w = images.shape
    x0, y0, x1, y1 = boxes.to(images.dtype).unbind(1)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = (x1 - x0) / w
    theta[:, 0, 2] = (x0 + x1) / w - 1
    theta[:, 1, 1] = (y1 - y0) / h
    theta[:, 1, 2] = (y0 + y1) / h - 1
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
