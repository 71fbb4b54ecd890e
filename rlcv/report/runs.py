"""Read the runs the report is made from, all before anything is written.

`results/runs/<row>-<seed>/metrics.json` gives each table row its per-seed values (in the
metric's stored units, a fraction for a percentage), the data the row ran on and the run
it came from; `history.csv` gives the training curves. Every file is checked here, so a
damaged one stops the report with one line before any output is touched: metrics.json
must be JSON with numeric metrics inside their range (a percentage's fraction in [0, 1]);
a NaN value is kept (the table shows it and no claim is judged from it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rlcv.errors import RlcvError
from rlcv.report.data import TableSpec

if TYPE_CHECKING:
    from rlcv.params import Params


@dataclass
class RowRuns:
    """One table row's results: metric -> {seed: value}, and where they came from."""
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)
    """Registry rows (run names) whose metrics.json filled this table row."""
    data: set[str] = field(default_factory=set)
    """Staged data the runs used, e.g. {'coco/single'}."""
    files: dict[str, str] = field(default_factory=dict)
    """metrics.json path -> sha256 of its bytes."""
    seeds: set[int] = field(default_factory=set)
    weights: set[str] = field(default_factory=set)
    """Pretrained weights the runs started from ("none": random init), as recorded."""
    twins: set[str] = field(default_factory=set)
    """Rows whose runs these are (copied: the same settings on this profile, rlcv.twins)."""


def _load_json(path: Path) -> dict:
    try:
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RlcvError(f"{path}: not a readable metrics.json ({exc.__class__.__name__})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict):
        raise RlcvError(f"{path}: expected a JSON object with a 'metrics' mapping")
    return rec


def _number(path: Path, key: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise RlcvError(f"{path}: metric {key} = {v!r} is not a number")
    return float(v)


def check_range(path: Path, key: str, value: float, spec: TableSpec, metric: str) -> None:
    """Refuse a value outside the metric's range (NaN passes: it is shown as such)."""
    try:
        m = spec.metric(metric)
    except KeyError:
        return
    lo, hi = m.bounds
    if not math.isnan(value) and not lo <= value <= hi:
        raise RlcvError(f"{path}: metric {key} = {value!r} is outside its range "
                        f"[{lo:g}, {hi:g}] ({spec.id} {m.name})")


def collect(params, results: Path, specs: dict[str, TableSpec]
            ) -> tuple[dict[tuple[str, str], RowRuns], dict[str, set[int]]]:
    """(table id, row label) -> RowRuns, and run name -> seeds read, from the runs of
    the active profile and seeds."""
    import methods

    out: dict[tuple[str, str], RowRuns] = {}
    seen: dict[str, set[int]] = {}
    wanted = set(params.method_names)
    for path in sorted((Path(results) / "runs").glob("*/metrics.json")):
        rec = _load_json(path)
        if (rec.get("profile") != params.profile or rec.get("seed") not in params.seeds
                or rec.get("row") not in wanted or rec.get("row") not in methods.METHODS):
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        seen.setdefault(rec["row"], set()).add(rec["seed"])
        for tid, label in methods.METHODS[rec["row"]].tables.items():
            for key, v in rec["metrics"].items():
                value = _number(path, key, v)
                # "metric@Label" reports under another row label of the same tables
                metric, _, other = key.partition("@")
                if other and tid in specs and other not in specs[tid].rows:
                    continue   # a row in several tables: "@Label" fills only those listing it
                if tid in specs:
                    check_range(path, key, value, specs[tid], metric)
                slot = out.setdefault((tid, other or label), RowRuns())
                slot.metrics.setdefault(metric, {})[rec["seed"]] = value
                slot.runs.add(rec["row"])
                slot.data.add(str(rec.get("dataset", "")))
                slot.files[path.as_posix()] = digest
                slot.seeds.add(rec["seed"])
                if rec.get("weights"):
                    slot.weights.add(str(rec["weights"]))
                if rec.get("same_runs_as"):
                    slot.twins.add(str(rec["same_runs_as"]))
    return out, seen


def step_curves(results: Path, row: str, params: Params, key: str, first: int = 0
                ) -> np.ndarray:
    """A per-step metric a row's evaluation recorded, as (seeds, steps): the values of
    `key.format(t=t)` for t = first, first + 1, ... while present, from each seed's
    metrics.json of the active profile (seeds without one are left out), cut to the
    steps every seed has. Family figures draw these instead of re-running the models."""
    curves = []
    for seed in params.seeds:
        path = Path(results) / "runs" / f"{row}-{seed}" / "metrics.json"
        if not path.is_file():
            continue
        rec = _load_json(path)
        if rec.get("profile") != params.profile:
            continue
        curve, m = [], rec["metrics"]
        while key.format(t=first + len(curve)) in m:
            k = key.format(t=first + len(curve))
            curve.append(_number(path, k, m[k]))
        if curve:
            curves.append(curve)
    n = min((len(c) for c in curves), default=0)
    return np.array([c[:n] for c in curves], dtype=np.float64).reshape(len(curves), n)


def histories(results: Path, runs: dict[str, list[int]]) -> dict[str, dict[int, pd.DataFrame]]:
    """row -> seed -> history.csv of the runs given (row -> seeds); empty ones left out."""
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for row, seeds in sorted(runs.items()):
        for seed in sorted(seeds):
            path = Path(results) / "runs" / f"{row}-{seed}" / "history.csv"
            if not path.exists():
                continue
            df = read_history(path)
            if len(df):
                out.setdefault(row, {})[seed] = df
    return out


def read_history(path: Path) -> pd.DataFrame:
    """history.csv checked: a `step` column of numbers, every line as wide as the header."""
    try:
        text = path.read_text()
        lines = list(csv.reader(io.StringIO(text)))
        widths = {len(ln) for ln in lines if ln}
        df = pd.read_csv(io.StringIO(text), index_col=False) if len(widths) == 1 else None
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise RlcvError(f"{path}: not a readable history.csv ({exc.__class__.__name__})") from None
    if not widths:
        return pd.DataFrame()
    bad = df is None or "step" not in df.columns or \
        pd.to_numeric(df["step"], errors="coerce").isna().any()
    if bad:
        raise RlcvError(f"{path}: not a readable history.csv (expected a header with `step` "
                        "and one numeric step per line, every line as wide as the header)")
    return df


def fingerprint(files: dict[str, str]) -> str:
    """A short hash of the runs (metrics.json path and content) a table was made from."""
    if not files:
        return "no runs"
    h = hashlib.sha256()
    for path, digest in sorted(files.items()):
        h.update(f"{path}\0{digest}\n".encode())
    return "runs " + h.hexdigest()[:12]


def git_commit(root: Path = Path(".")) -> str:
    """The checkout's commit (short), '+dirty' when tracked files differ; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=20, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "--", ".", ":(exclude)results", ":(exclude)dvc.lock"],
                               cwd=root, text=True, capture_output=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")
