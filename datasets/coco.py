"""COCO (Lin et al. 2014) in its official layout; EU-RL's single-object subset D and the
multi-object detection split of the policy-gradient detector.

Official layout read here (any COCO-format annotation file: `instances` or
`person_keypoints`)::

    <root>/annotations/instances_{train,val}2017.json
    <root>/{train,val}2017/<file_name>.jpg

Subsets staged, from one pass over the images (each image decoded once), each in its
own frame (`datasets.coco_frames`: the params' `image_size`/`resize`/`max_size`, overridden
per subset by a block named after it; a source coordinate maps to staged pixels by
`* scale`). The paper profile stages `single` letterboxed to 640 x 640, COCO's own
resolution (its longest sides are 640 px: EU-RL states no image size, and its agents and
DeepMask cut 224 px crops from the image, so a small object keeps its pixels), and
`detection` as Rao et al. do after Detectron: shorter side 800, longer side at most 1333;
the small profiles stage both letterboxed to one `image_size`.

- `single` (EU-RL Section 4.1, "subset D"): images with exactly one non-crowd
  annotation whose box is at least `min_object` pixels on both sides (crowd regions are
  ignored). Each sample: the image, the object's mask and box in that frame. The split
  is the paper's, drawn from D itself (train2017 and val2017 pooled): 9,334 training and
  4,694 test images; where D holds more than 14,028 images a seeded draw of that many
  is split, where it holds fewer (synthetic profiles) the same proportions
  (`subset_d_split`, seed `split_seed`). `val` is the paper's test part.
- `detection` (the policy-gradient detector's train/val, train2017 -> train, val2017 ->
  val): every image with at least one non-crowd annotation, with all its boxes; crowd
  regions stay as boxes flagged `iscrowd` (COCO evaluation ignores detections matched to
  them). Next to the shards, `val_gt.json` is the staged val split as a COCO
  ground-truth file in the detection frame's pixels (each image's staged height and
  width), the file the detection evaluation scores against. Areas are scaled with the
  image (`* scale**2`), so APs/APm/APl's 32^2 and 96^2 thresholds apply to staged pixels
  (COCO's own evaluation applies them to source pixels). With `resize: shorter` images
  differ in size: a split then loads as a list of images (`datasets._common`).
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

from datasets import coco_frames, coco_synth
from datasets._common import (
    manifest_header,
    read_image,
    read_json,
    require_dir,
    stage_subsets,
    under,
)
from datasets._images import INSTANCE_PALETTE, chw, draw_boxes, hwc, overlay
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
    "paper": {"root": "coco", "min_object": 32, "cache": False, "single": {"image_size": 640},
              "detection": {"image_size": 800, "resize": "shorter", "max_size": 1333}},
}
FIELDS = {
    "single": {
        "image": "uint8 [3,{hw}] {frame} RGB",
        "mask": "bool [{hw}] the object's mask",
        "box": "float32 [4] x0,y0,x1,y1 in staged pixels",
        "category": "int64 [] category id",
        "image_id": "int64 [] COCO image id",
    },
    "detection": {
        "image": "uint8 [3,{hw}] {frame} RGB",
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
        return checked_image(path, (info.get("height"), info.get("width")))

    def mask(self, ann: dict) -> np.ndarray:
        """The annotation's binary mask at the image's size (polygons or RLE)."""
        info = self.info(ann["image_id"])
        return ann_mask(ann["segmentation"], info["height"], info["width"],
                        f"{self.annotation_file} (annotation {ann.get('id')})")


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
    keys = sorted(keys)
    ranked = [keys[i] for i in order]
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


def ann_mask(segmentation, h: int, w: int, where: str) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or compressed RLE) as an h x w bool mask, as
    pycocotools' `COCO.annToMask` decodes it."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
        elif isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, h, w)
        else:
            rle = dict(segmentation)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode()
        return mask_utils.decode(rle).astype(bool)
    except Exception as exc:  # pycocotools raises bare exceptions on bad segmentations
        raise DataError(where, f"malformed segmentation: {exc}", LAYOUT) from None


_LAST: dict = {}


def _pixels(path: Path, hw: list[int], frame: tuple) -> torch.Tensor:
    """The image at `path` decoded, checked against its annotated size and put in
    `frame` (`coco_frames.to_frame`'s arguments); the last image is kept with each frame
    it was put in (an image of both subsets is decoded once, even in two frames)."""
    if _LAST.get("path") != str(path):
        _LAST.clear()
        _LAST.update(path=str(path), source=checked_image(path, hw), frames={})
    if frame not in _LAST["frames"]:
        _LAST["frames"][frame] = chw(coco_frames.to_frame(_LAST["source"], *frame))
    return _LAST["frames"][frame]


def checked_image(path: Path, hw) -> np.ndarray:
    """The decoded RGB image at `path`, checked against its annotated (height, width)."""
    pixels = read_image(path, LAYOUT)
    if None not in tuple(hw) and pixels.shape[:2] != tuple(hw):
        raise DataError(path, f"size {pixels.shape[:2]} differs from its annotation's "
                        f"height x width {tuple(hw)}", LAYOUT)
    return pixels


def _subset(record: dict) -> str:
    """The subset a staged record belongs to (only `single` records carry a mask)."""
    return "single" if "segmentation" in record else "detection"


def load_sample(record: dict, source: Path, manifest: dict) -> dict:
    """Decode one staged sample from its record (`datasets._index`): the image in its
    subset's frame (`manifest`, the subset's), with the `single` object's mask or the
    `detection` boxes."""
    path = under(Path(source), record["file"], LAYOUT)
    frame = (manifest.get("resize", "letterbox"), int(manifest["image_size"]),
             tuple(record["out_hw"]))
    image = _pixels(path, record["hw"], frame)
    image_id = torch.tensor(record["image_id"], dtype=torch.int64)
    if _subset(record) == "single":
        where = f"{path} (annotation {record.get('ann_id')})"
        mask = ann_mask(record["segmentation"], *record["hw"], where)
        return {"image": image, "mask": torch.from_numpy(coco_frames.to_frame(mask, *frame)),
                "box": torch.tensor(record["box"], dtype=torch.float32),
                "category": torch.tensor(record["category"], dtype=torch.int64),
                "image_id": image_id}
    return {"image": image,
            "boxes": torch.tensor(record["boxes"], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(record["labels"], dtype=torch.int64),
            "iscrowd": torch.tensor(record["iscrowd"], dtype=torch.uint8),
            "areas": torch.tensor(record["areas"], dtype=torch.float32),
            "image_id": image_id}


def _image_hw(reader: CocoReader, image_id: int) -> list[int]:
    """The image's height and width from its annotation entry, else from the file's
    header (no decode)."""
    info = reader.info(image_id)
    if isinstance(info.get("height"), int) and isinstance(info.get("width"), int):
        return [info["height"], info["width"]]
    from PIL import Image

    path = under(reader.image_dir, info.get("file_name"), LAYOUT)
    try:
        with Image.open(path) as im:
            return [im.height, im.width]
    except OSError as exc:
        raise DataError(path, f"damaged or not an image ({exc.__class__.__name__})",
                        LAYOUT) from None


def _rows(root: Path, cfg: dict, frames: dict[str, dict],
          val_gt: dict) -> Iterator[tuple[str, str, str, dict]]:
    """(subset, split, file, record) of both subsets (`datasets._index` records, annotations
    in the subset's frame of `frames`); fills `val_gt` (a COCO ground-truth dict) with the
    val records. Subset D's images are re-split into the paper's train/val
    (`subset_d_split`)."""
    min_object = int(cfg.get("min_object", 32))
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
            hw = _image_hw(reader, image_id)
            det, scale = coco_frames.framed(file, image_id, hw, frames["detection"])
            det.update(coco_frames.detection_record(anns, scale))
            yield "detection", split, file, det
            if split == "val":
                entry, gt = coco_frames.gt_entries(det, info["file_name"],
                                                   len(val_gt["annotations"]) + 1)
                val_gt["images"].append(entry)
                val_gt["annotations"] += gt
            if (split, image_id) in d_split:
                (ann,) = [a for a in anns if not a.get("iscrowd", 0)]
                single, scale = coco_frames.framed(file, image_id, hw, frames["single"])
                yield "single", d_split[(split, image_id)], file, {
                    **single, **coco_frames.single_record(ann, scale)}


def synth(root: Path, cfg: dict, seed: int) -> None:
    """Write synthetic COCO (official layout) under `root`."""
    coco_synth.write(Path(root), cfg, seed)


def _fields(subset: str, frame: dict) -> dict:
    """The subset's field descriptions, the image's and mask's shape named by its frame."""
    words = ({"hw": "S,S", "frame": "letterboxed"} if frame["resize"] == "letterbox" else
             {"hw": "H,W", "frame": "shorter-side-resized"})
    return {k: v.format(**words) for k, v in FIELDS[subset].items()}


def stage(root: Path, out: Path, cfg: dict) -> dict[str, dict]:
    """Stage `single` and `detection` of `root` into `out/<subset>/` in one pass (plus
    `out/detection/val_gt.json`), each subset in its own frame (`coco_frames`);
    returns {subset: manifest}."""
    root = Path(root)
    frames = {s: coco_frames.subset_frame(cfg, s, root) for s in SUBSETS}
    header = manifest_header(NAME, root, cfg)
    selection = {
        "single": f"exactly one non-crowd annotation, box >= {cfg.get('min_object', 32)} px; "
                  f"train2017 and val2017 pooled, split as EU-RL's 9334 / 4694 (proportions "
                  f"when fewer; split_seed {cfg.get('split_seed', 0)})",
        "detection": "at least one non-crowd annotation; crowd regions kept as boxes "
                     "flagged iscrowd"}
    metas = {s: {**header, **frames[s], "coordinates": coco_frames.coordinates(frames[s]),
                 "subset": s, "fields": _fields(s, frames[s]), "selection": selection[s],
                 **({"val_gt": VAL_GT} if s == "detection" else {})} for s in SUBSETS}
    val_gt = {"info": {"description": f"staged val split of {root} "
                                      f"({coco_frames.label(frames['detection'])})"},
              "images": [], "annotations": [], "categories": []}

    def write_gt(folder: Path) -> None:
        rio.write_text(folder / "detection" / VAL_GT, json.dumps(val_gt))

    def decode(record: dict) -> dict:
        return load_sample(record, root, metas[_subset(record)])

    return stage_subsets(Path(out), metas, _rows(root, cfg, frames, val_gt),
                         int(cfg.get("shard_size", 256)), write_gt,
                         cache=bool(cfg.get("cache", True)), decode=decode)


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
