"""Staging throughput of MPII Human Pose (images/s), as a ratio against plain decoding.

The reference is the straightforward part of staging: decoding the same JPEGs once.
The ratio (staging time / decode time) shows what letterboxing, coordinate transforms,
the .mat parse and shard writing add on top.
"""

from __future__ import annotations

import time

import pytest

from datasets import mpii

NUM_IMAGES = 120


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    cfg = {**mpii.PARAMS["config"], **mpii.PARAMS["smoke"], "num_images": NUM_IMAGES}
    root = tmp_path_factory.mktemp("bench-mpii") / "mpii"
    mpii.synth(root, cfg, seed=0)
    return root, cfg


def _decode_seconds(paths, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for p in paths:
            mpii.read_mpii_image(p)
        best = min(best, time.perf_counter() - start)
    return best


def test_bench_staging_mpii(benchmark, source, tmp_path):
    root, cfg = source
    manifest = benchmark.pedantic(
        mpii.stage, args=(root, tmp_path / "staged", cfg), rounds=3, iterations=1, warmup_rounds=1
    )["multi"]
    n = sum(manifest["counts"].values())
    assert n == len(manifest["images"]) > 0
    decode = _decode_seconds([root / "images" / x["file"] for x in manifest["images"]])
    if benchmark.stats is not None:
        staging = benchmark.stats.stats.min
        benchmark.extra_info.update(
            images=n,
            images_per_s=round(n / staging, 1),
            decode_images_per_s=round(n / decode, 1),
            ratio_vs_decode=round(staging / decode, 2),
        )
