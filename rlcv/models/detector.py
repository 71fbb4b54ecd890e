"""Faster R-CNN as the policy-gradient detector builds on it (Rao et al. 2018, Sections
3.1 and 4.1), on torchvision's `FasterRCNN` (its RPN, RoIAlign box head and NMS).

Backbones, sized by the profile:

- `small` (ci/smoke): a CPU-sized CNN. Without FPN the detector reads one stride-8 map
  whose last stage is dilated instead of strided, the paper's "dilated C5" design on a
  small scale; with FPN it reads strides 4, 8 and 16 through torchvision's
  `FeaturePyramidNetwork` plus a max-pooled coarsest level (P6).
- `resnet101` (paper): ResNet-101 with a dilated 5th stage (stride 16) and the paper's
  conv + 2-fc box head on 14 x 14 RoIs, or ResNet-101-FPN from torchvision's
  `BackboneWithFPN` with the 2-fc head (`rlcv.models.paper_backbones`: ImageNet
  weights with frozen BatchNorm and stages 1-2, or `weights: none`). (torchvision's
  FPN reads C2-C5 with P6 by max-pooling, not the paper's {C2, C3, dilated C5} +
  strided P6.)

The RPN (Section 4.1) is torchvision's: one shared head over the maps, A sigmoid
objectness logits per location (the paper's [22] has 2A softmax scores: the same
two-way choice), NMS 0.7, positives at IoU 0.7 and negatives below 0.3, at most half
of its sampled anchors positive. `rpn_width` gives its 3x3 convolution its own width
(the paper's "512-d feature map", `WideRPNHead`) instead of the backbone's (2048 on
C5); `rpn_anchors_per_image`, `rpn_pre_nms_test` and `rpn_min_size` set the anchors
sampled to train it, its test-time pre-NMS count (per level with FPN, as torchvision
ranks them) and the shorter side below which a proposal is dropped. Left unset, the
detector is built as before they existed.

With FPN, `anchor_sizes` are one per map in the backbone's order: on ResNet-101-FPN
P2-P6 at strides 4-64 (torchvision's pyramid). The paper's pyramid is {P2, P3, P5}
(dilated C5: stride 16) plus a strided P6 (stride 32), with {32, 64, 128} on the first
three and {256, 512} together on P6; by stride, [32, 64, 128, 256, 512] here matches it
up to 256 and puts 512 on a stride-64 map instead of sharing the stride-32 one.

RoIAlign samples one point per bin (sampling_ratio=1): its CPU backward dominated the
smoke training step at 2 x 2 points.

Besides the constructor, three functions expose the pieces the methods need without
editing torchvision's internals: `roi_outputs` (the training forward up to the box
head's logits for the sampled RoIs, with the RPN losses and the RoIs' assigned labels),
`decode_candidates` (per-class candidate boxes of RoIs, as `postprocess_detections`
decodes them) and `detect` (inference with a pluggable final NMS: greedy or soft).
`frame_sizes` sets the transform's sizes to a staged frame (no second resize).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign, batched_nms, clip_boxes_to_image
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torchvision.ops.misc import Conv2dNormActivation


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallBackbone(nn.Module):
    """A small CNN: stem (stride 2), then stages at strides 4, 8 and (FPN) 16 or (no
    FPN) 8 dilated; returns an OrderedDict of maps as torchvision's detectors expect."""

    def __init__(self, width: int, fpn: bool):
        super().__init__()
        w = width
        self.fpn = fpn
        self.stem = _block(3, w, stride=2)
        self.c2 = _block(w, w, stride=2)
        self.c3 = _block(w, 2 * w, stride=2)
        # the paper's dilated last stage: keep the stride, widen the field of view
        self.c5 = _block(2 * w, 4 * w, stride=2) if fpn else _block(2 * w, 4 * w, dilation=2)
        if fpn:
            self.pyramid = FeaturePyramidNetwork([w, 2 * w, 4 * w], 2 * w, LastLevelMaxPool())
            self.out_channels = 2 * w
        else:
            self.out_channels = 4 * w

    def forward(self, x: torch.Tensor) -> OrderedDict:
        c2 = self.c2(self.stem(x))
        c3 = self.c3(c2)
        c5 = self.c5(c3)
        if not self.fpn:
            return OrderedDict([("0", c5)])
        return self.pyramid(OrderedDict([("0", c2), ("1", c3), ("2", c5)]))


class ConvFCHead(nn.Module):
    """The paper's Faster R-CNN box head (Section 4.1): a 3x3 stride-2 convolution to
    256 channels on the (14 x 14) RoI features, then two fully connected layers."""

    def __init__(self, in_channels: int, roi_size: int, head_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 256, 3, stride=2, padding=1)
        side = (roi_size + 1) // 2
        self.fc6 = nn.Linear(256 * side * side, head_dim)
        self.fc7 = nn.Linear(head_dim, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x)).flatten(1)
        return F.relu(self.fc7(F.relu(self.fc6(x))))


class WideRPNHead(RPNHead):
    """torchvision's `RPNHead` (same forward, initialisation and state-dict names) whose
    3x3 convolution maps the `in_channels` features to `width` channels (the paper's
    512-d map) before the 1x1 objectness and box branches."""

    def __init__(self, in_channels: int, width: int, num_anchors: int):
        super().__init__(width, num_anchors)
        self.conv = nn.Sequential(
            Conv2dNormActivation(in_channels, width, kernel_size=3, norm_layer=None))
        conv = self.conv[0][0]
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(conv.bias, 0)


def _resnet101(fpn: bool, weights: str, load: bool) -> nn.Module:
    import rlcv.models.paper_backbones as paper_backbones

    build = paper_backbones.resnet101_fpn if fpn else paper_backbones.resnet101_c4
    return build(weights, load)


def build_detector(backbone: str = "small", fpn: bool = False, num_classes: int = 7,
                   image_size: int = 96, width: int = 16, head_dim: int = 128,
                   roi_size: int = 7, anchor_sizes: tuple = (8, 16, 32, 64),
                   proposals: int = 100, rois_per_image: int = 64,
                   detections: int = 100, weights: str = "none",
                   load: bool = True, max_size: float | None = None,
                   rpn_width: int | None = None, rpn_anchors_per_image: int | None = None,
                   rpn_pre_nms_test: int | None = None,
                   rpn_min_size: float = 1e-3) -> FasterRCNN:
    """A torchvision `FasterRCNN` whose transform resizes an image's shorter side to
    `image_size` and its longer one to at most `max_size` (default `image_size`: square
    images of that side; `frame_sizes` gives both for a staged frame, which then passes
    through unresized); `weights` (resnet101 only) names the backbone's pretrained
    weights (`rlcv.models.paper_backbones`), loaded when `load` (False: the same
    architecture, e.g. to load a checkpoint into).

    `num_classes` counts the background; `anchor_sizes` are spread one per pyramid
    level with FPN, all on the single map without; `proposals` is the RPN's post-NMS
    count (train and test), `rois_per_image` the box head's sampled RoIs (1:3 positives
    to negatives as in the paper), `detections` the cap after the final NMS (COCO's 100).

    The RPN: `rpn_width` the channels of its 3x3 convolution (None or 0: torchvision's
    `RPNHead`, as wide as the backbone's maps), `rpn_anchors_per_image` the anchors
    sampled per image to train it (None or 0: 2 x `rois_per_image`), `rpn_pre_nms_test`
    the proposals per image (per level with FPN) before its NMS at test (None or 0:
    2 x `proposals`, as in training), `rpn_min_size` the shorter side in pixels below
    which a proposal is dropped (torchvision's 1e-3).
    """
    if backbone == "small":
        body = SmallBackbone(width, fpn)
    elif backbone == "resnet101":
        body = _resnet101(fpn, weights, load)
    else:
        raise ValueError(f"backbone: expected 'small' or 'resnet101', got {backbone!r}")
    sizes = tuple(int(s) for s in anchor_sizes)
    if fpn:
        n_maps = 4 if backbone == "small" else 5
        if len(sizes) != n_maps:
            raise ValueError(f"anchor_sizes: FPN needs one size per level ({n_maps}), got {sizes}")
        anchors = AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * n_maps)
        names = [str(i) for i in range(n_maps - 1)] if backbone == "small" else ["0", "1", "2", "3"]
    else:
        anchors = AnchorGenerator((sizes,), ((0.5, 1.0, 2.0),))
        names = ["0"]
    pool = MultiScaleRoIAlign(names, roi_size, sampling_ratio=1)
    if backbone == "resnet101" and not fpn:
        head = ConvFCHead(body.out_channels, roi_size, head_dim)
    else:
        head = TwoMLPHead(body.out_channels * roi_size**2, head_dim)
    # None (or 0): torchvision's RPNHead, built by FasterRCNN as before this setting
    rpn_head = (WideRPNHead(body.out_channels, rpn_width, anchors.num_anchors_per_location()[0])
                if rpn_width else None)
    model = FasterRCNN(
        body, min_size=image_size, max_size=image_size if max_size is None else max_size,
        rpn_anchor_generator=anchors, rpn_head=rpn_head, box_roi_pool=pool, box_head=head,
        box_predictor=FastRCNNPredictor(head_dim, num_classes),
        rpn_pre_nms_top_n_train=2 * proposals,
        rpn_pre_nms_top_n_test=rpn_pre_nms_test or 2 * proposals,
        rpn_post_nms_top_n_train=proposals, rpn_post_nms_top_n_test=proposals,
        rpn_batch_size_per_image=rpn_anchors_per_image or 2 * rois_per_image,
        box_batch_size_per_image=rois_per_image, box_positive_fraction=0.25,
        box_score_thresh=0.01, box_nms_thresh=0.5, box_detections_per_img=detections)
    model.rpn.min_size = float(rpn_min_size)   # FasterRCNN takes no argument for it
    return model


def frame_sizes(manifest: dict) -> tuple[int, float]:
    """The (min_size, max_size) of `build_detector` under which the images of a staged
    subset keep their staged size (scale 1: no second resize), from its manifest's frame:
    (S, S) for S x S letterboxed squares (`resize: letterbox`, the default); (image_size,
    max_size) for `resize: shorter` (`datasets.coco_frames`), the longer side unbounded
    without max_size."""
    size = int(manifest["image_size"])
    if manifest.get("resize", "letterbox") == "letterbox":
        return size, size
    limit = manifest.get("max_size")
    return size, (math.inf if limit is None else int(limit))


def roi_outputs(model: FasterRCNN, images: list[torch.Tensor], targets: list[dict],
                sample: bool = True, candidates: bool = False) -> dict:
    """The training forward up to the box head, for a custom classification loss.

    Runs the transform, backbone and RPN (with its losses), labels the RoIs as
    torchvision's `select_training_samples` does (gt boxes added to the proposals,
    IoU 0.5 foreground) with its public pieces, sampled to `rois_per_image` at 1:3
    (`sample=True`) or all of them (`sample=False`, for OHEM), and the box head on them.
    Returns `rpn_losses`, `rois` (list per image, transformed frame), `labels`,
    `regression_targets`, `gt_index` (matched gt per RoI, -1 for background),
    `class_logits`, `box_regression`, `image_sizes` and the transformed `targets`.

    `candidates=True` also runs the box head on the RPN's post-NMS proposals themselves,
    without ground-truth boxes added and unsampled: the candidates the final NMS sees at
    inference. They come as `candidates`: `rois`, `labels` (assigned as above, used to
    name each candidate's class, never added as boxes), `class_logits`, `box_regression`.
    """
    heads = model.roi_heads
    batch, targets = model.transform(images, targets)
    features = model.backbone(batch.tensors)
    proposals, rpn_losses = model.rpn(batch, features, targets)
    gt_boxes = [t["boxes"] for t in targets]
    rois = heads.add_gt_proposals(proposals, gt_boxes)
    idx, labels = heads.assign_targets_to_proposals(rois, gt_boxes, [t["labels"] for t in targets])
    if sample:
        keep = heads.subsample(labels)
        rois = [r[k] for r, k in zip(rois, keep, strict=True)]
        idx = [i[k] for i, k in zip(idx, keep, strict=True)]
        labels = [lab[k] for lab, k in zip(labels, keep, strict=True)]
    matched = [g[i] if g.numel() else torch.zeros_like(r)
               for g, i, r in zip(gt_boxes, idx, rois, strict=True)]
    reg = heads.box_coder.encode(matched, rois)
    match = [torch.where(lab > 0, i, -1) for i, lab in zip(idx, labels, strict=True)]
    pooled = heads.box_roi_pool(features, rois, batch.image_sizes)
    class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
    out = {"rpn_losses": rpn_losses, "rois": rois, "labels": labels,
           "regression_targets": reg, "gt_index": match, "class_logits": class_logits,
           "box_regression": box_regression, "image_sizes": batch.image_sizes,
           "targets": targets}
    if candidates:
        props = [p.detach() for p in proposals]
        _, cand_labels = heads.assign_targets_to_proposals(
            props, gt_boxes, [t["labels"] for t in targets])
        cand_pooled = heads.box_roi_pool(features, props, batch.image_sizes)
        logits, regression = heads.box_predictor(heads.box_head(cand_pooled))
        out["candidates"] = {"rois": props, "labels": cand_labels, "class_logits": logits,
                             "box_regression": regression}
    return out


def decode_candidates(model: FasterRCNN, box_regression: torch.Tensor,
                      rois: list[torch.Tensor], image_sizes,
                      classes: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Boxes of each image's RoIs, decoded and clipped as `postprocess_detections` does:
    per class `[R, C, 4]`, or `[R, 4]` for one class per RoI (`classes`, `[sum R]`).
    No gradient: the boxes are the action's content, not its probability."""
    with torch.no_grad():
        reg = box_regression.detach()
        if classes is None:
            boxes = model.roi_heads.box_coder.decode(reg, rois)
        else:
            rows = torch.arange(reg.shape[0], device=reg.device)
            deltas = reg.reshape(reg.shape[0], -1, 4)[rows, classes]
            boxes = model.roi_heads.box_coder.decode_single(deltas, torch.cat(rois))
    out = boxes.split([r.shape[0] for r in rois])
    return [clip_boxes_to_image(b, s) for b, s in zip(out, image_sizes, strict=True)]


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
               iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class greedy NMS: kept indices (by descending score) and their scores."""
    keep = batched_nms(boxes, scores, labels, iou)
    return keep, scores[keep]


NmsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float],
                 tuple[torch.Tensor, torch.Tensor]]


@torch.inference_mode()
def detect(model: FasterRCNN, images: list[torch.Tensor], nms: NmsFn = greedy_nms,
           batch: int = 32) -> list[dict]:
    """Detections per image (`boxes` xyxy in input pixels, `scores`, `labels`), the
    final NMS being `nms(boxes, scores, labels, iou)` (greedy or soft; soft-NMS may
    change scores). Otherwise torchvision's `postprocess_detections`: background
    dropped, score > box_score_thresh, empty boxes dropped, top `detections_per_img`."""
    model.eval()
    heads = model.roi_heads
    out = []
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        sized, _ = model.transform(chunk)
        features = model.backbone(sized.tensors)
        proposals, _ = model.rpn(sized, features)
        pooled = heads.box_roi_pool(features, proposals, sized.image_sizes)
        logits, reg = heads.box_predictor(heads.box_head(pooled))
        per_boxes = decode_candidates(model, reg, proposals, sized.image_sizes)
        per_scores = F.softmax(logits, -1).split([p.shape[0] for p in proposals])
        for boxes, scores, size, img in zip(per_boxes, per_scores, sized.image_sizes, chunk,
                                            strict=True):
            n_cls = scores.shape[1]
            labels = torch.arange(n_cls, device=scores.device).view(1, -1).expand_as(scores)
            boxes, scores, labels = (boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1),
                                     labels[:, 1:].reshape(-1))
            ok = torch.where(scores > heads.score_thresh)[0]
            boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            ok = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            keep, kept_scores = nms(boxes, scores, labels, heads.nms_thresh)
            top = heads.detections_per_img
            keep, kept_scores = keep[:top], kept_scores[:top]
            # back from the transform's frame to the input image's pixels
            ratio = boxes.new_tensor([img.shape[-1] / size[1], img.shape[-2] / size[0]] * 2)
            out.append({"boxes": boxes[keep] * ratio, "scores": kept_scores,
                        "labels": labels[keep]})
    return out


def class_ids(gt: dict) -> list[int]:
    """The annotation file's category ids, sorted: detector class k (1..K) is ids[k - 1]
    (the synthetic set's ids are 1..6 already; real COCO's 80 run to 90)."""
    return sorted(int(c["id"]) for c in gt.get("categories", []))


def class_lut(gt: dict) -> torch.Tensor:
    """Category id -> detector class (0 for an id not in the file) lookup table."""
    ids = class_ids(gt)
    lut = torch.zeros(max(ids, default=0) + 1, dtype=torch.long)
    lut[ids] = torch.arange(1, len(ids) + 1)
    return lut
