"""Every metric of the suite, one definition each (DESIGN.md, "Metrics").

No method computes its own score: they all report through these functions. Each module
names the reference it follows and is tested against it:

    masks.py       mask_iou, dice                 binary masks (both empty -> 1)
                   to_ground_truth                predictions to the ground truth's size
    cvppp.py       symmetric_best_dice, best_dice, fg_bg_dice, diff_fg_labels
                                                  CVPPP challenge code (|DiC| = abs)
    coverage.py    coverage, false_positive_negative
                                                  Ren & Zemel 2017 (MWCov, MUCov, AvgFP, AvgFN)
    sequence.py    dice_per_timestep, average_per_timestep
                                                  ACIS Fig. 3 (Hungarian max-Dice matching)
    coco.py        coco_eval                      pycocotools COCOeval (bbox, segm)
    image_ap.py    image_ap                       pycocotools AP of one image, batched subsets
    semantic.py    confusion_matrix, class_iou, miou, pixel_accuracy
                                                  ADE20K scene-parsing devkit (dataset level)
    cityscapes.py  CityscapesAccumulator, cityscapes_scores
                                                  cityscapesscripts IoU / iIoU, class + category
    pose.py        pckh, mpii_multi_person_ap     MPII toolkit (evaluatePCKh.m, evaluateAP.m)

All values are fractions (the report scales them to the papers' percentages); bad input
(shape, dtype, label range) raises a one-line `ValueError`.
"""

from rlcv.metrics.cityscapes import CityscapesAccumulator, cityscapes_scores
from rlcv.metrics.coco import coco_eval
from rlcv.metrics.coverage import coverage, false_positive_negative
from rlcv.metrics.cvppp import best_dice, diff_fg_labels, fg_bg_dice, symmetric_best_dice
from rlcv.metrics.image_ap import image_ap
from rlcv.metrics.masks import dice, instance_overlaps, mask_iou, to_ground_truth
from rlcv.metrics.pose import mpii_multi_person_ap, pckh
from rlcv.metrics.semantic import class_iou, confusion_matrix, miou, pixel_accuracy
from rlcv.metrics.sequence import average_per_timestep, dice_per_timestep

__all__ = [
    "CityscapesAccumulator", "average_per_timestep", "best_dice", "cityscapes_scores",
    "class_iou", "coco_eval", "confusion_matrix", "coverage", "dice", "dice_per_timestep",
    "diff_fg_labels", "false_positive_negative", "fg_bg_dice", "image_ap",
    "instance_overlaps", "mask_iou", "miou", "mpii_multi_person_ap", "pckh",
    "pixel_accuracy", "symmetric_best_dice", "to_ground_truth",
]
