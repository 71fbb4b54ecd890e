"""KITTI car instance segmentation in Ren & Zemel's layout, as used by ACIS.

ACIS (Araslanov et al., CVPR 2019, Sec. 5.2, Table 4) uses the split of Ren & Zemel
(CVPR 2017) and Zhang et al.: 3712 training images with coarse masks, 144 validation
and 120 test images with hand-annotated masks, up to 20 cars per image; scored with
MWCov / MUCov / AvgFP / AvgFN.

Official layout read here (the same reader serves the synthetic and the real data)::

    <root>/images/NNNNNN.png      RGB frames (frame id zero-padded to 6 digits)
    <root>/gt/NNNNNN.png          training masks: each car one distinct colour, black = 0
    <root>/gt_man/NNNNNN.png      hand-annotated masks of valid_man and test_man frames
    <root>/train.txt              frame ids, one integer per line (3712 on the real data)
    <root>/valid_man.txt          (144)
    <root>/test_man.txt           (120)

Also read: KITTI's instanceSeg2015 layout, `<root>/training/image_2/<name>.png` with
`<root>/training/instance/<name>.png` (uint16; value = class_id * 256 + instance, class
ids from Cityscapes' labels.py, where car = 26; instance 0 = no instance annotation).

Staged subset `cars`: splits train / val / test, each frame resized to `size_hw`
(bilinear image, nearest-neighbour labels), cars relabelled 1..K in colour order; val and
test also keep the original-size instances, for scoring at the ground truth's resolution.
"""

from __future__ import annotations

from pathlib import Path

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

NAME = "kitti"
SUBSETS = ("cars",)
CAR_ID = 26  # Cityscapes labels.py: car = id 26 (trainId 13), the class ids KITTI 2015 uses
LAYOUT = (
    "KITTI car instances (Ren & Zemel): <root>/images/NNNNNN.png, <root>/gt/NNNNNN.png "
    "(train) and <root>/gt_man/NNNNNN.png (valid_man, test_man) with one colour per car and "
    "black background, split lists <root>/{train,valid_man,test_man}.txt of integer frame ids"
)
LAYOUT_2015 = (
    "KITTI instanceSeg2015: <root>/training/image_2/<name>.png and "
    "<root>/training/instance/<name>.png (uint16, class_id * 256 + instance, car = 26)"
)
EXPECT_FRAME = "a KITTI RGB frame (PNG)"
EXPECT_GT = "a car-instance PNG: one colour per car, black (0) background"
EXPECT_2015 = "a KITTI 2015 instance PNG (16-bit, class_id * 256 + instance)"
SPLITS = {
    "train": ("train.txt", "gt"),
    "val": ("valid_man.txt", "gt_man"),
    "test": ("test_man.txt", "gt_man"),
}

PARAMS = {
    "config": {"seed": 0, "max_cars": 20, "shard_size": 256},
    "ci": {
        "num_train": 6,
        "num_valid": 2,
        "num_test": 2,
        "image_hw": [40, 128],
        "size_hw": [32, 96],
    },
    "smoke": {
        "num_train": 256,
        "num_valid": 48,
        "num_test": 40,
        "image_hw": [72, 240],
        "size_hw": [64, 192],
    },
    "paper": {"root": "kitti", "size_hw": [128, 448]},
}

FIELDS = {
    "image": "uint8 [3,H,W] RGB resized to size_hw",
    "label": "int16 [H,W] car instances 1..K (colour order), 0 = background",
    "num_instances": "int64 [] K, cars visible after resizing",
    **GT_FIELDS,
}


# ----------------------------------------------------------------------------- readers


def read_ids(path: str | Path) -> list[int]:
    """A split list: one integer frame id per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing", LAYOUT)
    try:
        lines = path.read_text().split()
        return [int(v) for v in lines]
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            path, f"not a list of integer frame ids ({exc.__class__.__name__})", LAYOUT
        ) from None


def read_frame(path: str | Path) -> np.ndarray:
    """A KITTI frame as HxWx3 uint8 (palette or RGB PNG)."""
    return read_image(path, EXPECT_FRAME)


def colours_to_instances(rgb: np.ndarray) -> np.ndarray:
    """Colour-coded instances (HxWx3) -> int32 0..K, K in ascending packed-colour order."""
    return relabel(pack_colours(rgb))[0]


def read_instances(path: str | Path) -> np.ndarray:
    """A Ren & Zemel ground-truth PNG as int32 HxW: 0 background, cars 1..K."""
    return colours_to_instances(read_image(path, EXPECT_GT, mode="RGB"))


def read_example(root: str | Path, frame: int, gt: str = "gt") -> tuple[np.ndarray, np.ndarray]:
    """(image, instances) of one frame, with `gt` = "gt" or "gt_man"; sizes checked."""
    root = Path(root)
    image = read_frame(root / "images" / f"{frame:06d}.png")
    path = root / gt / f"{frame:06d}.png"
    inst = read_instances(path)
    if inst.shape != image.shape[:2]:
        raise DataError(
            path, f"size {inst.shape} differs from the frame's {image.shape[:2]}", LAYOUT
        )
    return image, inst


def decode_instance2015(value: np.ndarray, class_id: int = CAR_ID) -> np.ndarray:
    """uint16 class_id * 256 + instance -> int32 instances of `class_id` (1..K, 0 elsewhere)."""
    value = np.asarray(value).astype(np.int64)
    inst = np.where((value >> 8) == class_id, value & 255, 0)
    return relabel(inst)[0]


def encode_instance2015(instances: np.ndarray, class_id: int = CAR_ID) -> np.ndarray:
    """Instances 1..K -> uint16 KITTI 2015 encoding (background gets class 0, instance 0)."""
    return np.where(instances > 0, class_id * 256 + instances, 0).astype(np.uint16)


def read_instance2015(path: str | Path, class_id: int = CAR_ID) -> np.ndarray:
    """A KITTI 2015 instance PNG -> int32 instances of `class_id`."""
    raw = read_image(path, EXPECT_2015, mode="raw")
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.int32, np.uint32):
        raise DataError(
            path, f"{raw.dtype} array of shape {raw.shape}, not a 16-bit map", EXPECT_2015
        )
    return decode_instance2015(raw, class_id)


def list_2015(root: str | Path) -> list[str]:
    """Frame names of the instanceSeg2015 training set (both folders required)."""
    root = require_dir(root, LAYOUT_2015)
    images = require_dir(root / "training" / "image_2", LAYOUT_2015)
    require_dir(root / "training" / "instance", LAYOUT_2015)
    names = sorted(p.name for p in images.glob("*.png"))
    if not names:
        raise DataError(images, "no PNG frames", LAYOUT_2015)
    return names


def read_example2015(root: str | Path, name: str, class_id: int = CAR_ID):
    """(image, car instances) of one instanceSeg2015 training frame."""
    root = Path(root)
    image = read_frame(root / "training" / "image_2" / name)
    path = root / "training" / "instance" / name
    inst = read_instance2015(path, class_id)
    if inst.shape != image.shape[:2]:
        raise DataError(
            path, f"size {inst.shape} differs from the frame's {image.shape[:2]}", LAYOUT_2015
        )
    return image, inst


# ----------------------------------------------------------------------------- staging


def stage_frame(image: np.ndarray, instances: np.ndarray, size_hw, keep_gt: bool = False) -> dict:
    """Resize a frame and its instances to size_hw; cars relabelled 1..K; with `keep_gt`
    the original-size instances too (evaluation splits)."""
    h, w = (int(v) for v in size_hw)
    lab, k = relabel(resize_nearest(instances, (h, w)))
    sample = {
        "image": chw(resize_image(image, (h, w))),
        "label": torch.from_numpy(lab.astype(np.int16)),
        "num_instances": torch.tensor(k, dtype=torch.int64),
    }
    return keep_ground_truth(sample, instances) if keep_gt else sample


def stage(root: str | Path, out: str | Path, cfg: dict) -> dict:
    """Stage train (gt/) / val (valid_man, gt_man/) / test (test_man, gt_man/) frames into
    out/cars/ (the splits whose list file is present); returns {"cars": manifest}."""
    root, out = Path(root), Path(out)
    require_dir(root, LAYOUT)
    require_dir(root / "images", LAYOUT)
    lists = {}
    for split in present_splits({s: (root / f).is_file() for s, (f, _) in SPLITS.items()},
                                root, LAYOUT):
        fname, gt = SPLITS[split]
        lists[split] = read_ids(root / fname)
        require_dir(root / gt, LAYOUT)

    size = cfg["size_hw"]

    def samples():
        for split, ids in lists.items():
            gt = SPLITS[split][1]
            for frame in ids:
                image, inst = read_example(root, frame, gt)
                yield "cars", split, f"images/{frame:06d}.png", stage_frame(
                    image, inst, size, keep_gt=split != "train")

    meta = {**manifest_header(NAME, root, cfg), "subset": "cars",
            "size_hw": [int(v) for v in size], "fields": FIELDS}
    return stage_subsets(out, {"cars": meta}, samples(), int(cfg.get("shard_size", 256)))


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write a synthetic KITTI car-instance set in the official layout (datasets.kitti_synth)."""
    from datasets import kitti_synth

    kitti_synth.synth(root, cfg, seed)


def draw(sample: dict) -> np.ndarray:
    """The staged frame with each car in its own colour and car borders drawn."""
    return overlay(hwc(sample["image"]), sample["label"], edges="colour")
