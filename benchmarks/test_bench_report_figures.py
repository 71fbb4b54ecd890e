"""Family figures' curves read from metrics.json against re-inferred in the report (issue
22; the code before): CiSS-Net's context figure and ACIS's Fig. 3.

CiSS-Net. Before, `rlcv report` loaded every seed's checkpoint
and ran the chain to step 6 again to draw the main metric per step, which the row's
evaluation had already computed (it scores steps 0, 4 and 6 for Table 1); now the
evaluation records every step (`rows.chain_key`) and the figure reads them
(`rlcv.report.runs.step_curves`).

Timed per seed of a tiny CiSS-Net on a synthetic ADE20K, evaluation and figure curve
together, as the pipeline pays them: ours = `evaluate_ciss` + `step_curves`; reference,
in the same run = `evaluate_ciss` + the report's former re-inference (`_reinferred`, kept
here). Same values (asserted). Asserted: ours <= 0.75x the reference (~0.5 expected: one
chain instead of two).

ACIS Fig. 3. Before, the report rolled every seed of AC-Dice and BL-Trunc out again with
ground-truth stopping; the evaluation (Table 2's Dice*, Fig. 3's bins) had already done
so. Timed the same way on acis-bl-trunc at the ci profile's settings: ours = the row's
evaluation + `step_curves` of `evaluate.TIMESTEP`; reference = the evaluation + the
former rollout (`_acis_reinferred`). Same values (asserted); ours <= 0.85x (the evaluation
also rolls out the Table 2 variants, so the saving is a smaller share).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _timing import best_time

from datasets import ade20k
from datasets._common import Staged
from methods.cissnet import rows as C
from methods.cissnet.data import Task
from methods.cissnet.paper import val_chunks
from rlcv import engine
from rlcv.params import Params
from rlcv.report.runs import step_curves

REPO = Path(__file__).resolve().parents[1]
SIZES = {"synth_train": 32, "synth_val": 48, "synth_size": [40, 40], "size": [32, 32],
         "seed": 0, "shard_size": 256, "jpeg_quality": 90}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ciss-bench")
    ade20k.synth(root / "raw", SIZES, 0)
    ade20k.stage(root / "raw", root / "staged", SIZES)
    data = Staged(root / "staged" / "sceneparsing")
    runs = {}
    for name, cfg, fn in (("base", C.BaselineConfig(width=8, channels=16, layers=2, steps=20,
                                                    batch_size=8, eval_every=0),
                           C.train_baseline),
                          ("ours", C.CissConfig(width=16, embed=4, steps=20, batch_size=8,
                                                eval_every=0), C.train_ciss)):
        engine.seed_everything(0)
        run = engine.Run(name, 0, root / "runs" / f"{name}-0",
                         inputs={"ciss-baseline-ade20k": runs["base"]} if runs else {})
        runs[name] = fn(cfg, data, run)
    return root, data, runs["ours"]


def _reinferred(ckpt: str, data) -> np.ndarray:
    """The report's curve before: the checkpoint's chain inferred again, every step scored."""
    task, val = Task.of(data.manifest), data.load("val")
    domain, snet, cnet, cfg = C.load_models(engine.load_checkpoint(ckpt))
    preds = C.chunked_predictions(snet, cnet, cfg, val_chunks(domain, val, cfg.eval_batch),
                                  6, task)
    return np.array([task.score(p, val, main_only=True)[task.main_metric] for p in preds])


def _reference(root, data, ckpt) -> np.ndarray:
    C.evaluate_ciss(ckpt, data)
    return _reinferred(ckpt, data)


def _ours(root, data, ckpt) -> np.ndarray:
    path = root / "results" / "runs" / "ours-0" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": "ci", "metrics": C.evaluate_ciss(ckpt, data)}))
    params = Params({"profile": "ci", "seeds": [0], "methods": {"ours": {}}},
                    root / "params.yaml")
    return step_curves(root / "results", "ours", params, C.chain_key("miou"))[0]


def test_bench_context_curves_recorded_vs_reinferred(benchmark, trained):
    root, data, ckpt = trained
    assert np.array_equal(_ours(root, data, ckpt), _reference(root, data, ckpt))
    benchmark.pedantic(_ours, args=(root, data, ckpt), rounds=3, iterations=1,
                       warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_ref = best_time(_reference, 3, root, data, ckpt)
    t_ours = stats.stats.min if stats is not None else best_time(_ours, 3, root, data, ckpt)
    ratio = t_ours / t_ref
    benchmark.extra_info.update(ratio=round(ratio, 3))
    print(f"\nCiSS-Net evaluation + context curve: {t_ours * 1e3:.0f} ms recorded, "
          f"{t_ref * 1e3:.0f} ms re-inferred ({ratio:.2f}x)")
    assert ratio <= 0.75, f"recorded curves took {ratio:.2f}x the re-inferred ones"


@pytest.fixture(scope="module")
def acis_trained(tmp_path_factory):
    """acis-bl-trunc (seed 0) at the ci profile's settings, from its pretrain row, on a
    synthetic CVPPP staged like the pipeline's."""
    import datasets
    import methods
    from rlcv.params import build_config, load

    root = tmp_path_factory.mktemp("acis-bench")
    params = load(REPO / "params.yaml")
    params.raw["profile"] = "ci"
    cfg = params.dataset("cvppp")
    datasets.get("cvppp").synth(root / "raw", cfg, int(cfg.get("seed", 0)))
    datasets.get("cvppp").stage(root / "raw", root / "staged", {**cfg, "profile": "ci"})
    ckpt = None
    for name in ("acis-pretrain-cvppp", "acis-bl-trunc"):
        row = methods.get(name)
        run = engine.Run(row=name, seed=0, dir=root / "runs" / name,
                         inputs={r: root / "runs" / r / "checkpoint.pt" for r in row.requires},
                         signature=name)
        engine.seed_everything(0)
        ckpt = row.train(build_config(row.config, params.method(name), name),
                         Staged(root / "staged" / row.data.split("/", 1)[1]), run)
    row = methods.get("acis-bl-trunc")
    return root, row, Staged(root / "staged" / row.data.split("/", 1)[1]), str(ckpt)


def _acis_reinferred(ckpt: str, data) -> np.ndarray:
    """The report's Fig. 3 before: the checkpoint rolled out again with ground-truth
    stopping, the Dice of each timestep averaged over the val images."""
    from methods.acis.evaluate import ground_truths, gt_counts, per_step_dice
    from methods.acis.plots import _rollout
    from rlcv.metrics import average_per_timestep

    split = data.load("val")
    truths = ground_truths(split)
    count = gt_counts(truths)
    probs, _ = _rollout(engine.load_checkpoint(ckpt), split, int(count.max()))
    return average_per_timestep(per_step_dice(probs, truths, count))[0].numpy()


def _acis_reference(root, row, data, ckpt) -> np.ndarray:
    row.evaluate(ckpt, data)
    return _acis_reinferred(ckpt, data)


def _acis_ours(root, row, data, ckpt) -> np.ndarray:
    from methods.acis.evaluate import TIMESTEP

    path = root / "results" / "runs" / f"{row.name}-0" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": "ci", "metrics": row.evaluate(ckpt, data)}))
    params = Params({"profile": "ci", "seeds": [0], "methods": {row.name: {}}},
                    root / "params.yaml")
    return step_curves(root / "results", row.name, params, TIMESTEP, first=1)[0]


def test_bench_acis_fig3_recorded_vs_reinferred(benchmark, acis_trained):
    args = acis_trained
    assert np.array_equal(_acis_ours(*args), _acis_reference(*args))
    benchmark.pedantic(_acis_ours, args=args, rounds=3, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_ref = best_time(_acis_reference, 3, *args)
    t_ours = stats.stats.min if stats is not None else best_time(_acis_ours, 3, *args)
    ratio = t_ours / t_ref
    benchmark.extra_info.update(ratio=round(ratio, 3))
    print(f"\nACIS evaluation + Fig. 3 curve: {t_ours * 1e3:.0f} ms recorded, "
          f"{t_ref * 1e3:.0f} ms re-inferred ({ratio:.2f}x)")
    assert ratio <= 0.85, f"recorded Fig. 3 curves took {ratio:.2f}x the re-inferred ones"
