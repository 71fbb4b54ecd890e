"""Staging throughput of KITTI car instances (images/s), as a ratio against plain decoding.

The reference decodes the same frames and colour-coded ground-truth PNGs once; staging
adds colour-to-instance decoding, resizing, relabelling and shard writing.
"""

from __future__ import annotations

import time

import pytest

from datasets import kitti

SPLITS = {"num_train": 96, "num_valid": 16, "num_test": 16}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    cfg = {**kitti.PARAMS["config"], **kitti.PARAMS["smoke"], **SPLITS}
    root = tmp_path_factory.mktemp("bench-kitti") / "kitti"
    kitti.synth(root, cfg, seed=0)
    return root, cfg


def _decode_seconds(root, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for fname, gt in kitti.SPLITS.values():
            for frame in kitti.read_ids(root / fname):
                kitti.read_frame(root / "images" / f"{frame:06d}.png")
                kitti.read_frame(root / gt / f"{frame:06d}.png")
        best = min(best, time.perf_counter() - start)
    return best


def test_bench_staging_kitti(benchmark, source, tmp_path):
    root, cfg = source
    manifest = benchmark.pedantic(
        kitti.stage, args=(root, tmp_path / "staged", cfg), rounds=3, iterations=1, warmup_rounds=1
    )["cars"]
    n = sum(manifest["counts"].values())
    assert n == sum(SPLITS.values())
    decode = _decode_seconds(root)
    if benchmark.stats is not None:
        staging = benchmark.stats.stats.min
        benchmark.extra_info.update(
            images=n,
            images_per_s=round(n / staging, 1),
            decode_images_per_s=round(n / decode, 1),
            ratio_vs_decode=round(staging / decode, 2),
        )
