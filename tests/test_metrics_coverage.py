"""Ren & Zemel coverage / AvgFP / AvgFN and ACIS per-timestep Dice against plain loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcv.metrics import (
    average_per_timestep,
    coverage,
    dice_per_timestep,
    false_positive_negative,
)


def _masks(x: np.ndarray) -> list[np.ndarray]:
    """Instances of one image: non-empty masks of a stack, or the ids != 0 of a label map."""
    if x.dtype == bool:
        return [m for m in x if m.any()]
    return [x == i for i in np.unique(x) if i != 0]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = int((a | b).sum())
    return int((a & b).sum()) / u if u else 0.0


def _ren_zemel_loop(p: np.ndarray, g: np.ndarray) -> tuple[float, float, float, float]:
    ps, gs = _masks(p), _masks(g)
    best = []
    for gm in gs:
        b = 0.0
        for pm in ps:
            b = max(b, _iou(pm, gm))
        best.append(b)
    areas = [int(m.sum()) for m in gs]
    mucov = sum(best) / max(len(gs), 1)
    mwcov = sum(a * b for a, b in zip(areas, best, strict=True)) / sum(areas) if gs else 0.0
    fp = sum(all(_iou(pm, gm) == 0 for gm in gs) for pm in ps)
    fn = sum(all(_iou(pm, gm) == 0 for pm in ps) for gm in gs)
    return mwcov, mucov, fp / max(len(ps), 1), fn / max(len(gs), 1)


def _random_instances(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    h, w = 12, 10
    if kind == "labels":
        lab = np.zeros((h, w), dtype=np.int64)
        for i in rng.choice(np.arange(1, 40), size=n, replace=False):
            y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
            lab[y: y + rng.integers(1, 6), x: x + rng.integers(1, 6)] = i
        return lab
    stack = np.zeros((n + 1, h, w), dtype=bool)  # one padding slot stays empty
    for i in range(n):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        stack[i, y: y + rng.integers(1, 6), x: x + rng.integers(1, 6)] = True
    return stack


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), kp=st.sampled_from(["labels", "stack"]),
       kg=st.sampled_from(["labels", "stack"]), np_=st.integers(0, 6), ng=st.integers(0, 6))
def test_ren_zemel_match_loop(seed: int, kp: str, kg: str, np_: int, ng: int) -> None:
    rng = np.random.default_rng(seed)
    ps = [_random_instances(rng, kp, np_) for _ in range(2)]
    gs = [_random_instances(rng, kg, ng) for _ in range(2)]
    tp, tg = torch.from_numpy(np.stack(ps)), torch.from_numpy(np.stack(gs))
    mw, mu = coverage(tp, tg)
    fp, fn = false_positive_negative(tp, tg)
    fpc, fnc = false_positive_negative(tp, tg, fractions=False)
    for b in range(2):
        want = _ren_zemel_loop(ps[b], gs[b])
        got = (mw[b].item(), mu[b].item(), fp[b].item(), fn[b].item())
        assert got == pytest.approx(want, abs=1e-12)
        assert fpc[b].item() == round(want[2] * max(len(_masks(ps[b])), 1))
        assert fnc[b].item() == round(want[3] * max(len(_masks(gs[b])), 1))


def test_ren_zemel_edge_cases() -> None:
    gt = torch.zeros(6, 6, dtype=torch.long)
    gt[:2, :2] = 1  # 4 pixels
    gt[2:6, 2:6] = 2  # 16 pixels
    empty = torch.zeros_like(gt)
    # empty prediction: nothing covered, every instance missed, no false positive
    assert [t.item() for t in coverage(empty, gt)] == [0.0, 0.0]
    assert [t.item() for t in false_positive_negative(empty, gt)] == [0.0, 1.0]
    # empty ground truth: coverage 0 (reference divides by max(|G|, 1)), all predictions FP
    assert [t.item() for t in coverage(gt, empty)] == [0.0, 0.0]
    assert [t.item() for t in false_positive_negative(gt, empty)] == [1.0, 0.0]
    # one prediction covering both instances: IoU 4/20 and 16/20
    cover = (gt > 0).long()
    mw, mu = coverage(cover, gt)
    assert mu.item() == pytest.approx((0.2 + 0.8) / 2)
    assert mw.item() == pytest.approx((4 * 0.2 + 16 * 0.8) / 20)
    assert [t.item() for t in false_positive_negative(cover, gt)] == [0.0, 0.0]
    # instance ids need not be consecutive: relabelling changes nothing
    relab = torch.where(gt == 2, 977, gt)
    assert [t.item() for t in coverage(relab, gt)] == [1.0, 1.0]


def test_ren_zemel_bad_input() -> None:
    with pytest.raises(ValueError, match="integer label map"):
        coverage(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="boolean stack"):
        coverage(torch.zeros(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.long))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum() + b.sum())
    return 2 * int((a & b).sum()) / s if s else 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), t=st.integers(0, 5), n=st.integers(0, 5))
def test_dice_per_timestep_is_an_optimal_assignment(seed: int, t: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    pred = _random_instances(rng, "stack", t)[:t]
    gt = _random_instances(rng, "labels", n)
    out = dice_per_timestep(torch.from_numpy(pred), torch.from_numpy(gt))
    assert out.shape == (t,)
    gms = _masks(gt)
    table = [[_dice(p, g) for g in gms] for p in pred]
    # brute force: the best one-to-one assignment of steps to instances
    best = 0.0
    k = min(t, len(gms))
    for steps in itertools.combinations(range(t), k):
        for inst in itertools.permutations(range(len(gms)), k):
            best = max(best, sum(table[s][i] for s, i in zip(steps, inst, strict=True)))
    assert out.sum().item() == pytest.approx(best, abs=1e-9)
    # every value is the Dice of its step with a distinct instance (or 0 when unmatched)
    for s in range(t):
        assert out[s].item() == 0.0 or any(abs(out[s].item() - d) < 1e-12 for d in table[s])


def test_dice_per_timestep_hand_worked() -> None:
    gt = torch.zeros(4, 4, dtype=torch.long)
    gt[:2] = 1
    gt[2:] = 2
    steps = torch.zeros(3, 4, 4, dtype=torch.bool)
    steps[0, 2:] = True  # exactly instance 2
    steps[1, :1] = True  # half of instance 1: Dice 2*4/(4+8)
    steps[2, :2] = True  # exactly instance 1: the matching prefers it over step 1
    out = dice_per_timestep(steps, gt)
    assert out.tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert dice_per_timestep(steps, torch.zeros(4, 4, dtype=torch.long)).tolist() == [0.0] * 3
    mean, count = average_per_timestep([torch.tensor([1.0, 0.5]), torch.tensor([0.0])])
    assert mean.tolist() == [0.5, 0.5] and count.tolist() == [2, 1]
    with pytest.raises(ValueError, match="boolean stack"):
        dice_per_timestep(gt, gt)
