"""Synthetic COCO: textured shapes written in COCO's official layout.

Writes `annotations/instances_{train,val}2017.json` and `{train,val}2017/<id:012d>.jpg`
exactly as COCO does (polygon `segmentation` for objects, RLE for `iscrowd` regions,
`bbox` as [x, y, w, h], `area` the mask area). The structure EU-RL's experiment needs is
present: objects are placed anywhere, at any scale, never centred on purpose, on a
cluttered background with unannotated look-alike patches, so a mask network trained on
tight object crops faces a real distribution shift on whole images.

Image kinds (fractions of the images): one large object (the single-object subset),
a crowded multi-object scene (2-10 objects for detection: a third cluster around one
point, a third are "partners" shifted by at most a quarter of the previous object's size,
so true boxes overlap at IoU > 0.5 where greedy NMS drops one, and later objects occlude
earlier ones), one small object (< 32 px, filtered out by the EU-RL subset), one object
plus an `iscrowd` region (RLE).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from rlcv import io as rio

CATEGORIES = [
    {"id": 1, "name": "disc", "supercategory": "shape"},
    {"id": 2, "name": "block", "supercategory": "shape"},
    {"id": 3, "name": "wedge", "supercategory": "shape"},
    {"id": 4, "name": "star", "supercategory": "shape"},
    {"id": 5, "name": "cross", "supercategory": "shape"},
    {"id": 6, "name": "hexagon", "supercategory": "shape"},
]

KINDS = ("single", "crowded", "small", "with_crowd")


def _outline(cat: int, rng: np.random.Generator, n_circle: int = 24) -> np.ndarray:
    """Unit-size outline (vertices in [-1, 1]^2) of category `cat`."""
    if cat == 1:
        t = np.linspace(0, 2 * np.pi, n_circle, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if cat == 2:
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)
    if cat == 3:
        return np.array([[0, -1], [1, 1], [-1, 1]], float)
    if cat == 4:
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False) - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if cat == 5:
        a = 0.35
        return np.array(
            [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a],
             [-1, a], [-1, -a], [-a, -a]], float)
    t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def _polygon(cat, cx, cy, w, h, angle, rng) -> np.ndarray:
    pts = _outline(cat, rng) * [w / 2, h / 2]
    c, s = math.cos(angle), math.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]])
    return pts + [cx, cy]


def _texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A striped, noisy colour texture (h, w, 3) float in [0, 255]."""
    base = rng.uniform(30, 225, 3)
    alt = np.clip(base + rng.uniform(-90, 90, 3), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w]
    theta, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    phase = (xx * math.cos(theta) + yy * math.sin(theta)) / period
    stripes = (np.sin(2 * np.pi * phase) > 0)[..., None]
    tex = np.where(stripes, base, alt) + rng.normal(0, 12, (h, w, 3))
    return np.clip(tex, 0, 255)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.uniform(40, 215, (4, 4, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=float)
    return np.clip(img + rng.normal(0, 10, (h, w, 3)), 0, 255)


def _mask_of(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    rle = mask_utils.frPyObjects([poly.ravel().tolist()], h, w)
    return mask_utils.decode(mask_utils.merge(rle)).astype(bool)


def _paint(img: np.ndarray, mask: np.ndarray, rng) -> None:
    img[mask] = _texture(*img.shape[:2], rng)[mask]


def _sizes(kind, w, h, rng, min_side):
    short = min(w, h)
    if kind == "small":
        return rng.uniform(0.4, 0.9) * min_side, rng.uniform(0.4, 0.9) * min_side
    lo, hi = max(min_side * 1.15, 0.25 * short), 0.7 * short
    if kind == "crowded":
        lo, hi = 0.6 * min_side, 0.45 * short
    side = rng.uniform(lo, hi)
    aspect = math.exp(rng.uniform(-0.4, 0.4))
    return min(side * aspect, 0.9 * w), min(side / aspect, 0.9 * h)


def _image(kind, img_id, w, h, rng, ann_id, min_side):
    """Render one image; returns (pixels, annotations)."""
    img = _background(h, w, rng)
    anns = []
    # unannotated look-alike clutter: textured blobs that are not objects
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(4, 0.15 * min(w, h))
        poly = _polygon(1, cx, cy, r, r * rng.uniform(0.3, 1), rng.uniform(0, np.pi), rng)
        _paint(img, _mask_of(poly, h, w), rng)
    n = {"single": 1, "small": 1, "with_crowd": 1, "crowded": int(rng.integers(2, 11))}[kind]
    group = (rng.uniform(0.25 * w, 0.75 * w), rng.uniform(0.25 * h, 0.75 * h))
    prev = None   # (category, cx, cy, bw, bh) of the last object placed
    for i in range(n):
        cat = int(rng.integers(1, len(CATEGORIES) + 1))
        bw, bh = _sizes(kind, w, h, rng, min_side)
        if kind == "crowded" and i % 3 == 1 and prev is not None:
            # a partner: about the previous object's size, shifted by a fraction of it, so
            # the two true boxes overlap at IoU ~0.3-0.7 (greedy NMS at 0.5 drops one),
            # mostly of the same category (class-wise NMS suppresses only within a class)
            cat = prev[0] if rng.random() < 0.6 else cat
            bw, bh = (min(v * rng.uniform(0.85, 1.15), 0.9 * lim)
                      for v, lim in ((prev[3], w), (prev[4], h)))
            cx = np.clip(prev[1] + rng.uniform(-0.25, 0.25) * prev[3], bw / 2, w - bw / 2)
            cy = np.clip(prev[2] + rng.uniform(-0.25, 0.25) * prev[4], bh / 2, h - bh / 2)
        elif kind == "crowded" and i % 3 == 0:   # the others cluster around one point
            cx = np.clip(group[0] + rng.normal(0, 0.12 * w), bw / 2, w - bw / 2)
            cy = np.clip(group[1] + rng.normal(0, 0.12 * h), bh / 2, h - bh / 2)
        else:
            cx, cy = rng.uniform(bw / 2, w - bw / 2), rng.uniform(bh / 2, h - bh / 2)
        prev = (cat, cx, cy, bw, bh)
        angle = rng.uniform(0, np.pi) if cat != 2 or rng.random() < 0.5 else 0.0
        poly = np.clip(_polygon(cat, cx, cy, bw, bh, angle, rng), 0, [w - 1, h - 1])
        mask = _mask_of(poly, h, w)
        if mask.sum() < 4:
            continue
        _paint(img, mask, rng)
        anns.append({"poly": poly, "category_id": cat, "iscrowd": 0})
    if kind == "with_crowd":   # a crowd region: many tiny objects under one RLE
        crowd = np.zeros((h, w), bool)
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        cat = int(rng.integers(1, len(CATEGORIES) + 1))
        for _ in range(8):
            cx, cy = x0 + rng.uniform(0, w / 3), y0 + rng.uniform(0, h / 3)
            crowd |= _mask_of(_polygon(cat, cx, cy, 6, 6, 0, rng), h, w)
        _paint(img, crowd, rng)
        anns.append({"rle_mask": crowd, "category_id": cat, "iscrowd": 1})
    # later objects occlude earlier ones: the visible mask is what COCO annotates,
    # approximated by re-rasterising each polygon minus the masks painted after it
    out = []
    covered = np.zeros((h, w), bool)
    for a in reversed(anns):
        full = a["rle_mask"] if a["iscrowd"] else _mask_of(a["poly"], h, w)
        visible = full & ~covered
        covered |= full
        if visible.sum() < 4:
            continue
        if a["iscrowd"]:
            seg = {"size": [h, w], "counts": _uncompressed_counts(visible)}
        elif (visible == full).all():
            seg = [[round(float(v), 2) for v in a["poly"].ravel()]]
        else:
            seg = _polygons_of(visible)
            if not seg:
                continue
        m = _decode(seg, h, w)
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        x, y, bw, bh = (float(v) for v in mask_utils.toBbox(rle))
        out.append({
            "id": ann_id + len(out), "image_id": img_id, "category_id": a["category_id"],
            "segmentation": seg, "area": float(m.sum()), "bbox": [x, y, bw, bh],
            "iscrowd": a["iscrowd"],
        })
    return np.clip(img, 0, 255).astype(np.uint8), out


def _decode(seg, h, w) -> np.ndarray:
    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w))).astype(bool)
    return mask_utils.decode(mask_utils.frPyObjects(seg, h, w)).astype(bool)


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with zeros."""
    flat = mask.T.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    return ([0] + counts) if flat[0] else counts


def _polygons_of(mask: np.ndarray) -> list[list[float]]:
    """Polygon(s) for an occluded object: the convex hull of each visible piece.

    Coarse (a hull may cover part of the occluder) but valid COCO polygons whose box is
    exactly the visible pixels' box; only crowded detection scenes have occlusion, and
    the single-object subset never does."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull, QhullError

    labels, n = ndimage.label(mask)
    polys = []
    for i in range(1, n + 1):
        ys, xs = np.nonzero(labels == i)
        if ys.size < 6:
            continue
        pts = np.stack([xs, ys], 1).astype(float)
        corners = np.concatenate([pts + d for d in ([0, 0], [1, 0], [0, 1], [1, 1])]) - 0.5
        try:
            hull = corners[ConvexHull(corners).vertices]
        except QhullError:
            continue
        polys.append([round(float(v), 2) for v in hull.ravel()])
    return polys


def write(root: Path, cfg: dict, seed: int) -> None:
    """Write the synthetic COCO layout under `root` (atomically)."""
    rng = np.random.default_rng(seed)
    size = int(cfg["image_size"])
    fractions = [float(cfg.get(f"frac_{k}", d)) for k, d in zip(
        KINDS, (0.7, 0.15, 0.08, 0.07), strict=True)]
    probs = np.array(fractions) / sum(fractions)
    with rio.atomic_dir(root) as tmp:
        (tmp / "annotations").mkdir()
        ann_id, img_id = 1, 1
        for split, n in (("train", int(cfg["n_train"])), ("val", int(cfg["n_val"]))):
            folder = tmp / f"{split}2017"
            folder.mkdir()
            images, annotations = [], []
            for _ in range(n):
                kind = KINDS[int(rng.choice(len(KINDS), p=probs))]
                w = int(size * rng.uniform(0.75, 1.0)) if rng.random() < 0.5 else size
                h = int(size * rng.uniform(0.75, 1.0)) if w == size else size
                pixels, anns = _image(kind, img_id, w, h, rng, ann_id, int(cfg["min_object"]))
                name = f"{img_id:012d}.jpg"
                Image.fromarray(pixels).save(folder / name, quality=92)
                images.append({"id": img_id, "file_name": name, "width": w, "height": h,
                               "license": 0})
                annotations += anns
                ann_id += len(anns)
                img_id += 1
            doc = {
                "info": {"description": "rlcv synthetic COCO (textured shapes)", "version": "1.0",
                         "year": 2026, "synthetic": True},
                "licenses": [{"id": 0, "name": "CC0", "url": ""}],
                "images": images, "annotations": annotations, "categories": CATEGORIES,
            }
            (tmp / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))
