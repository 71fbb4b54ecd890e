"""Speed of EU-RL pose's hot paths against straightforward versions, in the same run.

- Heatmap targets of a batch of crops (`rlcv.models.hourglass.heatmap_targets`, rendered
  every training step and for every reward of the agent) against a loop over people and
  joints drawing one Gaussian at a time.
- RMPE's pose-NMS similarity matrix (`rlcv.models.pose_nms.PoseNMS.similarity`) against
  a loop over pose pairs and joints.

Both sides on one torch thread (ratios are algorithmic, stable on a shared machine); the
ratio is in `extra_info` and asserted against a modest floor.
"""

from __future__ import annotations

import math

import torch
from _timing import best_time

from rlcv.models.hourglass import heatmap_targets
from rlcv.models.pose_nms import PoseNMS


def _compare(benchmark, name, fast, slow, target: float, rounds: int = 5) -> None:
    benchmark.pedantic(fast, rounds=rounds, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_fast = stats.stats.min if stats is not None else best_time(fast, rounds)
    t_slow = best_time(slow, 2)
    ratio = t_slow / t_fast
    benchmark.extra_info.update(fast_s=t_fast, reference_s=t_slow, ratio=round(ratio, 1))
    print(f"\n{name}: batched {t_fast * 1e3:.2f} ms, loop {t_slow * 1e3:.1f} ms, {ratio:.1f}x")
    assert ratio >= target, f"{name}: only {ratio:.1f}x (target {target}x)"


def _loop_targets(points, visible, boxes, size, sigma):
    n, j = points.shape[:2]
    out = torch.zeros(n, j, size, size)
    for i in range(n):
        x0, y0, x1, y1 = boxes[i].tolist()
        for k in range(j):
            if not visible[i, k]:
                continue
            cx = (points[i, k, 0].item() - x0) / (x1 - x0) * size - 0.5
            cy = (points[i, k, 1].item() - y0) / (y1 - y0) * size - 0.5
            for yy in range(size):
                gy = math.exp(-(yy - cy) ** 2 / (2 * sigma**2))
                for xx in range(size):
                    out[i, k, yy, xx] = gy * math.exp(-(xx - cx) ** 2 / (2 * sigma**2))
    return out


def test_bench_heatmap_targets(benchmark):
    g = torch.Generator().manual_seed(0)
    n, size = 16, 16
    boxes = torch.tensor([[10.0, 10.0, 74.0, 74.0]]).repeat(n, 1)
    points = torch.rand(n, 16, 2, generator=g) * 64 + 10
    vis = torch.ones(n, 16, dtype=torch.bool)
    fast = lambda: heatmap_targets(points, vis, boxes, size, 1.5)  # noqa: E731
    slow = lambda: _loop_targets(points, vis, boxes, size, 1.5)  # noqa: E731
    assert torch.allclose(fast()[0], slow(), atol=1e-5)
    _compare(benchmark, "heatmap targets (16 crops x 16 joints, 16x16)", fast, slow, 20.0)


def _loop_similarity(nms: PoseNMS, joints, conf, boxes):
    p, j = joints.shape[:2]
    out = torch.zeros(p, p)
    for a in range(p):
        w, h = (boxes[a, 2] - boxes[a, 0]).item(), (boxes[a, 3] - boxes[a, 1]).item()
        for b in range(p):
            k_sim = h_sim = 0.0
            for n in range(j):
                dx = joints[b, n, 0].item() - joints[a, n, 0].item()
                dy = joints[b, n, 1].item() - joints[a, n, 1].item()
                if abs(dx) <= nms.match_box * w / 2 and abs(dy) <= nms.match_box * h / 2:
                    k_sim += (math.tanh(conf[a, n].item() / nms.sigma1)
                              * math.tanh(conf[b, n].item() / nms.sigma1))
                h_sim += math.exp(-((dx / w) ** 2 + (dy / h) ** 2) / nms.sigma2)
            out[a, b] = k_sim + nms.lam * h_sim
    return out


def test_bench_pose_nms_similarity(benchmark):
    g = torch.Generator().manual_seed(1)
    p = 24
    joints = torch.rand(p, 16, 2, generator=g) * 100
    conf = torch.rand(p, 16, generator=g)
    xy = torch.rand(p, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 40], 1)
    nms = PoseNMS()
    fast = lambda: nms.similarity(joints, conf, boxes)  # noqa: E731
    slow = lambda: _loop_similarity(nms, joints, conf, boxes)  # noqa: E731
    assert torch.allclose(fast(), slow(), atol=1e-4)
    _compare(benchmark, "pose NMS similarity (24 poses)", fast, slow, 20.0)
