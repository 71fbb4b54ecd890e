"""Speed of the ACIS reward (Araslanov et al. 2019, Eqs. 4-5): the state potential of
every prefix of 20 predicted masks against 20 ground-truth instances at 224x224.

`rlcv.rl.potential.rewards` builds the whole score matrix at once (for these binary
masks from bit-packed AND + popcount counts; soft masks take one batched matrix product)
and runs one Kuhn-Munkres assignment per prefix. The references, timed in the
same run, compute F(S_i, T_j) pair by pair in a Python loop (tensor ops per pair):
(a) the matrix once, then the same assignments; (b) the straightforward per-step reward,
which rebuilds the t x N matrix at every step t. Target (issue 7): >= 10x over (a).
Both sides run on one torch thread, so the ratio is the algorithmic speed-up and stays
meaningful on a shared machine.
"""

from __future__ import annotations

import numpy as np
import torch
from _timing import best_time
from scipy.optimize import linear_sum_assignment

from rlcv.rl.potential import rewards

SIZE, N, T = 224, 20, 20



def _instances(rng: np.random.Generator, n: int, jitter: int = 0) -> torch.Tensor:
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i in range(n):
        y, x = rng.integers(0, SIZE - 40, 2)
        h, w = rng.integers(12, 40, 2)
        masks[i, max(y + jitter, 0): y + h, max(x - jitter, 0): x + w] = True
    return torch.from_numpy(masks)


def _pair_dice(a: torch.Tensor, b: torch.Tensor) -> float:
    total = a.sum().item() + b.sum().item()
    return 2 * (a & b).sum().item() / total if total else 0.0


def _phi(s: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(s, maximize=True)
    return float(s[rows, cols].sum())


def reference_matrix_once(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """(a) Per-pair loop for the score matrix, then one assignment per prefix."""
    s = np.array([[_pair_dice(p, g) for g in gt] for p in pred])
    phi = [0.0] + [_phi(s[:t]) for t in range(1, len(pred) + 1)]
    return np.diff(phi)


def reference_per_step(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """(b) At every step t, phi_t from a freshly built t x N matrix (per-pair loop)."""
    phi = [0.0]
    for t in range(1, len(pred) + 1):
        phi.append(_phi(np.array([[_pair_dice(p, g) for g in gt] for p in pred[:t]])))
    return np.diff(phi)



def test_bench_potential_rewards(benchmark) -> None:
    rng = np.random.default_rng(0)
    gt = _instances(rng, N)
    # the instances in shuffled order, each with 2% of its pixels flipped
    pred = gt[rng.permutation(N)] ^ (torch.from_numpy(rng.random(gt.shape)) < 0.02)
    fast = lambda: rewards(pred[None], gt[None], "dice")  # noqa: E731
    np.testing.assert_allclose(fast()[0].numpy(), reference_matrix_once(pred, gt), atol=1e-9)
    np.testing.assert_allclose(fast()[0].numpy(), reference_per_step(pred, gt), atol=1e-9)
    benchmark.pedantic(fast, rounds=20, iterations=1, warmup_rounds=2)
    stats = getattr(benchmark, "stats", None)
    t_fast = stats.stats.min if stats is not None else best_time(fast, 20)
    t_once = best_time(lambda: reference_matrix_once(pred, gt), 3)
    t_step = best_time(lambda: reference_per_step(pred, gt), 1)
    ratio_once, ratio_step = t_once / t_fast, t_step / t_fast
    benchmark.extra_info.update(fast_s=t_fast, reference_once_s=t_once, reference_step_s=t_step,
                                ratio=round(ratio_once, 1), ratio_per_step=round(ratio_step, 1))
    print(f"\nACIS rewards ({T} predictions x {N} instances, {SIZE}x{SIZE}): batched "
          f"{t_fast * 1e3:.2f} ms; per-pair loop, matrix once {t_once * 1e3:.1f} ms "
          f"({ratio_once:.1f}x); per-step rebuild {t_step * 1e3:.1f} ms ({ratio_step:.1f}x)")
    assert ratio_once >= 10, f"only {ratio_once:.1f}x faster than the per-pair loop (target 10x)"
