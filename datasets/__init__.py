"""The seven datasets, one module each (DESIGN.md, "A dataset module").

Every module defines:

    NAME: str                   the dataset name used by `rlcv synth/stage NAME`
    SUBSETS: tuple[str, ...]    the staged subsets it writes (data/staged/NAME/<subset>/)
    LAYOUT: str                 one paragraph: the official on-disk layout it reads
    synth(root, cfg, seed)      write a synthetic dataset in exactly that layout under root
    stage(root, out, cfg)       read the official layout at root (synthetic or real), select
                                the papers' subsets/splits, write out/<subset>/ (shards +
                                manifest.json) via datasets._common.stage_subsets;
                                returns {subset: manifest}
    draw(sample) -> HxWx3 uint8 one staged sample with its labels drawn over it (contact sheet)

Shared code: `_common` (file reading, shards, manifests: stage_subset / stage_subsets),
`_images` (resizing, letterboxing, label maps, drawing), `_scenes` (the synthetic street
and scene layouts of ADE20K, Cityscapes and PASCAL-Context). No dataset module imports another one.

`cfg` is the dataset's params.yaml entry for the active profile (a plain dict).
A reader given a wrong root, a missing file, a damaged image or malformed annotations
raises `rlcv.errors.DataError` naming the file and the layout it expected.
"""

from __future__ import annotations

import importlib

from rlcv.errors import unknown_name

NAMES = ("coco", "mpii", "cvppp", "kitti", "ade20k", "cityscapes", "pascal_context")


def get(name: str):
    """The dataset module called `name`; an unknown name lists the known ones."""
    if name not in NAMES:
        raise unknown_name("dataset", name, NAMES)
    try:
        return importlib.import_module(f"datasets.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"datasets.{name}":
            raise unknown_name("dataset", name, available()) from None
        raise


def available() -> list[str]:
    """Names of the dataset modules present in this checkout."""
    out = []
    for name in NAMES:
        try:
            importlib.import_module(f"datasets.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"datasets.{name}":
                raise
            continue
        out.append(name)
    return out
