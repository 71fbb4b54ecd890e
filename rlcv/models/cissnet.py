"""The networks of CiSS-Net (Zhou et al., "Context-Reinforced Semantic Segmentation",
CVPR 2019, Section 2, Figs. 2-3, Eqs. 1-2).

- `DomainNet`: the pre-trained CNN giving the mid-level domain features X_I (the first
  four blocks of PSPNet in the paper: `rlcv.models.pspnet.DilatedResNet` on the paper
  profile; on the CPU profiles a small stride-4 CNN trained as the baseline segmenter),
  frozen once trained.
- `PyramidEncoder` F_e: embeds a class map (context map K_I, or p-map Y_I shifted by
  one) and pools it at several grid sizes, as PSPNet's pyramid pooling module (Fig. 3a).
- `SegmentNet` F_s = Base Net + Bias Net (Eq. 1): F_ba(X) without context,
  F_ba(X) + F_bi(X ⊕ F_e(K)) with it.
- `ContextNet` F_k: a five-layer CNN on X ⊕ F_e(Y) whose last layer gives the policy map
  Q_I over {ignore, adopt} and, from the same four-layer trunk, the value map (Fig. 3b).
- `context_map`: K = (Y + 1) ∘ B (Eq. 2); 0 is the class 'uncertain'.

Group Normalization as in Section 3.2 (16 channels per group, fewer when narrow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 16), channels)


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, Group Normalization, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _gn(cout),
                         nn.ReLU(inplace=True))


def trunk(cin: int, width: int, layers: int = 4) -> nn.Sequential:
    """`layers` 3x3 conv blocks at stride 1: the shared body of C-Net and Bias Net."""
    return nn.Sequential(*[conv_block(cin if i == 0 else width, width) for i in range(layers)])


class DomainNet(nn.Module):
    """(N, 3, H, W) image in [-0.5, 0.5] -> domain features X_I (N, C, H/4, W/4)."""

    stride = 4

    def __init__(self, width: int = 16, channels: int = 32, layers: int = 3):
        super().__init__()
        blocks = [conv_block(3, width, 2), conv_block(width, channels if layers == 2 else
                                                      2 * width, 2)]
        blocks += [conv_block(2 * width if i == 0 else channels, channels)
                   for i in range(layers - 2)]
        self.body = nn.Sequential(*blocks)
        self.channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


class BaseNet(nn.Module):
    """F_s^ba: two 3x3 convolutions, X_I -> class logits at feature resolution; the first
    has `hidden` channels (default: C; 512 in Section 3.2), dropout before the second."""

    def __init__(self, channels: int, num_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        hidden = hidden or channels
        drop = [nn.Dropout2d(dropout)] if dropout > 0 else []
        self.net = nn.Sequential(conv_block(channels, hidden), *drop,
                                 nn.Conv2d(hidden, num_classes, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PyramidEncoder(nn.Module):
    """F_e: class map (N, H, W) with values 0..num_classes -> (N, C_e, H, W).

    Value 0 embeds to the zero vector (the 'uncertain' class carries no information, and
    an all-uncertain map encodes to zero);
    the embedding is average-pooled to each `bins` x `bins` grid, projected by a 1x1
    convolution and upsampled back, then concatenated with the embedding itself.
    """

    def __init__(self, num_classes: int, dim: int = 8, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.embed = nn.Embedding(num_classes + 1, dim, padding_idx=0)
        self.bins = tuple(bins)
        # bias-free levels: an all-'uncertain' map encodes to exactly zero
        self.levels = nn.ModuleList(nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False),
                                                  nn.ReLU(inplace=True)) for _ in self.bins)
        self.out_channels = dim * (1 + len(self.bins))

    def forward(self, classes: torch.Tensor) -> torch.Tensor:
        e = self.embed(classes.long()).permute(0, 3, 1, 2)
        size = e.shape[-2:]
        pooled = [F.interpolate(level(F.adaptive_avg_pool2d(e, b)), size=size, mode="bilinear",
                                align_corners=False)
                  for b, level in zip(self.bins, self.levels, strict=True)]
        return torch.cat([e, *pooled], 1)


class SegmentNet(nn.Module):
    """S-Net F_s (Eq. 1): Base Net on X_I plus, given a context map, the Bias Net's
    per-class correction computed from X_I ⊕ F_e(K_I) (added before the softmax)."""

    def __init__(self, channels: int, num_classes: int, width: int = 32, dim: int = 8,
                 bins: tuple[int, ...] = (1, 2, 3, 6), base_width: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        self.base = BaseNet(channels, num_classes, base_width, dropout)
        self.encoder = PyramidEncoder(num_classes, dim, bins)
        self.bias = nn.Sequential(trunk(channels + self.encoder.out_channels, width),
                                  nn.Conv2d(width, num_classes, 1))
        # residual start: with a zero last layer the Bias Net adds nothing until trained
        nn.init.zeros_(self.bias[-1].weight)
        nn.init.zeros_(self.bias[-1].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.base(x)
        if context is None:
            return logits
        return logits + self.bias(torch.cat([x, self.encoder(context)], 1))


class ContextNet(nn.Module):
    """C-Net F_k (Fig. 3b): X_I ⊕ F_e(Y_I + 1) -> policy logits (N, 2, H, W) over
    {0: ignore, 1: adopt} and value map (N, H, W); the value head shares the four-layer
    trunk and differs only in the last (1x1) layer."""

    def __init__(self, channels: int, num_classes: int, width: int = 32, dim: int = 8,
                 bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.encoder = PyramidEncoder(num_classes, dim, bins)
        self.trunk = trunk(channels + self.encoder.out_channels, width)
        self.policy = nn.Conv2d(width, 2, 1)
        self.value = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.policy.weight)   # start at Q = (0.5, 0.5) everywhere
        nn.init.zeros_(self.policy.bias)

    def forward(self, x: torch.Tensor, pmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(torch.cat([x, self.encoder(pmap + 1)], 1))
        return self.policy(h), self.value(h)[:, 0]


def context_map(pmap: torch.Tensor, adopt: torch.Tensor) -> torch.Tensor:
    """Eq. 2: K = (Y + 1) ∘ B; class indices from one, 0 = 'uncertain' where B = 0."""
    return (pmap.long() + 1) * adopt.long()
