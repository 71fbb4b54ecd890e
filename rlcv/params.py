"""params.yaml: the profile, the seeds and the per-dataset / per-method settings.

Layout (flat, one entry per dataset and per method row)::

    profile: smoke            # smoke (default) | ci (tiny, for tests) | paper (real data, GPU)
    seeds: [0, 1, 2]
    real_data_root: null      # the `paper` profile's data root; RLCV_DATA overrides it
    datasets:
      coco:
        config: {...}         # settings shared by all profiles
        ci: {...}             # sizes for the ci profile
        smoke: {...}
        paper: {...}
    methods:
      <row>: {config: {...}, ci: {...}, smoke: {...}, paper: {...}}

A section's effective settings are `config` updated with the active profile's block.
Only sizes and data roots belong in the profile blocks.

Checked on use: a method's budget (`steps`, `*_steps`, `episodes`, `batch_size`) set in
any profile block must be set for the active profile too (never a dataclass default a
hundred times the ci value); a synthetic profile's dataset block must name every key the
other synthetic profile's names; sizes, counts and budgets are positive integers, seeds
and other integers >= 0, learning rates > 0, numbers finite, fractions in [0, 1).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlcv.errors import ParamsError

PROFILES = ("ci", "smoke", "paper")

_BUDGET = re.compile(r"^(steps|episodes|batch_size|(?!max_|table_)\w+_steps)$")
"""Method settings that must be given for the active profile when any profile gives them."""
_POSITIVE = re.compile(r"(^|_)(steps|episodes|batch|batch_size|size|width|hidden|channels|"
                       r"t_max|images|stacks|layers|depth|proposals|replay|every|hw|"
                       r"train|val|test|valid|people|cars|object|leaves)$|^(n|num)_")
"""Integer settings that must be >= 1 (sizes, counts, budgets); other integers >= 0."""
_MAY_BE_ZERO = {"eval_every", "table_steps"}   # 0 = no evaluation / the untrained model


@dataclass
class Params:
    """The parsed params.yaml with the active profile resolved."""

    raw: dict
    path: Path

    @property
    def profile(self) -> str:
        return self.raw["profile"]

    @property
    def seeds(self) -> list[int]:
        return list(self.raw["seeds"])

    @property
    def synthetic(self) -> bool:
        """True for the profiles that run on the synthetic datasets (all but `paper`)."""
        return self.profile != "paper"

    def _section(self, kind: str, name: str) -> dict:
        entries = self.raw.get(kind) or {}
        if name not in entries:
            raise ParamsError(f"{self.path}: no entry {kind}.{name}")
        entry = entries[name] or {}
        merged = dict(entry.get("config") or {})
        merged.update(entry.get(self.profile) or {})
        if kind == "methods":
            given = {k for p in PROFILES for k in (entry.get(p) or {}) if _BUDGET.match(k)}
        elif self.profile in ("ci", "smoke"):
            other = "smoke" if self.profile == "ci" else "ci"
            given = set(entry.get(other) or {})
        else:
            given = set()
        missing = sorted(given - set(merged))
        if missing:
            raise ParamsError(f"{self.path}: {kind}.{name}.{self.profile} does not set "
                              f"{', '.join(missing)} (set for another profile; a default "
                              "would silently change the scale)")
        for key, value in merged.items():
            check_number(key, value, f"{self.path}: {kind}.{name}.{key}")
        return merged

    def dataset(self, name: str) -> dict:
        """Effective settings of dataset `name` under the active profile (validated)."""
        return self._section("datasets", name)

    def method(self, row: str) -> dict:
        """Effective settings of method row `row` under the active profile (validated)."""
        return self._section("methods", row)

    @property
    def dataset_names(self) -> list[str]:
        return list((self.raw.get("datasets") or {}).keys())

    @property
    def method_names(self) -> list[str]:
        return list((self.raw.get("methods") or {}).keys())

    def real_root(self) -> Path:
        """Root of the real datasets (`paper` profile): $RLCV_DATA, else params.yaml."""
        root = os.environ.get("RLCV_DATA") or self.raw.get("real_data_root")
        if not root:
            raise ParamsError(
                "the paper profile reads the real datasets: set RLCV_DATA (or real_data_root "
                "in params.yaml) to the folder that holds them; README.md shows the layout"
            )
        return Path(root)


def load(path: str | Path | None = None) -> Params:
    """Read and validate params.yaml (default: $RLCV_PARAMS or ./params.yaml)."""
    path = Path(path or os.environ.get("RLCV_PARAMS") or "params.yaml")
    if not path.is_file():
        raise ParamsError(f"{path}: not found (run rlcv from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise ParamsError(f"{path}{where}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    override = os.environ.get("RLCV_PROFILE")
    if override:
        raw["profile"] = override
    raw.setdefault("profile", "smoke")
    if raw["profile"] not in PROFILES:
        raise ParamsError(f"{path}: profile {raw['profile']!r} is not one of {', '.join(PROFILES)}")
    seeds = raw.setdefault("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ParamsError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    for kind in ("datasets", "methods"):
        for name, entry in (raw.get(kind) or {}).items():
            if entry is None:
                continue
            if not isinstance(entry, dict):
                raise ParamsError(f"{path}: {kind}.{name} must be a mapping")
            bad = set(entry) - {"config", *PROFILES}
            if bad:
                raise ParamsError(
                    f"{path}: {kind}.{name} has unknown keys {sorted(bad)}; "
                    f"allowed: config, {', '.join(PROFILES)}"
                )
    return Params(raw=raw, path=path)


def check_number(key: str, value, where: str) -> None:
    """Range-check one setting by its name (see the module docstring); lists item-wise."""
    if isinstance(value, list | tuple):
        for v in value:
            check_number(key, v, where)
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{where}: must be a finite number, got {value!r}")
    if key.endswith("fraction") and not 0 <= value < 1:
        raise ParamsError(f"{where}: must be in [0, 1), got {value!r}")
    if (key == "lr" or key.endswith("_lr")) and value <= 0:
        raise ParamsError(f"{where}: a learning rate must be > 0, got {value!r}")
    if key == "jpeg_quality" and not 1 <= value <= 100:
        raise ParamsError(f"{where}: must be in 1..100, got {value!r}")
    if isinstance(value, int):
        low = 1 if _POSITIVE.search(key) and key not in _MAY_BE_ZERO else 0
        if value < low:
            raise ParamsError(f"{where}: must be an integer >= {low}, got {value!r}")


def build_config(cls, values: dict, where: str):
    """Instantiate dataclass `cls` from `values`, with one-line errors for bad keys/types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ParamsError(
            f"{where}: unknown settings {sorted(unknown)}; known: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    clean = {}
    for key, value in values.items():
        clean[key] = _coerce(value, hints.get(key), f"{where}.{key}")
        check_number(key, clean[key], f"{where}.{key}")
    return cls(**clean)


def _coerce(value, hint, where):
    """Accept YAML's spellings (1e-3 as a string, ints for floats) and reject wrong types."""
    origin = typing.get_origin(hint)
    if hint is float:
        if isinstance(value, bool):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ParamsError(f"{where}: expected a number, got {value!r}") from None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        inner = args[0] if args else None
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    return value
