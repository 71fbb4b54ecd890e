"""Staging throughput of ADE20K (datasets.ade20k.stage) against a plain decode of the same
files: the overhead of checking, resizing and writing shards on top of reading them."""

from __future__ import annotations

import numpy as np
import pytest
from _timing import best_time
from PIL import Image

from datasets import ade20k

CFG = {**ade20k.PARAMS["config"], **ade20k.PARAMS["smoke"],
       "synth_train": 96, "synth_val": 32}
N = CFG["synth_train"] + CFG["synth_val"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-ade20k") / "raw"
    ade20k.synth(root, CFG, seed=0)
    return root


def _plain_decode(root) -> int:
    """The reference: decode every image and annotation, nothing else."""
    n = 0
    for path in sorted((root / "ADEChallengeData2016").rglob("ADE_*.*")):
        with Image.open(path) as im:
            n += np.asarray(im).size
    return n



def test_bench_plain_decode_ade20k(benchmark, root):
    benchmark.group = "staging-ade20k"
    benchmark.pedantic(_plain_decode, args=(root,), rounds=3, iterations=1)


def test_bench_stage_ade20k(benchmark, root, tmp_path):
    """Reports images/s and the ratio to a plain decode of the same files (same run)."""
    benchmark.group = "staging-ade20k"
    decode = best_time(_plain_decode, 3, root)
    out = tmp_path / "staged"
    result = benchmark.pedantic(ade20k.stage, args=(root, out, CFG), rounds=3, iterations=1)
    assert sum(result["sceneparsing"]["counts"].values()) == N
    stats = getattr(benchmark.stats, "stats", None)  # None under --benchmark-disable
    stage = stats.min if stats is not None else best_time(ade20k.stage, 1, root, out, CFG)
    benchmark.extra_info.update({"images": N, "images_per_s": round(N / stage, 1),
                                 "ratio_vs_plain_decode": round(stage / decode, 2)})
    assert stage / decode < 10, "staging costs far more than decoding the files"
