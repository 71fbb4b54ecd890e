"""Synthetic Cityscapes (leftImg8bit + gtFine layout) for CiSS-Net (Zhou et al., CVPR 2019).

Each frame is the perspective street of `datasets._scenes.street` (sky, building facades,
sidewalks beside the road, trees, poles carrying traffic signs or lights at the kerb, cars
on the road, people on the sidewalks, the ego vehicle's bonnet), written exactly as the
Cityscapes fine annotations are: the polygons JSON lists the objects back to front, and
labelIds / instanceIds / color PNGs are those polygons rasterised in that order with
PIL's polygon filler (what cityscapesScripts' json2labelImg / json2instanceImg do), so
the files agree with each other pixel for pixel. Instances of a class are numbered
id*1000+k, k = 0, 1, ... in drawing order.

Context (CiSS-Net section 3.6): road and sidewalk share one look and are told apart by
position and neighbours (the sidewalk flanks the road, between it and the facades; cars
stand on the road); the ego vehicle is void (trainId 255).
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from datasets import _scenes as sc
from datasets.cityscapes import BY_NAME, COLORS
from rlcv import io as rio

CITIES = {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster")}
# scene roles -> Cityscapes label names
ROLE_LABELS = {
    "sky": "sky", "building": "building", "sidewalk": "sidewalk", "road": "road",
    "vegetation": "vegetation", "pole": "pole", "sign": "traffic sign",
    "light": "traffic light", "car": "car", "person": "person", "ego": "ego vehicle",
}


def frame_name(split: str, index: int) -> tuple[str, str]:
    """(city, {city}_{seq:06d}_{frame:06d}) of synthetic frame `index` of `split`."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_000019"


def make_frame(seed: int, split: str, index: int, size) -> dict:
    """Synthetic frame `index` of `split` at `size` (H, W), deterministic from the seed.

    Returns image HxWx3 uint8, label_ids HxW uint8, instance_ids HxW uint16, color HxWx4
    uint8 and polygons (the JSON document).
    """
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng([seed, list(CITIES).index(split), index])
    shapes = sc.street(rng, h, w, ego=True)
    index_map = sc.rasterize(shapes, h, w)
    labels = [BY_NAME[ROLE_LABELS[s.role]] for s in shapes]
    ids = np.zeros(len(shapes) + 1, np.uint8)
    inst = np.zeros(len(shapes) + 1, np.uint16)
    seen: dict[str, int] = {}
    for i, lb in enumerate(labels, 1):
        ids[i] = lb.id
        if lb.has_instances:
            inst[i] = lb.id * 1000 + seen.get(lb.name, 0)
            seen[lb.name] = seen.get(lb.name, 0) + 1
        else:
            inst[i] = lb.id
    label_ids = ids[index_map]
    color = np.concatenate([COLORS[label_ids], np.full((h, w, 1), 255, np.uint8)], axis=2)
    polygons = {"imgHeight": h, "imgWidth": w, "objects": [
        {"label": lb.name, "polygon": s.pts.tolist()} for s, lb in zip(shapes, labels, strict=True)
    ]}
    return {"image": sc.paint(index_map, shapes, rng), "label_ids": label_ids,
            "instance_ids": inst[index_map], "color": color, "polygons": polygons}


def write(root, cfg: dict, seed: int) -> None:
    """Write the synthetic leftImg8bit/ and gtFine/ under `root` (atomically).

    cfg: synth_train / synth_val (frame counts), synth_size [H, W].
    """
    counts = {"train": int(cfg["synth_train"]), "val": int(cfg["synth_val"])}
    with rio.atomic_dir(root) as tmp:
        for split, n in counts.items():
            for i in range(n):
                city, stem = frame_name(split, i)
                f = make_frame(seed, split, i, cfg["synth_size"])
                img_dir = tmp / "leftImg8bit" / split / city
                gt_dir = tmp / "gtFine" / split / city
                img_dir.mkdir(parents=True, exist_ok=True)
                gt_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(f["image"]).save(
                    img_dir / f"{stem}_leftImg8bit.png", compress_level=1)
                Image.fromarray(f["label_ids"]).save(gt_dir / f"{stem}_gtFine_labelIds.png")
                Image.fromarray(f["instance_ids"]).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
                Image.fromarray(f["color"]).save(gt_dir / f"{stem}_gtFine_color.png")
                (gt_dir / f"{stem}_gtFine_polygons.json").write_text(
                    json.dumps(f["polygons"], indent=4))
