"""Policy-gradient detector (issue 8): Eq. 11 on the logits, the selection reward, soft-NMS
and OHEM against their published definitions, the detector pieces against torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import methods
from rlcv.engine import generator
from rlcv.metrics import coco_eval
from rlcv.models.detector import build_detector, detect, roi_outputs
from rlcv.models.nms import ohem_select, soft_nms
from rlcv.rl.reinforce import (
    image_rewards,
    nms_selections,
    pg_logit_loss,
    sample_selections,
    selection_advantages,
)

# ----------------------------------------------------------------------------- Eq. 11


@pytest.mark.parametrize("gamma", [0.0, 1.0, 0.5])
def test_pg_loss_gradient_on_logits_is_eq11(gamma):
    logits = torch.tensor([[0.2, 1.5, -0.3, 0.1],
                           [1.0, 0.0, 2.0, -1.0],
                           [0.3, 0.3, 0.3, 0.9]], requires_grad=True)
    actions = torch.tensor([1, 2, 3])
    adv = torch.tensor([0.25, -0.4, 0.0])            # r(b) - r'
    pg_logit_loss(logits, actions, adv, gamma).backward()
    p = torch.softmax(logits.detach(), -1)
    n = logits.shape[0]
    for i, a in enumerate(actions.tolist()):
        coef = float(adv[i]) + gamma
        # Eq. 11 on the chosen class: ((r(b) - r') + γ)(p_b - 1), averaged over the rows
        assert logits.grad[i, a].item() == pytest.approx(coef * (p[i, a].item() - 1) / n,
                                                         abs=1e-7)
        for j in range(4):
            if j != a:   # the rest of the softmax: ((r(b) - r') + γ) p_j
                assert logits.grad[i, j].item() == pytest.approx(coef * p[i, j].item() / n,
                                                                 abs=1e-7)


def test_pg_loss_on_background_rois_splits_policy_and_cross_entropy():
    # a background RoI (label 0) acting as class 2: PG on class 2, γ·CE on the background
    logits = torch.tensor([[0.5, -0.2, 0.8]], requires_grad=True)
    adv, gamma = torch.tensor([-0.3]), 1.0
    pg_logit_loss(logits, torch.tensor([2]), adv, gamma, labels=torch.tensor([0])).backward()
    p = torch.softmax(logits.detach(), -1)[0]
    want = -adv[0] * (F.one_hot(torch.tensor(2), 3) - p) + gamma * (p - F.one_hot(
        torch.tensor(0), 3))
    torch.testing.assert_close(logits.grad[0], want.float())


def test_positive_advantage_raises_the_score_negative_lowers_it():
    logits = torch.zeros(2, 3, requires_grad=True)
    pg_logit_loss(logits, torch.tensor([1, 1]), torch.tensor([0.5, -0.5])).backward()
    new = torch.softmax(logits.detach() - 1.0 * logits.grad, -1)
    assert new[0, 1] > 1 / 3 > new[1, 1]


# ----------------------------------------------------------------------------- rewards

GT = torch.tensor([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 80.0, 70.0]])


def _crowd_case():
    """b0 scores highest but is loose (IoU 0.64), b1 is tight but suppressed by b0 under
    NMS 0.5, b2 is a false positive, b3 finds the second object."""
    boxes = torch.tensor([[10.0, 10.0, 35.0, 35.0],
                          [10.0, 10.0, 31.0, 30.0],
                          [85.0, 5.0, 95.0, 15.0],
                          [50.0, 50.0, 80.0, 71.0]])
    scores = torch.tensor([0.9, 0.8, 0.6, 0.7])
    classes = torch.tensor([1, 1, 1, 1])
    return boxes, scores, classes


def test_reward_is_zero_for_boxes_already_selected():
    boxes, scores, classes = _crowd_case()
    res = selection_advantages(boxes, scores, classes, GT, torch.tensor([1, 1]), k=200,
                               generator=generator(0, "t"), nms_iou=0.5)
    assert res["nms"].tolist() == [True, False, True, True]     # b1 suppressed by b0
    assert (res["advantage"][res["nms"]] == 0).all()
    # the tight box loses to the loose one under NMS; samples without b0 keep it and score
    # higher than the NMS result, so it is pushed up (the paper's "higher IoU than the
    # selected ones get positive rewards")
    assert res["advantage"][1] > 0
    assert res["samples"].shape == (200, 4)


def test_advantage_is_sampled_reward_minus_baseline_over_k():
    boxes, scores, classes = _crowd_case()
    res = selection_advantages(boxes, scores, classes, GT, torch.tensor([1, 1]), k=10,
                               generator=generator(1, "t"), nms_iou=0.5)
    s, r = res["samples"].double(), res["rewards"]
    want = (s * (r - res["baseline"])[:, None]).sum(0) / 10
    want[res["nms"]] = 0
    torch.testing.assert_close(res["advantage"].double(), want, rtol=0, atol=1e-6)


def _coco_ap(boxes, scores, classes, gt, gt_labels) -> float:
    cats = [{"id": c} for c in range(1, 4)]
    anns = [{"id": i + 1, "image_id": 1, "category_id": int(c), "iscrowd": 0,
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
             "area": float((b[2] - b[0]) * (b[3] - b[1]))}
            for i, (b, c) in enumerate(zip(gt.tolist(), gt_labels.tolist(), strict=True))]
    gt_dict = {"images": [{"id": 1, "width": 128, "height": 128}], "annotations": anns,
               "categories": cats}
    dt = [{"image_id": 1, "category_id": int(c), "score": float(s),
           "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
          for b, s, c in zip(boxes.tolist(), scores.tolist(), classes.tolist(), strict=True)]
    return coco_eval(gt_dict, dt)["AP"]


def test_sampled_selection_ap_equals_pycocotools():
    g = torch.Generator().manual_seed(3)
    gt = torch.tensor([[10.0, 10.0, 40.0, 40.0], [20.0, 15.0, 45.0, 50.0],
                       [70.0, 60.0, 100.0, 90.0], [5.0, 80.0, 30.0, 120.0]])
    gt_labels = torch.tensor([1, 1, 2, 2])
    # jittered copies of the gt plus clutter, classes 1-3 (3 has no gt: ignored by AP)
    src = gt[torch.randint(4, (40,), generator=g)]
    boxes = src + torch.randn(40, 4, generator=g) * 4
    boxes = torch.cat([boxes.min(1, keepdim=True).values.new_zeros(0, 4), boxes])
    boxes = torch.stack([boxes[:, :2].min(1).values * 0 + boxes[:, 0],
                         boxes[:, 1], boxes[:, 0] + (boxes[:, 2] - boxes[:, 0]).abs() + 1,
                         boxes[:, 1] + (boxes[:, 3] - boxes[:, 1]).abs() + 1], 1)
    scores = torch.rand(40, generator=g)
    classes = torch.randint(1, 4, (40,), generator=g)
    res = selection_advantages(boxes, scores, classes, gt, gt_labels, k=10,
                               generator=generator(2, "t"), nms_iou=0.5)
    for j in range(10):
        sel = res["samples"][j]
        want = _coco_ap(boxes[sel], scores[sel], classes[sel], gt, gt_labels)
        assert res["rewards"][j].item() == pytest.approx(want, abs=1e-12)
    sel = res["nms"]
    assert res["baseline"] == pytest.approx(
        _coco_ap(boxes[sel], scores[sel], classes[sel], gt, gt_labels), abs=1e-12)
    assert len(set(res["rewards"].tolist())) > 1          # the samples really differ


def test_selections_are_drawn_by_score_and_pass_nms():
    scores = torch.tensor([0.0, 1.0, 0.5])
    drawn = sample_selections(scores, 4000, torch.Generator().manual_seed(0))
    freq = drawn.float().mean(0)
    assert freq[0] == 0 and freq[1] == 1 and abs(freq[2] - 0.5) < 0.03
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [1.0, 0, 11, 10]])
    both = torch.tensor([[True, True, False], [False, True, True]])
    kept = nms_selections(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 2]),
                          both, 0.5)
    assert kept.tolist() == [[True, False, False], [False, True, True]]


def test_image_reward_averages_classes_with_ground_truth():
    boxes = torch.tensor([[10.0, 10, 30, 30], [50.0, 50, 80, 70], [0.0, 0, 5, 5]])
    sel = torch.tensor([[True, True, True], [True, False, True]])
    r = image_rewards(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 2, 3]), sel,
                      GT, torch.tensor([1, 2]))
    assert r.tolist() == pytest.approx([1.0, 0.5])   # class 3 has no gt: left out


# ----------------------------------------------------------------------------- soft-NMS


def _reference_soft_nms(boxes, scores, method, sigma, nt, thresh):
    """Bodla et al. 2017, Algorithm 1, one box at a time (single class)."""
    from torchvision.ops import box_iou

    b, s = boxes.tolist(), scores.tolist()
    idx = list(range(len(b)))
    out = []
    while idx:
        m = max(idx, key=lambda i: s[i])
        if s[m] < thresh:
            break
        out.append((m, s[m]))
        idx.remove(m)
        for i in idx:
            iou = box_iou(torch.tensor([b[m]]), torch.tensor([b[i]])).item()
            if method == "linear":
                s[i] *= (1 - iou) if iou >= nt else 1.0
            else:
                s[i] *= math.exp(-iou * iou / sigma)
    return out


def test_soft_nms_gaussian_and_linear_on_hand_made_boxes():
    a = [0.0, 0.0, 10.0, 10.0]
    boxes = torch.tensor([a, [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 2.0], [20.0, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.75, 0.6])
    labels = torch.ones(4, dtype=torch.long)
    # IoU(a, b1) = 0.8, IoU(a, b2) = 0.2, IoU(b1, b2) = 0.25, box 3 is disjoint
    keep, kept = soft_nms(boxes, scores, labels, "gaussian", sigma=0.5)
    g1, g2 = 0.8 * math.exp(-0.64 / 0.5), 0.75 * math.exp(-0.04 / 0.5)
    # after a: b2 (0.694) > box 3 (0.6) > b1 (0.222); b1 then decays by b2 (IoU 0.25)
    assert keep.tolist() == [0, 2, 3, 1]
    assert kept.tolist() == pytest.approx([0.9, g2, 0.6, g1 * math.exp(-0.0625 / 0.5)])
    keep, kept = soft_nms(boxes, scores, labels, "linear", iou_threshold=0.3)
    # linear: only IoU >= N_t decays: b1 -> 0.8 * (1 - 0.8); b2 (IoU 0.2) untouched, and
    # b1 is not decayed again by b2 (IoU 0.25 < N_t)
    assert keep.tolist() == [0, 2, 3, 1]
    assert kept.tolist() == pytest.approx([0.9, 0.75, 0.6, 0.8 * 0.2])


def test_soft_nms_matches_reference_and_keeps_classes_apart():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(30, 2, generator=g) * 20], 1)
    scores = torch.rand(30, generator=g)
    for method in ("gaussian", "linear"):
        keep, kept = soft_nms(boxes, scores, torch.ones(30, dtype=torch.long), method,
                              score_threshold=0.01)
        ref = _reference_soft_nms(boxes, scores, method, 0.5, 0.3, 0.01)
        assert keep.tolist() == [i for i, _ in ref]
        assert kept.tolist() == pytest.approx([s for _, s in ref], abs=1e-6)
    # the same box in two classes: no decay across classes
    keep, kept = soft_nms(boxes[:1].repeat(2, 1), torch.tensor([0.9, 0.8]),
                          torch.tensor([1, 2]))
    assert kept.tolist() == pytest.approx([0.9, 0.8])
    assert soft_nms(boxes[:5], scores[:5], torch.ones(5, dtype=torch.long),
                    max_dets=2)[0].numel() == 2


# ----------------------------------------------------------------------------- OHEM


def test_ohem_keeps_the_hardest_after_removing_overlapping_rois():
    rois = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 9.5], [20.0, 20, 30, 30],
                         [40.0, 40, 50, 50], [0.0, 0, 10, 4]])
    losses = torch.tensor([2.0, 1.9, 0.5, 1.0, 1.5])
    # RoI 1 duplicates the hardest RoI 0 (IoU 0.95 > 0.7): removed; RoI 4 (IoU 0.4) stays
    assert ohem_select(rois, losses, 3).tolist() == [0, 4, 3]
    assert ohem_select(rois, losses, 10).tolist() == [0, 4, 3, 2]


def test_ohem_loss_backpropagates_only_through_the_hardest_rois():
    from methods.pgdetector.detector import PGDetectorConfig
    from methods.pgdetector.losses import ohem_loss

    torch.manual_seed(0)
    model = _tiny()
    model.train()
    images, targets = _images(2)
    cfg = PGDetectorConfig(rois_per_image=4)
    grads = {}
    head = model.roi_heads.box_predictor.cls_score
    head.register_full_backward_hook(lambda m, gi, go: grads.update(out=go[0]))
    loss, logs = ohem_loss(model, images, targets, cfg, None)
    loss.backward()
    touched = (grads["out"].abs().sum(1) > 0).sum().item()
    # all 2 x 18 RoIs (16 proposals + 2 gt boxes per image) are scored, at most 2 x 4 train
    assert grads["out"].shape[0] == 36
    assert 0 < touched <= 2 * 4 and math.isfinite(logs["cls"])


# ----------------------------------------------------------------------------- detector


def _tiny(fpn: bool = False, **rpn):
    """A ci-sized detector on 64 px images (`rpn`: the RPN settings, tests/test_detector_rpn)."""
    return build_detector(fpn=fpn, width=4, head_dim=16, roi_size=3, image_size=64,
                          proposals=16, rois_per_image=8, **rpn)


def _images(n: int):
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=g) for _ in range(n)]
    targets = [{"boxes": torch.tensor([[5.0, 5, 30, 30], [20.0, 22, 60, 50]]),
                "labels": torch.tensor([1, 3])} for _ in range(n)]
    return images, targets


@pytest.mark.parametrize("fpn", [False, True])
def test_detect_matches_torchvision_postprocess(fpn):
    torch.manual_seed(0)
    model = _tiny(fpn).eval()
    images, _ = _images(3)
    with torch.inference_mode():
        ref = model(images)
    ours = detect(model, images)
    for a, b in zip(ours, ref, strict=True):
        assert a["boxes"].shape[0] > 0
        torch.testing.assert_close(a["boxes"], b["boxes"])
        torch.testing.assert_close(a["scores"], b["scores"])
        assert a["labels"].tolist() == b["labels"].tolist()


def test_roi_outputs_match_torchvision_training_losses():
    from torchvision.models.detection.roi_heads import fastrcnn_loss

    model = _tiny()
    model.train()
    images, targets = _images(2)
    torch.manual_seed(5)
    ref = model(images, targets)
    torch.manual_seed(5)
    out = roi_outputs(model, images, targets)
    cls, box = fastrcnn_loss(out["class_logits"], out["box_regression"], out["labels"],
                             out["regression_targets"])
    assert cls.item() == pytest.approx(ref["loss_classifier"].item(), rel=1e-5)
    assert box.item() == pytest.approx(ref["loss_box_reg"].item(), rel=1e-5)
    for k, v in out["rpn_losses"].items():
        assert v.item() == pytest.approx(ref[k].item(), rel=1e-5)
    assert sum(len(r) for r in out["rois"]) == out["class_logits"].shape[0]
    fg = torch.cat(out["labels"]) > 0
    assert (torch.cat(out["gt_index"])[fg] >= 0).all()
    assert (torch.cat(out["gt_index"])[~fg] == -1).all()


def test_pg_reward_candidates_are_the_proposals_without_ground_truth(monkeypatch):
    """The PG reward is computed over the RPN's post-NMS proposals (what the final NMS sees
    at inference): no ground-truth box among the candidates, all proposals there, while
    the sampled RoIs (which do hold the gt boxes) still give the box loss."""
    from methods.pgdetector import detector as pgd
    from methods.pgdetector import losses as pgl

    torch.manual_seed(0)
    model = _tiny()
    model.train()
    images, targets = _images(2)
    seen = {}
    real_adv, real_roi = pgl.batch_advantages, pgl.roi_outputs

    def spy_roi(*a, **k):
        seen["out"] = real_roi(*a, **k)
        return seen["out"]

    def spy_adv(cands, *a, **k):
        seen["cands"] = cands
        return real_adv(cands, *a, **k)

    monkeypatch.setattr(pgl, "roi_outputs", spy_roi)
    monkeypatch.setattr(pgl, "batch_advantages", spy_adv)
    loss, logs = pgl.pg_loss(model, images, targets, pgd.PGDetectorConfig(k=4),
                             torch.Generator().manual_seed(0))
    loss.backward()
    out = seen["out"]
    for rois, cand_rois, c, t in zip(out["rois"], out["candidates"]["rois"], seen["cands"],
                                     out["targets"], strict=True):
        gt = t["boxes"]
        # the sampled RoIs include the gt boxes (box loss); the candidates do not
        assert any((rois == b).all(1).any() for b in gt)
        assert not any((cand_rois == b).all(1).any() for b in gt)
        assert c["boxes"].shape[0] == cand_rois.shape[0] == 16   # every proposal
    assert math.isfinite(logs["box"]) and logs["box"] > 0


def test_ohem_ranks_its_own_proposal_count_and_restores_the_rpn():
    from methods.pgdetector.detector import PGDetectorConfig
    from methods.pgdetector.losses import ohem_loss

    torch.manual_seed(0)
    model = _tiny()
    model.train()
    images, targets = _images(2)
    grads = {}
    model.roi_heads.box_predictor.cls_score.register_full_backward_hook(
        lambda m, gi, go: grads.update(out=go[0]))
    before = dict(model.rpn._post_nms_top_n), dict(model.rpn._pre_nms_top_n)
    loss, _ = ohem_loss(model, images, targets,
                         PGDetectorConfig(ohem_proposals=24, ohem_rois=3), None)
    loss.backward()
    assert (dict(model.rpn._post_nms_top_n), dict(model.rpn._pre_nms_top_n)) == before
    n = grads["out"].shape[0]
    assert 2 * 16 + 4 < n <= 2 * (24 + 2)   # more than the detector's 16 proposals + gt
    assert 0 < (grads["out"].abs().sum(1) > 0).sum().item() <= 2 * 3


def test_ohem_settings_keep_the_original_ratio_in_every_profile():
    from rlcv import params as P

    params = P.load()
    for profile in ("ci", "smoke", "paper"):
        params.raw["profile"] = profile
        ohem = vars(P.build_config(methods.METHODS["pgdet-ohem"].config,
                                   params.method("pgdet-ohem"), "pgdet-ohem"))
        std = vars(P.build_config(methods.METHODS["pgdet-standard"].config,
                                  params.method("pgdet-standard"), "pgdet-standard"))
        assert ohem["ohem_proposals"] == 2 * std["proposals"]
        assert ohem["ohem_rois"] == max(round(ohem["ohem_proposals"] * 128 / 2000), 1)


# ----------------------------------------------------------------------------- registry

PG_ROWS = [name for name in methods.METHODS if name.startswith("pgdet-")]


def test_rows_are_registered_under_the_tables_labels():
    from rlcv.report.data import load_tables

    specs = load_tables()
    assert len(PG_ROWS) == 8
    for row in PG_ROWS:
        for tid, label in methods.METHODS[row].tables.items():
            assert label in specs[tid].reproduce, (row, tid, label)
    labels = {methods.METHODS[r].tables["pg-detector-table1"] for r in PG_ROWS}
    assert labels == set(specs["pg-detector-table1"].reproduce)
    t2 = {methods.METHODS[r].tables.get("pg-detector-table2") for r in PG_ROWS} - {None}
    assert t2 == set(specs["pg-detector-table2"].reproduce)
