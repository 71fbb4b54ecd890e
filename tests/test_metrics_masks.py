"""mask_iou, dice and the pairwise instance-overlap table against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcv.metrics import dice, instance_overlaps, mask_iou, to_ground_truth
from rlcv.metrics.masks import DENSE_TABLE

SETTINGS = settings(max_examples=25, deadline=None)


def _loop_iou_dice(p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    inter = union = sp = sg = 0
    for a, b in zip(p.reshape(-1).tolist(), g.reshape(-1).tolist(), strict=True):
        inter += a and b
        union += a or b
        sp += a
        sg += b
    iou = inter / union if union else 1.0
    d = 2 * inter / (sp + sg) if sp + sg else 1.0
    return iou, d


@SETTINGS
@given(seed=st.integers(0, 2**31), b=st.integers(1, 3), h=st.integers(1, 9),
       w=st.integers(1, 9), density=st.floats(0.0, 1.0))
def test_mask_iou_and_dice_match_loop(seed: int, b: int, h: int, w: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    p = rng.random((b, h, w)) < density
    g = rng.random((b, h, w)) < density
    iou, d = mask_iou(torch.from_numpy(p), torch.from_numpy(g)), dice(torch.from_numpy(p),
                                                                       torch.from_numpy(g))
    assert iou.shape == (b,) and iou.dtype == torch.float64
    for i in range(b):
        ri, rd = _loop_iou_dice(p[i], g[i])
        assert iou[i].item() == pytest.approx(ri, abs=1e-12)
        assert d[i].item() == pytest.approx(rd, abs=1e-12)


def test_mask_edge_cases() -> None:
    z = torch.zeros(4, 4, dtype=torch.bool)
    full = torch.ones(4, 4, dtype=torch.bool)
    assert mask_iou(z, z).item() == 1.0 and dice(z, z).item() == 1.0  # both empty
    assert mask_iou(z, full).item() == 0.0 and dice(full, z).item() == 0.0
    half = torch.zeros(4, 4, dtype=torch.bool)
    half[:2] = True
    assert mask_iou(half, full).item() == 0.5  # one covering the other
    assert dice(half, full).item() == pytest.approx(2 * 8 / 24)
    assert mask_iou(half.long(), full.int()).item() == 0.5  # integer 0/1 accepted


@pytest.mark.parametrize("pred, gt, msg", [
    (torch.zeros(3, 3), torch.zeros(3, 3, dtype=torch.bool), "bool or integer"),
    (torch.zeros(3, 3, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.bool), "shapes differ"),
    (torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool), "at least 2"),
    (torch.full((3, 3), 2), torch.zeros(3, 3, dtype=torch.long), "only 0 and 1"),
])
def test_mask_bad_input(pred: torch.Tensor, gt: torch.Tensor, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        mask_iou(pred, gt)


def _loop_overlaps(p: np.ndarray, g: np.ndarray) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for a, b in zip(p.reshape(-1).tolist(), g.reshape(-1).tolist(), strict=True):
        if a and b:
            out[(a, b)] = out.get((a, b), 0) + 1
    return out


@SETTINGS
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), big=st.booleans())
def test_instance_overlaps_label_maps_and_stacks(seed: int, n: int, big: bool) -> None:
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1, 50_000 if big else 20), size=n, replace=False)
    p = rng.choice(np.concatenate([[0], ids]), size=(2, 7, 8))
    g = rng.choice(np.concatenate([[0], ids[: max(1, n // 2)]]), size=(2, 7, 8))
    ov = instance_overlaps(torch.from_numpy(p), torch.from_numpy(g))
    assert ov.batch_shape == (2,)
    for b in range(2):
        want = _loop_overlaps(p[b], g[b])
        got = ov.inter[b][ov.valid_p[b]][:, ov.valid_g[b]]
        assert int(got.sum()) == sum(want.values())
        assert sorted(v for v in got.flatten().tolist() if v) == sorted(want.values())
        assert int(ov.valid_p[b].sum()) == len(set(p[b].flatten()) - {0})
    # the same instances as boolean stacks give the same table (up to slot order)
    stack_p = torch.stack([torch.from_numpy(p == i) for i in ids], 1)
    ovs = instance_overlaps(stack_p, torch.from_numpy(g))
    for b in range(2):
        a = ov.inter[b][ov.valid_p[b]][:, ov.valid_g[b]]
        s = ovs.inter[b][ovs.valid_p[b]][:, ovs.valid_g[b]]
        assert sorted(a.flatten().tolist()) == sorted(s.flatten().tolist())
    # small ids take the dense path, large ones the `unique` path: both were exercised
    assert big or 2 * (np.ptp(p) + 1) * (np.ptp(g) + 1) <= DENSE_TABLE


def test_instance_overlaps_bad_input() -> None:
    with pytest.raises(ValueError, match="integer label map"):
        instance_overlaps(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch shapes differ"):
        instance_overlaps(torch.zeros(2, 4, 4, dtype=torch.long),
                          torch.zeros(3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="image sizes differ"):
        instance_overlaps(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long))


def test_to_ground_truth_upsamples_by_nearest_neighbour_into_the_box() -> None:
    lab = torch.tensor([[1, 2], [3, 0]], dtype=torch.int16)
    full = to_ground_truth(lab, (4, 4))
    assert full.dtype == torch.int16
    assert torch.equal(full, lab.repeat_interleave(2, 0).repeat_interleave(2, 1))
    # a prediction of a centre crop: pasted into its box, background elsewhere
    masks = torch.tensor([[[True, False], [False, True]]] * 3)
    out = to_ground_truth(masks, (5, 8), box=(1, 2, 4, 4))
    assert out.shape == (3, 5, 8) and out.dtype == torch.bool
    assert torch.equal(out[:, 1:5, 2:6], masks.repeat_interleave(2, 1).repeat_interleave(2, 2))
    assert out.sum() == out[:, 1:5, 2:6].sum()
    # non-integer scale: pixel-centre sampling, as the staging's nearest resize
    assert to_ground_truth(torch.arange(3)[None], (1, 4)).tolist() == [[0, 1, 1, 2]]
    with pytest.raises(ValueError, match="does not lie inside"):
        to_ground_truth(lab, (4, 4), box=(1, 1, 4, 4))
