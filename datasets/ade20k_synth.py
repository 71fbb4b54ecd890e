"""Synthetic ADE20K (ADEChallengeData2016 layout) for CiSS-Net (Zhou et al., CVPR 2019).

Writes `ADEChallengeData2016/` exactly as the MIT Scene Parsing release lays it out
(see `datasets.ade20k.LAYOUT`): JPEG images, uint8 PNG annotations with the official
150-class ids (0 = other), `objectInfo150.txt`/`.csv` listing the classes used, with their
official names and statistics measured on the synthetic set, and `sceneCategories.txt`.

Scenes carry the context CiSS-Net exploits (section 3.6: "the overall layout of the scene
... location priors"):

- river: sky above mountains and a treeline, water below the horizon that *mirrors* the
  sky (same look as sky) with the reflection of the mountains and trees in it (Fig. 1);
- mountain: sky, ridges, grass/earth foreground (no water: below the ridges is land);
- street: the shared perspective street of `datasets._scenes` (road and sidewalk look
  alike; cars on the road, people on sidewalks);
- bedroom / living_room: ceiling, walls, a floor with the *same look as road*, windows
  showing sky (labelled windowpane), paintings, doors, bed or sofa and table.

So sky/water/windowpane and road/sidewalk/floor are pairs that share colour and texture
and are told apart only by position, neighbours and scene type.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from datasets import _scenes as sc
from rlcv import io as rio

# The ADE20K classes the synthetic scenes use: official id -> (objectInfo150 name, stuff).
CLASSES: dict[int, tuple[str, int]] = {
    1: ("wall", 1), 2: ("building, edifice", 1), 3: ("sky", 1), 4: ("floor, flooring", 1),
    5: ("tree", 0), 6: ("ceiling", 1), 7: ("road, route", 1), 8: ("bed", 0),
    9: ("windowpane, window", 0), 10: ("grass", 1), 12: ("sidewalk, pavement", 1),
    13: ("person, individual, someone, somebody, mortal, soul", 0), 14: ("earth, ground", 1),
    15: ("door, double door", 0), 16: ("table", 0), 17: ("mountain, mount", 1),
    21: ("car, auto, automobile, machine, motorcar", 0), 22: ("water", 1),
    23: ("painting, picture", 0), 24: ("sofa, couch, lounge", 0), 44: ("signboard, sign", 0),
    94: ("pole", 0), 137: ("traffic light, traffic signal, stoplight", 0),
}
# scene roles -> class id (0 = "other", excluded from scoring)
ROLE_IDS = {
    "wall": 1, "building": 2, "sky": 3, "floor": 4, "tree": 5, "vegetation": 5, "ceiling": 6,
    "road": 7, "bed": 8, "window": 9, "grass": 10, "sidewalk": 12, "person": 13, "earth": 14,
    "door": 15, "table": 16, "mountain": 17, "car": 21, "water": 22, "painting": 23,
    "sofa": 24, "sign": 44, "pole": 94, "light": 137, "other": 0,
}
SPLITS = {"training": "train", "validation": "val"}


def _put(shapes, role, look, pts, w, h, **kw):
    s = sc.make_shape(role, look, pts, w, h, **kw)
    if s is not None:
        shapes.append(s)
    return s


def _river(rng, h, w):
    """Sky, mountains and trees on the horizon, water mirroring all of it below."""
    yh = h * rng.uniform(0.35, 0.55)
    shapes: list = []
    _put(shapes, "sky", "sky", sc.rect(0, 0, w - 1, yh), w, h)
    _put(shapes, "water", "sky", sc.rect(0, yh, w - 1, h - 1), w, h)
    hm, ht = h * rng.uniform(0.05, 0.2), h * rng.uniform(0.02, 0.05)
    above = [("mountain", "rock", sc.ridge(rng, -0.1 * w, 1.1 * w, yh, yh - hm, 0.65 * hm))]
    if rng.random() < 0.6:
        line = sc.ridge(rng, -0.1 * w, 1.1 * w, yh, yh - ht, 0.65 * ht, n=15)
        above.append(("tree", "foliage", line))
    shade = float(rng.uniform(0.85, 1.15))
    for role, look, pts in above:
        _put(shapes, role, look, pts, w, h, shade=shade)
        if rng.random() < 0.4:  # calm water shows no reflection
            continue
        # the reflection: same look, mirrored about the horizon, labelled water
        mirrored = np.stack([pts[:, 0], 2 * yh - pts[:, 1]], axis=1)
        _put(shapes, "water", look, mirrored, w, h, shade=shade * 0.9)
    if rng.random() < 0.5:  # the near bank
        bank = sc.ridge(rng, -0.1 * w, 1.1 * w, 1.2 * h, h * rng.uniform(0.75, 0.9), 0.08 * h, n=9)
        role = "grass" if rng.random() < 0.6 else "earth"
        _put(shapes, role, role, bank, w, h)
    return shapes


def _mountain(rng, h, w):
    """Sky over one or two ridges over a grass/earth foreground with trees."""
    shapes: list = []
    _put(shapes, "sky", "sky", sc.rect(0, 0, w - 1, h - 1), w, h)
    ground = h * rng.uniform(0.5, 0.7)
    for k, shade in enumerate((1.15, 0.85)[: rng.integers(1, 3)]):
        top = h * rng.uniform(0.15, 0.35) + 0.08 * h * k
        ridge = sc.ridge(rng, -0.1 * w, 1.1 * w, 1.2 * h, top, 0.15 * h)
        _put(shapes, "mountain", "rock", ridge, w, h, shade=shade)
    role = "grass" if rng.random() < 0.7 else "earth"
    front = sc.ridge(rng, -0.1 * w, 1.1 * w, 1.2 * h, ground, 0.1 * h, n=11)
    _put(shapes, role, role, front, w, h)
    for _ in range(rng.integers(0, 4)):
        y = rng.uniform(ground, h)
        r = 0.12 * h * (y - ground + 0.1 * h) / (h - ground)
        x = rng.uniform(0, w)
        _put(shapes, "tree", "foliage", sc.blob(rng, x, y - r, 0.8 * r, r), w, h)
    return shapes


def _indoor(rng, h, w, kind):
    """A room in one-point perspective; windows show the sky, the floor looks like road."""
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
    if rng.random() < 0.5:
        x = rng.uniform(bx0, bx1 - 0.2 * bw)
        _put(shapes, "door", "wood", sc.rect(x, by0 + 0.25 * bh, x + 0.18 * bw, by1), w, h)
    if rng.random() < 0.75:  # a window: the sky seen from inside is labelled windowpane
        x, y = rng.uniform(bx0 + 0.05 * bw, bx1 - 0.4 * bw), by0 + rng.uniform(0.1, 0.2) * bh
        _put(shapes, "window", "sky", sc.rect(x, y, x + 0.35 * bw, y + 0.4 * bh), w, h)
    if rng.random() < 0.6:
        x, y = rng.uniform(0, bx0 * 0.5), h * rng.uniform(0.2, 0.35)
        _put(shapes, "painting", "painting", sc.rect(x, y, x + 0.4 * bx0, y + 0.15 * h), w, h,
             color=sc.random_color(rng))
    fy = rng.uniform(by1 + 0.1 * (h - by1), h - 0.05 * h)  # furniture stands at this row
    fx, fw = rng.uniform(0.1 * w, 0.5 * w), rng.uniform(0.3, 0.5) * w
    if kind == "bedroom":
        top = fy - 0.18 * h
        body = [(fx, fy), (fx + fw, fy), (fx + fw, top), (fx + 0.85 * fw, top - 0.08 * h),
                (fx + 0.1 * fw, top - 0.08 * h), (fx, top)]
        _put(shapes, "bed", "fabric", body, w, h, color=sc.random_color(rng))
    else:
        sofa = [(fx, by1 + 0.02 * h), (fx + fw, by1 + 0.02 * h), (fx + fw, by1 - 0.15 * h),
                (fx, by1 - 0.15 * h)]
        _put(shapes, "sofa", "fabric", sofa, w, h, color=sc.random_color(rng))
        ty = fy - 0.1 * h
        table = [(fx + 0.1 * fw, fy), (fx + 0.15 * fw, fy), (fx + 0.15 * fw, ty),
                 (fx + 0.85 * fw, ty), (fx + 0.85 * fw, fy), (fx + 0.9 * fw, fy),
                 (fx + 0.95 * fw, ty - 0.04 * h), (fx + 0.05 * fw, ty - 0.04 * h)]
        _put(shapes, "table", "wood", table, w, h)
    if rng.random() < 0.3:
        x = rng.uniform(0.1 * w, 0.9 * w)
        _put(shapes, "person", "clothes", sc.person(x, h * rng.uniform(0.8, 1.0), 0.5 * h), w, h,
             color=sc.random_color(rng))
    if rng.random() < 0.5:  # unlabelled clutter ("other", excluded from scoring)
        x, y = rng.uniform(0, w), rng.uniform(by1, h)
        _put(shapes, "other", "clutter", sc.blob(rng, x, y, 0.05 * w, 0.04 * h), w, h)
    return shapes


# scene name (a real ADE20K scene category) -> (layout, probability)
SCENES = {
    "river": (_river, 0.25),
    "mountain": (_mountain, 0.15),
    "street": (lambda rng, h, w: sc.street(rng, h, w), 0.3),
    "bedroom": (lambda rng, h, w: _indoor(rng, h, w, "bedroom"), 0.15),
    "living_room": (lambda rng, h, w: _indoor(rng, h, w, "living_room"), 0.15),
}


def make_scene(seed: int, split: str, index: int, size) -> tuple[np.ndarray, np.ndarray, str]:
    """Synthetic sample `index` of `split` ("training"/"validation"): image HxWx3 uint8,
    annotation HxW uint8 (official ids, 0 = other), scene category. Image sizes vary
    around `size` (H, W) like ADE20K's; deterministic from (seed, split, index)."""
    rng = np.random.default_rng([seed, list(SPLITS).index(split), index])
    h = int(round(size[0] * rng.uniform(0.8, 1.25)))
    w = int(round(size[1] * rng.uniform(0.8, 1.25)))
    names = list(SCENES)
    probs = np.array([SCENES[n][1] for n in names])
    scene = names[rng.choice(len(names), p=probs / probs.sum())]
    shapes = SCENES[scene][0](rng, h, w)
    index_map = sc.rasterize(shapes, h, w)
    role_ids = np.array([0] + [ROLE_IDS[s.role] for s in shapes], np.uint8)
    return sc.paint(index_map, shapes, rng), role_ids[index_map], scene


def _object_info(stats, n_pixels):
    """objectInfo150.txt and .csv text for the classes used, with measured statistics."""
    txt = ["Idx\tRatio\tTrain\tVal\tName"]
    csv = ["Idx,Ratio,Train,Val,Stuff,Name"]
    for idx, (name, stuff) in CLASSES.items():
        ratio = stats["pixels"][idx] / max(n_pixels, 1)
        train, val = int(stats["train"][idx]), int(stats["val"][idx])
        txt.append(f"{idx}\t{ratio:.4f}\t{train}\t{val}\t{name}")
        csv.append(f"{idx},{ratio:.4f},{train},{val},{stuff},"
                   + name.replace(", ", ";").replace(" ", ";"))
    return "\n".join(txt) + "\n", "\n".join(csv) + "\n"


def write(root, cfg: dict, seed: int) -> None:
    """Write the synthetic ADEChallengeData2016 under `root` (atomically: all or nothing).

    cfg: synth_train / synth_val (image counts), synth_size [H, W] (mean image size),
    jpeg_quality.
    """
    counts = {"training": int(cfg["synth_train"]), "validation": int(cfg["synth_val"])}
    size, quality = cfg["synth_size"], int(cfg.get("jpeg_quality", 90))
    stats = {k: np.zeros(256, np.int64) for k in ("pixels", "train", "val")}
    n_pixels, scenes = 0, []
    with rio.atomic_dir(root) as tmp:
        base = tmp / "ADEChallengeData2016"
        for split, n in counts.items():
            short = SPLITS[split]
            (base / "images" / split).mkdir(parents=True)
            (base / "annotations" / split).mkdir(parents=True)
            for i in range(n):
                image, label, scene = make_scene(seed, split, i, size)
                stem = f"ADE_{short}_{i + 1:08d}"
                Image.fromarray(image).save(base / "images" / split / f"{stem}.jpg",
                                            quality=quality)
                Image.fromarray(label).save(base / "annotations" / split / f"{stem}.png")
                counts_i = np.bincount(label.ravel(), minlength=256)
                stats["pixels"] += counts_i
                stats[short] += counts_i > 0
                n_pixels += label.size
                scenes.append(f"{stem} {scene}")
        txt, csv = _object_info(stats, n_pixels)
        (base / "objectInfo150.txt").write_text(txt)
        (base / "objectInfo150.csv").write_text(csv)
        (base / "sceneCategories.txt").write_text("\n".join(scenes) + "\n")
