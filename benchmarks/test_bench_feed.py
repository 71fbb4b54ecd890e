"""Training batches from an index at the paper's input size (COCO, shorter side 800):
`Staged.feed` decoding ahead in one worker process, as a ratio against the same feed
decoding in the training process (`workers=0`, what a loop without prefetch pays).

Each step also waits `STEP_S`, standing in for the step's GPU work (which does not use
the CPU): the worker decodes the next batches meanwhile, so the ratio shows how much of
the decode the prefetch hides. Same draws, same images, both measured in this run.
"""

from __future__ import annotations

import time

import pytest

from benchmarks._timing import best_time
from benchmarks.test_bench_loader_coco import staged  # noqa: F401 (the 800-px index fixture)
from rlcv import engine

STEPS, BATCH, STEP_S = 16, 2, 0.15
KEYS = (0, "bench")


def _run(data, workers: int) -> int:
    feed = data.feed("val", workers=workers)
    n = 0
    for step in range(STEPS):
        batch = feed.draw(engine.generator(*KEYS, step), BATCH, KEYS, step, STEPS)
        n += len(batch["image"])
        time.sleep(STEP_S)   # the step's device work
    feed.close()
    return n


@pytest.mark.parametrize("workers", [1])
def test_bench_feed_prefetch_800(benchmark, staged, workers):  # noqa: F811
    _, data = staged
    n = benchmark.pedantic(_run, args=(data, workers), rounds=3, iterations=1, warmup_rounds=1)
    assert n == STEPS * BATCH
    inline = best_time(_run, 3, data, 0)
    if benchmark.stats is not None:
        t = benchmark.stats.stats.min
        benchmark.extra_info.update(steps=STEPS, batch=BATCH, step_s=STEP_S,
                                    inline_s=round(inline, 3),
                                    ratio_vs_inline=round(t / inline, 2))
