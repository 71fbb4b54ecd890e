"""Synthetic CVPPP A1 in the official layout, for ACIS's leaf-segmentation experiments.

Top-view rosettes of 5 to 20 spoon-shaped leaves (petiole + ovate blade) on textured
soil. Leaves follow the golden-angle phyllotaxis of Arabidopsis: older leaves are larger
and drawn first, younger ones sit nearer the centre and occlude them. Each leaf has its
own shade of green, lighter towards the tip, with a midrib and a darker rim, so touching
leaves can be told apart only by such cues, as in the real images. Writes
`training/A1/plantNNN_{rgb,label,fg}.png` (RGBA image, palette label, 1-bit foreground),
`testing/A1/plantNNN_rgb.png` and the challenge truth H5 `/A1/plantNNN/label`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from datasets._common import save_png
from rlcv import io as rio

TRUTH_H5 = "CVPPP2017_testing_truth.h5"
GOLDEN = np.pi * (3.0 - np.sqrt(5.0))  # 137.5 degrees
PALETTE = [0, 0, 0] + np.random.default_rng(3).integers(40, 256, 255 * 3).tolist()


def _soil(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = np.array([105.0, 75.0, 50.0]) * rng.uniform(0.75, 1.15)
    low = rng.normal(1.0, 0.12, (6, 6)).astype(np.float32)
    shade = np.asarray(Image.fromarray(low, mode="F").resize((w, h), Image.BILINEAR))
    grain = rng.normal(1.0, 0.12, (h, w))
    pebbles = rng.random((h, w)) < 0.02
    img = base * (shade * grain)[..., None]
    img[pebbles] *= 1.5
    return img


def rosette(rng: np.random.Generator, h: int, w: int, leaves: tuple[int, int]):
    """One plant: (HxWx3 uint8 image, uint8 label 0..K with K >= 1 visible leaves)."""
    img = _soil(rng, h, w)
    label = np.zeros((h, w), np.uint8)
    n = int(rng.integers(leaves[0], leaves[1] + 1))
    s = min(h, w)
    cx, cy = w / 2 + rng.normal(0, 0.03 * s), h / 2 + rng.normal(0, 0.03 * s)
    radius = rng.uniform(0.28, 0.45) * s
    theta0 = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    for k in range(n):
        age = 1.0 - k / n
        length = radius * (0.3 + 0.7 * age) * rng.uniform(0.85, 1.1)
        theta = theta0 + k * GOLDEN + rng.normal(0, 0.12)
        a = 0.42 * length
        b = a * rng.uniform(0.5, 0.75)
        d = length - a
        # leaf frame: u along the leaf from the rosette centre, v across it
        x0, x1 = int(max(0, cx - length - 1)), int(min(w, cx + length + 2))
        y0, y1 = int(max(0, cy - length - 1)), int(min(h, cy + length + 2))
        if x0 >= x1 or y0 >= y1:
            continue
        ddx, ddy = dx[y0:y1, x0:x1], dy[y0:y1, x0:x1]
        u = ddx * np.cos(theta) + ddy * np.sin(theta)
        v = -ddx * np.sin(theta) + ddy * np.cos(theta)
        t = (u - d) / a
        blade = t**2 + (v / (b * (1 + 0.3 * np.clip(t, -1, 1)))) ** 2 <= 1.0
        petiole = (u >= 0) & (u <= d) & (np.abs(v) <= max(0.6, 0.07 * a))
        mask = blade | petiole
        green = np.array([rng.uniform(40, 95), rng.uniform(95, 175), rng.uniform(20, 55)])
        light = 0.75 + 0.4 * np.clip(u / length, 0, 1) + 0.15 * (blade & (np.abs(v) < 0.08 * b))
        rim = np.where(
            blade & (t**2 + (v / (b * (1 + 0.3 * np.clip(t, -1, 1)))) ** 2 > 0.8), 0.8, 1.0
        )
        colour = green * (light * rim)[..., None] * rng.normal(1.0, 0.04, u.shape)[..., None]
        region = img[y0:y1, x0:x1]
        region[mask] = colour[mask]
        label[y0:y1, x0:x1][mask] = k + 1
    _, inverse = np.unique(label, return_inverse=True)  # drop leaves hidden completely
    label = inverse.reshape(h, w).astype(np.uint8)
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    img[edge & (label > 0)] *= 0.8  # a shadow line where one leaf lies on another
    return np.clip(img, 0, 255).astype(np.uint8), label


def plants(cfg: dict, seed: int) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """All synthetic plants: (split "training"/"testing", plantNNN, image, label)."""
    h, w = (int(v) for v in cfg["image_hw"])
    leaves = tuple(int(v) for v in cfg["leaves"])
    for split, count, offset in (
        ("training", int(cfg["num_train"]), 0),
        ("testing", int(cfg["num_test"]), 1_000_000),
    ):
        for i in range(count):
            image, label = rosette(np.random.default_rng([seed, offset + i]), h, w, leaves)
            yield split, f"plant{i + 1:03d}", image, label


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write the synthetic CVPPP A1 under `root` (replaced atomically)."""
    with rio.atomic_dir(root) as tmp:
        with h5py.File(tmp / TRUTH_H5, "w") as truth:
            for split, name, image, label in plants(cfg, seed):
                folder = tmp / split / "A1"
                rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], -1)
                save_png(folder / f"{name}_rgb.png", rgba)
                if split == "training":
                    save_png(folder / f"{name}_label.png", label, palette=PALETTE)
                    save_png(folder / f"{name}_fg.png", label > 0)
                else:
                    truth.create_dataset(f"A1/{name}/label", data=label, track_times=False)
