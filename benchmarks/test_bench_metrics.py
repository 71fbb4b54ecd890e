"""Speed of the metric hot paths against their reference or plain-loop versions.

Each test times the vectorised metric (through pytest-benchmark) and the straightforward
version in the same run, records both and their ratio in `extra_info`, prints it, and
asserts the target of issue 4: `image_ap` >= 20x pycocotools per image (K = 10 sampled
detection sets per image, as the policy-gradient detector uses it), `confusion_matrix`
>= 50x a Python loop over the pixels of a 512x1024 map, SBD and coverage >= 10x a
per-pair loop on 20 instances. Times are minima over repeats.

Both sides run on one thread (torch's pool pinned to 1 for this module): the ratio is
then the algorithmic speed-up, and it stays meaningful on a shared 2-core machine,
where torch's thread pool stalls for milliseconds whenever other processes hold the
cores (the Python references are single-threaded anyway).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
from _timing import best_time
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rlcv.metrics import confusion_matrix, coverage, image_ap, symmetric_best_dice


def _compare(benchmark, name: str, fast: Callable[[], object], slow: Callable[[], object],
             target: float, rounds: int, slow_repeat: int = 3, slow_scale: float = 1.0) -> None:
    benchmark.pedantic(fast, rounds=rounds, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_fast = stats.stats.min if stats is not None else best_time(fast, rounds)
    t_slow = best_time(slow, slow_repeat) * slow_scale
    ratio = t_slow / t_fast
    benchmark.extra_info.update(fast_s=t_fast, reference_s=t_slow, ratio=round(ratio, 1),
                                torch_threads=torch.get_num_threads())
    print(f"\n{name}: vectorised {t_fast * 1e3:.2f} ms, reference {t_slow * 1e3:.1f} ms, "
          f"ratio {ratio:.1f}x (target {target}x)")
    assert ratio >= target, f"{name}: only {ratio:.1f}x faster (target {target}x)"


# --- image_ap vs pycocotools --------------------------------------------------------

def _pycoco_ap(boxes: np.ndarray, scores: np.ndarray, gts: np.ndarray) -> float:
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
             "area": (b[2] - b[0]) * (b[3] - b[1])} for i, b in enumerate(gts.tolist())]
    dts = [{"image_id": 1, "category_id": 1, "score": s,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
           for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": anns}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dts), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_bench_image_ap(benchmark) -> None:
    rng = np.random.default_rng(0)
    g, n, k = 10, 100, 10  # objects, detection candidates, sampled sets per image
    xy = rng.random((g, 2)) * 400
    gts = np.concatenate([xy, xy + 20 + rng.random((g, 2)) * 80], 1)
    det = gts[rng.integers(0, g, n)] + rng.normal(0, 6, (n, 4))
    det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
    scores = rng.random(n)
    select = rng.random((k, n)) < 0.5
    tb, ts, tg, tsel = (torch.from_numpy(det), torch.from_numpy(scores), torch.from_numpy(gts),
                        torch.from_numpy(select))
    ours = image_ap(tb, ts, tg, tsel)
    ref = [_pycoco_ap(det[s], scores[s], gts) for s in select]
    assert np.allclose(ours.numpy(), ref, atol=1e-9)
    _compare(benchmark, f"image_ap ({k} sets of <= {n} detections, {g} objects, per image)",
             lambda: image_ap(tb, ts, tg, tsel),
             lambda: [_pycoco_ap(det[s], scores[s], gts) for s in select],
             target=20, rounds=30)


# --- confusion_matrix vs a pixel loop ------------------------------------------------

def test_bench_confusion_matrix(benchmark) -> None:
    rng = np.random.default_rng(1)
    shape, c = (512, 1024), 151  # ADE20K: labels 0..150, 0 ignored
    gt = torch.from_numpy(rng.integers(0, c, shape))
    pred = torch.from_numpy(rng.integers(1, c, shape))
    g_np, p_np = gt.numpy(), pred.numpy()
    step = 4  # the loop visits every 4th row and column (1/16 of the pixels), scaled x16

    def loop() -> np.ndarray:
        m = np.zeros((c, c), dtype=np.int64)
        for i in range(0, shape[0], step):
            for j in range(0, shape[1], step):
                label = g_np[i, j]
                if label != 0:
                    m[label, p_np[i, j]] += 1
        return m

    full = confusion_matrix(pred, gt, c, ignore_index=0)
    assert np.array_equal(confusion_matrix(pred[::step, ::step], gt[::step, ::step], c,
                                           ignore_index=0).numpy(), loop())
    assert int(full.sum()) == int((gt != 0).sum())
    _compare(benchmark, "confusion_matrix (512x1024, 151 labels; loop on 1/16 of the "
             "pixels, scaled x16)", lambda: confusion_matrix(pred, gt, c, ignore_index=0),
             loop, target=50, rounds=20, slow_repeat=2, slow_scale=step * step)


# --- SBD and coverage vs per-pair loops ---------------------------------------------

def _instances(rng: np.random.Generator, shape: tuple[int, int], n: int,
               jitter: int = 0) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.int64)
    h, w = shape
    for i in range(1, n + 1):
        y, x = rng.integers(0, h - h // 6), rng.integers(0, w - w // 6)
        dy, dx = rng.integers(h // 20, h // 6), rng.integers(w // 20, w // 6)
        lab[max(y + jitter, 0): y + dy, max(x - jitter, 0): x + dx] = i
    return lab


@pytest.fixture(scope="module")
def leaves() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    gt = _instances(rng, (512, 512), 20)
    pred = np.where(rng.random(gt.shape) < 0.05, 0, gt)  # noisy copy, 20 instances
    return pred, gt


def test_bench_symmetric_best_dice(benchmark, leaves) -> None:
    pred, gt = leaves

    def best_dice_loop(a: np.ndarray, b: np.ndarray) -> float:  # the challenge's loop
        total = 0.0
        for i in range(int(a.min()) + 1, int(a.max()) + 1):
            ma, best = a == i, 0.0
            for j in range(int(b.min()) + 1, int(b.max()) + 1):
                mb = b == j
                s = int(ma.sum() + mb.sum())
                best = max(best, 2 * int((ma & mb).sum()) / s if s else 0.0)
            total += best
        return total / (int(a.max()) - int(a.min()))

    def loop() -> float:
        return min(best_dice_loop(pred, gt), best_dice_loop(gt, pred))

    tp, tg = torch.from_numpy(pred), torch.from_numpy(gt)
    assert symmetric_best_dice(tp, tg).item() == pytest.approx(loop(), abs=1e-12)
    _compare(benchmark, "symmetric_best_dice (512x512, 20 instances)",
             lambda: symmetric_best_dice(tp, tg), loop, target=10, rounds=20)


def test_bench_coverage(benchmark) -> None:
    rng = np.random.default_rng(3)
    gt = _instances(rng, (375, 1242), 20)  # a KITTI frame
    pred = _instances(np.random.default_rng(3), (375, 1242), 20, jitter=4)

    def loop() -> tuple[float, float]:  # Ren & Zemel: per gt, best IoU over predictions
        ids_g = [i for i in np.unique(gt) if i]
        ids_p = [i for i in np.unique(pred) if i]
        best, areas = [], []
        for j in ids_g:
            mg = gt == j
            b = 0.0
            for i in ids_p:
                mp = pred == i
                b = max(b, int((mp & mg).sum()) / int((mp | mg).sum()))
            best.append(b)
            areas.append(int(mg.sum()))
        return (float(np.dot(best, areas) / sum(areas)), float(np.mean(best)))

    tp, tg = torch.from_numpy(pred), torch.from_numpy(gt)
    mw, mu = coverage(tp, tg)
    assert (mw.item(), mu.item()) == pytest.approx(loop(), abs=1e-12)
    _compare(benchmark, "coverage (375x1242, 20 instances)", lambda: coverage(tp, tg), loop,
             target=10, rounds=20)
