"""ACIS reward machinery: the potential (Eq. 4) against a brute-force maximum over
permutations, the rewards (Eq. 5), the critic's discounted-return targets (Eq. 7) and
the state transition (Eq. 3)."""

from itertools import permutations

import pytest
import torch

from rlcv.metrics import instance_overlaps
from rlcv.models.acis import transition
from rlcv.rl.potential import (
    assignment,
    discounted_returns,
    prefix_potentials,
    rewards,
    score_matrix,
)


def _brute_potential(scores: torch.Tensor, t: int) -> float:
    """max over injective assignments of predictions 1..t to the ground truths (a
    prediction may stay unassigned once the ground truths run out)."""
    n = scores.shape[1]
    best = 0.0
    for perm in permutations(range(n), min(t, n)):
        rows = permutations(range(t), len(perm)) if t > n else [tuple(range(t))]
        for r in rows:
            best = max(best, float(sum(scores[i, j] for i, j in zip(r, perm, strict=True))))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_potential_equals_brute_force_over_permutations(seed):
    g = torch.Generator().manual_seed(seed)
    b, t, n, hw = 2, 1 + seed % 4, 1 + (seed * 7) % 4, (9, 11)
    soft = seed % 2 == 0
    pred = torch.rand(b, t, *hw, generator=g)
    pred = pred if soft else pred > 0.6
    gt = torch.rand(b, n, *hw, generator=g) > 0.7
    for kind in ("dice", "iou"):
        scores = score_matrix(pred, gt, kind)
        phi = prefix_potentials(scores)
        assert phi.shape == (b, t + 1) and torch.all(phi[:, 0] == 0)
        for i in range(b):
            for k in range(1, t + 1):
                assert phi[i, k].item() == pytest.approx(_brute_potential(scores[i], k), abs=1e-9)
        r = rewards(pred, gt, kind)
        torch.testing.assert_close(r, phi[:, 1:] - phi[:, :-1])
        # adding a prediction never lowers the best matching: rewards are >= 0
        assert torch.all(r >= -1e-12)


def test_score_matrix_of_binary_masks_matches_the_metrics():
    g = torch.Generator().manual_seed(3)
    pred = torch.rand(3, 5, 16, 16, generator=g) > 0.5
    gt = torch.rand(3, 4, 16, 16, generator=g) > 0.6
    gt[0, 3] = False   # an empty (padding) slot scores 0
    ov = instance_overlaps(pred, gt)
    torch.testing.assert_close(score_matrix(pred, gt, "dice"), ov.dice())
    torch.testing.assert_close(score_matrix(pred, gt, "iou"), ov.iou())
    assert torch.all(score_matrix(pred, gt)[0, :, 3] == 0)
    # bool masks take the bit-packed path: the same values as the float product, also
    # when H x W is not a multiple of 64
    odd_p, odd_g = pred[..., :9, :11], gt[..., :9, :11]
    for kind in ("dice", "iou"):
        torch.testing.assert_close(score_matrix(odd_p, odd_g, kind),
                                   score_matrix(odd_p.float(), odd_g.float(), kind))
    with pytest.raises(ValueError, match="unknown score"):
        score_matrix(pred, gt, "f1")


def test_potential_of_perfect_predictions_in_any_order():
    gt = torch.zeros(1, 3, 8, 8, dtype=torch.bool)
    gt[0, 0, :2], gt[0, 1, 3:5], gt[0, 2, 6:] = True, True, True
    pred = gt[:, [2, 0, 1]]
    r = rewards(pred, gt, "dice")
    torch.testing.assert_close(r, torch.ones(1, 3, dtype=torch.float64))
    assert assignment(score_matrix(pred, gt)).tolist() == [[2, 0, 1]]


def test_reassignment_can_make_the_reward_differ_from_the_new_mask_score():
    # prediction 1 covers a and half of b; prediction 2 is exactly a: the best matching
    # moves prediction 1 to b, so r_2 is not simply F(S_2, a) = 1
    gt = torch.zeros(1, 2, 1, 8, dtype=torch.bool)
    gt[0, 0, 0, :4], gt[0, 1, 0, 4:] = True, True
    pred = torch.zeros(1, 2, 1, 8, dtype=torch.bool)
    pred[0, 0, 0, :6], pred[0, 1, 0, :4] = True, True
    s = score_matrix(pred, gt)
    r = rewards(pred, gt)
    assert r[0, 0].item() == pytest.approx(s[0, 0, 0].item())   # 0.8 with a
    assert r[0, 1].item() == pytest.approx(1 + s[0, 0, 1].item() - s[0, 0, 0].item())


def test_discounted_returns_are_eq7_sums():
    g = torch.Generator().manual_seed(0)
    b, t, gamma = 4, 6, 0.9
    r = torch.rand(b, t, generator=g)
    lengths = torch.tensor([6, 3, 0, 1])
    valid = torch.arange(t)[None, :] < lengths[:, None]
    out = discounted_returns(r, valid, gamma)
    for i in range(b):
        for s in range(t):
            want = sum(gamma ** (k - s) * r[i, k].item() for k in range(s, lengths[i]))
            assert out[i, s].item() == pytest.approx(want if s < lengths[i] else 0.0)
    # a window that ends before the episode: the tail is closed by the bootstrap value
    boot = torch.tensor([2.0, 5.0, 5.0, 5.0])
    out_b = discounted_returns(r, valid, gamma, boot)
    for s in range(t):
        want = sum(gamma ** (k - s) * r[0, k].item() for k in range(s, t)) + gamma ** (t - s) * 2
        assert out_b[0, s].item() == pytest.approx(want)
    # episodes that end inside the window ignore the bootstrap value
    torch.testing.assert_close(out_b[1:], out[1:])


def test_transition_is_pixelwise_max():
    g = torch.Generator().manual_seed(1)
    m = torch.rand(3, 1, 7, 5, generator=g)
    d = torch.rand(3, 1, 7, 5, generator=g)
    out = transition(m, d)
    assert torch.equal(out, torch.where(m > d, m, d))
    assert torch.equal(transition(torch.zeros_like(d), d), d)
    assert torch.equal(transition(out, d), out)   # re-adding a mask changes nothing
