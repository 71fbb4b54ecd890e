"""CVPPP A1 leaf segmentation (Minervini et al. 2016), as used by ACIS.

ACIS (Araslanov et al., CVPR 2019, Sec. 5.1) runs its ablation on a random 103 / 25 split
of the 128 A1 training plants (Tables 1-2) and reports the official test set (33 plants,
Table 3) after training on all 128. Instances are leaves; background is one region.

Official layout read here (the same reader serves the synthetic and the real data)::

    <root>/training/A1/plantNNN_rgb.png     RGB(A) plant image (top view)
    <root>/training/A1/plantNNN_label.png   indexed (palette) PNG of leaf instances;
                                            the lowest value is background
    <root>/training/A1/plantNNN_fg.png      binary plant foreground
    <root>/testing/A1/plantNNN_rgb.png      test images
    <root>/CVPPP2017_testing_truth.h5       challenge truth: dataset /A1/plantNNN/label
                                            (HxW integer labels; optional /A1/plantNNN/fg)

`training/` is the folder of the same name in CVPPP2017_LSC_training.zip.

Staged subsets (`stage_plant`, S = `size`, D = `downsize`): with D > 1, as ACIS (Sec.
5.1: "downsized ... by a factor of two and used a centre crop of size 224 x 224", the
paper profile's D = 2, S = 224), the image downsized by D and centre-cropped to S (real
A1, 500x530: the central 448 x 448 of the original, halved); with D = 1 (the small
profiles) the centre square resized to S; labels and masks with nearest neighbour, leaves
relabelled 1..K; the evaluation splits, val and test, also keep the original-size labels and the
crop box, for scoring at the ground truth's resolution): `ablation` (train / val, ACIS's split
of the training plants, val share 25/128, fixed seed) and `traintest` (train = all
training plants, test = the test plants with the H5 truth).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import h5py
import numpy as np
import torch

from datasets._common import (
    GT_FIELDS,
    keep_ground_truth,
    manifest_header,
    present_splits,
    read_image,
    require_dir,
    stage_subsets,
)
from datasets._images import chw, hwc, overlay, pack_colours, relabel, resize_image, resize_nearest
from rlcv.errors import DataError

NAME = "cvppp"
SUBSETS = ("ablation", "traintest")
TRUTH_H5 = "CVPPP2017_testing_truth.h5"
LAYOUT = (
    "CVPPP A1: <root>/training/A1/plantNNN_{rgb,label,fg}.png (label = indexed PNG, lowest "
    "value = background), <root>/testing/A1/plantNNN_rgb.png and <root>/"
    + TRUTH_H5
    + " holding /A1/plantNNN/label"
)
EXPECT_RGB = "a CVPPP plant image plantNNN_rgb.png (RGB or RGBA PNG)"
EXPECT_LABEL = "a CVPPP leaf label plantNNN_label.png (indexed PNG, lowest value = background)"
EXPECT_FG = "a CVPPP foreground mask plantNNN_fg.png (binary PNG)"
EXPECT_H5 = "the CVPPP challenge truth (HDF5 with /A1/plantNNN/label)"

PARAMS = {
    "config": {
        "seed": 0,
        "split_seed": 0,
        "val_fraction": 25 / 128,  # ACIS: 103 train / 25 val of the 128 training plants
        "leaves": [5, 20],  # synthetic leaves per rosette (min, max)
        "shard_size": 256,
    },
    "ci": {"num_train": 8, "num_test": 3, "image_hw": [40, 38], "size": 32},
    "smoke": {"num_train": 256, "num_test": 64, "image_hw": [106, 100], "size": 96},
    "paper": {"root": "cvppp", "size": 224, "downsize": 2},
}

FIELDS = {
    # the square: the centre square resized, or the central DS x DS downsized (`stage_plant`)
    "image": "uint8 [3,S,S] RGB, centre square crop resized to S",
    "label": "int16 [S,S] leaf instances 1..K, 0 = background",
    "fg": "uint8 [S,S] 1 = plant (from plantNNN_fg.png, else label > 0)",
    "num_leaves": "int64 [] K, leaves visible after resizing",
    **GT_FIELDS,
}


# ----------------------------------------------------------------------------- readers


def read_rgb(path: str | Path) -> np.ndarray:
    """A plant image as HxWx3 uint8 (an alpha channel is dropped)."""
    return read_image(path, EXPECT_RGB)


def leaves_from_values(values: np.ndarray) -> np.ndarray:
    """Raw label values -> 0 background (the lowest value), leaves 1..K in value order."""
    values = np.asarray(values)
    if values.ndim == 3:  # a colour-coded label: pack the colours first
        values = pack_colours(values)
    _, inverse = np.unique(values, return_inverse=True)
    return inverse.reshape(values.shape).astype(np.int32)


def read_label(path: str | Path) -> np.ndarray:
    """A leaf label PNG as int32 HxW: 0 = background (lowest value), leaves 1..K."""
    return leaves_from_values(read_image(path, EXPECT_LABEL, mode="raw"))


def read_fg(path: str | Path) -> np.ndarray:
    """A foreground PNG as bool HxW."""
    raw = read_image(path, EXPECT_FG, mode="raw")
    return raw.any(-1) if raw.ndim == 3 else raw > 0


def read_plant(folder: str | Path, plant: str) -> dict:
    """One training plant of `folder` (…/A1): {"rgb", "label", "fg"}, shapes checked."""
    folder = Path(folder)
    rgb = read_rgb(folder / f"{plant}_rgb.png")
    label = read_label(folder / f"{plant}_label.png")
    fg = read_fg(folder / f"{plant}_fg.png")
    for name, arr in (("label", label), ("fg", fg)):
        if arr.shape != rgb.shape[:2]:
            raise DataError(
                folder / f"{plant}_{name}.png",
                f"size {arr.shape} differs from the image's {rgb.shape[:2]}",
                LAYOUT,
            )
    return {"rgb": rgb, "label": label, "fg": fg}


def list_plants(folder: str | Path) -> list[str]:
    """Plant names (plantNNN) of an A1 folder, sorted."""
    folder = require_dir(folder, LAYOUT)
    names = sorted(p.name[: -len("_rgb.png")] for p in folder.glob("plant*_rgb.png"))
    if not names:
        raise DataError(folder, "no plantNNN_rgb.png", LAYOUT)
    return names


@contextlib.contextmanager
def open_truth(path: str | Path):
    """Open the challenge truth H5; yields a reader `plant -> (label, fg or None)`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing", EXPECT_H5)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            path, f"not a readable HDF5 file ({exc.__class__.__name__})", EXPECT_H5
        ) from None

    def read(plant: str, dataset: str = "A1"):
        key = f"{dataset}/{plant}/label"
        try:
            label = leaves_from_values(np.asarray(f[key]))
            fg = (
                np.asarray(f[f"{dataset}/{plant}/fg"]) > 0 if f"{dataset}/{plant}/fg" in f else None
            )
        except (KeyError, OSError, TypeError, ValueError) as exc:
            raise DataError(
                path, f"cannot read /{key} ({exc.__class__.__name__})", EXPECT_H5
            ) from None
        if label.ndim != 2:
            raise DataError(path, f"/{key} has shape {label.shape}, not HxW", EXPECT_H5)
        return label, fg

    with f:
        yield read


# ----------------------------------------------------------------------------- staging


def ablation_split(names: list[str], fraction: float, seed: int) -> set[str]:
    """ACIS's held-out plants: round(n * fraction) of `names`, drawn with a fixed seed."""
    n_val = int(round(len(names) * fraction))
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i] for i in order[:n_val]}


def downsize(image: np.ndarray, factor: int) -> np.ndarray:
    """An HxWx3 uint8 image downsized by an integer `factor`: the mean of each factor x
    factor block, rounded half up (as PIL's `Image.reduce`); H and W multiples of it."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: h * factor, : w * factor].astype(np.uint32)
    total = blocks.reshape(h, factor, w, factor, -1).sum((1, 3))
    return ((total + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def stage_plant(rgb: np.ndarray, label: np.ndarray, fg: np.ndarray | None, size: int,
                keep_gt: bool = False, factor: int = 1) -> dict:
    """A plant at size x size, leaves relabelled 1..K: with `factor` 1 the centre square
    resized to `size`; with `factor` > 1 (ACIS's downsizing by two) the image downsized by
    it and centre-cropped to `size` (the central factor*size square of the original,
    downsized; ValueError if the image is smaller). With `keep_gt` the original-size
    labels and the crop box (top, left, height, width, in original pixels) too
    (evaluation splits)."""
    h, w = label.shape
    if factor > 1:   # the centre crop's offsets in the downsized image, in original pixels
        m = factor * size
        if min(h, w) < m:
            raise ValueError(f"a {h}x{w} image is too small to downsize by {factor} and "
                             f"centre-crop {size} x {size}")
        y0, x0 = (factor * ((n // factor - size) // 2) for n in (h, w))
    else:
        m = min(h, w)
        y0, x0 = (h - m) // 2, (w - m) // 2
    crop = (slice(y0, y0 + m), slice(x0, x0 + m))
    image = (downsize(rgb[crop], factor) if factor > 1
             else resize_image(rgb[crop], (size, size)))
    lab, k = relabel(resize_nearest(label[crop], (size, size)))
    mask = resize_nearest(fg[crop], (size, size)) if fg is not None else lab > 0
    sample = {
        "image": chw(image),
        "label": torch.from_numpy(lab.astype(np.int16)),
        "fg": torch.from_numpy(mask.astype(np.uint8)),
        "num_leaves": torch.tensor(k, dtype=torch.int64),
    }
    return keep_ground_truth(sample, label, (y0, x0, m, m)) if keep_gt else sample


def stage(root: str | Path, out: str | Path, cfg: dict) -> dict:
    """Stage `ablation` and `traintest`, reading every source file once (the splits
    present: training/A1 and/or testing/A1 with the truth file)."""
    root, out = Path(root), Path(out)
    require_dir(root, LAYOUT)
    train_dir, test_dir = root / "training" / "A1", root / "testing" / "A1"
    present = present_splits({"training": train_dir.is_dir(), "testing": test_dir.is_dir()},
                             root, LAYOUT)
    train_names = list_plants(train_dir) if "training" in present else []
    test_names = list_plants(test_dir) if "testing" in present else []
    truth = root / TRUTH_H5
    if test_names and not truth.is_file():
        raise DataError(truth, "missing", LAYOUT)
    val = ablation_split(train_names, float(cfg["val_fraction"]), int(cfg["split_seed"]))
    size, factor = int(cfg["size"]), int(cfg.get("downsize", 1))

    def plant(file: str, rgb, label, fg, keep_gt: bool = False) -> dict:
        try:
            return stage_plant(rgb, label, fg, size, keep_gt, factor)
        except ValueError as exc:
            raise DataError(root / file, str(exc), LAYOUT) from None

    base = {**manifest_header(NAME, root, cfg), "size": size, "fields": FIELDS}
    metas = {
        "ablation": {**base, "subset": "ablation"},
        "traintest": {**base, "subset": "traintest"},
    }

    def samples():
        for name in train_names:
            p = read_plant(train_dir, name)
            file = f"training/A1/{name}_rgb.png"
            sample = plant(file, p["rgb"], p["label"], p["fg"])
            if name in val:
                yield "ablation", "val", file, plant(file, p["rgb"], p["label"], p["fg"], True)
            else:
                yield "ablation", "train", file, sample
            yield "traintest", "train", file, sample
        with open_truth(truth) as read_truth:
            for name in test_names:
                rgb = read_rgb(test_dir / f"{name}_rgb.png")
                label, fg = read_truth(name)
                if label.shape != rgb.shape[:2]:
                    raise DataError(
                        truth,
                        f"/A1/{name}/label size {label.shape} differs from "
                        f"the image's {rgb.shape[:2]}",
                        EXPECT_H5,
                    )
                file = f"testing/A1/{name}_rgb.png"
                yield "traintest", "test", file, plant(file, rgb, label, fg, True)

    return stage_subsets(out, metas, samples(), int(cfg.get("shard_size", 256)))


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write a synthetic CVPPP A1 in the official layout (see datasets.cvppp_synth)."""
    from datasets import cvppp_synth

    cvppp_synth.synth(root, cfg, seed)


def draw(sample: dict) -> np.ndarray:
    """The staged image with each leaf in its own colour and leaf borders drawn."""
    return overlay(hwc(sample["image"]), sample["label"], edges="colour")
