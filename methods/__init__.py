"""The method registry: one dict of every row the suite can produce (DESIGN.md).

Adding a row = a module (or an entry in a family module) defining `train` and
`evaluate`, one `Row` here, and one `methods.<name>` entry in params.yaml. Rows name
their functions as "module:attribute" strings, imported on first use, so running one
row imports only its own family.
"""

from __future__ import annotations

from rlcv.errors import unknown_name
from rlcv.registry import Row

METHODS: dict[str, Row] = {
    "gt-bbox-deepmask": Row(
        name="gt-bbox-deepmask",
        tables={"eu-rl-table1": "GT Bbox-Deepmask"},
        data="coco/single",
        config="methods.deepmask:DeepMaskConfig",
        train="methods.deepmask:train_gt_bbox",
        evaluate="methods.deepmask:evaluate",
        code=("rlcv/models/crops.py", "rlcv/models/segnet.py"),
    ),
    "finetune-deepmask": Row(
        name="finetune-deepmask",
        tables={"eu-rl-table1": "Finetune-Deepmask"},
        data="coco/single",
        config="methods.deepmask:DeepMaskConfig",
        train="methods.deepmask:train_finetune",
        evaluate="methods.deepmask:evaluate",
        requires=("gt-bbox-deepmask",),
        code=("rlcv/models/crops.py", "rlcv/models/segnet.py"),
    ),
}


def get(name: str) -> Row:
    """The row called `name`; an unknown name lists the known ones."""
    if name not in METHODS:
        raise unknown_name("row", name, METHODS)
    return METHODS[name]
