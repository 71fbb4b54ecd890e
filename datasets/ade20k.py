"""ADE20K scene parsing (MIT Scene Parsing Benchmark, ADEChallengeData2016).

Used by CiSS-Net (Zhou et al., "Context-Reinforced Semantic Segmentation", CVPR 2019,
section 3.1, Tables 1-6: mIoU and pixel accuracy on the validation set).

Official on-disk layout (see LAYOUT), read the same way for the real release and for the
synthetic writer of `datasets.ade20k_synth`; the stager resizes images (bilinear) and
annotations (nearest) to the profile size and writes train/val shards, keeping each val
annotation at its original size too (`label_full`: the benchmark scores there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datasets import _common
from datasets import ade20k_synth as _synth
from datasets._images import chw, hwc, overlay, resize_image, resize_nearest
from rlcv.errors import DataError

NAME = "ade20k"
SUBSETS = ("sceneparsing",)
LAYOUT = (
    "ADEChallengeData2016/ (directly at the root, or in it) holding "
    "images/{training,validation}/ADE_{train,val}_NNNNNNNN.jpg (RGB JPEG), "
    "annotations/{training,validation}/ADE_{train,val}_NNNNNNNN.png (greyscale uint8 PNG "
    "of the image's size, class ids 0..150, 0 = other, excluded from scoring), "
    "objectInfo150.txt (tab-separated 'Idx Ratio Train Val Name', one row per class id "
    "1..150; objectInfo150.csv alongside) and sceneCategories.txt ('ADE_train_00000001 "
    "airport_terminal' per line)"
)
PARAMS = {
    "config": {"seed": 0, "shard_size": 256, "jpeg_quality": 90},
    "ci": {"synth_train": 6, "synth_val": 3, "synth_size": [40, 40], "size": [32, 32]},
    "smoke": {"synth_train": 240, "synth_val": 60, "synth_size": [80, 80], "size": [64, 64]},
    "paper": {"root": "ade20k", "size": [512, 512], "shard_size": 64, "cache": False},
}
SPLITS = {"training": "train", "validation": "val"}  # folder -> staged split name
NUM_CLASSES = 150
_TOP = "ADEChallengeData2016"
# a fixed palette for drawing: 0 (other) black, 1..150 distinct saturated colours
_hue = (np.arange(NUM_CLASSES + 1) * 0.618034) % 1.0
_k = (np.array([5.0, 3.0, 1.0])[None] + _hue[:, None] * 6) % 6
PALETTE = (255 * (1 - 0.75 * np.clip(np.minimum(_k, 4 - _k), 0, 1))).astype(np.uint8)
PALETTE[0] = 0


def _where(rel: str) -> str:
    return f"{_TOP}/{rel} of the ADE20K scene-parsing layout"


def locate(root: str | Path) -> Path:
    """The ADEChallengeData2016 folder: `root/ADEChallengeData2016`, or `root` itself."""
    root = Path(root)
    if (root / _TOP).is_dir():
        return root / _TOP
    if (root / "objectInfo150.txt").is_file() or (root / "images").is_dir():
        return root
    raise DataError(root, f"no {_TOP} folder", LAYOUT)


def read_object_info(base: str | Path) -> dict[int, str]:
    """Parse objectInfo150.txt: {class id: name}; a malformed row names its line."""
    path = Path(base) / "objectInfo150.txt"
    expected = (f"{_TOP}/objectInfo150.txt: tab-separated rows 'Idx Ratio Train Val Name' "
                "under that header, Idx 1..150")
    if not path.is_file():
        raise DataError(path, "missing", expected)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise DataError(path, "not text", expected) from None
    if not lines or lines[0].split("\t")[0].strip() != "Idx":
        raise DataError(path, "line 1: header 'Idx\\tRatio\\tTrain\\tVal\\tName' missing", expected)
    out: dict[int, str] = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")]
        try:
            if len(parts) != 5:
                raise ValueError(f"{len(parts)} fields")
            idx, _, _, _ = int(parts[0]), float(parts[1]), int(parts[2]), int(parts[3])
        except ValueError as exc:
            raise DataError(path, f"line {n}: malformed row ({exc})", expected) from None
        if not 1 <= idx <= NUM_CLASSES or idx in out or not parts[4]:
            raise DataError(path, f"line {n}: bad or repeated class id {idx}", expected)
        out[idx] = parts[4]
    if not out:
        raise DataError(path, "no class rows", expected)
    return out


def read_scene_categories(base: str | Path) -> dict[str, str]:
    """Parse sceneCategories.txt: {image stem: scene category}."""
    path = Path(base) / "sceneCategories.txt"
    expected = f"{_TOP}/sceneCategories.txt: one 'ADE_train_00000001 scene_name' per line"
    if not path.is_file():
        raise DataError(path, "missing", expected)
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].startswith("ADE_"):
            if line.strip():
                raise DataError(path, f"line {n}: malformed", expected)
            continue
        out[parts[0]] = parts[1]
    return out


def list_split(base: str | Path, split: str) -> list[tuple[str, Path, Path]]:
    """(stem, image path, annotation path) of every image of `split` (training/validation)."""
    base = Path(base)
    images = _common.require_dir(base / "images" / split, LAYOUT)
    anns = _common.require_dir(base / "annotations" / split, LAYOUT)
    stems = sorted(p.stem for p in images.glob(f"ADE_{SPLITS[split]}_*.jpg"))
    if not stems:
        raise DataError(images, f"no ADE_{SPLITS[split]}_*.jpg images", LAYOUT)
    return [(s, images / f"{s}.jpg", anns / f"{s}.png") for s in stems]


def read_sample(image_path: Path, ann_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image (HxWx3 uint8) and its annotation (HxW uint8, 0..150), checked."""
    split = Path(ann_path).parent.name
    image = _common.read_image(image_path, _where(f"images/{split}/ADE_*.jpg: an RGB JPEG"))
    expected = _where(f"annotations/{split}/ADE_*.png: a greyscale uint8 PNG of the "
                      "image's size, class ids 0..150")
    label = _common.read_image(ann_path, expected, mode="raw")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DataError(ann_path, f"not a greyscale uint8 map (shape {label.shape}, "
                        f"{label.dtype})", expected)
    if label.shape != image.shape[:2]:
        raise DataError(ann_path, f"size {label.shape} differs from its image's "
                        f"{image.shape[:2]}", expected)
    if label.max(initial=0) > NUM_CLASSES:
        raise DataError(ann_path, f"class id {label.max()} > {NUM_CLASSES}", expected)
    return image, label


def _records(base: Path, listing: dict):
    """(subset, split, file, record): the image and annotation paths under `base`."""
    for split, items in listing.items():
        for stem, image_path, ann_path in items:
            yield SUBSETS[0], SPLITS[split], f"{split}/{stem}", {
                "image": image_path.relative_to(base).as_posix(),
                "annotation": ann_path.relative_to(base).as_posix(),
                "full": SPLITS[split] == "val"}   # scored at the annotation's own size


def load_sample(record: dict, source: str | Path, manifest: dict) -> dict:
    """Decode one staged sample from its record (`datasets._index`): image and label map
    resized to the manifest's size (bilinear, nearest); a val record (`full`) also keeps
    label_full, the annotation at its original size (the benchmark scores there)."""
    base, size = locate(source), manifest["size"]
    image, label = read_sample(_common.under(base, record["image"], LAYOUT),
                               _common.under(base, record["annotation"], LAYOUT))
    sample = {"image": chw(resize_image(image, size)),
              "label": torch.from_numpy(np.ascontiguousarray(resize_nearest(label, size)))}
    if record.get("full"):
        sample["label_full"] = torch.from_numpy(np.ascontiguousarray(label))
    return sample


def stage(root: str | Path, out: str | Path, cfg: dict) -> dict:
    """Stage train/val of the ADE20K layout at `root` into out/sceneparsing/ (the splits
    present: a root with only validation/ stages val).

    Fields per sample: image uint8 [3, H, W], label uint8 [H, W] (0 = other, 1..150),
    H, W = cfg["size"]; val also label_full, the annotation at its original size (the
    benchmark scores there). Streams shards of cfg["shard_size"]; returns {subset: manifest}.
    """
    base = locate(root)
    classes = read_object_info(base)
    present = _common.present_splits(
        {split: (base / "images" / split).is_dir() for split in SPLITS}, base, LAYOUT)
    listing = {split: list_split(base, split) for split in present}
    meta = {
        **_common.manifest_header(NAME, root, cfg), "subset": SUBSETS[0],
        "size": list(cfg["size"]), "num_classes": NUM_CLASSES,
        "ignore_index": 0, "classes": {str(k): v for k, v in sorted(classes.items())},
        "fields": {"image": "uint8 [3,H,W]", "label": "uint8 [H,W], 0 = other (ignored)",
                   "label_full": "val only: uint8 annotation at its original size"},
    }
    return _common.stage_subsets(Path(out), {SUBSETS[0]: meta}, _records(base, listing),
                                 int(cfg.get("shard_size", 256)), cache=cfg.get("cache", True),
                                 decode=lambda r: load_sample(r, root, meta))


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write a synthetic ADEChallengeData2016 at `root` (see datasets.ade20k_synth)."""
    _synth.write(Path(root), cfg, seed)


def draw(sample: dict) -> np.ndarray:
    """HxWx3 uint8: the staged image with its class map blended over it ("other" clear)."""
    return overlay(hwc(sample["image"]), np.asarray(sample["label"]), PALETTE, skip=(0,))
