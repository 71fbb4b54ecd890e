"""Cityscapes fine annotations (Cordts et al., CVPR 2016).

Used by CiSS-Net (Zhou et al., "Context-Reinforced Semantic Segmentation", CVPR 2019,
section 3.1, Tables 1-5 and 8: class IoU and instance-level iIoU on the 19 train classes).

Official on-disk layout (see LAYOUT), enumerated with `torchvision.datasets.Cityscapes`
and decoded with checks, for the real release and for the synthetic writer of
`datasets.cityscapes_synth` alike. The stager keeps train/val and writes the image, the
19-class trainId map (255 = ignore) and the instance map (labelId*1000+k) that the
Cityscapes iIoU needs.
"""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import Cityscapes as _TvCityscapes

from datasets import _common
from datasets._images import chw, hwc, overlay, resize_image, resize_nearest
from rlcv.errors import DataError

NAME = "cityscapes"
SUBSETS = ("fine",)
LAYOUT = (
    "leftImg8bit/{train,val,test}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png (RGB) "
    "with gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png (uint8 label ids "
    "0..33), _gtFine_instanceIds.png (uint16: id*1000+k for instance classes, the plain id "
    "otherwise), _gtFine_color.png (RGBA, official colours) and _gtFine_polygons.json "
    "({imgHeight, imgWidth, objects: [{label, polygon: [[x, y], ...]}]})"
)
PARAMS = {
    "config": {"seed": 0, "shard_size": 256, "splits": ["train", "val"]},
    "ci": {"synth_train": 4, "synth_val": 2, "synth_size": [64, 128], "size": [32, 64]},
    "smoke": {"synth_train": 240, "synth_val": 60, "synth_size": [128, 256], "size": [64, 128]},
    "paper": {"root": "cityscapes", "size": [1024, 2048], "shard_size": 16, "cache": False},
}

# The 34 Cityscapes labels (plus the license plate, id -1) as defined by the benchmark:
# name, id, trainId, category, categoryId, hasInstances, ignoreInEval, colour.
Label = namedtuple(
    "Label", "name id train_id category category_id has_instances ignore_in_eval color")
_V, _F, _C, _O, _N, _S, _H, _VE = ("void", "flat", "construction", "object", "nature", "sky",
                                   "human", "vehicle")
LABELS = tuple(Label(*row) for row in (
    ("unlabeled", 0, 255, _V, 0, False, True, (0, 0, 0)),
    ("ego vehicle", 1, 255, _V, 0, False, True, (0, 0, 0)),
    ("rectification border", 2, 255, _V, 0, False, True, (0, 0, 0)),
    ("out of roi", 3, 255, _V, 0, False, True, (0, 0, 0)),
    ("static", 4, 255, _V, 0, False, True, (0, 0, 0)),
    ("dynamic", 5, 255, _V, 0, False, True, (111, 74, 0)),
    ("ground", 6, 255, _V, 0, False, True, (81, 0, 81)),
    ("road", 7, 0, _F, 1, False, False, (128, 64, 128)),
    ("sidewalk", 8, 1, _F, 1, False, False, (244, 35, 232)),
    ("parking", 9, 255, _F, 1, False, True, (250, 170, 160)),
    ("rail track", 10, 255, _F, 1, False, True, (230, 150, 140)),
    ("building", 11, 2, _C, 2, False, False, (70, 70, 70)),
    ("wall", 12, 3, _C, 2, False, False, (102, 102, 156)),
    ("fence", 13, 4, _C, 2, False, False, (190, 153, 153)),
    ("guard rail", 14, 255, _C, 2, False, True, (180, 165, 180)),
    ("bridge", 15, 255, _C, 2, False, True, (150, 100, 100)),
    ("tunnel", 16, 255, _C, 2, False, True, (150, 120, 90)),
    ("pole", 17, 5, _O, 3, False, False, (153, 153, 153)),
    ("polegroup", 18, 255, _O, 3, False, True, (153, 153, 153)),
    ("traffic light", 19, 6, _O, 3, False, False, (250, 170, 30)),
    ("traffic sign", 20, 7, _O, 3, False, False, (220, 220, 0)),
    ("vegetation", 21, 8, _N, 4, False, False, (107, 142, 35)),
    ("terrain", 22, 9, _N, 4, False, False, (152, 251, 152)),
    ("sky", 23, 10, _S, 5, False, False, (70, 130, 180)),
    ("person", 24, 11, _H, 6, True, False, (220, 20, 60)),
    ("rider", 25, 12, _H, 6, True, False, (255, 0, 0)),
    ("car", 26, 13, _VE, 7, True, False, (0, 0, 142)),
    ("truck", 27, 14, _VE, 7, True, False, (0, 0, 70)),
    ("bus", 28, 15, _VE, 7, True, False, (0, 60, 100)),
    ("caravan", 29, 255, _VE, 7, True, True, (0, 0, 90)),
    ("trailer", 30, 255, _VE, 7, True, True, (0, 0, 110)),
    ("train", 31, 16, _VE, 7, True, False, (0, 80, 100)),
    ("motorcycle", 32, 17, _VE, 7, True, False, (0, 0, 230)),
    ("bicycle", 33, 18, _VE, 7, True, False, (119, 11, 32)),
    ("license plate", -1, -1, _VE, 7, False, True, (0, 0, 142)),
))
BY_NAME = {lb.name: lb for lb in LABELS}
_IDS = [lb for lb in LABELS if lb.id >= 0]
NUM_CLASSES = 19
IGNORE = 255
ID_TO_TRAIN = np.full(256, IGNORE, np.uint8)  # labelId -> trainId (255 = ignore)
VALID_ID = np.zeros(256, bool)  # label ids a labelIds PNG may hold
COLORS = np.zeros((256, 3), np.uint8)  # labelId -> official colour
TRAIN_COLORS = np.zeros((256, 3), np.uint8)  # trainId -> colour (255 black)
TRAIN_TO_ID = np.zeros(256, np.uint8)  # trainId -> labelId (255 -> 0 "unlabeled"), for the
# official evaluation, which scores label ids (predictions are made in trainIds)
for _lb in _IDS:
    VALID_ID[_lb.id] = True
    COLORS[_lb.id] = _lb.color
    if _lb.train_id not in (IGNORE, -1):
        ID_TO_TRAIN[_lb.id] = _lb.train_id
        TRAIN_TO_ID[_lb.train_id] = _lb.id
        TRAIN_COLORS[_lb.train_id] = _lb.color
TRAIN_NAMES = [lb.name for lb in sorted(_IDS, key=lambda lb: lb.train_id) if lb.train_id < 255]
INSTANCE_TRAIN_IDS = [lb.train_id for lb in _IDS if lb.has_instances and lb.train_id < 255]


def frames(root: str | Path, split: str, targets=("semantic", "instance")) -> list[dict]:
    """The frames of `split`, sorted: {"name", "city", "image": path, <target>: path}.

    Enumerated by torchvision.datasets.Cityscapes (mode "fine"); the folders are checked
    first so a wrong root gets one clear line instead of torchvision's RuntimeError.
    """
    root = Path(root)
    images = _common.require_dir(root / "leftImg8bit" / split, LAYOUT)
    _common.require_dir(root / "gtFine" / split, LAYOUT)
    try:
        ds = _TvCityscapes(str(root), split=split, mode="fine", target_type=list(targets))
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(images, f"unreadable ({exc.__class__.__name__}: {exc})", LAYOUT) from None
    out = []
    for image, paths in sorted(zip(ds.images, ds.targets, strict=True)):
        image = Path(image)
        if not image.name.endswith("_leftImg8bit.png"):
            continue
        stem = image.name[: -len("_leftImg8bit.png")]
        out.append({"name": stem, "city": image.parent.name, "image": image,
                    **{t: Path(p) for t, p in zip(targets, paths, strict=True)}})
    if not out:
        raise DataError(images, "no {city}/*_leftImg8bit.png frames", LAYOUT)
    return out


def read_polygons(path: str | Path) -> dict:
    """Parse and check a *_gtFine_polygons.json (every label must be a Cityscapes label)."""
    expected = ("gtFine/{split}/{city}/*_gtFine_polygons.json: {imgHeight: int, imgWidth: int, "
                "objects: [{label: <Cityscapes label>, polygon: [[x, y], ...]}]}")
    data = _common.read_json(path, expected)
    try:
        int(data["imgHeight"]), int(data["imgWidth"])
        for k, obj in enumerate(data["objects"]):
            label = obj["label"]
            if label not in BY_NAME and not (label.endswith("group")
                                             and label[: -len("group")] in BY_NAME):
                raise ValueError(f"objects[{k}]: unknown label {label!r}")
            pts = np.asarray(obj["polygon"], dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 1:
                raise ValueError(f"objects[{k}]: polygon is not a list of [x, y]")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(path, f"malformed polygons ({exc})", expected) from None
    return data


def read_frame(frame: dict) -> dict:
    """Decode one frame of `frames()`: image HxWx3 uint8, label_ids HxW uint8, and the other
    targets listed (instance_ids HxW int32, color HxWx4 uint8, polygons dict), checked."""
    image = _common.read_image(frame["image"], "leftImg8bit/{split}/{city}/*_leftImg8bit.png: "
                               "an RGB PNG of the Cityscapes layout")
    out = {"image": image}
    if "semantic" in frame:
        expected = ("gtFine/{split}/{city}/*_gtFine_labelIds.png: a uint8 PNG of the image's "
                    "size holding Cityscapes label ids 0..33")
        ids = _common.read_image(frame["semantic"], expected, mode="raw")
        if ids.ndim != 2 or ids.dtype != np.uint8 or ids.shape != image.shape[:2]:
            raise DataError(frame["semantic"], f"not a {image.shape[:2]} uint8 map "
                            f"({ids.shape}, {ids.dtype})", expected)
        bad = ~VALID_ID[ids]
        if bad.any():
            raise DataError(frame["semantic"], f"unknown label id {ids[bad][0]}", expected)
        out["label_ids"] = ids
    if "instance" in frame:
        expected = ("gtFine/{split}/{city}/*_gtFine_instanceIds.png: a 16-bit PNG of the "
                    "image's size, id*1000+k for instance classes, the plain id otherwise")
        inst = _common.read_image(frame["instance"], expected, mode="raw")
        if inst.ndim != 2 or inst.dtype.kind not in "iu" or inst.shape != image.shape[:2]:
            raise DataError(frame["instance"], f"not a {image.shape[:2]} integer map "
                            f"({inst.shape}, {inst.dtype})", expected)
        out["instance_ids"] = inst.astype(np.int32)
    if "color" in frame:
        expected = "gtFine/{split}/{city}/*_gtFine_color.png: an RGBA PNG in the official colours"
        out["color"] = _common.read_image(frame["color"], expected, "RGBA")
    if "polygon" in frame:
        out["polygons"] = read_polygons(frame["polygon"])
    return out


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """labelIds -> trainIds (0..18, 255 = ignore), as cityscapesScripts' createTrainIdLabelImgs."""
    return ID_TO_TRAIN[label_ids]


_TARGETS = ("image", "semantic", "instance")


def _records(root: Path, listing: dict):
    """(subset, split, file, record): the frame's image and target paths under `root`."""
    for split, items in listing.items():
        for frame in items:
            yield SUBSETS[0], split, f"{split}/{frame['city']}/{frame['name']}", {
                **{k: Path(frame[k]).relative_to(root).as_posix() for k in _TARGETS},
                "full": split != "train"}   # val/test are scored at their own resolution


def load_sample(record: dict, source: str | Path, manifest: dict) -> dict:
    """Decode one staged sample from its record (`datasets._index`): image, trainIds and
    instance ids resized to the manifest's size (bilinear, nearest, nearest); a val/test
    record (`full`) that was resized also keeps instance_full at the original size."""
    size = manifest["size"]
    f = read_frame({k: _common.under(Path(source), record[k], LAYOUT) for k in _TARGETS})
    label = train_ids(resize_nearest(f["label_ids"], size))
    instance = resize_nearest(f["instance_ids"], size)
    sample = {"image": chw(resize_image(f["image"], size)), "label": torch.from_numpy(label),
              "instance": torch.from_numpy(np.ascontiguousarray(instance))}
    if record.get("full") and instance.shape != f["instance_ids"].shape:
        sample["instance_full"] = torch.from_numpy(f["instance_ids"])
    return sample


def stage(root: str | Path, out: str | Path, cfg: dict) -> dict:
    """Stage the fine train/val frames at `root` into out/fine/ (the splits present).

    Fields per sample: image uint8 [3, H, W]; label uint8 [H, W] trainIds (0..18, 255 =
    ignore); instance int32 [H, W] (labelId*1000+k for instance classes, labelId
    otherwise, for iIoU); H, W = cfg["size"]; where that resizes, val also instance_full,
    the instance map at its original size (scores are taken there). Streams shards;
    returns {subset: manifest}.
    """
    splits = _common.present_splits(
        {s: (Path(root) / "leftImg8bit" / s).is_dir() for s in cfg.get("splits", ["train", "val"])},
        root, LAYOUT)
    listing = {s: frames(root, s) for s in splits}
    meta = {
        **_common.manifest_header(NAME, root, cfg), "subset": SUBSETS[0],
        "size": list(cfg["size"]), "num_classes": NUM_CLASSES,
        "ignore_index": IGNORE, "classes": TRAIN_NAMES,
        "instance_classes": INSTANCE_TRAIN_IDS,
        "train_to_id": TRAIN_TO_ID[:NUM_CLASSES].tolist(),
        "fields": {"image": "uint8 [3,H,W]", "label": "uint8 [H,W] trainIds, 255 = ignore",
                   "instance": "int32 [H,W] labelId*1000+k (instance classes), else labelId "
                               "(so it also holds the ground-truth labelIds)",
                   "instance_full": "val, when resized: instance at the original size"},
    }
    return _common.stage_subsets(Path(out), {SUBSETS[0]: meta}, _records(Path(root), listing),
                                 int(cfg.get("shard_size", 256)), cache=cfg.get("cache", True),
                                 decode=lambda r: load_sample(r, root, meta))


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write a synthetic Cityscapes (leftImg8bit + gtFine) at `root` (cityscapes_synth)."""
    from datasets import cityscapes_synth  # the writer uses this module's label table

    cityscapes_synth.write(Path(root), cfg, seed)


def draw(sample: dict) -> np.ndarray:
    """HxWx3 uint8: the staged image with its trainIds in the official colours blended
    over it (ignore left clear) and every region and instance outlined."""
    label = np.asarray(sample["label"])
    regions = label.astype(np.int64) * 100000 + np.asarray(sample.get("instance", label))
    return overlay(hwc(sample["image"]), label, TRAIN_COLORS, skip=(IGNORE,), regions=regions)
