"""Cityscapes pixel-level semantic labelling: IoU and iIoU per class and per category.

Reference followed: Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene
Understanding", CVPR 2016, Section 3.2, as implemented by the official
`cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling` (v2.x), whose numbers
CiSS-Net reports (IoU_cls, iIoU_cls, IoU_cat, iIoU_cat). Inputs are label *ids* (0..33,
not train ids), as the official script reads them from `*_labelIds.png`; instance ids
are `*_instanceIds.png` values (label_id * 1000 + k for instances).

Exactly as the script:
- one 34 x 34 confusion matrix over all label ids (ignored ones included);
- class IoU = TP / (TP + FP + FN) where FP counts only pixels whose ground truth is an
  evaluated (not `ignoreInEval`) class, and FN every pixel of the class predicted as
  anything else (ignored ids included); NaN for ignored classes or an empty denominator;
- iIoU (instance-weighted, classes with instances only): TP and FN of each ground-truth
  instance (instance id > 1000, its label evaluated) are weighted by
  avg_class_size[class] / instance size, FP is the unweighted one above;
- category IoU pools the evaluated classes of the category (TP = any of them predicted
  as any of them, FP from evaluated pixels of other categories); category iIoU exists
  for the categories whose classes all have instances ('human', 'vehicle'), with the
  category's class list *including* its ignored classes (caravan, trailer), as the
  script does;
- averages are means over the non-NaN entries.

Streaming: `CityscapesAccumulator.update(pred, gt, gt_instances)` per image (or batch),
then `compute()`; the state is the confusion matrix plus per-class and per-category
weighted TP/FN sums, so any number of images costs constant memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from rlcv.metrics._checks import label_map, same_shape
from rlcv.metrics.masks import bincount

# (name, category, hasInstances, ignoreInEval) for label ids 0..33 (cityscapesscripts
# helpers/labels.py; id -1 'license plate' never appears in the id images).
LABELS: tuple[tuple[str, str, bool, bool], ...] = (
    ("unlabeled", "void", False, True), ("ego vehicle", "void", False, True),
    ("rectification border", "void", False, True), ("out of roi", "void", False, True),
    ("static", "void", False, True), ("dynamic", "void", False, True),
    ("ground", "void", False, True), ("road", "flat", False, False),
    ("sidewalk", "flat", False, False), ("parking", "flat", False, True),
    ("rail track", "flat", False, True), ("building", "construction", False, False),
    ("wall", "construction", False, False), ("fence", "construction", False, False),
    ("guard rail", "construction", False, True), ("bridge", "construction", False, True),
    ("tunnel", "construction", False, True), ("pole", "object", False, False),
    ("polegroup", "object", False, True), ("traffic light", "object", False, False),
    ("traffic sign", "object", False, False), ("vegetation", "nature", False, False),
    ("terrain", "nature", False, False), ("sky", "sky", False, False),
    ("person", "human", True, False), ("rider", "human", True, False),
    ("car", "vehicle", True, False), ("truck", "vehicle", True, False),
    ("bus", "vehicle", True, False), ("caravan", "vehicle", True, True),
    ("trailer", "vehicle", True, True), ("train", "vehicle", True, False),
    ("motorcycle", "vehicle", True, False), ("bicycle", "vehicle", True, False),
)
NUM_IDS = len(LABELS)
CATEGORIES = ("void", "flat", "construction", "object", "nature", "sky", "human", "vehicle")

AVG_CLASS_SIZE: dict[str, float] = {
    "bicycle": 4672.3249222261, "caravan": 36771.8241758242, "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518, "bus": 35732.1511111111, "train": 67583.7075812274,
    "car": 12794.0202738185, "person": 3462.4756337644, "truck": 27855.1264367816,
    "trailer": 16926.9763313609,
}
"""Mean instance size per class over the training set: the iIoU weights' numerator
(cityscapesscripts `args.avgClassSize`)."""

_EVAL = torch.tensor([not ig for _, _, _, ig in LABELS])
_CAT_OF = torch.tensor([CATEGORIES.index(c) for _, c, _, _ in LABELS])
# categories with instance stats: every (id >= 0) label of the category has instances
_INST_CATS = tuple(c for c in CATEGORIES
                   if all(h for _, cc, h, _ in LABELS if cc == c))
_INST_CAT_IDS = {c: [i for i, (_, cc, _, _) in enumerate(LABELS) if cc == c]
                 for c in _INST_CATS}
_HAS_INST = torch.tensor([h for _, _, h, _ in LABELS])
# _IN_INST_CAT[k, i]: label id i belongs to instance category k (all False otherwise)
_IN_INST_CAT = torch.zeros(len(CATEGORIES), NUM_IDS, dtype=torch.bool)
for _c, _ids in _INST_CAT_IDS.items():
    _IN_INST_CAT[CATEGORIES.index(_c), _ids] = True


class CityscapesAccumulator:
    """Streams images into the Cityscapes IoU / iIoU statistics (see module docstring)."""

    def __init__(self, avg_class_size: dict[str, float] | None = None) -> None:
        sizes = dict(AVG_CLASS_SIZE if avg_class_size is None else avg_class_size)
        missing = [n for n, _, h, ig in LABELS if h and not ig and n not in sizes]
        if missing:
            raise ValueError(f"avg_class_size: missing classes {', '.join(missing)}")
        self.avg_size = torch.tensor([sizes.get(n, float("nan")) for n, _, _, _ in LABELS],
                                     dtype=torch.float64)
        self.conf = torch.zeros(NUM_IDS, NUM_IDS, dtype=torch.long)
        self.tp_w = torch.zeros(NUM_IDS, dtype=torch.float64)
        self.fn_w = torch.zeros(NUM_IDS, dtype=torch.float64)
        self.cat_tp_w = torch.zeros(len(CATEGORIES), dtype=torch.float64)
        self.cat_fn_w = torch.zeros(len(CATEGORIES), dtype=torch.float64)
        self.has_instances = False

    def update(self, pred: torch.Tensor, gt: torch.Tensor,
               gt_instances: torch.Tensor | None = None) -> None:
        """Add images: label-id maps `pred`, `gt` and the instance-id map, `(..., H, W)`.

        Without `gt_instances` only the IoU statistics are updated; give instances for
        every image or for none (iIoU is NaN when no image had them).
        """
        p, g = label_map(pred, "pred").cpu(), label_map(gt, "gt").cpu()
        same_shape(p, g)
        for name, t in (("pred", p), ("gt", g)):
            lo, hi = (int(v) for v in torch.aminmax(t)) if t.numel() else (0, 0)
            if lo < 0 or hi >= NUM_IDS:
                raise ValueError(f"{name}: Cityscapes label ids must lie in [0, {NUM_IDS - 1}], "
                                 f"got [{lo}, {hi}] (train ids given?)")
        flat = torch.add(p, g, alpha=NUM_IDS).reshape(-1)
        self.conf += bincount(flat, minlength=NUM_IDS * NUM_IDS).view(NUM_IDS, NUM_IDS)
        if gt_instances is not None:
            inst = label_map(gt_instances, "gt_instances").cpu()
            same_shape(p, inst, "pred and gt_instances")
            self._add_instances(p.reshape(-1, p.shape[-2] * p.shape[-1]),
                                inst.reshape(-1, p.shape[-2] * p.shape[-1]))
            self.has_instances = True

    def _add_instances(self, p: torch.Tensor, inst: torch.Tensor) -> None:
        """Weighted TP/FN of every ground-truth instance of images `[B, HW]`."""
        b = p.shape[0]
        is_inst = inst > 1000  # the script's `instanceNp > 1000`
        if not bool(is_inst.any()):
            return
        # one compact index per (image, instance id); -1 collects the other pixels
        span = int(inst.max()) + 1
        key = torch.where(is_inst, torch.arange(b)[:, None] * span + inst, -1).reshape(-1)
        ukey, inv = torch.unique(key, return_inverse=True)
        n = ukey.numel()
        real = ukey >= 0
        label = torch.where(real, (ukey % span) // 1000, 0)
        if int(label.max()) >= NUM_IDS:
            raise ValueError(f"gt_instances: instance id {int(ukey.max() % span)} encodes a "
                             f"label id >= {NUM_IDS}")
        counted = real & _EVAL[label]
        if bool((counted & ~_HAS_INST[label]).any()):
            bad = int(label[counted & ~_HAS_INST[label]][0])
            raise ValueError(f"gt_instances: label id {bad} ({LABELS[bad][0]}) has no "
                             "instances in Cityscapes")
        size = bincount(inv, minlength=n).double()
        pf = p.reshape(-1)
        pix_label = label[inv]
        tp = bincount(inv, weights=(pf == pix_label).double(), minlength=n)
        cat_hit = _IN_INST_CAT[_CAT_OF[pix_label], pf].double()
        cat_tp = bincount(inv, weights=cat_hit, minlength=n)
        w = torch.where(counted, self.avg_size[label] / size, torch.zeros_like(size))
        self.tp_w.index_add_(0, label, tp * w)
        self.fn_w.index_add_(0, label, (size - tp) * w)
        cat = _CAT_OF[label]
        wc = torch.where(_IN_INST_CAT[cat].any(1), w, torch.zeros_like(w))
        self.cat_tp_w.index_add_(0, cat, cat_tp * wc)
        self.cat_fn_w.index_add_(0, cat, (size - cat_tp) * wc)

    def compute(self) -> dict[str, object]:
        """Scores: per-class / per-category dicts and their means (fractions in [0, 1]).

        Keys: `class_iou`, `class_iiou`, `category_iou`, `category_iiou` (name -> value,
        NaN when undefined) and `mean_class_iou`, `mean_class_iiou`,
        `mean_category_iou`, `mean_category_iiou` (the four numbers of the tables).
        """
        m = self.conf.double()
        ev = _EVAL
        evaluated_rows = m[ev].sum(0)  # column sums over evaluated ground truth
        tp = m.diagonal()
        fp = evaluated_rows - torch.where(ev, tp, torch.zeros_like(tp))
        fn = m.sum(1) - tp
        nan = float("nan")

        def ratio(a: torch.Tensor | float, b: torch.Tensor | float) -> float:
            den = float(a + b)
            return float(a) / den if den != 0 else nan

        class_iou, class_iiou = {}, {}
        for i, (name, _, has_inst, ignored) in enumerate(LABELS):
            if ignored:
                continue
            class_iou[name] = ratio(tp[i], fp[i] + fn[i])
            if has_inst:
                class_iiou[name] = (ratio(self.tp_w[i], fp[i] + self.fn_w[i])
                                    if self.has_instances else nan)
        category_iou, category_iiou = {}, {}
        for k, c in enumerate(CATEGORIES):
            ids = [i for i in range(NUM_IDS) if _CAT_OF[i] == k and ev[i]]
            others = ev & (_CAT_OF != k)
            if ids:
                sub = m[ids][:, ids].sum()
                cfn = m[ids].sum() - sub
                cfp = m[others][:, ids].sum()
                category_iou[c] = ratio(sub, cfp + cfn)
            if c in _INST_CATS:
                cfp = m[others][:, _INST_CAT_IDS[c]].sum()
                category_iiou[c] = (ratio(self.cat_tp_w[k], cfp + self.cat_fn_w[k])
                                    if self.has_instances else nan)

        def mean(d: dict[str, float]) -> float:
            vals = [v for v in d.values() if v == v]
            return sum(vals) / len(vals) if vals else nan

        return {"class_iou": class_iou, "class_iiou": class_iiou,
                "category_iou": category_iou, "category_iiou": category_iiou,
                "mean_class_iou": mean(class_iou), "mean_class_iiou": mean(class_iiou),
                "mean_category_iou": mean(category_iou),
                "mean_category_iiou": mean(category_iiou)}


def cityscapes_scores(preds: Iterable[torch.Tensor], gts: Iterable[torch.Tensor],
                      gt_instances: Iterable[torch.Tensor] | None = None,
                      avg_class_size: dict[str, float] | None = None) -> dict[str, object]:
    """Cityscapes IoU/iIoU over a stream of images (label-id maps; see the accumulator)."""
    acc = CityscapesAccumulator(avg_class_size)
    insts = iter(gt_instances) if gt_instances is not None else None
    for p, g in zip(preds, gts, strict=True):
        acc.update(p, g, next(insts) if insts is not None else None)
    return acc.compute()
