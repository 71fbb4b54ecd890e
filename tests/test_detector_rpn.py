"""The detector's RPN settings (Rao et al. 2018, Section 4.1): a 3x3 conv to a 512-d map,
anchors of {32, ..., 512}^2 at three ratios (A = 15), 256 anchors sampled per image, 8000
proposals before the test NMS, proposals shorter than 2 px dropped; and, left unset, the
detector built exactly as before those settings existed."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.rpn import RPNHead

from rlcv.models.detector import WideRPNHead, build_detector
from tests.test_pgdetector import _images, _tiny

PAPER_RPN = {"rpn_width": 512, "rpn_anchors_per_image": 256, "rpn_pre_nms_test": 8000,
             "rpn_min_size": 2}
PAPER_ANCHORS = (32, 64, 128, 256, 512)
UNSET = {"rpn_width": None, "rpn_anchors_per_image": None, "rpn_pre_nms_test": None,
         "rpn_min_size": 1e-3}
ZERO = {"rpn_width": 0, "rpn_anchors_per_image": 0, "rpn_pre_nms_test": 0}


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _paper_c4():
    return build_detector("resnet101", False, 81, 64, head_dim=1024, roi_size=14,
                          anchor_sizes=PAPER_ANCHORS, proposals=1000, rois_per_image=512,
                          weights="none", load=False, **PAPER_RPN)


def test_paper_rpn_on_c4():
    """ResNet-101 C4: the RPN's 3x3 conv maps the 2048-channel C5 to 512 channels, then 15
    anchors per location (5 areas x 3 ratios) in both 1x1 branches; 256 anchors sampled,
    8000 / 1000 proposals before / after the test NMS, proposals under 2 px dropped."""
    model = _paper_c4()
    rpn = model.rpn
    head = rpn.head
    assert isinstance(head, WideRPNHead)
    conv = head.conv[0][0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (2048, 512, (3, 3))
    assert head.cls_logits.in_channels == 512 and head.cls_logits.out_channels == 15
    assert head.bbox_pred.in_channels == 512 and head.bbox_pred.out_channels == 4 * 15
    assert rpn.anchor_generator.num_anchors_per_location() == [15]
    assert rpn.anchor_generator.sizes == (PAPER_ANCHORS,)
    assert rpn.fg_bg_sampler.batch_size_per_image == 256
    assert rpn.fg_bg_sampler.positive_fraction == 0.5
    assert rpn._pre_nms_top_n == {"training": 2000, "testing": 8000}
    assert rpn._post_nms_top_n == {"training": 1000, "testing": 1000}
    assert rpn.nms_thresh == 0.7 and rpn.min_size == 2.0
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 512   # RoIs, unchanged
    # the 512-d map: 3x3 2048->512 plus the 1x1 branches, instead of 2048->2048 (~37.8 M)
    assert _count(head) == (9 * 2048 * 512 + 512) + (512 * 15 + 15) + (512 * 60 + 60)
    ref = RPNHead(2048, 15)
    assert _count(ref) - _count(head) > 28e6


def test_paper_rpn_on_fpn_and_forward():
    """With FPN the wide head is shared by every level (3 anchors per location each), and
    a forward runs through it."""
    torch.manual_seed(0)
    model = _tiny(True, **PAPER_RPN).eval()
    conv = model.rpn.head.conv[0][0]
    assert (conv.in_channels, conv.out_channels) == (model.backbone.out_channels, 512)
    assert model.rpn.head.cls_logits.out_channels == 3
    assert model.rpn.fg_bg_sampler.batch_size_per_image == 256
    images, targets = _images(2)
    with torch.inference_mode():
        out = model(images)
    assert len(out) == 2
    model.train()
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_rpn_min_size_drops_short_proposals():
    """`rpn_min_size` is the shorter side below which a proposal is dropped (pixels)."""
    torch.manual_seed(0)
    model = _tiny(rpn_min_size=12).eval()
    assert model.rpn.min_size == 12.0
    images, _ = _images(2)
    with torch.inference_mode():
        batch, _ = model.transform(images)
        proposals, _ = model.rpn(batch, model.backbone(batch.tensors))
    boxes = torch.cat(proposals)
    assert boxes.numel() > 0
    sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert (sides >= 12).all()


def _outputs(model, images, targets):
    torch.manual_seed(3)
    model.train()
    losses = model(images, targets)
    model.eval()
    with torch.inference_mode():
        dets = model(images)
    return losses, dets


@pytest.mark.parametrize("fpn", [False, True])
@pytest.mark.parametrize("given", [UNSET, ZERO])
def test_unset_rpn_settings_build_the_detector_as_before(fpn, given):
    """Settings absent, None or 0: torchvision's RPNHead as wide as the backbone's maps,
    2 x rois_per_image anchors sampled, 2 x proposals before the NMS at test as in
    training, min size 1e-3; the same parameters (seeded), forward and losses."""
    torch.manual_seed(0)
    absent = _tiny(fpn)
    torch.manual_seed(0)
    explicit = _tiny(fpn, **given)
    for model in (absent, explicit):
        rpn = model.rpn
        assert type(rpn.head) is RPNHead
        conv = rpn.head.conv[0][0]
        assert conv.in_channels == conv.out_channels == model.backbone.out_channels
        assert rpn.fg_bg_sampler.batch_size_per_image == 2 * 8
        assert rpn._pre_nms_top_n == {"training": 32, "testing": 32}
        assert rpn.min_size == 1e-3
    assert _count(absent) == _count(explicit)
    a, b = absent.state_dict(), explicit.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    images, targets = _images(2)
    (la, da), (lb, db) = _outputs(absent, images, targets), _outputs(explicit, images, targets)
    for k in la:
        assert torch.equal(la[k], lb[k]), k
    for x, y in zip(da, db, strict=True):
        assert x["boxes"].shape[0] > 0
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_pgdetector_config_passes_the_rpn_settings_through():
    """PGDetectorConfig's RPN fields reach the detector through the row's architecture
    (`_arch`, kept in the checkpoint), and an architecture saved before they existed
    builds the detector it was trained as."""
    from methods.pgdetector.detector import PGDetectorConfig, _arch, _model
    from rlcv import params as P

    gt = {"categories": [{"id": i} for i in range(1, 7)]}
    small = {"width": 4, "head_dim": 16, "roi_size": 3, "proposals": 16, "rois_per_image": 8}
    cfg = P.build_config(PGDetectorConfig, {**small, **PAPER_RPN}, "test")
    arch = _arch(cfg, gt)
    assert {k: arch[k] for k in PAPER_RPN} == PAPER_RPN
    rpn = _model(arch, (64, 64)).rpn
    assert rpn.head.conv[0][0].out_channels == 512
    assert rpn.fg_bg_sampler.batch_size_per_image == 256
    assert rpn._pre_nms_top_n["testing"] == 8000 and rpn.min_size == 2.0

    default = _arch(P.build_config(PGDetectorConfig, small, "test"), gt)
    assert {k: default[k] for k in PAPER_RPN} == UNSET
    old = {k: v for k, v in default.items() if k not in PAPER_RPN}   # an older checkpoint
    torch.manual_seed(0)
    a = _model(default, (64, 64))
    torch.manual_seed(0)
    b = _model(old, (64, 64))
    assert type(a.rpn.head) is RPNHead and type(b.rpn.head) is RPNHead
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    for m in (a, b):
        assert m.rpn.fg_bg_sampler.batch_size_per_image == 16
        assert m.rpn._pre_nms_top_n["testing"] == 32 and m.rpn.min_size == 1e-3
