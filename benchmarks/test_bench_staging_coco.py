"""Staging throughput of COCO (images/s), as a ratio against plain decoding.

The reference decodes the same source files once: both annotation JSONs and every
image. Staging adds the pycocotools index, letterboxing, the single-object subset's mask
rasterisation, both subsets' shards (`single` and `detection`, from that one decode) and
the detection ground truth `val_gt.json`.
"""

from __future__ import annotations

import json
import time

import pytest

from datasets import coco
from datasets._common import read_image

SIZES = {"n_train": 160, "n_val": 48}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    cfg = {**coco.PARAMS["config"], **coco.PARAMS["smoke"], **SIZES}
    root = tmp_path_factory.mktemp("bench-coco") / "coco"
    coco.synth(root, cfg, seed=0)
    return root, cfg


def _decode_seconds(root, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for folder in coco.SPLITS.values():
            doc = json.loads((root / "annotations" / f"instances_{folder}.json").read_text())
            for image in doc["images"]:
                read_image(root / folder / image["file_name"], coco.LAYOUT)
        best = min(best, time.perf_counter() - start)
    return best


def test_bench_staging_coco(benchmark, source, tmp_path):
    root, cfg = source
    manifests = benchmark.pedantic(
        coco.stage, args=(root, tmp_path / "staged", cfg), rounds=3, iterations=1, warmup_rounds=1
    )
    n = sum(manifests["detection"]["counts"].values())
    assert n == sum(SIZES.values())   # every synthetic image holds an object
    assert 0 < sum(manifests["single"]["counts"].values()) < n
    decode = _decode_seconds(root)
    if benchmark.stats is not None:
        staging = benchmark.stats.stats.min
        benchmark.extra_info.update(
            images=n,
            images_per_s=round(n / staging, 1),
            decode_images_per_s=round(n / decode, 1),
            ratio_vs_decode=round(staging / decode, 2),
        )
