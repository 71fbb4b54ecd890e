"""Synthetic PASCAL-Context (VOC2010 images + the Context release) for CiSS-Net Table 7.

Writes exactly the layout `datasets.pascal_context.LAYOUT` reads: VOCdevkit/VOC2010/
JPEGImages/<id>.jpg and ImageSets/Main/{train,val}.txt (VOC-style ids 2008_000001...),
trainval/<id>.mat (MATLAB v5, uint16 `LabelMap` of the image's size), labels.txt and
59_labels.txt.

`labels.txt` here lists the 59 benchmark classes plus the classes outside the 59 that
the scenes draw ('pole', 'traffic light', which the benchmark maps to background) under
ids of this writer's own (not the release's 459-class numbering: the reader matches
names, never ids); `59_labels.txt` is the
benchmark's full list of 59 names in its order. Some label-map pixels are left 0
(unlabelled), as the release's are.

Scenes carry the co-occurrence and look-alike structure CiSS-Net exploits, built from the
shared layouts of `datasets._scenes`:

- street: sky over buildings, road and sidewalk that look alike, cars on the road, people
  on sidewalks, poles with signs or lights at the kerb (`_scenes.street`);
- lake: sky over mountains, water with the *look of sky* below the horizon, boats on the
  water, grass or rock on the near bank;
- room: ceiling, walls, a floor with the *look of road*, a window showing sky (labelled
  window), a sofa or a bed, a table with a monitor, people.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from datasets import _matfile
from datasets import _scenes as sc
from rlcv import io as rio

NAMES_59 = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
    "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck",
    "tvmonitor", "wall", "water", "window", "wood")
"""The benchmark's 59 classes in 59_labels.txt order (alphabetical, 1..59)."""

# scene role -> class name in labels.txt ('pole', 'traffic light': outside the 59)
ROLE_NAMES = {
    "sky": "sky", "building": "building", "road": "road", "sidewalk": "sidewalk",
    "vegetation": "tree", "tree": "tree", "pole": "pole", "sign": "sign",
    "light": "traffic light", "car": "car", "person": "person", "mountain": "mountain",
    "water": "water", "boat": "boat", "grass": "grass", "rock": "rock",
    "ceiling": "ceiling", "wall": "wall", "floor": "floor", "window": "window",
    "sofa": "sofa", "bed": "bed", "table": "table", "tvmonitor": "tvmonitor",
}
LABELS = {i + 1: name for i, name in enumerate(sorted(set(NAMES_59) | set(ROLE_NAMES.values())))}
"""This writer's labels.txt: id -> name (the 59 and the extra classes the scenes draw; ids
of its own, names as in the release)."""
_ID = {name: i for i, name in LABELS.items()}
SPLIT_SEEDS = {"train": 0, "val": 1}


def _put(shapes, role, look, pts, w, h, **kw):
    s = sc.make_shape(role, look, pts, w, h, **kw)
    if s is not None:
        shapes.append(s)


def _lake(rng, h, w):
    """Sky, mountains on the horizon, water that looks like sky, boats, a near bank."""
    yh = h * rng.uniform(0.35, 0.55)
    shapes: list = []
    _put(shapes, "sky", "sky", sc.rect(0, 0, w - 1, yh), w, h)
    _put(shapes, "water", "sky", sc.rect(0, yh, w - 1, h - 1), w, h)
    hm = h * rng.uniform(0.08, 0.2)
    _put(shapes, "mountain", "rock", sc.ridge(rng, -0.1 * w, 1.1 * w, yh, yh - hm, 0.6 * hm),
         w, h)
    for _ in range(rng.integers(0, 3)):
        x, y = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(yh + 0.1 * h, 0.8 * h)
        bw = 0.1 * w * (y - yh) / (h - yh) + 0.04 * w
        hull = [(x - bw, y - 0.03 * h), (x + bw, y - 0.03 * h), (x + 0.7 * bw, y),
                (x - 0.7 * bw, y)]
        _put(shapes, "boat", "wood", hull, w, h, color=sc.random_color(rng))
    if rng.random() < 0.6:
        bank = sc.ridge(rng, -0.1 * w, 1.1 * w, 1.2 * h, h * rng.uniform(0.78, 0.9), 0.06 * h)
        role = "grass" if rng.random() < 0.6 else "rock"
        _put(shapes, role, role if role == "grass" else "rock", bank, w, h)
    return shapes


def _room(rng, h, w):
    """A room; the window shows the sky, the floor looks like road."""
    bx0, bx1 = w * rng.uniform(0.15, 0.35), w * rng.uniform(0.65, 0.85)
    by0, by1 = h * rng.uniform(0.12, 0.3), h * rng.uniform(0.55, 0.7)
    shapes: list = []
    _put(shapes, "ceiling", "ceiling", [(0, 0), (w - 1, 0), (bx1, by0), (bx0, by0)], w, h)
    _put(shapes, "wall", "wall", [(0, 0), (bx0, by0), (bx0, by1), (0, h - 1)], w, h, shade=0.85)
    _put(shapes, "wall", "wall", [(w - 1, 0), (bx1, by0), (bx1, by1), (w - 1, h - 1)], w, h,
         shade=0.9)
    _put(shapes, "wall", "wall", sc.rect(bx0, by0, bx1, by1), w, h)
    _put(shapes, "floor", "pavement", [(0, h - 1), (bx0, by1), (bx1, by1), (w - 1, h - 1)], w, h)
    bw, bh = bx1 - bx0, by1 - by0
    if rng.random() < 0.8:
        x, y = rng.uniform(bx0 + 0.05 * bw, bx1 - 0.4 * bw), by0 + rng.uniform(0.1, 0.2) * bh
        _put(shapes, "window", "sky", sc.rect(x, y, x + 0.35 * bw, y + 0.4 * bh), w, h)
    fx, fw = rng.uniform(0.1 * w, 0.45 * w), rng.uniform(0.3, 0.45) * w
    role = "sofa" if rng.random() < 0.5 else "bed"
    _put(shapes, role, "fabric", sc.rect(fx, by1 - 0.12 * h, fx + fw, by1 + 0.08 * h), w, h,
         color=sc.random_color(rng))
    tx = rng.uniform(0.5 * w, 0.75 * w)
    ty = by1 + rng.uniform(0.12, 0.25) * h
    _put(shapes, "table", "wood", sc.rect(tx, ty - 0.04 * h, tx + 0.2 * w, ty), w, h)
    if rng.random() < 0.6:   # a monitor stands on the table
        _put(shapes, "tvmonitor", "metal", sc.rect(tx + 0.05 * w, ty - 0.14 * h, tx + 0.15 * w,
                                                   ty - 0.04 * h), w, h)
    if rng.random() < 0.4:
        x = rng.uniform(0.1 * w, 0.9 * w)
        _put(shapes, "person", "clothes", sc.person(x, h * rng.uniform(0.85, 1.0), 0.5 * h),
             w, h, color=sc.random_color(rng))
    return shapes


SCENES = {"street": (lambda rng, h, w: sc.street(rng, h, w), 0.4), "lake": (_lake, 0.3),
          "room": (_room, 0.3)}


def make_sample(seed: int, split: str, index: int, size) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic image `index` of `split`: HxWx3 uint8 and its LabelMap (HxW uint16, ids
    of LABELS, 0 = unlabelled in a thin band at the border, as the release leaves some
    pixels). Sizes vary around `size` (H, W) like VOC's; deterministic."""
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split], index])
    h = int(round(size[0] * rng.uniform(0.8, 1.25)))
    w = int(round(size[1] * rng.uniform(0.8, 1.25)))
    names = list(SCENES)
    probs = np.array([SCENES[n][1] for n in names])
    shapes = SCENES[names[rng.choice(len(names), p=probs / probs.sum())]][0](rng, h, w)
    index_map = sc.rasterize(shapes, h, w)
    ids = np.array([0] + [_ID[ROLE_NAMES[s.role]] if s.role in ROLE_NAMES else 0
                          for s in shapes], np.uint16)
    label = ids[index_map]
    if rng.random() < 0.3:
        label[:, : max(1, w // 40)] = 0
    return sc.paint(index_map, shapes, rng), label


def write(root, cfg: dict, seed: int) -> None:
    """Write the synthetic layout under `root` (atomically: all or nothing).

    cfg: synth_train / synth_val (image counts), synth_size [H, W] (mean image size),
    jpeg_quality.
    """
    counts = {"train": int(cfg["synth_train"]), "val": int(cfg["synth_val"])}
    quality = int(cfg.get("jpeg_quality", 90))
    with rio.atomic_dir(root) as tmp:
        voc = tmp / "VOCdevkit" / "VOC2010"
        (voc / "JPEGImages").mkdir(parents=True)
        (voc / "ImageSets" / "Main").mkdir(parents=True)
        (tmp / "trainval").mkdir()
        for split, n in counts.items():
            ids = []
            for i in range(n):
                image, label = make_sample(seed, split, i, cfg["synth_size"])
                stem = f"{2008 + SPLIT_SEEDS[split]}_{i + 1:06d}"
                Image.fromarray(image).save(voc / "JPEGImages" / f"{stem}.jpg",
                                            quality=quality)
                rio.write_bytes(tmp / "trainval" / f"{stem}.mat", _matfile.mat_bytes(
                    {"LabelMap": label}, "rlcv synthetic PASCAL-Context writer"))
                ids.append(stem)
            (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        (tmp / "labels.txt").write_text("".join(f"{i}: {n}\n" for i, n in LABELS.items()))
        (tmp / "59_labels.txt").write_text("".join(f"{i + 1}: {n}\n"
                                                   for i, n in enumerate(NAMES_59)))
