"""EU-RL MPII pose rows end to end on the ci profile, through the `rlcv` entry point:
every row trains and evaluates, returns its tables' metric ids as fractions, and Fig. 4
is drawn from the histories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_rows, staged_ci_copy

ROWS = ("eurl-pose-boxes", "eurl-pose-rmpe", "eurl-pose", "eurl-pose-ablations",
        "eurl-pose-every-step", "eurl-pose-t2-boxes", "eurl-pose-t2-rmpe", "eurl-pose-t2",
        "eurl-pose-rmpe-matched")
AP = {"head", "shoulder", "elbow", "wrist", "hip", "knee", "ankle", "total"}


@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory) -> Path:
    """A ci copy of the repo with synthetic MPII staged and every pose row run (seed 0)."""
    root = staged_ci_copy(tmp_path_factory.mktemp("ci-pose"), "mpii", seeds=[0])
    run_rows(root, ROWS)
    return root


def _metrics(root: Path, row: str) -> dict:
    path = root / "results" / "runs" / f"{row}-0" / "metrics.json"
    return json.loads(path.read_text())["metrics"]


def test_every_row_reports_its_tables_metric_ids(ci_runs):
    import methods
    from rlcv.report.data import load_tables

    specs = load_tables()
    for row in ROWS:
        got = _metrics(ci_runs, row)
        wanted = {m.id for tid in methods.METHODS[row].tables for m in specs[tid].metrics}
        assert wanted <= set(got), (row, wanted - set(got))
        # stop_at_step0 is NaN when no person was detected
        assert all(0.0 <= v <= 1.0 for v in got.values() if v == v), (row, got)
    assert set(_metrics(ci_runs, "eurl-pose-rmpe")) == AP
    assert set(_metrics(ci_runs, "eurl-pose-rmpe-matched")) == AP
    assert "stop_at_step0" in _metrics(ci_runs, "eurl-pose")
    assert set(_metrics(ci_runs, "eurl-pose-boxes")) == {"pckh_total",
                                                         "pckh_total@Tight bbox model"}
    ablations = _metrics(ci_runs, "eurl-pose-ablations")
    for label in ("", "@(b) w/o upgrading recognition", "@(c) back-propagate policy gradient"):
        assert {m + label for m in AP} <= set(ablations)


def test_agent_checkpoint_keeps_the_pipeline_it_evaluates(ci_runs):
    from rlcv import engine

    state = engine.load_checkpoint(ci_runs / "runs" / "eurl-pose-0" / "checkpoint.pt")
    assert {"variants", "pose_arch", "detector", "detector_arch", "rmpe_config"} <= set(state)
    assert {"policy", "pose", "config"} <= set(state["variants"][""])
    history = (ci_runs / "results" / "runs" / "eurl-pose-0" / "history.csv").read_text()
    assert "eval_val_pckh" in history and "upgrade_loss" in history


def test_fig4_and_tables_from_the_runs(ci_runs):
    from methods.eurl import pose as eurl_pose
    from rlcv import params as P
    from rlcv.report import collect

    old = os.getcwd()
    os.chdir(ci_runs)
    try:
        params = P.load()
        figs = eurl_pose.figures(params, Path("results"))
        values, _ = collect(params, Path("results"))
    finally:
        os.chdir(old)
    assert [p.name for p, _ in figs] == ["eu-rl-fig4.png"]
    assert (ci_runs / "results" / "plots" / "eu-rl-fig4.png").stat().st_size > 1000
    for label in ("(a) w/o feedback", "(b) w/o upgrading recognition",
                  "(c) back-propagate policy gradient"):
        assert set(values[("eu-rl-table3", label)]) >= AP
    ours = values[("eu-rl-table2", "ours")]["total"]
    assert ours == values[("eu-rl-table3", "Ours, full")]["total"]
    for label in ("Loose bbox model", "Tight bbox model", "Upgrade at last step",
                  "Upgrade at every step"):
        assert len(values[("eu-rl-fig4", label)]["pckh_total"]) == 1


def test_rmpe_control_gets_the_agents_upgrade_steps(ci_runs):
    """RMPE + equal extra steps: RMPE's detector, its hourglass fine-tuned for as many
    steps (batch size, lr) as Table 2's agent (eurl-pose-t2) took for its upgrade."""
    import torch

    from methods.eurl.matched import upgrade_budget
    from rlcv import engine

    load = lambda row: engine.load_checkpoint(ci_runs / "runs" / f"{row}-0" / "checkpoint.pt")  # noqa: E731
    agent, rmpe = load("eurl-pose-t2"), load("eurl-pose-t2-rmpe")
    ctrl = load("eurl-pose-rmpe-matched")
    c = agent["config"]
    assert ctrl["matched_budget"] == upgrade_budget(c) == {
        "steps": c["episodes"], "batch_size": c["batch_size"], "lr": c["recog_lr"]}
    assert ctrl["rmpe_config"] == rmpe["config"]
    assert all(torch.equal(ctrl["detector"][k], rmpe["detector"][k]) for k in rmpe["detector"])
    assert any(not torch.equal(ctrl["pose"][k], rmpe["pose"][k]) for k in rmpe["pose"]
               if rmpe["pose"][k].is_floating_point())
    hist = (ci_runs / "results" / "runs" / "eurl-pose-rmpe-matched-0" / "history.csv")
    assert sum(ln.startswith("matched,") for ln in hist.read_text().splitlines()) == c["episodes"]


def test_table2_chain_copies_are_the_bytes_training_gives(ci_runs):
    """On ci, Table 2's chain has Table 3's settings, so `rlcv train` copied the runs
    (rlcv.twins); training each row for real (--no-twin) writes the same bytes, and the
    report says the runs are shared."""
    import shutil

    from rlcv.cli import main

    rec = json.loads((ci_runs / "results" / "runs" / "eurl-pose-t2-0" / "metrics.json")
                     .read_text())
    assert rec["same_runs_as"] == "eurl-pose"
    assert rec["metrics"] == _metrics(ci_runs, "eurl-pose")
    old = os.getcwd()
    os.chdir(ci_runs)
    try:
        for row in ("eurl-pose-t2-boxes", "eurl-pose-t2-rmpe", "eurl-pose-t2"):
            copied = ci_runs / "runs" / f"{row}-0"
            aside = ci_runs / f"copied-{row}"
            shutil.move(copied, aside)
            assert main(["train", row, "--seed", "0", "--no-twin"]) == 0
            names = sorted(p.name for p in aside.iterdir())
            assert names == sorted(p.name for p in copied.iterdir() if p.name[0] != ".")
            for name in names:
                assert (copied / name).read_bytes() == (aside / name).read_bytes(), (row, name)
        assert main(["report"]) == 0
    finally:
        os.chdir(old)
    table2 = (ci_runs / "results" / "tables" / "eu-rl-table2.md").read_text()
    assert "«ours» (eurl-pose-t2) has the settings of eurl-pose on this profile" in table2
