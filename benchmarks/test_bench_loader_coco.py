"""Loader throughput at the paper's input size (COCO, shorter side 800, longer at most
1333), as a ratio against a plain decode of the same files.

The staged subset is an index only (`cache: false`, the paper profile's path): each
batch is decoded, resized to the paper's frame and collated by `Staged.loader` (a
DataLoader, one worker: the CPU profiles share two cores). The reference decodes the
same JPEGs with `read_image` and nothing else, so the ratio is the loader's overhead
(resize, annotations, collation, worker transfer) over the decode that any loader pays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from benchmarks._timing import best_time
from datasets import coco
from datasets._common import Staged, read_image

N, H, W = 24, 480, 640   # COCO's typical source size
CFG = {"image_size": 800, "resize": "shorter", "max_size": 1333, "min_object": 32,
       "cache": False}


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-loader") / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    images, anns = [], []
    for i in range(1, N + 1):
        pixels = np.stack([(xx * i) % 256, (yy * 3) % 256, (xx + yy) % 256], -1)
        Image.fromarray(pixels.astype(np.uint8)).save(root / "val2017" / f"{i}.jpg", quality=90)
        images.append({"id": i, "file_name": f"{i}.jpg", "height": H, "width": W})
        x, y, w, h = 40 + i, 30, 200, 150
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, w, h],
                     "area": w * h, "iscrowd": 0,
                     "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    coco.stage(root, root.parent / "staged", CFG)
    return root, Staged(root.parent / "staged" / "detection")   # val2017 as staged, 800 px


def _decode(root) -> None:
    for i in range(1, N + 1):
        read_image(root / "val2017" / f"{i}.jpg", coco.LAYOUT)


def test_bench_loader_coco_800(benchmark, staged):
    root, data = staged
    loader = data.loader("val", batch_size=4, seed=0, workers=1)

    def epoch() -> int:
        return sum(b["image"].shape[0] for b in loader)

    n = benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)
    assert n == N
    decode = best_time(_decode, 3, root)
    if benchmark.stats is not None:
        t = benchmark.stats.stats.min
        benchmark.extra_info.update(images=N, frame="800x1067", images_per_s=round(N / t, 1),
                                    decode_images_per_s=round(N / decode, 1),
                                    ratio_vs_decode=round(t / decode, 2))
