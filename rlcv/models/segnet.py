"""A small encoder-decoder mask network in the role of DeepMask (Pinheiro et al. 2015).

DeepMask predicts a class-agnostic object mask for a crop centred on an object. Here a
compact U-Net-style network sized by `width` (the `paper` profile raises it) maps a
(3, S, S) crop to (S, S) mask logits; a global pooled context vector is added at the
bottleneck, standing in for DeepMask's fully connected mask layer that sees the whole
crop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class MaskNet(nn.Module):
    """(N, in_ch, S, S) -> (N, out_ch, S, S) logits; S divisible by 8."""

    def __init__(self, width: int = 32, in_ch: int = 3, out_ch: int = 1):
        super().__init__()
        w = width
        self.enc1, self.enc2 = _block(in_ch, w), _block(w, 2 * w, 2)
        self.enc3, self.enc4 = _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 2)
        self.context = nn.Linear(4 * w, 4 * w)
        self.dec3, self.dec2 = _block(8 * w, 2 * w), _block(4 * w, w)
        self.dec1 = _block(2 * w, w)
        self.head = nn.Conv2d(w, out_ch, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        e4 = e4 + self.context(e4.mean((2, 3)))[:, :, None, None]
        return [e1, e2, e3, e4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1, e2, e3, e4 = self.features(x)
        up = lambda t, ref: F.interpolate(t, size=ref.shape[-2:], mode="bilinear",  # noqa: E731
                                          align_corners=False)
        d3 = self.dec3(torch.cat([up(e4, e3), e3], 1))
        d2 = self.dec2(torch.cat([up(d3, e2), e2], 1))
        d1 = self.dec1(torch.cat([up(d2, e1), e1], 1))
        return self.head(d1)
