"""PASCAL-Context (Mottaghi et al., CVPR 2014): whole-scene labels on PASCAL VOC 2010 images.

Used by CiSS-Net (Zhou et al., CVPR 2019, Section 3.1 and Table 7): 4,998 training and
5,105 test images, "the most commonly used 60 classes (59 classes plus the 'background'
class)", scored by global pixel accuracy and mIoU over the 60 classes.

Official on-disk layout (see LAYOUT): the VOC2010 release for the images and its
`ImageSets/Main/{train,val}.txt` lists (4,998 / 5,105 ids: the benchmark's split, the
"test" images being VOC2010 val), and the PASCAL-Context `trainval.tar.gz` release:
one MATLAB file `trainval/<id>.mat` per image holding `LabelMap` (an integer map of the
image's size over the 459 classes of `labels.txt`, lines `N: name`), and `59_labels.txt`
(lines `N: name`, N = 1..59) naming the benchmark's 59 most frequent classes.

Class mapping (as the FCN reference code `pascalcontext_layers.py` of
fcn.berkeleyvision.org builds it, and as the released `59_context_labels` maps are made):
each 459-class id whose `labels.txt` name is the N-th name of `59_labels.txt` becomes N;
every other id (and 0, unlabelled) becomes 0 = background, which is scored as a class.
Names are matched after dropping spaces; the 59 list's 'diningtable', 'bedcloth' and
'clothes' are also matched to 'table', 'bedclothes' and 'cloth' (the inconsistencies
that reference code resolves).

The stager resizes images (bilinear) and label maps (nearest) to the profile size and
keeps each val map at its original size too (`label_full`, where scores are taken).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from datasets import _common
from datasets import pascal_context_synth as _synth
from datasets._images import chw, hwc, overlay, resize_image, resize_nearest
from rlcv.errors import DataError

NAME = "pascal_context"
SUBSETS = ("context59",)
LAYOUT = (
    "VOCdevkit/VOC2010/ (or VOC2010/) holding JPEGImages/<id>.jpg (RGB JPEG) and "
    "ImageSets/Main/{train,val}.txt (one image id per line: 4998 / 5105 ids); beside it "
    "the PASCAL-Context release: trainval/<id>.mat (MATLAB file with an integer matrix "
    "'LabelMap' of the image's size, ids of labels.txt, 0 = unlabelled), labels.txt "
    "('N: name' per line, the 459 classes) and 59_labels.txt ('N: name', N = 1..59)"
)
PARAMS = {
    "config": {"seed": 0, "shard_size": 256, "jpeg_quality": 90},
    "ci": {"synth_train": 6, "synth_val": 3, "synth_size": [30, 40], "size": [32, 32]},
    "smoke": {"synth_train": 240, "synth_val": 60, "synth_size": [60, 80], "size": [64, 64]},
    "paper": {"root": "pascal_context", "size": [512, 512], "shard_size": 64},
}
SPLITS = ("train", "val")
NUM_CLASSES = 60
"""Background 0 and the 59 classes of 59_labels.txt."""
ALIASES = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}
_LINE = re.compile(r"^\s*(\d+)\s*:\s*(.+?)\s*$")
_hue = (np.arange(NUM_CLASSES) * 0.618034) % 1.0
_k = (np.array([5.0, 3.0, 1.0])[None] + _hue[:, None] * 6) % 6
PALETTE = (255 * (1 - 0.75 * np.clip(np.minimum(_k, 4 - _k), 0, 1))).astype(np.uint8)
PALETTE[0] = 0


def voc_dir(root: str | Path) -> Path:
    """The VOC2010 folder: root/VOCdevkit/VOC2010 or root/VOC2010."""
    root = Path(root)
    for cand in (root / "VOCdevkit" / "VOC2010", root / "VOC2010"):
        if cand.is_dir():
            return cand
    raise DataError(root, "no VOCdevkit/VOC2010 folder", LAYOUT)


def read_labels(path: str | Path, expected_count: int | None = None) -> dict[int, str]:
    """Parse labels.txt / 59_labels.txt: {id: name}; a malformed line is named."""
    path = Path(path)
    expected = f"{path.name}: one 'N: name' line per class"
    if not path.is_file():
        raise DataError(path, "missing", expected)
    out: dict[int, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m or int(m.group(1)) in out:
            raise DataError(path, f"line {n}: malformed or repeated", expected)
        out[int(m.group(1))] = m.group(2)
    if expected_count is not None and sorted(out) != list(range(1, expected_count + 1)):
        raise DataError(path, f"expected ids 1..{expected_count}, got {len(out)} ids", expected)
    return out


def _key(name: str) -> str:
    return name.replace(" ", "").lower()


def class_map(labels: dict[int, str], labels59: dict[int, str]) -> np.ndarray:
    """Lookup table: 459-class id (0..max id) -> 0..59 (the module docstring's mapping)."""
    by_name = {_key(name): idx for idx, name in labels.items()}
    lut = np.zeros(max(labels) + 1, np.uint8)
    for k, name in labels59.items():
        key = _key(name)
        idx = by_name.get(key, by_name.get(ALIASES.get(key, key)))
        if idx is None:
            raise DataError("59_labels.txt", f"class {k} {name!r} is not in labels.txt",
                            LAYOUT)
        lut[idx] = k
    return lut


def read_label_map(path: str | Path, lut: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """trainval/<id>.mat -> HxW uint8 over 0..59 (background 0), checked against the
    image's `shape` and the classes of labels.txt."""
    import scipy.io

    path = Path(path)
    expected = "trainval/<id>.mat: a MATLAB file holding the integer matrix 'LabelMap'"
    if not path.is_file():
        raise DataError(path, "missing", expected)
    try:
        mat = scipy.io.loadmat(path)
    except (scipy.io.matlab.MatReadError, ValueError, OSError, TypeError,
            NotImplementedError) as exc:
        raise DataError(path, f"not a readable MATLAB file ({exc.__class__.__name__})",
                        expected) from None
    label = mat.get("LabelMap")
    if not isinstance(label, np.ndarray) or label.ndim != 2 or label.dtype.kind not in "iu":
        raise DataError(path, "no 2-D integer 'LabelMap'", expected)
    if label.shape != tuple(shape):
        raise DataError(path, f"size {label.shape} differs from its image's {shape}", expected)
    if label.size and (label.min() < 0 or label.max() >= len(lut)):
        raise DataError(path, f"class id {label.max()} not in labels.txt", expected)
    return lut[label]


def list_split(voc: Path, root: Path, split: str) -> list[tuple[str, Path, Path]]:
    """(id, image, .mat) of every image of VOC2010's `split` list."""
    path = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise DataError(path, "missing", LAYOUT)
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(path, "no image ids", LAYOUT)
    return [(i, _common.under(voc / "JPEGImages", f"{i}.jpg", LAYOUT),
             _common.under(root / "trainval", f"{i}.mat", LAYOUT)) for i in ids]


def _samples(listing: dict, lut: np.ndarray, size):
    for split, items in listing.items():
        for stem, image_path, mat_path in items:
            image = _common.read_image(image_path, "VOC2010/JPEGImages/<id>.jpg: an RGB JPEG")
            label = read_label_map(mat_path, lut, image.shape[:2])
            sample = {"image": chw(resize_image(image, size)),
                      "label": torch.from_numpy(np.ascontiguousarray(resize_nearest(label,
                                                                                    size)))}
            if split == "val":   # scored at the annotation's own resolution
                sample["label_full"] = torch.from_numpy(np.ascontiguousarray(label))
            yield SUBSETS[0], split, f"{split}/{stem}", sample


def stage(root: str | Path, out: str | Path, cfg: dict) -> dict:
    """Stage train/val (4998 / 5105 on the real data) into out/context59/.

    Fields per sample: image uint8 [3, H, W], label uint8 [H, W] (0 = background,
    1..59), H, W = cfg["size"]; val also label_full at the original size.
    """
    root = Path(root)
    voc = voc_dir(root)
    labels = read_labels(root / "labels.txt")
    names59 = read_labels(root / "59_labels.txt", NUM_CLASSES - 1)
    lut = class_map(labels, names59)
    listing = {s: list_split(voc, root, s) for s in SPLITS}
    meta = {
        **_common.manifest_header(NAME, root, cfg), "subset": SUBSETS[0],
        "size": list(cfg["size"]), "num_classes": NUM_CLASSES,
        "classes": {"0": "background", **{str(k): v for k, v in sorted(names59.items())}},
        "fields": {"image": "uint8 [3,H,W]", "label": "uint8 [H,W], 0 = background, 1..59",
                   "label_full": "val only: uint8 label map at its original size"},
    }
    return _common.stage_subsets(Path(out), {SUBSETS[0]: meta},
                                 _samples(listing, lut, cfg["size"]),
                                 int(cfg.get("shard_size", 256)))


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write a synthetic PASCAL-Context layout at `root` (datasets.pascal_context_synth)."""
    _synth.write(Path(root), cfg, seed)


def draw(sample: dict) -> np.ndarray:
    """HxWx3 uint8: the staged image with its 60-class map blended over it."""
    return overlay(hwc(sample["image"]), np.asarray(sample["label"]), PALETTE, skip=(0,))
