"""The CiSS-Net rows of issue 20 on the ci profile, through the CLI: the controls row of
Tables 1 and 4 and Table 7's PASCAL-Context rows train, evaluate and reach their tables
(a synthetic-data header naming PASCAL-Context)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_rows, staged_ci_copy

import methods
from rlcv.report.data import load_tables

pytestmark = pytest.mark.slow   # stages two tiny datasets and runs five tiny rows: ~1 min

ROWS = ["ciss-baseline-ade20k", "ciss-net-ade20k", "ciss-controls-ade20k",
        "ciss-baseline-pascal-context", "ciss-net-pascal-context"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from rlcv.cli import main

    root = staged_ci_copy(tmp_path_factory.mktemp("ciss-repo"), "ade20k", "pascal_context",
                          seeds=[0])
    run_rows(root, ROWS)
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["report"]) == 0
    finally:
        os.chdir(old)
    return root


def _metrics(root, row):
    return json.loads((root / "results" / "runs" / f"{row}-0" / "metrics.json").read_text())


def test_every_reported_label_is_a_row_of_its_tables(trained):
    specs = load_tables()
    for row in ROWS:
        rec = _metrics(trained, row)["metrics"]
        tables = methods.METHODS[row].tables
        labels = {k.partition("@")[2] for k in rec if "@" in k}
        assert labels <= {lb for tid in tables for lb in specs[tid].rows}, row
        assert all(0.0 <= v <= 1.0 for v in rec.values()), row
    assert set(_metrics(trained, "ciss-net-pascal-context")["metrics"]) >= {"miou", "pixel_acc"}


def test_control_and_table7_rows_reach_the_tables(trained):
    tables = trained / "results" / "tables"
    for tid in ("ciss-net-table1", "ciss-net-table4"):
        md = (tables / f"{tid}.md").read_text()
        for label in ("Baseline+Bias Net (empty context)", "Baseline (same steps)"):
            line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label}"))
            assert "(n=1)" in line, (tid, line)
    md = (tables / "ciss-net-table7.md").read_text()
    assert "synthetic pascal_context written by `rlcv synth`" in md
    for label in ("CiSS-Net (Ours)", "Baseline (ours)"):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label}"))
        assert line.count("(n=1)") == 2, line
