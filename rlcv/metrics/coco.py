"""COCO detection and instance-segmentation AP: a thin, quiet wrapper of pycocotools.

Reference followed: Lin et al., "Microsoft COCO", ECCV 2014, and its official evaluator
`pycocotools.cocoeval.COCOeval` (v2.0.x), called unchanged: `evaluate()`,
`accumulate()`, `summarize()`; the six AP numbers are `stats[0:6]` (AP@[.5:.95],
AP50, AP75, AP small/medium/large, maxDets 100). pycocotools' conventions are kept:
-1 for a number that has no ground truth (e.g. APl without large objects).

The wrapper only (a) builds the COCO objects from in-memory dicts instead of files,
(b) copies the inputs so pycocotools' in-place edits never reach the caller,
(c) evaluates an empty detection list (which `COCO.loadRes` cannot load) as a result
set with no annotations, and (d) silences pycocotools' printing.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _coco(dataset: dict) -> COCO:
    c = COCO()
    c.dataset = dataset
    c.createIndex()
    return c


def coco_eval(gt: dict, dt: Sequence[dict], iou_type: str = "bbox",
              img_ids: Sequence[int] | None = None) -> dict[str, float]:
    """COCO AP, AP50, AP75, APs, APm, APl (fractions; -1 where undefined).

    `gt`: a COCO-format dict (`images`, `annotations`, `categories`); `dt`: a list of
    result dicts (`image_id`, `category_id`, `score` and `bbox` [x, y, w, h] or
    `segmentation` RLE/polygons). `iou_type`: 'bbox' or 'segm'. `img_ids` restricts
    the evaluation to those images (default: all images of `gt`).
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type: expected 'bbox' or 'segm', got {iou_type!r}")
    if not isinstance(gt, dict) or not all(k in gt for k in ("images", "annotations",
                                                             "categories")):
        raise ValueError("gt: expected a COCO-format dict with images, annotations, categories")
    if isinstance(dt, dict) or not all(isinstance(d, dict) for d in dt):
        raise ValueError("dt: expected a list of COCO result dicts")
    key = "bbox" if iou_type == "bbox" else "segmentation"
    for i, d in enumerate(dt):
        missing = [k for k in ("image_id", "category_id", "score", key) if k not in d]
        if missing:
            raise ValueError(f"dt[{i}]: missing {', '.join(missing)} for iou_type {iou_type!r}")
    known = {im["id"] for im in gt["images"]}
    unknown = {d["image_id"] for d in dt} - known
    if unknown:
        raise ValueError(f"dt: image ids not in gt: {sorted(unknown)[:5]}")
    gt_copy = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco(gt_copy)
        if dt:
            coco_dt = coco_gt.loadRes([dict(d) for d in dt])
        else:
            coco_dt = _coco({"images": list(gt["images"]), "categories": list(gt["categories"]),
                             "annotations": []})
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            ev.params.imgIds = list(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats[:6], strict=True)}
