"""Synthetic KITTI car instances in Ren & Zemel's layout, for ACIS's KITTI experiment.

Road scenes seen from a car-mounted camera (KITTI's focal length / width ratio and
1.65 m camera height): sky, a skyline of buildings and trees at the horizon, a road with
lane markings converging to the vanishing point, sidewalks and verges. Up to `max_cars`
cars stand on the ground plane; their image size follows depth and nearer cars occlude
farther ones. Ground truth as in Ren & Zemel's release: `gt_man/` (valid_man, test_man)
holds exact instance masks, `gt/` (train) holds coarse ones (boxes of the visible part,
some cars missing), echoing ACIS's note that > 95% of the real training masks are coarse
or incomplete. Instances are coloured from `COLOURS` (ascending packed RGB, so colour
order = instance order), background black.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from datasets._common import save_png
from rlcv import io as rio

CAM_HEIGHT, FOCAL = 1.65, 0.58  # metres; focal length / image width (KITTI: 721 / 1242)
_RAW = np.random.default_rng(11).integers(40, 256, (64, 3))
COLOURS = np.unique(_RAW, axis=0).astype(np.uint8)  # distinct, ascending packed RGB
SPLITS = (
    ("train", "train.txt", "gt"),
    ("valid_man", "valid_man.txt", "gt_man"),
    ("test_man", "test_man.txt", "gt_man"),
)


def _background(rng: np.random.Generator, h: int, w: int):
    """Sky, skyline, road, sidewalks and verges; returns (image float HxWx3, horizon, vx, f)."""
    f = FOCAL * w
    yh = rng.uniform(0.36, 0.46) * h
    vx = rng.uniform(0.4, 0.6) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    t = np.clip(yy / yh, 0, 1)[..., None]
    img = (1 - t) * np.array([120, 165, 225]) + t * np.array([205, 220, 238])
    # skyline: blocks of buildings / trees standing on the horizon
    x = 0.0
    while x < w:
        bw = rng.uniform(0.04, 0.15) * w
        top = yh - rng.uniform(0.03, 0.3) * h
        colour = rng.choice([[130, 120, 110], [95, 120, 70], [160, 150, 140], [70, 95, 60]])
        sel = (xx >= x) & (xx < x + bw) & (yy >= top) & (yy < yh + 1)
        img[sel] = colour * rng.uniform(0.7, 1.2)
        x += bw
    # ground plane: every row below the horizon has a depth z; X is the lateral position
    ground = yy > yh
    z = np.where(ground, f * CAM_HEIGHT / np.maximum(yy - yh, 1e-3), np.inf)
    lateral = (xx - vx) * z / f
    left, right = -rng.uniform(4.0, 8.0), rng.uniform(4.0, 9.0)
    road = ground & (lateral > left) & (lateral < right)
    walk = ground & ~road & (lateral > left - 3.0) & (lateral < right + 3.0)
    verge = ground & ~road & ~walk
    img[verge] = np.array([80, 110, 55]) * rng.uniform(0.8, 1.2)
    img[walk] = np.array([165, 160, 150]) * rng.uniform(0.85, 1.1)
    img[road] = np.array([95, 95, 100]) * rng.uniform(0.8, 1.2)
    lanes = np.arange(left + 3.5, right - 1.0, 3.5)
    if lanes.size:
        near = np.abs(lateral[..., None] - lanes).min(-1) < 0.12
        dash = (np.floor(np.where(ground, z, 0.0) / 3.0) % 2) == 0
        img[road & near & dash] = [230, 230, 225]
    img *= rng.normal(1.0, 0.05, (h, w, 1))
    return img, yh, vx, f, (left, right)


def _car_polygons(xc: float, yb: float, wpx: float, hpx: float, side: float):
    """Body, cabin and wheel polygons of a car whose bottom centre is (xc, yb)."""
    x0, x1 = xc - wpx / 2, xc + wpx / 2
    body = [
        (x0, yb - 0.6 * hpx),
        (x1, yb - 0.6 * hpx),
        (x1, yb - 0.15 * hpx),
        (x0, yb - 0.15 * hpx),
    ]
    top = 0.7 - 0.25 * side  # a car seen from the side has a relatively shorter roof
    shift = 0.1 * side * wpx
    cabin = [
        (x0 + 0.08 * wpx, yb - 0.6 * hpx),
        (x1 - 0.08 * wpx, yb - 0.6 * hpx),
        (xc + shift + top * wpx / 2, yb - hpx),
        (xc + shift - top * wpx / 2, yb - hpx),
    ]
    ww = 0.18 * wpx if side > 0.5 else 0.22 * wpx
    wheels = [
        [(x0 + 0.06 * wpx, yb - 0.2 * hpx), (x0 + 0.06 * wpx + ww, yb)],
        [(x1 - 0.06 * wpx - ww, yb - 0.2 * hpx), (x1 - 0.06 * wpx, yb)],
    ]
    window = [
        (x0 + 0.16 * wpx, yb - 0.63 * hpx),
        (x1 - 0.16 * wpx, yb - 0.63 * hpx),
        (xc + shift + (top - 0.1) * wpx / 2, yb - 0.93 * hpx),
        (xc + shift - (top - 0.1) * wpx / 2, yb - 0.93 * hpx),
    ]
    return body, cabin, wheels, window


def scene(rng: np.random.Generator, h: int, w: int, max_cars: int):
    """One frame: (image uint8 HxWx3, exact instances uint8, coarse instances uint8)."""
    img, yh, vx, f, (left, right) = _background(rng, h, w)
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    ids = Image.new("L", (w, h), 0)
    d_img, d_ids = ImageDraw.Draw(image), ImageDraw.Draw(ids)
    if rng.random() < 0.2:  # a crowded street: parked rows and queues, up to max_cars
        n = int(rng.integers(max_cars // 2, max_cars + 1))
    else:
        n = int(min(max_cars, 1 + rng.poisson(0.25 * max_cars)))
    depth = np.sort(rng.uniform(0.0, 1.0, n) ** 1.5 * 55.0 + 4.0)[::-1]  # far first
    k = 0
    for z in depth:
        lateral = rng.uniform(left + 0.5, right - 0.5)
        side = float(rng.random() < 0.25) * rng.uniform(0.5, 1.0)  # 0 = seen from behind
        wpx = f * (1.75 + 2.6 * side) / z
        hpx = f * 1.5 / z
        if hpx < 2.0:
            continue
        xc, yb = vx + f * lateral / z, yh + f * CAM_HEIGHT / z
        body, cabin, wheels, window = _car_polygons(xc, yb, wpx, hpx, side)
        paint = tuple(int(c) for c in rng.integers(20, 240, 3))
        k += 1
        for d, fill, glass, tyre in ((d_img, paint, (40, 50, 60), (20, 20, 20)), (d_ids, k, k, k)):
            d.polygon(body, fill=fill)
            d.polygon(cabin, fill=fill)
            d.polygon(window, fill=glass)
            for wheel in wheels:
                d.rectangle(wheel, fill=tyre)
    exact = np.asarray(ids)
    _, inv = np.unique(exact, return_inverse=True)  # cars hidden completely get no id
    exact = inv.reshape(h, w).astype(np.uint8)
    coarse = np.zeros_like(exact)
    kept = 0
    for box in ndimage.find_objects(exact):
        if box is None or rng.random() < 0.1:  # incomplete: some cars have no mask
            continue
        kept += 1
        coarse[box] = kept  # coarse: the box of the visible part, nearer cars painted later
    _, inv = np.unique(coarse, return_inverse=True)  # a box may be covered completely
    return np.asarray(image), exact, inv.reshape(h, w).astype(np.uint8)


def encode(instances: np.ndarray) -> np.ndarray:
    """Instance map 0..K -> RGB colour PNG content (0 = black)."""
    if instances.max() > len(COLOURS):
        raise ValueError(f"{instances.max()} instances; the colour table holds {len(COLOURS)}")
    table = np.concatenate([np.zeros((1, 3), np.uint8), COLOURS])
    return table[instances]


def frames(cfg: dict, seed: int) -> Iterator[tuple[str, int, np.ndarray, np.ndarray]]:
    """All synthetic frames: (split, frame id, image, ground truth as written)."""
    h, w = (int(v) for v in cfg["image_hw"])
    counts = {"train": cfg["num_train"], "valid_man": cfg["num_valid"], "test_man": cfg["num_test"]}
    frame = 0
    for split, _, _ in SPLITS:
        for _ in range(int(counts[split])):
            image, exact, coarse = scene(
                np.random.default_rng([seed, frame]), h, w, int(cfg["max_cars"])
            )
            yield split, frame, image, (coarse if split == "train" else exact)
            frame += 1


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write the synthetic KITTI car-instance set under `root` (replaced atomically)."""
    with rio.atomic_dir(root) as tmp:
        lists = {split: [] for split, _, _ in SPLITS}
        gt_dir = {split: folder for split, _, folder in SPLITS}
        for split, frame, image, gt in frames(cfg, seed):
            save_png(tmp / "images" / f"{frame:06d}.png", image)
            save_png(tmp / gt_dir[split] / f"{frame:06d}.png", encode(gt))
            lists[split].append(str(frame))
        for split, fname, _ in SPLITS:
            rio.write_text(tmp / fname, "".join(f"{i}\n" for i in lists[split]))
