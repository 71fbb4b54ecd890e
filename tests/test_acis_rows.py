"""Every ACIS row on the ci profile, through the registry: train from the pretrain rows,
evaluate to exactly the metric ids of its tables, resume without retraining, and draw
the family's figures."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

import datasets
import methods
from methods.acis.evaluate import TIMESTEP
from rlcv import engine
from rlcv.params import build_config, load
from rlcv.report.data import load_tables

REPO = Path(__file__).resolve().parents[1]
ACIS = [name for name in methods.METHODS if name.startswith("acis-")]


@pytest.fixture(scope="module")
def ci_repo(tmp_path_factory):
    """A folder holding ci-profile synthetic CVPPP and KITTI, staged, and its params."""
    root = tmp_path_factory.mktemp("acis-ci")
    params = load(REPO / "params.yaml")
    params.raw["profile"] = "ci"
    for name in ("cvppp", "kitti"):
        cfg = params.dataset(name)
        module = datasets.get(name)
        module.synth(root / "data" / "raw" / name, cfg, int(cfg.get("seed", 0)))
        module.stage(root / "data" / "raw" / name, root / "data" / "staged" / name,
                     {**cfg, "profile": "ci"})
    return root, params


def _run(root: Path, params, name: str, seed: int = 0) -> Path:
    from datasets._common import Staged

    row = methods.get(name)
    cfg = build_config(row.config, params.method(name), name)
    inputs = {r: root / "runs" / f"{r}-{seed}" / "checkpoint.pt" for r in row.requires}
    run = engine.Run(row=name, seed=seed, dir=root / "runs" / f"{name}-{seed}", inputs=inputs,
                     signature=name)
    engine.seed_everything(seed)
    return Path(row.train(cfg, Staged(root / "data" / "staged" / row.data), run))


def test_rows_train_and_evaluate_to_their_tables_metrics(ci_repo):
    from datasets._common import Staged

    root, params = ci_repo
    specs = load_tables()
    order = sorted(ACIS, key=lambda n: "pretrain" not in n)   # pretrain rows first
    for name in order:
        row = methods.get(name)
        ckpt = _run(root, params, name)
        scores = row.evaluate(str(ckpt), Staged(root / "data" / "staged" / row.data))
        if not row.tables:   # pretrain rows: diagnostics only
            assert scores
            continue
        wanted = {m.id for tid in row.tables for m in specs[tid].metrics}
        staged = Staged(root / "data" / "staged" / row.data)
        fig3 = "dice_early" in wanted
        most = int(staged.load("val")["num_leaves"].max()) if fig3 else 0
        if "dice_late" in wanted and most <= 10:
            wanted.discard("dice_late")   # no image reaches timestep 11
        # Fig. 3's rows also keep the unbinned curve for the report's plot: every timestep
        # up to the image with the most leaves
        curve = {k for k in scores if k.startswith("dice_timestep_")}
        assert curve == ({TIMESTEP.format(t=t) for t in range(1, most + 1)}
                         if fig3 else set()), name
        assert set(scores) - curve == wanted, (name, sorted((set(scores) - curve) ^ wanted))
        for key, v in scores.items():
            assert math.isfinite(v) and v >= 0, (name, key, v)
            if not key.startswith(("abs_dic", "avgf")):
                assert v <= 1, (name, key, v)


def test_checkpoint_is_self_contained_and_rerun_resumes(ci_repo):
    root, params = ci_repo
    ckpt = _run(root, params, "acis-pretrain-cvppp", seed=5)
    ac = _run(root, params, "acis-ac-dice", seed=5)
    state = engine.load_checkpoint(ac)
    assert {"arch", "preproc", "decoder", "actor", "critic", "config"} <= set(state)
    pre = engine.load_checkpoint(ckpt)
    # the actor rows keep the pre-trained decoder as it was (frozen)
    for k, v in pre["decoder"].items():
        assert torch.equal(v, state["decoder"][k])
    # a finished run is not retrained: every phase resumes from its final checkpoint
    before = (root / "runs" / "acis-ac-dice-5" / "train.ckpt.pt").stat().st_mtime_ns
    again = engine.load_checkpoint(_run(root, params, "acis-ac-dice", seed=5))
    assert (root / "runs" / "acis-ac-dice-5" / "train.ckpt.pt").stat().st_mtime_ns == before
    for k, v in state["actor"].items():
        assert torch.equal(v, again["actor"][k])
    # same seed from scratch: identical weights (all randomness keyed by seed/phase/step)
    shutil.rmtree(root / "runs" / "acis-ac-dice-5")
    fresh = engine.load_checkpoint(_run(root, params, "acis-ac-dice", seed=5))
    for part in ("actor", "critic"):
        for k, v in state[part].items():
            assert torch.equal(v, fresh[part][k]), (part, k)


def test_figures_are_drawn_from_the_runs(ci_repo, monkeypatch):
    from methods.acis.plots import figures

    root, params = ci_repo
    for name in ("acis-pretrain-cvppp", "acis-bl-trunc", "acis-ac-dice",
                 "acis-pretrain-kitti", "acis-kitti-ac-iou"):
        if not (root / "runs" / f"{name}-0" / "checkpoint.pt").is_file():
            _run(root, params, name)
    params.raw["seeds"] = [0]
    monkeypatch.chdir(root)
    # Fig. 4 re-runs the checkpoints; Fig. 3 draws what the evaluation recorded
    out = figures(params, root / "results")
    assert {p.name for p, _ in out} == {"acis-order.png"}
    for name in ("acis-bl-trunc", "acis-ac-dice"):
        _write_metrics(root, params, name, 0, "ci")
    out = figures(params, root / "results")
    names = {p.name for p, _ in out}
    assert names == {"acis-dice-per-step.png", "acis-order.png"}
    for p, caption in out:
        assert p.is_file() and p.stat().st_size > 1000 and "ACIS" in caption


def _write_metrics(root: Path, params, name: str, seed: int, profile: str) -> dict:
    """results/runs/<name>-<seed>/metrics.json as `rlcv evaluate` writes it (the fields the
    report reads)."""
    import json

    from datasets._common import Staged

    row = methods.get(name)
    scores = row.evaluate(str(root / "runs" / f"{name}-{seed}" / "checkpoint.pt"),
                          Staged(root / "data" / "staged" / row.data))
    path = root / "results" / "runs" / f"{name}-{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": profile, "row": name, "seed": seed,
                                "metrics": scores}))
    return scores


def test_fig3_plot_draws_the_evaluated_curve(ci_repo, monkeypatch):
    """The per-timestep bars are the evaluation's TIMESTEP values (mean over seeds), for
    the active profile only."""
    from methods.acis import plots
    from rlcv.report.runs import step_curves

    root, params = ci_repo
    for name in ("acis-pretrain-cvppp", "acis-bl-trunc"):
        for seed in (0, 1):
            if not (root / "runs" / f"{name}-{seed}" / "checkpoint.pt").is_file():
                _run(root, params, name, seed)
    params.raw["seeds"] = [0, 1]
    monkeypatch.chdir(root)
    scores = [_write_metrics(root, params, "acis-bl-trunc", s, "ci") for s in (0, 1)]
    curves = step_curves(root / "results", "acis-bl-trunc", params, TIMESTEP, first=1)
    n = sum(1 for k in scores[0] if k.startswith("dice_timestep_"))
    assert curves.shape == (2, n) and n > 0
    assert curves[1, 0] == scores[1][TIMESTEP.format(t=1)]
    _write_metrics(root, params, "acis-bl-trunc", 1, "smoke")   # another profile's run
    assert step_curves(root / "results", "acis-bl-trunc", params, TIMESTEP, first=1).shape == \
        (1, n)
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: drawn.append(fig) or out)
    plots.dice_per_step_plot(params, root / "results", root / "fig3.png")
    (fig,) = drawn
    bars = [b.get_height() for b in fig.axes[0].patches]
    assert bars[:n] == pytest.approx(100 * curves[0])


def test_scores_are_taken_at_the_ground_truths_resolution(ci_repo, monkeypatch):
    """Predictions are upsampled to the original-size ground truth staging kept (CVPPP:
    into the centre crop; KITTI: the whole frame) before every metric."""
    import methods.acis.evaluate as E
    from datasets._common import Staged

    root, params = ci_repo
    seen = []
    for fn in ("symmetric_best_dice", "coverage", "dice_per_timestep"):
        real = getattr(E, fn)

        def spy(pred, gt, _real=real, _fn=fn):
            seen.append((_fn, tuple(pred.shape[-2:]), gt.clone()))
            return _real(pred, gt)

        monkeypatch.setattr(E, fn, spy)
    for name, data, split, tables in (("acis-pretrain-cvppp", "cvppp/ablation", "val",
                                       ("t1", "fig3")),
                                      ("acis-pretrain-kitti", "kitti/cars", "test", ("t4",))):
        ckpt = _run(root, params, name, seed=3)
        staged = Staged(root / "data" / "staged" / data).load(split)
        seen.clear()
        E.evaluate_split(engine.load_checkpoint(ckpt), staged, tables)
        size = tuple(staged["gt"][0].shape)
        assert size != tuple(staged["label"].shape[-2:])   # ci: staged smaller than the files
        fns = {f for f, _, _ in seen}
        assert fns == ({"symmetric_best_dice", "dice_per_timestep"} if "t1" in tables
                       else {"coverage"})
        n = len(staged["gt"])
        scored = [(hw, gt) for f, hw, gt in seen if f != "dice_per_timestep"]
        assert len(scored) == n
        for i, (hw, gt) in enumerate(scored):
            assert hw == size and torch.equal(gt, staged["gt"][i].long())
        assert all(hw == size for _, hw, _ in seen)
