"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017), the baseline segmenter
and domain network of CiSS-Net's paper profile (Zhou et al. 2019, Section 3.2: "the first
four blocks of PSPNet ... PSPNet-101 for Cityscapes and PSPNet-50 for both ADE20K and
Pascal Context").

- `DilatedResNet`: torchvision's ResNet-50/101 with the strides of layer3 and layer4
  replaced by dilation 2 and 4 (output stride 8, PSPNet Section 3.2), its ImageNet weights
  loaded by `rlcv.models.pretrained.load_into`. It is PSPNet's "first four blocks": the
  stem (conv1, pool) and the four residual stages res2-res5 (torchvision's layer1..layer4),
  2048 channels at stride 8. Taking all four residual stages (rather than stopping at res4)
  follows from the paper's Table 4: its "Baseline", the two-layer Base Net on X_I, scores
  40.97 mIoU on ADE20K against PSPNet-50's 41.68 (Table 5), so X_I carries PSPNet's whole
  trunk, everything before the pyramid pooling head.
- `PSPHead`: the pyramid pooling module (bins 1, 2, 3, 6: average pooling, 1x1 conv to
  C/4, BN, ReLU, bilinear upsampling, concatenated with the input), then 3x3 conv 512, BN,
  ReLU, dropout 0.1 and the 1x1 classifier; optionally the deep-supervision branch on
  res4 (3x3 conv 256, BN, ReLU, dropout, 1x1 classifier; PSPNet Section 3.3, loss weight
  0.4), used in training only.
- `PSPNet`: trunk + head; logits at stride 8 (upsampled to the labels by the loss and by
  `Task.predict`).

Inputs are images in [-0.5, 0.5] (`methods.cissnet.data.to_input`, as every CiSS-Net
network takes them); the trunk renormalises them with ImageNet's mean and std, the
statistics its pretrained weights expect. Deviation: torchvision's ResNet has the 7x7 stem,
PSPNet's released models a deep stem of three 3x3 convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import rlcv.models.pretrained as pretrained

DEPTHS = {"resnet50": 50, "resnet101": 101}
"""The `backbone` settings that build a PSPNet, and their ResNet depth."""

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class DilatedResNet(nn.Module):
    """PSPNet's first four blocks: (N, 3, H, W) in [-0.5, 0.5] -> X_I (N, 2048, H/8, W/8)
    (sizes rounded up); `forward(x, mid=True)` also returns res4 (N, 1024, H/8, W/8)."""

    stride = 8
    channels = 2048

    def __init__(self, depth: int = 50, weights: str = "none", load: bool = True):
        super().__init__()
        import torchvision.models as tvm

        if depth not in (50, 101):
            raise ValueError(f"depth: expected 50 or 101, got {depth}")
        net = getattr(tvm, f"resnet{depth}")(weights=None,
                                             replace_stride_with_dilation=[False, True, True])
        if load:
            pretrained.load_into(net, weights)   # ImageNet; the fc keys are skipped
        del net.fc, net.avgpool
        self.net = net
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1) - 0.5,
                             persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, mid: bool = False):
        n = self.net
        x = (x - self.mean) / self.std
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        c4 = n.layer3(n.layer2(n.layer1(x)))
        c5 = n.layer4(c4)
        return (c4, c5) if mid else c5


def _conv_bn_relu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: (N, C, h, w) -> (N, 2C, h, w)."""

    def __init__(self, channels: int = 2048, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.bins = tuple(bins)
        self.levels = nn.ModuleList(nn.Sequential(*_conv_bn_relu(channels, channels // 4, 1))
                                    for _ in self.bins)
        self.out_channels = channels + len(self.bins) * (channels // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x, *(F.interpolate(level(F.adaptive_avg_pool2d(x, b)), size=size,
                                             mode="bilinear", align_corners=False)
                               for b, level in zip(self.bins, self.levels, strict=True))], 1)


class PSPHead(nn.Module):
    """Pyramid pooling, 3x3 conv `width`, BN, ReLU, dropout, 1x1 classifier (X_I -> logits);
    `aux` (when `aux=True`): the res4 deep-supervision classifier."""

    def __init__(self, num_classes: int, channels: int = 2048, width: int = 512,
                 dropout: float = 0.1, bins: tuple[int, ...] = (1, 2, 3, 6), aux: bool = True):
        super().__init__()
        self.ppm = PyramidPooling(channels, bins)
        self.classifier = nn.Sequential(*_conv_bn_relu(self.ppm.out_channels, width, 3),
                                        nn.Dropout2d(dropout), nn.Conv2d(width, num_classes, 1))
        self.aux = (nn.Sequential(*_conv_bn_relu(channels // 2, width // 2, 3),
                                  nn.Dropout2d(dropout), nn.Conv2d(width // 2, num_classes, 1))
                    if aux else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.ppm(x))


class PSPNet(nn.Module):
    """PSPNet-50/101: `trunk` (DilatedResNet, the domain network X_I) + `head` (PSPHead)."""

    def __init__(self, num_classes: int, depth: int = 50, weights: str = "none",
                 width: int = 512, dropout: float = 0.1, aux: bool = True, load: bool = True):
        super().__init__()
        self.trunk = DilatedResNet(depth, weights, load)
        self.head = PSPHead(num_classes, self.trunk.channels, width, dropout, aux=aux)

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        """Logits (N, K, H/8, W/8); with `with_aux` also the res4 branch's (None without)."""
        if not with_aux:
            return self.head(self.trunk(x))
        c4, c5 = self.trunk(x, mid=True)
        return self.head(c5), (self.head.aux(c4) if self.head.aux is not None else None)


def parameter_count(module: nn.Module) -> int:
    """Number of parameters of `module` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())
