"""Cityscapes IoU / iIoU against the official cityscapesscripts evaluator, driven on
small generated label-id and instance-id PNGs.

cityscapesscripts 2.x calls `np.in1d`, which NumPy 2.4 removed; the parity test lends
it the equivalent `np.isin(...).ravel()` for the duration of the call.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rlcv.metrics import CityscapesAccumulator, cityscapes_scores
from rlcv.metrics.cityscapes import AVG_CLASS_SIZE, LABELS

cs_eval = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
cs_labels = pytest.importorskip("cityscapesscripts.helpers.labels")

INSTANCE_IDS = [i for i, (_, _, has, _) in enumerate(LABELS) if has]


def test_label_table_matches_cityscapesscripts() -> None:
    ref = {lab.id: (lab.name, lab.category, lab.hasInstances, lab.ignoreInEval)
           for lab in cs_labels.labels if lab.id >= 0}
    assert {i: row for i, row in enumerate(LABELS)} == ref
    assert AVG_CLASS_SIZE == cs_eval.args.avgClassSize


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, ...]:
    """Blocky label ids, instance ids consistent with them, and a noisy prediction."""
    cell = 4
    lab = rng.integers(0, 34, size=(h // cell + 1, w // cell + 1))
    lab[rng.random(lab.shape) < 0.4] = rng.choice(INSTANCE_IDS)  # plenty of instances
    lab = np.kron(lab, np.ones((cell, cell), dtype=np.int64))[:h, :w]
    inst = lab.copy()
    k = np.arange(lab.size).reshape(lab.shape) // (cell * 2) % 3  # several per class
    grouped = rng.random(lab.shape) < 0.1  # crowd regions keep the bare label id
    has = np.isin(lab, INSTANCE_IDS) & ~grouped
    inst[has] = lab[has] * 1000 + k[has]
    pred = lab.copy()
    noise = rng.random(lab.shape) < rng.uniform(0.1, 0.7)
    pred[noise] = rng.integers(0, 34, size=int(noise.sum()))
    swap = rng.random(lab.shape) < 0.1  # confusions inside the vehicle category
    pred[swap & (lab == 26)] = 27
    return pred, lab, inst


def _official(tmp: Path, scenes: list[tuple[np.ndarray, ...]],
              monkeypatch: pytest.MonkeyPatch) -> dict:
    preds, gts = [], []
    for i, (p, g, inst) in enumerate(scenes):
        pf, gf = tmp / f"c_{i:06d}_000019_pred.png", tmp / f"c_{i:06d}_000019_gtFine_labelIds.png"
        Image.fromarray(p.astype(np.uint8)).save(pf)
        Image.fromarray(g.astype(np.uint8)).save(gf)
        Image.fromarray(inst.astype(np.uint16)).save(str(gf).replace("labelIds", "instanceIds"))
        preds.append(str(pf))
        gts.append(str(gf))
    if not hasattr(np, "in1d"):  # removed in NumPy 2.4; the script still calls it
        monkeypatch.setattr(np, "in1d", lambda a, b, invert=False, **_: np.isin(
            np.asarray(a).ravel(), b, invert=invert), raising=False)
    for key, val in {"quiet": True, "JSONOutput": False, "evalInstLevelScore": True,
                     "evalPixelAccuracy": False, "colorized": False}.items():
        monkeypatch.setattr(cs_eval.args, key, val)
    return cs_eval.evaluateImgLists(preds, gts, cs_eval.args)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), n=st.integers(1, 3))
def test_cityscapes_scores_equal_official_script(seed: int, n: int, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    scenes = [_scene(rng, 24, 36) for _ in range(n)]
    ref = _official(Path(tempfile.mkdtemp(dir=tmp_path)), scenes, monkeypatch)
    ours = cityscapes_scores((torch.from_numpy(p) for p, _, _ in scenes),
                             (torch.from_numpy(g) for _, g, _ in scenes),
                             (torch.from_numpy(i) for _, _, i in scenes))
    for name, v in ours["class_iou"].items():
        assert _same(v, ref["classScores"][name]), name
    for name, v in ours["class_iiou"].items():
        assert _same(v, ref["classInstScores"][name]), name
    for cat, v in ours["category_iou"].items():
        assert _same(v, ref["categoryScores"][cat]), cat
    for cat, v in ours["category_iiou"].items():
        assert _same(v, ref["categoryInstScores"][cat]), cat
    # entries we leave out are NaN in the official output
    assert all(math.isnan(v) for k, v in ref["classInstScores"].items()
               if k not in ours["class_iiou"])
    assert all(math.isnan(v) for k, v in ref["categoryScores"].items()
               if k not in ours["category_iou"])
    for ours_key, ref_key in [("mean_class_iou", "averageScoreClasses"),
                              ("mean_class_iiou", "averageScoreInstClasses"),
                              ("mean_category_iou", "averageScoreCategories"),
                              ("mean_category_iiou", "averageScoreInstCategories")]:
        assert _same(ours[ours_key], ref[ref_key]), ours_key


def test_cityscapes_streaming_and_batching_agree() -> None:
    rng = np.random.default_rng(5)
    scenes = [_scene(rng, 16, 20) for _ in range(4)]
    one = CityscapesAccumulator()
    for p, g, i in scenes:
        one.update(torch.from_numpy(p), torch.from_numpy(g), torch.from_numpy(i))
    batch = CityscapesAccumulator()
    batch.update(*(torch.from_numpy(np.stack(x)) for x in zip(*scenes, strict=True)))
    a, b = one.compute(), batch.compute()
    assert a["class_iiou"] == pytest.approx(b["class_iiou"], nan_ok=True)
    assert a["mean_category_iou"] == pytest.approx(b["mean_category_iou"])


def test_cityscapes_edge_cases() -> None:
    road = torch.full((4, 4), 7)
    perfect = cityscapes_scores([road], [road])
    assert perfect["class_iou"]["road"] == 1.0 and perfect["mean_class_iou"] == 1.0
    assert math.isnan(perfect["class_iou"]["car"])  # absent class: no IoU
    assert math.isnan(perfect["mean_class_iiou"])  # no instances given
    # all ground truth ignored (void): nothing evaluated, predictions are not FPs
    void = cityscapes_scores([road], [torch.zeros(4, 4, dtype=torch.long)])
    assert math.isnan(void["mean_class_iou"])
    # one car instance, half found: iIoU weights by avg size / instance size
    gt = torch.full((4, 4), 7)
    gt[:2] = 26
    inst = torch.where(gt == 26, 26001, 7)
    pred = gt.clone()
    pred[0] = 7  # 4 of the 8 car pixels missed
    s = cityscapes_scores([pred], [gt], [inst])
    assert s["class_iou"]["car"] == pytest.approx(4 / 8)
    w = AVG_CLASS_SIZE["car"] / 8
    assert s["class_iiou"]["car"] == pytest.approx(4 * w / (4 * w + 0 + 4 * w))
    assert s["category_iiou"]["vehicle"] == pytest.approx(0.5)


def test_cityscapes_bad_input() -> None:
    acc = CityscapesAccumulator()
    with pytest.raises(ValueError, match="train ids"):
        acc.update(torch.full((2, 2), 255), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shapes differ"):
        acc.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no instances"):
        acc.update(torch.full((2, 2), 7), torch.full((2, 2), 7), torch.full((2, 2), 7001))
    with pytest.raises(ValueError, match="label id >= 34"):
        acc.update(torch.full((2, 2), 7), torch.full((2, 2), 7), torch.full((2, 2), 40001))
    with pytest.raises(ValueError, match="missing classes"):
        CityscapesAccumulator({"car": 1.0})
