"""Networks in channels-last layout on the CPU (`rlcv.engine.place`, issue 22) against the
contiguous NCHW layout every network had before, timed in the same run.

Workloads, one training step each (forward, loss, backward) on one thread at the smoke
profile's sizes:
- ACIS (the largest family): the actor, the cVAE decoder with its State Pyramid and the
  critic at width 8 on a batch of 8 32x32 states (acis-* smoke rows: width 8,
  downsample 3), the convolutions a rollout step and its update run;
- EU-RL pose: the 2-stack hourglass with 16 channels on a batch of 16 32-px crops
  (eurl-pose-boxes' smoke settings).
Both layouts compute the same values up to the rounding of the convolutions' sums.
Asserted: channels-last is not slower (ratio <= 1.0); measured on the Zen 5 host
0.77-0.84 (ACIS) and 0.80-0.91 (pose).
"""

from __future__ import annotations

import pytest
import torch
from _timing import best_time

from rlcv import engine
from rlcv.models.acis import AUX, Actor, Critic, MaskDecoder
from rlcv.models.hourglass import StackedHourglass

STEPS = 10
HW = (32, 32)


def _acis():
    torch.manual_seed(0)
    nets = torch.nn.ModuleDict({"actor": Actor(HW, 16, 8, 64), "decoder": MaskDecoder(HW, 16, 8),
                                "critic": Critic(HW, 8)})
    g = torch.Generator().manual_seed(1)
    image, aux = torch.randn(8, 3, *HW, generator=g), torch.rand(8, AUX, *HW, generator=g)
    mask = torch.rand(8, 1, *HW, generator=g)

    def step(m):
        mu, _, stop, _ = m["actor"](image, aux, mask, m["actor"].initial_state(8))
        pyramid = [torch.cat([image, aux], 1)]
        for _ in range(3):
            pyramid.insert(0, torch.nn.functional.avg_pool2d(pyramid[0], 2))
        decoded = torch.sigmoid(m["decoder"](mu, pyramid))
        loss = m["critic"](image, aux, mask, decoded).sum() + stop.sum()
        loss.backward()
        return loss
    return nets, step


def _pose():
    torch.manual_seed(0)
    net = StackedHourglass(stacks=2, channels=16, depth=3, downsample=2)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def step(m):
        loss = sum(o.square().mean() for o in m(x))
        loss.backward()
        return loss
    return net, step


@pytest.mark.parametrize("workload", ["acis", "pose"])
def test_bench_channels_last_vs_contiguous(benchmark, workload):
    net, step = {"acis": _acis, "pose": _pose}[workload]()
    ours = engine.place(net, torch.device("cpu"))
    conv = next(m for m in ours.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    ref = {"acis": _acis, "pose": _pose}[workload]()[0]            # the code before: NCHW
    assert next(m for m in ref.modules() if isinstance(m, torch.nn.Conv2d)).weight.is_contiguous()
    # the same values up to rounding
    assert torch.allclose(step(ours), step(ref), rtol=1e-4, atol=1e-5)

    def run(m):
        for _ in range(STEPS):
            m.zero_grad(set_to_none=True)
            step(m)

    run(ours), run(ref)                                            # warm both
    benchmark.pedantic(run, args=(ours,), rounds=3, iterations=1)
    stats = getattr(benchmark, "stats", None)
    t_ours = stats.stats.min if stats is not None else best_time(run, 3, ours)
    t_ref = best_time(run, 3, ref)
    ratio = t_ours / t_ref
    benchmark.extra_info.update(ratio=round(ratio, 3), torch_threads=1)
    print(f"\n{workload}: channels-last training step {ratio:.2f}x the NCHW one (asserted <= 1.0)")
    assert ratio <= 1.0, f"channels-last took {ratio:.2f}x the NCHW step"
