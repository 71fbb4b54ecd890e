"""Staging throughput of CVPPP A1 (images/s), as a ratio against plain decoding.

The reference decodes the same source files once (rgb, label and fg PNGs of the
training plants, rgb PNGs and H5 labels of the test plants). Staging writes two
subsets (ablation, traintest) from that single read.
"""

from __future__ import annotations

import time

import pytest

from datasets import cvppp

NUM_TRAIN, NUM_TEST = 96, 24


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    cfg = {
        **cvppp.PARAMS["config"],
        **cvppp.PARAMS["smoke"],
        "num_train": NUM_TRAIN,
        "num_test": NUM_TEST,
    }
    root = tmp_path_factory.mktemp("bench-cvppp") / "cvppp"
    cvppp.synth(root, cfg, seed=0)
    return root, cfg


def _decode_seconds(root, rounds: int = 3) -> float:
    train, test = root / "training" / "A1", root / "testing" / "A1"
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for name in cvppp.list_plants(train):
            cvppp.read_plant(train, name)
        with cvppp.open_truth(root / cvppp.TRUTH_H5) as read_truth:
            for name in cvppp.list_plants(test):
                cvppp.read_rgb(test / f"{name}_rgb.png")
                read_truth(name)
        best = min(best, time.perf_counter() - start)
    return best


def test_bench_staging_cvppp(benchmark, source, tmp_path):
    root, cfg = source
    manifests = benchmark.pedantic(
        cvppp.stage, args=(root, tmp_path / "staged", cfg), rounds=3, iterations=1, warmup_rounds=1
    )
    n = sum(manifests["traintest"]["counts"].values())
    assert n == NUM_TRAIN + NUM_TEST
    decode = _decode_seconds(root)
    if benchmark.stats is not None:
        staging = benchmark.stats.stats.min
        benchmark.extra_info.update(
            images=n,
            images_per_s=round(n / staging, 1),
            decode_images_per_s=round(n / decode, 1),
            ratio_vs_decode=round(staging / decode, 2),
        )
