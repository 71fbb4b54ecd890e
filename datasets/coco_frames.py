"""The staged frames of COCO (`datasets.coco`) and the annotations put in them.

Each subset is staged in its own frame, read from the coco params: the top-level
`image_size`, `resize` and `max_size` are the default of both subsets, and a block
named after a subset overrides them for that subset only, e.g. (the paper profile)::

    single: {image_size: 640}                                    # COCO's own 640
    detection: {image_size: 800, resize: shorter, max_size: 1333}   # Rao et al. / Detectron

`resize: letterbox` (default) fits an h x w image into image_size x image_size, top-left
aligned with zero padding: scale = image_size / max(h, w). `resize: shorter` scales its
shorter side to image_size and its longer one to at most max_size: scale =
min(image_size / min(h, w), max_size / max(h, w)), images of varied sizes. Either way a
source coordinate maps to staged pixels by `* scale`, and an area by `* scale**2`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from datasets._images import letterbox, resize
from rlcv.errors import DataError

FRAME_KEYS = ("image_size", "resize", "max_size")
RESIZES = ("letterbox", "shorter")
EXPECTED = ("coco params: image_size (int), resize: letterbox or shorter, max_size (int, "
            "shorter only); per subset in a block named after it, e.g. detection: "
            "{image_size: 800, resize: shorter, max_size: 1333}")


def subset_frame(cfg: dict, subset: str, where) -> dict:
    """The frame of `subset` ({image_size, resize, max_size}): the coco params' top-level
    keys, overridden by the block `cfg[subset]`; a bad value is one `DataError` line
    naming `where` (the source root being staged)."""
    block = cfg.get(subset) or {}
    if not isinstance(block, dict) or set(block) - set(FRAME_KEYS):
        raise DataError(where, f"coco params: {subset}: expected a block of "
                        f"{', '.join(FRAME_KEYS)}, got {block!r}", EXPECTED)
    merged = {k: cfg[k] for k in FRAME_KEYS if k in cfg} | block
    frame = {"image_size": merged.get("image_size"), "resize": merged.get("resize", "letterbox"),
             "max_size": merged.get("max_size")}
    if frame["resize"] not in RESIZES:
        raise DataError(where, f"unknown resize {frame['resize']!r} in the coco params "
                        f"({subset})", "resize: letterbox or shorter")
    for key in ("image_size", "max_size"):
        value = frame[key]
        if (value is not None or key == "image_size") and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise DataError(where, f"coco params: {subset}'s {key} must be a positive "
                            f"integer, got {value!r}", EXPECTED)
    return frame


def coordinates(frame: dict) -> str:
    """How a source coordinate maps to the frame's staged pixels (the manifest's line)."""
    if frame["resize"] == "letterbox":
        return "staged pixels: source * image_size / max(h, w), top-left letterbox"
    return ("staged pixels: source * min(image_size / min(h, w), max_size / max(h, w)) "
            "(shorter side resized)")


def label(frame: dict) -> str:
    """The frame in words, e.g. '64x64 letterbox' or 'shorter side 800, longer <= 1333'."""
    size = frame["image_size"]
    if frame["resize"] == "letterbox":
        return f"{size}x{size} letterbox"
    return f"shorter side {size}, longer <= {frame['max_size'] or 'any'}"


def transform(h: int, w: int, frame: dict) -> tuple[float, list[int]]:
    """The staged frame of an h x w image: (scale, [out_h, out_w])."""
    size = int(frame["image_size"])
    if frame.get("resize", "letterbox") == "letterbox":
        return size / max(h, w), [size, size]
    limit = frame.get("max_size")
    scale = min(size / min(h, w), (math.inf if limit is None else float(limit)) / max(h, w))
    return scale, [max(1, round(h * scale)), max(1, round(w * scale))]


def to_frame(array: np.ndarray, kind: str, size: int, out_hw: tuple) -> np.ndarray:
    """An image or mask (h, w[, c]) put in a frame: letterboxed into size x size, or
    resized to `out_hw` (`transform`'s output size)."""
    return letterbox(array, size)[0] if kind == "letterbox" else resize(array, out_hw)


def framed(file: str, image_id: int, hw: list[int], frame: dict) -> tuple[dict, float]:
    """The part of a record every subset shares, in `frame` (source `file`, `image_id`,
    source `hw`, staged `out_hw`), and the frame's scale for its annotations."""
    scale, out_hw = transform(*hw, frame)
    return {"file": file, "image_id": int(image_id), "hw": hw, "out_hw": out_hw}, scale


def detection_record(anns: list[dict], scale: float) -> dict:
    """A `detection` record's annotations in the staged frame: every annotation's box,
    category, crowd flag and area (from the annotation's `area`, i.e. its mask)."""
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1) * scale
    areas = np.array([a["area"] for a in anns], np.float64) * scale**2
    return {"boxes": boxes.astype(np.float32).tolist(),
            "labels": [int(a["category_id"]) for a in anns],
            "iscrowd": [int(a.get("iscrowd", 0)) for a in anns],
            "areas": areas.astype(np.float32).tolist()}


def single_record(ann: dict, scale: float) -> dict:
    """A `single` record: the object's box in the staged frame, its category, and its
    segmentation as in the annotation file (rasterised at the source size by the loader,
    then put in the frame with the image)."""
    x, y, w, h = ann["bbox"]
    box = torch.tensor([x, y, x + w, y + h], dtype=torch.float32) * scale
    return {"box": box.tolist(), "category": int(ann["category_id"]),
            "segmentation": ann["segmentation"], "ann_id": ann.get("id")}


def gt_entries(record: dict, file_name: str, first_id: int) -> tuple[dict, list]:
    """The COCO `images` entry and `annotations` of one staged detection record (staged
    pixels of its frame; annotation ids from `first_id`, which must be > 0 for COCOeval)."""
    image_id = int(record["image_id"])
    boxes = torch.tensor(record["boxes"], dtype=torch.float32).reshape(-1, 4).double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    areas = torch.tensor(record["areas"], dtype=torch.float32).double()
    anns = [{"id": first_id + k, "image_id": image_id, "category_id": int(c), "bbox": b,
             "area": float(a), "iscrowd": int(z)}
            for k, (b, c, a, z) in enumerate(zip(xywh, record["labels"], areas,
                                                 record["iscrowd"], strict=True))]
    h, w = record["out_hw"]
    return {"id": image_id, "file_name": file_name, "width": w, "height": h}, anns
