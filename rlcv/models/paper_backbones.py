"""The papers' backbones (the `paper` profile), next to the CPU-sized ones of the other
profiles; pretrained weights come through `rlcv.models.pretrained`.

- Rao et al. 2018 (Section 4.1): "networks pre-trained on the ImageNet1k classification
  dataset ... ResNet-101", "dilated layers ... in the final stage", "other training
  details are as in [22]" (Detectron): with ImageNet weights, BatchNorm is frozen
  (`FrozenBatchNorm2d`: the pretrained statistics and affine) and so are stages 1-2
  (conv1 and res2), as Detectron's FREEZE_AT = 2. With `weights: none` nothing is frozen
  (frozen random statistics would be an identity, not a normalisation).
- Xie et al. 2018 (Section 4.2.1): RMPE's person detector is SSD; torchvision ships
  `ssd300_vgg16`, whose VGG-16 trunk starts from ImageNet features.
"""

from __future__ import annotations

from torch import nn

import rlcv.models.pretrained as pretrained


def _freeze_stem(net: nn.Module) -> None:
    """Stop the gradients of conv1 and res2 (stages 1-2)."""
    for module in (net.conv1, net.bn1, net.layer1):
        for p in module.parameters():
            p.requires_grad_(False)


def resnet101(weights: str = "none", dilate_c5: bool = True, load: bool = True) -> nn.Module:
    """torchvision ResNet-101 (C5 dilated: stride 16), with `weights` loaded (when
    `load`); frozen BN and stages 1-2 when `weights` is not none."""
    from torchvision.models import resnet101 as build
    from torchvision.ops import FrozenBatchNorm2d

    frozen = pretrained.resolve(weights) is not None
    net = build(weights=None, replace_stride_with_dilation=[False, False, dilate_c5],
                norm_layer=FrozenBatchNorm2d if frozen else nn.BatchNorm2d)
    if load:
        pretrained.load_into(net, weights)
    if frozen:
        _freeze_stem(net)
    return net


def resnet101_c4(weights: str = "none", load: bool = True) -> nn.Module:
    """The C4 detector's body: ResNet-101 to a dilated C5, one stride-16 map named "0"."""
    from torchvision.models._utils import IntermediateLayerGetter

    body = IntermediateLayerGetter(resnet101(weights, True, load), {"layer4": "0"})
    body.out_channels = 2048
    return body


def resnet101_fpn(weights: str = "none", load: bool = True) -> nn.Module:
    """ResNet-101-FPN (torchvision's `BackboneWithFPN`: C2-C5 and a max-pooled P6)."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    net = resnet101(weights, False, load)
    layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    return BackboneWithFPN(net, layers, [256, 512, 1024, 2048], 256)


def ssd300_person(weights_backbone: str = "none", detections: int = 20,
                  load: bool = True) -> nn.Module:
    """torchvision's SSD300 (VGG-16 trunk from `weights_backbone` when `load`) for one
    class, person, keeping the top `detections` per image after its NMS (RMPE's row
    passes its `max_dets`, `methods.eurl.pose_data.build_person_detector`)."""
    from torchvision.models.detection import ssd300_vgg16

    if not load:
        weights_backbone = pretrained.NONE
    # torchvision loads the trunk itself from the same hub cache; `require` fails first,
    # with the one-line error, when the file is missing
    return ssd300_vgg16(weights=None, weights_backbone=pretrained.require(weights_backbone),
                        num_classes=2, detections_per_img=detections)
