"""CVPPP metrics (SBD, BestDice, FGBGDice, DiC) against plain loops of the challenge's
published definition, plus hand-worked edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcv.metrics import best_dice, diff_fg_labels, fg_bg_dice, symmetric_best_dice


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = int(a.sum()), int(b.sum())
    return 2 * int((a & b).sum()) / (sa + sb) if sa + sb else 0.0  # challenge: empty -> 0


def _best_dice_loop(p: np.ndarray, g: np.ndarray) -> float:
    lo_p, hi_p, lo_g, hi_g = int(p.min()), int(p.max()), int(g.min()), int(g.max())
    if hi_p == lo_p:
        return 0.0
    total = 0.0
    for i in range(lo_p + 1, hi_p + 1):
        best = 0.0
        for j in range(lo_g + 1, hi_g + 1):
            best = max(best, _dice(p == i, g == j))
        total += best
    return total / (hi_p - lo_p)


def _sbd_loop(p: np.ndarray, g: np.ndarray) -> float:
    return min(_best_dice_loop(p, g), _best_dice_loop(g, p))


def _fgbg_loop(p: np.ndarray, g: np.ndarray) -> float:
    return _dice(p != p.min(), g != g.min())


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), b=st.integers(1, 3), labels_p=st.integers(1, 7),
       labels_g=st.integers(1, 7), offset=st.integers(-3, 3))
def test_cvppp_match_loops(seed: int, b: int, labels_p: int, labels_g: int, offset: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.integers(0, labels_p, size=(b, 9, 11)) + offset  # background = min, may be < 0
    g = rng.integers(0, labels_g, size=(b, 9, 11))
    if rng.random() < 0.5:  # blocky instances rather than noise
        p = np.repeat(np.repeat(p[:, ::3, ::3], 3, 1), 3, 2)[:, :9, :11]
    tp, tg = torch.from_numpy(p), torch.from_numpy(g)
    sbd, bd = symmetric_best_dice(tp, tg), best_dice(tp, tg)
    fg, dic = fg_bg_dice(tp, tg), diff_fg_labels(tp, tg)
    assert sbd.shape == (b,) and dic.dtype == torch.int64
    for i in range(b):
        assert sbd[i].item() == pytest.approx(_sbd_loop(p[i], g[i]), abs=1e-12)
        assert bd[i].item() == pytest.approx(_best_dice_loop(p[i], g[i]), abs=1e-12)
        assert fg[i].item() == pytest.approx(_fgbg_loop(p[i], g[i]), abs=1e-12)
        assert dic[i].item() == (int(p[i].max()) - int(p[i].min())) - (int(g[i].max())
                                                                        - int(g[i].min()))


def _img(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[int(c) for c in r] for r in rows])


GT = _img(["1100",
           "1100",
           "0022",
           "0022"])


def test_cvppp_perfect_and_empty_prediction() -> None:
    assert symmetric_best_dice(GT, GT).item() == 1.0
    assert fg_bg_dice(GT, GT).item() == 1.0
    empty = torch.zeros_like(GT)
    assert symmetric_best_dice(empty, GT).item() == 0.0  # no foreground predicted
    assert fg_bg_dice(empty, GT).item() == 0.0
    assert diff_fg_labels(empty, GT).item() == -2
    # empty ground truth (a single label value): BestDice(gt, pred) is 0, so SBD is 0
    assert symmetric_best_dice(GT, empty).item() == 0.0
    assert diff_fg_labels(GT, empty).item() == 2
    # both without foreground: every Dice of two empty masks is 0 in the challenge code
    assert symmetric_best_dice(empty, empty).item() == 0.0
    assert fg_bg_dice(empty, empty).item() == 0.0


def test_cvppp_background_is_lowest_label_and_missing_ids_count() -> None:
    shifted = GT + 5  # background 5, instances 6, 7
    assert symmetric_best_dice(shifted, GT).item() == 1.0
    # labels 0, 1, 3: id 2 is missing and counts as an empty mask
    gapped = torch.where(GT == 2, 3, GT)
    assert best_dice(gapped, GT).item() == pytest.approx((1 + 0 + 1) / 3)
    assert best_dice(GT, gapped).item() == 1.0
    assert symmetric_best_dice(gapped, GT).item() == pytest.approx(2 / 3)
    assert diff_fg_labels(gapped, GT).item() == 1


def test_cvppp_one_instance_covering_another() -> None:
    merged = (GT > 0).long()  # one predicted instance covers both leaves
    # Dice(merged, leaf) = 2*4 / (8 + 4) = 2/3 for either leaf
    assert best_dice(merged, GT).item() == pytest.approx(2 / 3)
    assert best_dice(GT, merged).item() == pytest.approx(2 / 3)
    assert symmetric_best_dice(merged, GT).item() == pytest.approx(2 / 3)
    assert fg_bg_dice(merged, GT).item() == 1.0
    assert diff_fg_labels(merged, GT).abs().item() == 1


@pytest.mark.parametrize("pred, gt, msg", [
    (GT.float(), GT, "integer"),
    (GT, GT[:3], "shapes differ"),
    (GT[0], GT[0], "at least 2"),
    (torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long), "empty"),
    (GT * 10**6, GT * 10**6, "too wide"),
])
def test_cvppp_bad_input(pred: torch.Tensor, gt: torch.Tensor, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        symmetric_best_dice(pred, gt)
