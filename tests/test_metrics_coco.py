"""coco_eval and the batched image_ap against pycocotools itself."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rlcv.metrics import coco_eval, image_ap


def _pycoco_stats(gt: dict, dt: list[dict], iou_type: str) -> np.ndarray:
    """pycocotools used directly, the way its README does."""
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = gt
        c.createIndex()
        if dt:
            r = c.loadRes(dt)
        else:
            r = COCO()
            r.dataset = {"images": gt["images"], "categories": gt["categories"],
                         "annotations": []}
            r.createIndex()
        e = COCOeval(c, r, iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def _xywh(b: list[float]) -> list[float]:
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def _one_image(boxes: torch.Tensor, scores: torch.Tensor, gts: torch.Tensor
               ) -> tuple[dict, list[dict]]:
    anns = []
    for i, b in enumerate(gts.double().tolist()):
        bb = _xywh(b)
        anns.append({"id": i + 1, "image_id": 7, "category_id": 3, "bbox": bb,
                     "area": bb[2] * bb[3], "iscrowd": 0})
    gt = {"images": [{"id": 7}], "categories": [{"id": 3}], "annotations": anns}
    dt = [{"image_id": 7, "category_id": 3, "bbox": _xywh(b), "score": s}
          for b, s in zip(boxes.double().tolist(), scores.double().tolist(), strict=True)]
    return gt, dt


def _scene(rng: np.random.Generator, g: int, n: int, ties: bool) -> tuple[torch.Tensor, ...]:
    def boxes(m: int) -> np.ndarray:
        xy = rng.random((m, 2)) * 80
        return np.concatenate([xy, xy + 2 + rng.random((m, 2)) * 40], 1)

    gts = boxes(g)
    if g >= 2 and rng.random() < 0.3:  # identical ground truths: IoU ties between them
        gts[1] = gts[0]
    det = boxes(n)
    if g and n:  # most detections near a ground truth, so every threshold matters
        near = rng.random(n) < 0.7
        jit = gts[rng.integers(0, g, n)] + rng.normal(0, 4, (n, 4))
        jit[:, 2:] = np.maximum(jit[:, 2:], jit[:, :2] + 0.5)
        det[near] = jit[near]
        dup = rng.random(n) < 0.1  # exact copies of a ground truth: IoU ties at 1
        det[dup] = gts[rng.integers(0, g, n)][dup]
    scores = rng.random(n)
    if ties:
        scores = np.round(scores * 3) / 3
    return (torch.from_numpy(det).float(), torch.from_numpy(scores).float(),
            torch.from_numpy(gts).float())


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**31), g=st.integers(0, 9), n=st.integers(0, 60),
       k=st.integers(1, 4), ties=st.booleans())
def test_image_ap_equals_pycocotools(seed: int, g: int, n: int, k: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    det, sc, gts = _scene(rng, g, n, ties)
    select = torch.from_numpy(rng.random((k, n)) < rng.uniform(0.2, 1.0))
    ours = image_ap(det, sc, gts, select)
    assert ours.shape == (k,) and ours.dtype == torch.float64
    for i in range(k):
        gt, dt = _one_image(det[select[i]], sc[select[i]], gts)
        ref = _pycoco_stats(gt, dt, "bbox")[0]
        assert ours[i].item() == pytest.approx(ref, abs=1e-9)


def test_image_ap_more_than_100_detections_and_defaults() -> None:
    rng = np.random.default_rng(3)
    det, sc, gts = _scene(rng, 25, 140, ties=True)  # maxDets 100 truncates
    gt, dt = _one_image(det, sc, gts)
    ref = _pycoco_stats(gt, dt, "bbox")[0]
    ours = image_ap(det, sc, gts)
    assert ours.dim() == 0 and ours.item() == pytest.approx(ref, abs=1e-9)
    # numpy input, float64, the full set selected explicitly: the same value
    full = torch.ones(1, 140, dtype=torch.bool)
    assert image_ap(det.double().numpy(), sc.numpy(), gts, full).item() == pytest.approx(ref)


def test_image_ap_edge_cases() -> None:
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    none = torch.zeros(0, 4)
    # no ground truth: pycocotools has no AP (-1); a reward can ask for 0 instead
    assert image_ap(gts, torch.ones(2), none).item() == -1.0
    assert image_ap(gts, torch.ones(2), none, empty_gt_value=0.0).item() == 0.0
    # no detection at all, or an empty subset: AP 0
    assert image_ap(none, torch.zeros(0), gts).item() == 0.0
    sel = torch.tensor([[True, True], [False, False], [True, False]])
    out = image_ap(gts, torch.tensor([0.9, 0.8]), gts, sel)
    assert out[0].item() == 1.0 and out[1].item() == 0.0
    # half the objects found, at full precision: recall 0.5 -> 51 of 101 samples
    assert out[2].item() == pytest.approx(51 / 101)


@pytest.mark.parametrize("kwargs, msg", [
    ({"boxes": torch.zeros(3, 5)}, "shape"),
    ({"scores": torch.zeros(2)}, "expected 3 scores"),
    ({"boxes": torch.tensor([[5.0, 0, 0, 5]] * 3)}, "x2 >= x1"),
    ({"scores": torch.tensor([0.1, float("nan"), 0.3])}, "NaN"),
    ({"select": torch.ones(2, 4, dtype=torch.bool)}, "select"),
    ({"select": torch.ones(2, 3)}, "select"),
    ({"gt_boxes": torch.tensor([[0.0, 0, 2e5, 2e5]])}, "area"),
])
def test_image_ap_bad_input(kwargs: dict, msg: str) -> None:
    args = {"boxes": torch.zeros(3, 4), "scores": torch.zeros(3),
            "gt_boxes": torch.ones(1, 4), "select": None, **kwargs}
    with pytest.raises(ValueError, match=msg):
        image_ap(**args)


def _dataset(rng: np.random.Generator, segm: bool) -> tuple[dict, list[dict]]:
    h, w = 64, 80
    images = [{"id": i, "height": h, "width": w} for i in (1, 2, 5)]
    cats = [{"id": 1}, {"id": 4}]
    anns, dts = [], []

    def rect(x0: float, y0: float, bw: float, bh: float) -> dict:
        m = np.zeros((h, w), dtype=np.uint8, order="F")
        m[int(y0): int(y0 + bh), int(x0): int(x0 + bw)] = 1
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode()
        return rle

    for im in images:
        for _ in range(rng.integers(0, 6)):
            x0, y0 = rng.integers(0, 50), rng.integers(0, 40)
            bw, bh = rng.integers(3, 30), rng.integers(3, 24)
            a = {"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.choice([1, 4])),
                 "bbox": [float(x0), float(y0), float(bw), float(bh)], "area": float(bw * bh),
                 "iscrowd": int(rng.random() < 0.1)}
            if segm:
                a["segmentation"] = rect(x0, y0, bw, bh)
            anns.append(a)
            for _ in range(rng.integers(0, 3)):
                jx, jy = x0 + rng.integers(-3, 4), y0 + rng.integers(-3, 4)
                d = {"image_id": im["id"], "category_id": a["category_id"],
                     "score": float(rng.random())}
                if segm:
                    d["segmentation"] = rect(max(jx, 0), max(jy, 0), bw, bh)
                else:
                    d["bbox"] = [float(jx), float(jy), float(bw), float(bh)]
                dts.append(d)
    return {"images": images, "categories": cats, "annotations": anns}, dts


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), segm=st.booleans())
def test_coco_eval_equals_pycocotools(seed: int, segm: bool) -> None:
    import copy

    rng = np.random.default_rng(seed)
    gt, dt = _dataset(rng, segm)
    gt0, dt0 = copy.deepcopy(gt), copy.deepcopy(dt)
    iou_type = "segm" if segm else "bbox"
    ours = coco_eval(gt, dt, iou_type)
    assert gt == gt0 and dt == dt0  # pycocotools' in-place edits stay inside
    ref = _pycoco_stats(copy.deepcopy(gt), copy.deepcopy(dt), iou_type)
    assert list(ours) == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert list(ours.values()) == pytest.approx(list(ref[:6]), abs=1e-12)


def test_coco_eval_quiet_empty_and_bad_input(capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    gt, dt = _dataset(rng, False)
    coco_eval(gt, dt)
    assert capsys.readouterr().out == ""
    empty = coco_eval(gt, [])
    assert empty["AP"] == 0.0 and all(v in (0.0, -1.0) for v in empty.values())
    with pytest.raises(ValueError, match="iou_type"):
        coco_eval(gt, dt, "keypoints")
    with pytest.raises(ValueError, match="not in gt"):
        coco_eval(gt, [{**dt[0], "image_id": 999}])
    with pytest.raises(ValueError, match="missing bbox"):
        coco_eval(gt, [{"image_id": 1, "category_id": 1, "score": 1.0}])
    with pytest.raises(ValueError, match="COCO-format dict"):
        coco_eval({"images": []}, dt)
