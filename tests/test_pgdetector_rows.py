"""The eight policy-gradient detector rows (issue 8) on the ci profile, through the CLI
(their registry entries are checked in test_pgdetector.py):
checkpoints flow base -> fine-tuned -> soft-NMS variant, metrics are Table 1's ids, the
report's table code fills both tables and `figures` draws the Fig. 3 examples."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_checkpoint, run_rows

import methods
from rlcv.cli import main

pytestmark = pytest.mark.slow   # trains and evaluates eight rows (ci sizes): ~30-40 s

ROWS = ["pgdet-standard", "pgdet-standard-softnms", "pgdet-ohem", "pgdet-ours-g0",
        "pgdet-ours-g1", "pgdet-ours-g1-softnms", "pgdet-fpn-standard", "pgdet-fpn-ours-g1"]
METRIC_IDS = {"ap", "ap50", "ap75", "aps", "apm", "apl"}


@pytest.fixture(scope="module")
def trained(ci_coco):
    run_rows(ci_coco, ROWS)
    return ci_coco


def test_metrics_are_table_ids_as_fractions(trained):
    for row in ROWS:
        rec = json.loads((trained / "results" / "runs" / f"{row}-0" / "metrics.json").read_text())
        assert rec["metrics"] and set(rec["metrics"]) <= METRIC_IDS, rec["metrics"]
        assert all(0.0 <= v <= 1.0 for v in rec["metrics"].values())


def test_checkpoints_flow_from_the_base(trained):
    std, ours = run_checkpoint(trained, "pgdet-standard"), run_checkpoint(trained, "pgdet-ours-g1")
    soft = run_checkpoint(trained, "pgdet-ours-g1-softnms")
    for k in std["base"]:   # every fine-tuned row starts from the standard row's base
        assert torch.equal(ours["base"][k], std["base"][k])
    # ... and from its optimizer state at the end of the base phase, not after the
    # standard row's own fine-tune (which once updated the saved state in place)
    steps = {float(s["step"]) for s in std["base_opt"]["state"].values()}
    assert steps == {float(std["config"]["base_steps"])}, steps
    moved = [k for k in ours["model"] if ours["model"][k].is_floating_point()
             and not torch.equal(ours["model"][k], ours["base"][k])]
    assert moved, "fine-tuning changed no weight"
    for k in ours["model"]:   # the soft-NMS row evaluates the same weights differently
        assert torch.equal(soft["model"][k], ours["model"][k])
    assert soft["config"]["nms"] == "soft" and ours["config"]["nms"] == "greedy"
    assert run_checkpoint(trained, "pgdet-fpn-ours-g1")["arch"]["fpn"] is True
    hist = (trained / "runs" / "pgdet-ours-g1-0" / "history.csv").read_text()
    assert "r_nms" in hist.splitlines()[0] and "reward_ms" in hist.splitlines()[0]


def test_report_fills_tables_and_draws_examples(trained):
    import os
    from pathlib import Path

    from methods.pgdetector import detector as pgdetector
    from rlcv import params as P
    from rlcv.report import collect, tables
    from rlcv.report.data import load_tables

    old = os.getcwd()
    os.chdir(trained)
    try:
        params = P.load("params.yaml")
        values, _ = collect(params, Path("results"))
        figs = pgdetector.figures(params, Path("results"))
    finally:
        os.chdir(old)
    specs, prov = load_tables(), {"profile": "ci", "seeds": [0], "data": "synthetic"}
    md = {}
    for tid in ("pg-detector-table1", "pg-detector-table2"):
        cells = tables.build_cells(specs[tid], values)
        md[tid] = tables.markdown(specs[tid], cells, tables.claim_results(specs[tid], cells),
                                  prov)
    for row in ROWS:
        label = methods.METHODS[row].tables["pg-detector-table1"]
        line = next(ln for ln in md["pg-detector-table1"].splitlines()
                    if ln.startswith(f"| {label} |"))
        assert "(n=1)" in line, line
    md2 = md["pg-detector-table2"]
    assert "| SSD [18] | 26.8 | published (not rerun) |" in md2
    assert "(n=1)" in next(ln for ln in md2.splitlines() if ln.startswith("| Faster R-CNN (ours)"))
    ((png, caption),) = figs
    png = trained / png
    assert png.name == "pg-detector-examples.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert "SYNTHETIC" in caption or "synthetic" in caption


def test_same_seed_gives_identical_metrics(trained, chdir):
    path = trained / "results" / "runs" / "pgdet-ours-g1-0" / "metrics.json"
    before = json.loads(path.read_text())
    with chdir(trained):
        assert main(["train", "pgdet-ours-g1", "--seed", "0", "--fresh"]) == 0
        assert main(["evaluate", "pgdet-ours-g1", "--seed", "0"]) == 0
    assert json.loads(path.read_text()) == before
