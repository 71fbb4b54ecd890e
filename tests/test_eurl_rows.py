"""EU-RL Table 1's regress / STN / agent rows and the active-localisation rows (issue 5)
on the ci profile, through the CLI: checkpoints flow from gt-bbox-deepmask and the box
regressor, `evaluate` returns exactly its tables' metric ids as fractions, the no-upgrade
row leaves DeepMask as pretrained while EU-RL upgrades it, and `figures` draws Fig. 3."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_checkpoint, run_rows

import methods
from rlcv.report.data import load_tables

pytestmark = pytest.mark.slow   # trains and evaluates nine tiny rows: ~20-40 s

ROWS = ["gt-bbox-deepmask", "box-regressor", "regress-deepmask", "regress-stn-deepmask",
        "regress-agent-deepmask", "regress-agent-deepmask-no-upgrade", "agent-deepmask",
        "regress-dqn-deepmask", "dqn-localizer", "regress-deepmask-matched",
        "regress-dqn-deepmask-eurl"]


@pytest.fixture(scope="module")
def trained(ci_coco):
    run_rows(ci_coco, ROWS)
    return ci_coco


def test_metrics_are_exactly_the_tables_ids_as_fractions(trained):
    specs = load_tables()
    for row in ROWS[1:]:
        rec = json.loads((trained / "results" / "runs" / f"{row}-0" / "metrics.json").read_text())
        wanted = {m.id for tid in methods.METHODS[row].tables for m in specs[tid].metrics}
        assert set(rec["metrics"]) == wanted, (row, rec["metrics"])
        assert all(0.0 <= v <= 1.0 for v in rec["metrics"].values())


def test_checkpoints_flow_from_the_pretrained_stages(trained):
    dm, reg = run_checkpoint(trained, "gt-bbox-deepmask"), run_checkpoint(trained, "box-regressor")
    for row in ("regress-deepmask", "regress-agent-deepmask", "regress-dqn-deepmask"):
        state = run_checkpoint(trained, row)
        for k in dm["model"]:
            assert torch.equal(state["deepmask"][k], dm["model"][k])
        for k in reg["model"]:
            assert torch.equal(state["regressor"][k], reg["model"][k])


def test_only_eu_rl_upgrades_deepmask(trained):
    dm = run_checkpoint(trained, "gt-bbox-deepmask")["model"]
    dqn = run_checkpoint(trained, "regress-dqn-deepmask-eurl")   # the EU-RL-environment DQN
    assert any(not torch.equal(dqn["upgraded"][k], dm[k]) for k in dm
               if dm[k].is_floating_point())
    assert "upgraded" not in run_checkpoint(trained, "regress-dqn-deepmask")
    kept = run_checkpoint(trained, "regress-agent-deepmask-no-upgrade")["upgraded"]
    upgraded = run_checkpoint(trained, "regress-agent-deepmask")["upgraded"]
    assert all(torch.equal(kept[k], dm[k]) for k in dm)
    assert any(not torch.equal(upgraded[k], dm[k]) for k in dm if dm[k].is_floating_point())
    stn = run_checkpoint(trained, "regress-stn-deepmask")   # trained end to end: both stages move
    assert any(not torch.equal(stn["deepmask"][k], dm[k]) for k in dm
               if dm[k].is_floating_point())


def test_history_logs_return_and_iou(trained):
    for row in ("regress-agent-deepmask", "agent-deepmask", "dqn-localizer"):
        head = (trained / "results" / "runs" / f"{row}-0" / "history.csv").read_text()
        cols = head.splitlines()[0].split(",")
        assert {"return", "iou", "eval_iou", "eval_return"} <= set(cols), cols


def test_figures_draw_the_refinement(trained, chdir):
    from methods.eurl import agent as eurl_agent
    from rlcv.params import load

    with chdir(trained):
        out = eurl_agent.figures(load(), trained / "results")
    assert [p.name for p, _ in out] == ["eu-rl-refinement.png"]
    assert out[0][0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compute_matched_control_gets_the_agents_upgrade_steps(trained):
    """Regress-Deepmask + equal-steps fine-tune: as many DeepMask steps, of the same batch
    size and lr, as Regress-Agent-Deepmask's upgrade took, read from the agent's config."""
    from methods.eurl.matched import upgrade_budget

    agent = run_checkpoint(trained, "regress-agent-deepmask")
    ctrl = run_checkpoint(trained, "regress-deepmask-matched")
    c = agent["config"]
    assert ctrl["matched_budget"] == upgrade_budget(c) == {
        "steps": c["episodes"], "batch_size": c["batch_size"], "lr": c["recog_lr"]}
    assert upgrade_budget({**c, "upgrade": False})["steps"] == 0
    hist = (trained / "results" / "runs" / "regress-deepmask-matched-0" / "history.csv")
    rows = [ln for ln in hist.read_text().splitlines()[1:] if ",matched," in f",{ln},"]
    upgrades = [ln for ln in (trained / "results" / "runs" / "regress-agent-deepmask-0"
                              / "history.csv").read_text().splitlines()[1:]]
    assert len(rows) == c["episodes"] == len(upgrades) > 0
    dm = run_checkpoint(trained, "gt-bbox-deepmask")["model"]
    assert any(not torch.equal(ctrl["deepmask"][k], dm[k]) for k in dm
               if dm[k].is_floating_point())
    for k in agent["regressor"]:   # the same regressor: only DeepMask is fine-tuned
        assert torch.equal(ctrl["regressor"][k], agent["regressor"][k])
