"""The papers' numbers and claims, transcribed once from ../shared/papers/ as data.

`data/paper_numbers.csv` holds every published cell (paper, table, row, dataset,
metric, value); `data/tables.yaml` holds each table's title, metric columns, the rows
the suite reruns, and its qualitative claims in a checkable form (see claims.py).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parent / "data"


@dataclass
class Metric:
    id: str
    name: str
    unit: str = ""
    scale: float = 1.0
    higher_is_better: bool = True
    dataset: str = ""
    """Set when a table prints several datasets side by side."""
    resolution: float | None = None
    """Smallest difference worth showing, in paper units (default 0.1 for a percentage,
    0.01 otherwise): ours are printed to it, and half of it is the dead zone around a
    claim's boundary (claims.py)."""
    undefined: str = ""
    """Why a finished run may lack this metric (e.g. APl with no large object); shown as
    'undefined (<reason>)' in the cell."""
    range: list[float] | None = None
    """[low, high] of a stored value (default [0, 1] for a percentage, else [0, inf));
    a value outside is refused."""

    @property
    def step(self) -> float:
        return self.resolution or (0.1 if self.scale == 100 else 0.01)

    @property
    def digits(self) -> int:
        """Decimals that show a difference of `step`."""
        return max(0, -math.floor(math.log10(self.step) + 1e-9))

    @property
    def bounds(self) -> tuple[float, float]:
        if self.range is not None:
            return float(self.range[0]), float(self.range[1])
        return (0.0, 1.0) if self.scale == 100 else (0.0, math.inf)


@dataclass
class TableSpec:
    id: str
    paper: str
    table: str
    title: str
    source: str
    dataset: str
    metrics: list[Metric]
    reproduce: list[str]
    extra_rows: list[str] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    questions: list[dict] = field(default_factory=list)
    notes: str = ""
    figure: str | None = None
    pseudo: bool = False
    """No published cells (a figure's curves, or a table the suite defines itself)."""
    published: dict[str, dict[str, float]] = field(default_factory=dict)
    """Paper values: row label -> metric id -> value, in the paper's row order."""
    published_digits: dict[tuple[str, str], int] = field(default_factory=dict)
    """(row, metric) -> decimals the paper printed (1.08 -> 2)."""
    published_dataset: dict[tuple[str, str], str] = field(default_factory=dict)
    """(row, metric) -> the dataset column of paper_numbers.csv."""

    def metric(self, mid: str) -> Metric:
        for m in self.metrics:
            if m.id == mid:
                return m
        raise KeyError(f"{self.id}: no metric {mid!r}")

    @property
    def label(self) -> str:
        """'Table 1' or 'Figure 4'."""
        return f"Figure {self.figure}" if self.figure and self.table in ("None", "") else (
            f"Table {self.table}")

    @property
    def rows(self) -> list[str]:
        """Every row shown: the paper's rows in its order, then the suite's extra rows."""
        order = list(self.published)
        order += [r for r in self.reproduce if r not in order]
        order += [r for r in self.extra_rows if r not in order]
        return order


def load_tables(data_dir: Path = DATA) -> dict[str, TableSpec]:
    """All table specs with their published values attached, keyed by table id."""
    specs_path = data_dir / "tables.yaml"
    raw = yaml.safe_load(specs_path.read_text()) if specs_path.exists() else {}
    numbers: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    digits: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
    sets: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
    csv_path = data_dir / "paper_numbers.csv"
    if csv_path.exists():
        with csv_path.open(newline="") as f:
            for rec in csv.DictReader(f):
                key = (rec["paper"], str(rec["table"]))
                row = numbers.setdefault(key, {}).setdefault(rec["row"], {})
                row[rec["metric"]] = float(rec["value"])
                text = rec["value"].strip()
                digits.setdefault(key, {})[(rec["row"], rec["metric"])] = (
                    len(text.split(".")[1]) if "." in text else 0)
                sets.setdefault(key, {})[(rec["row"], rec["metric"])] = rec.get("dataset", "")
    out = {}
    for tid, spec in (raw or {}).items():
        metrics = [Metric(**m) for m in spec["metrics"]]
        dataset = spec.get("dataset", "")
        out[tid] = TableSpec(
            id=tid, paper=spec["paper"], table=str(spec.get("table") or ""), title=spec["title"],
            source=spec.get("source", ""),
            dataset=", ".join(dataset) if isinstance(dataset, list) else dataset,
            metrics=metrics, figure=str(spec["figure"]) if spec.get("figure") else None,
            pseudo=bool(spec.get("pseudo", False)),
            reproduce=list(spec.get("reproduce") or []),
            extra_rows=list(spec.get("extra_rows") or []),
            claims=list(spec.get("claims") or []), questions=list(spec.get("questions") or []),
            notes=spec.get("notes", ""),
            published=numbers.get((spec["paper"], str(spec["table"])), {}),
            published_digits=digits.get((spec["paper"], str(spec["table"])), {}),
            published_dataset=sets.get((spec["paper"], str(spec["table"])), {}),
        )
    return out
