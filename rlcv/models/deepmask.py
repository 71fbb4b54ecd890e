"""DeepMask (Pinheiro, Collobert & Dollár, NeurIPS 2015), EU-RL's recognition network on
the `paper` profile, and the factory every EU-RL row builds its mask network with.

EU-RL (Xie et al. 2018, Section 4.1): "A pretrained Deepmask model [34] is used for all
baselines as the segmentation network ... trained on the tight-bounding-box cropped
images". DeepMask's published architecture, as its paper states it:

- trunk: VGG-A (Simonyan & Zisserman's 8-convolution configuration, torchvision's
  `vgg11`) pretrained on ImageNet, its last max-pooling and fully connected layers
  removed: a 224 x 224 crop gives a 512 x 14 x 14 map (stride 16);
- mask branch: a 1 x 1 convolution with ReLU, then a linear layer from the whole map to
  the 56 x 56 mask, factored into two linear layers with 512 units and no non-linearity
  between them (the low-rank decomposition); the 56 x 56 logits are upsampled
  bilinearly to the crop.

Not built: DeepMask's score branch (objectness of the crop). EU-RL reads only the mask,
and its crops are object crops by construction; the rows train the mask loss alone.

The map is average-pooled to 14 x 14 before the linear layers: the identity at the
paper's 224-pixel crops, and it keeps the architecture (and its parameter count) the
same on the smaller crops of a dry run. Inputs are crops in [0, 1]; they are normalised
with ImageNet's mean and standard deviation, as the pretrained trunk expects.

The small profiles use `rlcv.models.segnet.MaskNet` (`trunk: small`); `mask_net` picks
the network from a row's config dict (also a checkpoint's, so evaluation rebuilds it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import rlcv.models.pretrained as pretrained
from rlcv.models.segnet import MaskNet

TRUNKS = ("small", "vgg11")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DeepMask(nn.Module):
    """(N, 3, S, S) crops in [0, 1] -> (N, 1, S, S) mask logits (S divisible by 16)."""

    grid = 14
    """The trunk's map side at DeepMask's 224-pixel input."""

    def __init__(self, weights: str = pretrained.NONE, load: bool = True, hidden: int = 512,
                 mask_size: int = 56):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # torchvision's vgg11 trunk (same layers, keys and initialisation) without building
        # its 120 M-parameter classifier; 8 convolutions, the last max-pool removed
        self.features = make_layers(cfgs["A"])[:-1]
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if load:
            pretrained.load_into(self, weights, first_conv="features.0.weight",
                                 skip=("classifier.",))
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.reduce = nn.Sequential(nn.Conv2d(512, 512, 1), nn.ReLU(inplace=True))
        self.low_rank = nn.Linear(512 * self.grid * self.grid, hidden)
        self.mask = nn.Linear(hidden, mask_size * mask_size)
        self.mask_size = mask_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.reduce(self.pool(self.features((x - self.mean) / self.std)))
        m = self.mask(self.low_rank(f.flatten(1)))
        m = m.view(-1, 1, self.mask_size, self.mask_size)
        return F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)


def mask_net(cfg: dict, load: bool = False) -> nn.Module:
    """The mask network a row's (or checkpoint's) config describes: `trunk` small (the
    suite's encoder-decoder of `width`) or vgg11 (DeepMask, ImageNet `weights` loaded when
    `load`; a checkpoint's state dict replaces them otherwise). Configs written before
    `trunk` existed are small."""
    trunk = cfg.get("trunk", "small")
    if trunk == "small":
        return MaskNet(cfg["width"])
    if trunk == "vgg11":
        return DeepMask(cfg.get("weights", pretrained.NONE), load=load)
    raise ValueError(f"trunk: expected one of {', '.join(TRUNKS)}, got {trunk!r}")
