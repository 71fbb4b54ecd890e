"""COCO (Lin et al. 2014) in its official layout; EU-RL's single-object subset D and the
multi-object detection split of the policy-gradient detector.

Official layout read here (any COCO-format annotation file: `instances` or
`person_keypoints`)::

    <root>/annotations/instances_{train,val}2017.json
    <root>/{train,val}2017/<file_name>.jpg

Subsets staged, from one pass over the images (each image decoded once); every image
letterboxed to `image_size` (top-left aligned, zero padding), so a source coordinate maps
to staged pixels by `scale = image_size / max(h, w)`:

- `single` (EU-RL Section 4.1, "subset D"): images with exactly one non-crowd
  annotation whose box is at least `min_object` pixels on both sides (crowd regions are
  ignored). Each sample: the image, the object's mask and box in that frame. The split
  is the paper's, drawn from D itself (train2017 and val2017 pooled): 9,334 training and
  4,694 test images; where D holds more than 14,028 images a seeded draw of that many
  is split, where it holds fewer (synthetic profiles) the same proportions
  (`subset_d_split`, seed `split_seed`). `val` is the paper's test part.
- `detection` (the policy-gradient detector's train/val, train2017 -> train, val2017 ->
  val): every image with at least one
  non-crowd annotation, with all its boxes; crowd regions stay as boxes flagged
  `iscrowd` (COCO evaluation ignores detections matched to them). Next to the shards,
  `val_gt.json` is the staged val split as a COCO ground-truth file in staged pixels
  (images image_size x image_size), the file the detection evaluation scores against.
  Areas are scaled with the image, so APs/APm/APl's 32^2 and 96^2 thresholds apply to
  staged pixels.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO

from datasets import coco_synth
from datasets._common import (
    manifest_header,
    read_image,
    read_json,
    require_dir,
    stage_subsets,
    under,
)
from datasets._images import INSTANCE_PALETTE, chw, draw_boxes, hwc, letterbox, overlay
from rlcv import io as rio
from rlcv.errors import DataError

NAME = "coco"
SUBSETS = ("single", "detection")
SPLITS = {"train": "train2017", "val": "val2017"}
VAL_GT = "val_gt.json"
LAYOUT = (
    "COCO layout: <root>/annotations/{instances,person_keypoints}_{train,val}2017.json "
    "and <root>/{train,val}2017/*.jpg"
)
PARAMS = {
    "config": {"seed": 0, "annotation": "instances"},
    "ci": {"n_train": 24, "n_val": 12, "image_size": 64, "min_object": 16},
    "smoke": {"n_train": 400, "n_val": 120, "image_size": 96, "min_object": 24},
    "paper": {"root": "coco", "image_size": 224, "min_object": 32},
}
FIELDS = {
    "single": {
        "image": "uint8 [3,S,S] letterboxed RGB",
        "mask": "bool [S,S] the object's mask",
        "box": "float32 [4] x0,y0,x1,y1 in staged pixels",
        "category": "int64 [] category id",
        "image_id": "int64 [] COCO image id",
    },
    "detection": {
        "image": "uint8 [3,S,S] letterboxed RGB",
        "boxes": "float32 [n,4] x0,y0,x1,y1 in staged pixels, every annotation of the image",
        "labels": "int64 [n] category ids",
        "iscrowd": "uint8 [n] 1 = crowd region (ignored by the evaluation, not an object)",
        "areas": "float32 [n] annotation (mask) area in staged pixels",
        "image_id": "int64 [] COCO image id (the image's id in val_gt.json)",
    },
}


class CocoReader:
    """Reads one split of a COCO-format folder through pycocotools."""

    def __init__(self, root: str | Path, split: str, annotation: str = "instances"):
        root = require_dir(root, LAYOUT)
        folder = SPLITS[split]
        ann = root / "annotations" / f"{annotation}_{folder}.json"
        if not ann.is_file():
            found = sorted(root.glob(f"annotations/*_{folder}.json"))
            if not found:
                raise DataError(ann, "missing", LAYOUT)
            ann = found[0]
        doc = read_json(ann, LAYOUT)
        for key in ("images", "annotations", "categories"):
            if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
                raise DataError(ann, f"malformed annotations: no list {key!r}", LAYOUT)
        try:
            doc["annotations"] = checked_annotations(doc, ann)
            self.coco = COCO()
            self.coco.dataset = doc
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco.createIndex()
        except (KeyError, TypeError) as exc:
            raise DataError(ann, f"malformed annotations: missing field {exc}", LAYOUT) from None
        self.root, self.split, self.annotation_file = root, split, ann
        self.image_dir = root / folder

    def image_ids(self) -> list[int]:
        """Every image id of the split, sorted."""
        return sorted(self.coco.imgs)

    def info(self, image_id: int) -> dict:
        """The image's entry of `images` (file_name, width, height, ...)."""
        return self.coco.imgs[image_id]

    def annotations(self, image_id: int) -> list[dict]:
        """The image's annotations (crowd regions included), in file order."""
        return self.coco.imgToAnns.get(image_id, [])

    def image(self, image_id: int) -> np.ndarray:
        """The decoded RGB image (H, W, 3) uint8, checked against its width and height."""
        info = self.info(image_id)
        path = under(self.image_dir, info.get("file_name"), LAYOUT)
        pixels = read_image(path, LAYOUT)
        want = (info.get("height"), info.get("width"))
        if None not in want and pixels.shape[:2] != want:
            raise DataError(path, f"size {pixels.shape[:2]} differs from its annotation's "
                            f"height x width {want}", LAYOUT)
        return pixels

    def mask(self, ann: dict) -> np.ndarray:
        """The annotation's binary mask at the image's size (polygons or RLE)."""
        try:
            return self.coco.annToMask(ann).astype(bool)
        except Exception as exc:  # pycocotools raises bare exceptions on bad segmentations
            raise DataError(self.annotation_file, f"malformed segmentation in annotation "
                            f"{ann.get('id')}: {exc}", LAYOUT) from None


def checked_annotations(doc: dict, ann_file: Path) -> list[dict]:
    """`doc`'s annotations, checked: every image has a string `file_name`; every
    annotation names an image of the file (else one `DataError` line), has numeric
    `image_id`/`category_id`/`area`/`iscrowd` and a 4-number `bbox`. A box with a NaN or
    infinite number, or a width or height <= 0, cannot be an object: such annotations are
    skipped, and one line on stderr says how many and which."""
    for im in doc["images"]:
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise DataError(ann_file, f"malformed annotations: image {im.get('id')} has no "
                            "file_name", LAYOUT)
    ids = {im["id"] for im in doc["images"]}
    kept, skipped = [], []
    for a in doc["annotations"]:
        box = a["bbox"]
        numbers = [a["image_id"], a["category_id"], a["area"], a["iscrowd"],
                   *(box if isinstance(box, list) else [None])]
        if not isinstance(box, list) or len(box) != 4 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            raise DataError(ann_file, f"malformed annotations: annotation {a.get('id')} "
                            f"needs numbers: bbox [x, y, w, h], image_id, category_id, area "
                            f"(got bbox {box!r})", LAYOUT)
        if a["image_id"] not in ids:
            raise DataError(ann_file, f"annotation {a.get('id')} is on image {a['image_id']}, "
                            "which is not in its images list", LAYOUT)
        if not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
            skipped.append(a.get("id"))
            continue
        kept.append(a)
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
        print(f"{ann_file}: skipped {len(skipped)} annotations with a NaN, infinite or "
              f"non-positive box size (ids {shown})", file=sys.stderr)
    return kept


def is_single(anns: list[dict], min_object: int) -> bool:
    """EU-RL's subset D test: exactly one non-crowd annotation, box at least min x min."""
    objects = [a for a in anns if not a.get("iscrowd", 0)]
    return len(objects) == 1 and min(objects[0]["bbox"][2:]) >= min_object


D_SPLIT = {"train": 9334, "val": 4694}
"""EU-RL's split of subset D (Section 4.1): 14,028 images, 9,334 train / 4,694 test."""


def subset_d_split(keys: list, seed: int) -> dict:
    """{key: "train" | "val"} for the images `keys` of subset D (keys of excluded images
    are absent): the paper's 9,334 / 4,694 when D holds at least their 14,028 (a seeded
    draw of that many), else all of D in the same proportions (val rounded)."""
    total = sum(D_SPLIT.values())
    order = np.random.default_rng(seed).permutation(len(keys))
    ranked = [sorted(keys)[i] for i in order]
    if len(keys) >= total:
        n_val, ranked = D_SPLIT["val"], ranked[:total]
    else:
        n_val = round(len(keys) * D_SPLIT["val"] / total)
    return {k: ("val" if i < n_val else "train") for i, k in enumerate(ranked)}


def select_single(reader: CocoReader, min_object: int) -> list[int]:
    """The image ids of EU-RL's subset D in `reader`'s split."""
    return [i for i in reader.image_ids() if is_single(reader.annotations(i), min_object)]


def present_splits(root: Path) -> list[str]:
    """The splits with an annotation file; a folder without any is an error."""
    require_dir(root, LAYOUT)
    found = [s for s, folder in SPLITS.items()
             if any((Path(root) / "annotations").glob(f"*_{folder}.json"))]
    if not found:
        raise DataError(Path(root) / "annotations", "no *_train2017.json or *_val2017.json",
                        LAYOUT)
    return found


def detection_sample(image: torch.Tensor, anns: list[dict], scale: float,
                     image_id: int) -> dict:
    """A `detection` sample: every annotation's box, category, crowd flag and area,
    scaled to the staged frame (area from the annotation's `area`, i.e. its mask)."""
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1) * scale
    areas = np.array([a["area"] for a in anns], np.float64) * scale**2
    return {
        "image": image,
        "boxes": torch.from_numpy(boxes.astype(np.float32)),
        "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
        "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.uint8),
        "areas": torch.from_numpy(areas.astype(np.float32)),
        "image_id": torch.tensor(image_id, dtype=torch.int64),
    }


def gt_entries(sample: dict, file_name: str, size: int, first_id: int) -> tuple[dict, list]:
    """The COCO `images` entry and `annotations` of one staged detection sample (staged
    pixels; annotation ids from `first_id`, which must be > 0 for COCOeval)."""
    image_id = int(sample["image_id"])
    boxes = sample["boxes"].double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    anns = [{"id": first_id + k, "image_id": image_id, "category_id": int(c), "bbox": b,
             "area": float(a), "iscrowd": int(z)}
            for k, (b, c, a, z) in enumerate(zip(xywh, sample["labels"], sample["areas"].double(),
                                                 sample["iscrowd"], strict=True))]
    return {"id": image_id, "file_name": file_name, "width": size, "height": size}, anns


def _rows(root: Path, cfg: dict, val_gt: dict) -> Iterator[tuple[str, str, str, dict]]:
    """(subset, split, file, sample) of both subsets, decoding each image once; fills
    `val_gt` (a COCO ground-truth dict) with the staged val detection samples."""
    size, min_object = int(cfg["image_size"]), int(cfg.get("min_object", 32))
    readers = {split: CocoReader(root, split, cfg.get("annotation", "instances"))
               for split in present_splits(root)}
    d_split = subset_d_split([(split, i) for split, r in readers.items()
                              for i in select_single(r, min_object)],
                             int(cfg.get("split_seed", 0)))
    for split, reader in readers.items():
        if split == "val":
            val_gt["categories"] = reader.coco.dataset["categories"]
        for image_id in reader.image_ids():
            anns = reader.annotations(image_id)
            if all(a.get("iscrowd", 0) for a in anns):
                continue
            info = reader.info(image_id)
            file = f"{SPLITS[split]}/{info['file_name']}"
            pixels = reader.image(image_id)
            scale = size / max(pixels.shape[:2])
            image = chw(letterbox(pixels, size)[0])
            sample = detection_sample(image, anns, scale, image_id)
            yield "detection", split, file, sample
            if split == "val":
                entry, gt = gt_entries(sample, info["file_name"], size,
                                       len(val_gt["annotations"]) + 1)
                val_gt["images"].append(entry)
                val_gt["annotations"] += gt
            if (split, image_id) in d_split:
                (ann,) = [a for a in anns if not a.get("iscrowd", 0)]
                x, y, w, h = ann["bbox"]
                yield "single", d_split[(split, image_id)], file, {
                    "image": image,
                    "mask": torch.from_numpy(letterbox(reader.mask(ann), size)[0]),
                    "box": torch.tensor([x, y, x + w, y + h], dtype=torch.float32) * scale,
                    "category": torch.tensor(ann["category_id"], dtype=torch.int64),
                    "image_id": torch.tensor(image_id, dtype=torch.int64),
                }


def synth(root: Path, cfg: dict, seed: int) -> None:
    """Write synthetic COCO (official layout) under `root`."""
    coco_synth.write(Path(root), cfg, seed)


def stage(root: Path, out: Path, cfg: dict) -> dict[str, dict]:
    """Stage `single` and `detection` of `root` into `out/<subset>/` in one pass (plus
    `out/detection/val_gt.json`); returns {subset: manifest}."""
    root, size = Path(root), int(cfg["image_size"])
    base = {**manifest_header(NAME, root, cfg), "image_size": size,
            "coordinates": "staged pixels: source * image_size / max(h, w), top-left letterbox"}
    metas = {
        "single": {**base, "subset": "single", "fields": FIELDS["single"],
                   "selection": f"exactly one non-crowd annotation, box >= "
                                f"{cfg.get('min_object', 32)} px; train2017 and val2017 "
                                f"pooled, split as EU-RL's 9334 / 4694 (proportions when "
                                f"fewer; split_seed {cfg.get('split_seed', 0)})"},
        "detection": {**base, "subset": "detection", "fields": FIELDS["detection"],
                      "selection": "at least one non-crowd annotation; crowd regions kept "
                                   "as boxes flagged iscrowd", "val_gt": VAL_GT},
    }
    val_gt = {"info": {"description": f"staged val split of {root} ({size}x{size} letterbox)"},
              "images": [], "annotations": [], "categories": []}

    def write_gt(folder: Path) -> None:
        rio.write_text(folder / "detection" / VAL_GT, json.dumps(val_gt))

    rows = _rows(root, cfg, val_gt)
    return stage_subsets(Path(out), metas, rows, int(cfg.get("shard_size", 256)), write_gt)


_MASK_PALETTE = np.array([[0, 0, 0], [255, 40, 40]], np.uint8)


def draw(sample: dict) -> np.ndarray:
    """The image with its labels: a `single` sample's mask tinted and box outlined, a
    `detection` sample's boxes outlined in one colour per category (crowd regions white)."""
    image = hwc(sample["image"])
    if "mask" in sample:
        img = overlay(image, np.asarray(sample["mask"]), _MASK_PALETTE, edges="colour")
        return draw_boxes(img, sample["box"], (255, 255, 0))
    colours = INSTANCE_PALETTE[np.asarray(sample["labels"]) % 256].copy()
    colours[np.asarray(sample["iscrowd"]).astype(bool)] = 255
    return draw_boxes(image, sample["boxes"], colours)
