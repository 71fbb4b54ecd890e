"""Stacked hourglass network for single-person pose (Newell, Yang & Deng, ECCV 2016).

EU-RL's pose pipeline (Xie et al. 2018, Sections 4.2 and 5) uses it as the recognition
network f(·; θ_r): an 8-stack model in RMPE's pipeline (Table 2, the `paper` profile) and a
two-stack model for the ablations (Table 3) and Fig. 4. As in Newell et al.:

- a stem brings the crop to the heatmap resolution (stride `downsample`: 4 in the paper,
  256 -> 64; 2 on the CPU profiles so a small crop keeps enough heatmap pixels);
- each hourglass pools down `depth` times and upsamples back (nearest neighbour) with a
  residual skip branch at every resolution, all blocks being bottleneck residual modules;
- each stack predicts the 16 joint heatmaps (intermediate supervision) and feeds them,
  remapped by 1x1 convolutions, into the next stack.

`forward` returns every stack's heatmaps concatenated on the channel axis,
(N, stacks * 16, H, W): losses supervise all stacks, the prediction is the last 16
channels (`last`). `heatmap_targets` renders the Gaussian targets (σ = 1 heatmap pixel
as in the paper's code) and `decode` the joints, both batched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

N_JOINTS = 16


class Residual(nn.Module):
    """Newell et al.'s bottleneck residual module (BN-ReLU-conv, pre-activation)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, 1, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """One hourglass of `depth` levels: skip branch + (pool, recurse, upsample)."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """(N, 3, S, S) crops in [0, 1] -> (N, stacks * 16, S / downsample, S / downsample)."""

    def __init__(self, stacks: int = 2, channels: int = 32, depth: int = 3,
                 downsample: int = 2, joints: int = N_JOINTS):
        super().__init__()
        if downsample not in (2, 4):
            raise ValueError(f"downsample must be 2 or 4, got {downsample}")
        c = channels
        stem = [nn.Conv2d(3, c, 5 if downsample == 2 else 7, 2, 2 if downsample == 2 else 3),
                nn.BatchNorm2d(c), nn.ReLU(inplace=True), Residual(c, c)]
        if downsample == 4:
            stem += [nn.MaxPool2d(2), Residual(c, c)]
        self.stem = nn.Sequential(*stem)
        self.stacks, self.joints = stacks, joints
        self.hourglasses = nn.ModuleList(Hourglass(depth, c) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(c, c), nn.Conv2d(c, c, 1), nn.BatchNorm2d(c),
                          nn.ReLU(inplace=True)) for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(c, joints, 1) for _ in range(stacks))
        self.remap_feat = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(stacks - 1))
        self.remap_heat = nn.ModuleList(nn.Conv2d(joints, c, 1) for _ in range(stacks - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x - 0.5)
        outs = []
        for i in range(self.stacks):
            f = self.features[i](self.hourglasses[i](x))
            h = self.heads[i](f)
            outs.append(h)
            if i < self.stacks - 1:
                x = x + self.remap_feat[i](f) + self.remap_heat[i](h)
        return torch.cat(outs, 1)


def last(heatmaps: torch.Tensor, joints: int = N_JOINTS) -> torch.Tensor:
    """The last stack's heatmaps (the prediction) of a `StackedHourglass` output."""
    return heatmaps[:, -joints:]


def to_heatmap(points: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Image-pixel points (N, J, 2) -> continuous heatmap coordinates of crops `boxes`.

    The crop of box (x0, y0, x1, y1) is resampled to a size x size heatmap whose pixel
    centres sit at x0 + (i + 0.5) * w / size (roi_align with aligned=True).
    """
    x0, y0 = boxes[:, None, 0], boxes[:, None, 1]
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3)[:, None]
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)[:, None]
    return torch.stack([(points[..., 0] - x0) / w * size - 0.5,
                        (points[..., 1] - y0) / h * size - 0.5], -1)


def from_heatmap(coords: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Inverse of `to_heatmap`: heatmap coordinates (N, J, 2) -> image pixels."""
    x0, y0 = boxes[:, None, 0], boxes[:, None, 1]
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    return torch.stack([x0 + (coords[..., 0] + 0.5) * w / size,
                        y0 + (coords[..., 1] + 0.5) * h / size], -1)


def heatmap_targets(points: torch.Tensor, visible: torch.Tensor, boxes: torch.Tensor,
                    size: int, sigma: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian targets of image-pixel joints seen through crops `boxes`.

    Returns the maps (N, J, size, size), the weight (N, J) of each map (1 for an annotated
    joint, 0 for a missing one: its map is all zero and not supervised) and `outside`
    (N, J): the squared target mass that falls outside the map, per map pixel. The
    target is a Gaussian on an unbounded canvas and the prediction is zero beyond the
    crop, so a joint cut off by the crop costs its whole energy (~πσ² / size²): a loss
    that only looked inside the crop would be lowest for a box that leaves every joint
    out (an empty map is easy to predict).
    """
    c = to_heatmap(points.float(), boxes.float(), size)
    grid = torch.arange(size, dtype=c.dtype, device=c.device)
    gx = torch.exp(-(grid - c[..., 0:1]) ** 2 / (2 * sigma**2))   # (N, J, size)
    gy = torch.exp(-(grid - c[..., 1:2]) ** 2 / (2 * sigma**2))
    maps = gy[..., :, None] * gx[..., None, :]
    w = visible.to(maps.dtype)
    # sum of g^2 over the whole integer grid = (sum gx^2)(sum gy^2), each ~ sigma sqrt(pi)
    total = math.pi * sigma**2
    inside = gx.pow(2).sum(-1) * gy.pow(2).sum(-1)
    outside = (total - inside).clamp(min=0) / size**2
    return maps * w[..., None, None], w, outside * w


def heatmap_mse(heatmaps: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                outside: torch.Tensor | None = None, stacks: int | None = None) -> torch.Tensor:
    """Per-sample mean squared error (N,) of (N, stacks * J, H, W) heatmaps against
    (N, J, H, W) targets over the annotated joints' maps, averaged over stacks; `outside`
    (from `heatmap_targets`) adds the target mass beyond the crop."""
    n, j = targets.shape[:2]
    s = stacks or heatmaps.shape[1] // j
    hm = heatmaps.view(n, s, j, *heatmaps.shape[-2:])
    err = (hm - targets[:, None]).pow(2).mean((-1, -2))          # (N, s, J)
    if outside is not None:
        err = err + outside[:, None]
    w = weights[:, None].expand_as(err)
    return (err * w).sum((1, 2)) / w.sum((1, 2)).clamp(min=1)


def decode(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint coordinates (N, J, 2) in heatmap pixels and peak values (N, J) of (N, J, H, W)
    maps: the arg-max moved a quarter pixel towards the higher neighbour (Newell et al.)."""
    n, j, h, w = heatmaps.shape
    flat = heatmaps.flatten(2)
    peak, idx = flat.max(-1)
    x, y = (idx % w), (idx // w)
    pad = F.pad(heatmaps, (1, 1, 1, 1), mode="replicate").flatten(2)
    wp = w + 2
    at = lambda dx, dy: pad.gather(-1, ((y + 1 + dy) * wp + (x + 1 + dx))[..., None])[..., 0]  # noqa: E731
    dx = torch.sign(at(1, 0) - at(-1, 0))
    dy = torch.sign(at(0, 1) - at(0, -1))
    return torch.stack([x + 0.25 * dx, y + 0.25 * dy], -1).float(), peak
