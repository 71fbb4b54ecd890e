"""The method-row contract (DESIGN.md): what one entry of `methods.METHODS` declares."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One row of a paper table that a method can produce.

    `train(cfg, data, run) -> Path` trains on the staged data and returns the final
    checkpoint path; `evaluate(ckpt, data) -> dict` loads that checkpoint and returns
    metric values computed with `rlcv.metrics` only.

    `config`, `train` and `evaluate` may be given as `"module:attribute"` strings, imported
    on first use: the registry then costs nothing to import, and a process running one row
    imports only that row's family (torchvision alone takes ~1.3 s to import, and the
    pipeline starts ~300 `rlcv` processes).
    """

    name: str
    """Row id: the command-line name and the key in params.yaml `methods`."""
    tables: Mapping[str, str]
    """Report tables the row appears in, mapped to its label there (the paper's row name).
    A metric that `evaluate` returns as `"<metric>@<label>"` is reported under `<label>`
    instead (one evaluation filling several rows, e.g. CiSS-Net at steps 0, 2, 4, 6)."""
    data: str
    """Staged data it trains and evaluates on, `<dataset>/<subset>`, e.g. `coco/single`."""
    config: type | str
    """Dataclass of the row's settings; one docstring line per field."""
    train: Callable | str
    evaluate: Callable | str
    requires: tuple[str, ...] = ()
    """Rows whose same-seed checkpoints this row starts from (passed in `run.inputs`)."""
    code: tuple[str, ...] = field(default=())
    """Extra source paths the row depends on, beyond its module and the engine."""
    twin: str | None = None
    """A row whose runs this row's are wherever both are the same experiment on the active
    profile (same code and params, inputs the same rows or twins): `rlcv train` then
    copies them (rlcv.twins). EU-RL Table 2's chain is Table 3's on the small profiles."""

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if name in _LAZY and isinstance(value, str):
            module, _, attr = value.partition(":")
            value = getattr(importlib.import_module(module), attr)
        return value

    @property
    def dataset(self) -> str:
        return self.data.split("/")[0]

    @property
    def module_path(self) -> str:
        """Repository-relative path of the module that defines `train`."""
        path = Path(inspect.getfile(self.train)).resolve()
        root = Path(__file__).resolve().parents[1]
        return path.relative_to(root).as_posix()


_LAZY = frozenset({"config", "train", "evaluate"})
