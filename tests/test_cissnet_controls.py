"""CiSS-Net issue 20: the capacity control (empty context), the same-steps baseline's
budget, the Base Net trained at its own rate, scoring at the ground truth's resolution and
the PASCAL-Context task."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from methods.cissnet import controls
from methods.cissnet import rows as C
from methods.cissnet.data import Task, upsample
from methods.cissnet.rl import rollout, train_step
from rlcv.models.cissnet import SegmentNet


def test_empty_context_feeds_all_uncertain_maps_and_trains_base_and_bias():
    torch.manual_seed(0)
    cfg = C.CissConfig(context="empty", width=8, embed=2, rollout=2)
    snet = SegmentNet(6, 4, width=8, dim=2)
    seen = []
    real = snet.encoder.forward
    snet.encoder.forward = lambda k: seen.append(k.clone()) or real(k)
    x, target = torch.randn(3, 6, 6, 6), torch.randint(-1, 4, (3, 6, 6))
    loss, stats = train_step(snet, None, x, target, cfg, torch.Generator().manual_seed(0))
    loss.backward()
    assert len(seen) == 2 and all((k == 0).all() for k in seen)      # B = 0 at every step
    assert snet.base.net[-1].weight.grad.abs().sum() > 0               # Base Net trained
    assert snet.bias[-1].weight.grad.abs().sum() > 0                   # Bias Net trained
    assert set(stats) == {"loss_s", "reward"}
    _, contexts = rollout(snet, None, x, 3, "empty")
    assert len(contexts) == 3 and all((k == 0).all() for k in contexts)
    _, full = rollout(snet, None, x, 1)                                 # complete p-map
    assert (full[0] > 0).all()


def test_base_net_gets_its_own_learning_rate(monkeypatch):
    groups = {}
    real = torch.optim.Adam

    def spy(params, *a, **k):
        groups["g"] = params
        return real(params, *a, **k)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    monkeypatch.setattr(C.engine, "fit", lambda *a, **k: None)
    task = Task.of({"dataset": "pascal_context", "num_classes": 4})
    snet = SegmentNet(6, 4, width=8, dim=2)
    cfg = C.CissConfig(width=8, embed=2, lr=1e-3, base_lr=5e-4)
    source = SimpleNamespace(channels=6, device="cpu")   # features: never drawn (no fit)
    C._fit_ciss(cfg, None, "learned", task, snet.base.state_dict(), source)
    rates = [g["lr"] for g in groups["g"]]
    base_ids = {id(p) for p in groups["g"][1]["params"]}
    assert rates == [1e-3, 5e-4] and len(base_ids) == len(list(snet.base.parameters()))
    assert not base_ids & {id(p) for p in groups["g"][0]["params"]}
    C._fit_ciss(C.CissConfig(width=8, embed=2, train_base=False), None, "learned", task,
                snet.base.state_dict(), source)
    assert len(groups["g"]) == 1                                        # frozen: no group


def test_controls_budgets_come_from_the_checkpointed_rows():
    base = {**vars(C.BaselineConfig(steps=150, batch_size=16, width=8)), "extra": 1}
    ciss = vars(C.CissConfig(steps=80, batch_size=4, width=16, embed=4, lr=1e-3,
                             base_lr=5e-4, rollout=3))
    capacity, same = controls.budgets(base, ciss, eval_every=7)
    assert capacity.context == "empty" and capacity.eval_every == 7
    for f in ("steps", "batch_size", "width", "embed", "bins", "lr", "base_lr", "rollout",
              "train_base", "eval_steps"):
        assert getattr(capacity, f) == ciss[f], f
    assert same.steps == 150 + 80 and same.batch_size == 16 and same.width == 8
    assert same.lr == base["lr"]


def test_controls_labels_are_rows_of_tables_1_and_4():
    import methods
    from rlcv.report.data import load_tables

    specs = load_tables()
    for ds in ("ade20k", "cityscapes"):
        row = methods.METHODS[f"ciss-controls-{ds}"]
        assert set(row.requires) == {f"ciss-baseline-{ds}", f"ciss-net-{ds}"}
        for tid in ("ciss-net-table1", "ciss-net-table4"):
            assert {controls.CAPACITY, controls.SAME_STEPS} <= set(specs[tid].rows)
            asked = {r for q in specs[tid].questions for r in q["check"].get("b", [])}
            assert {controls.CAPACITY, controls.SAME_STEPS} <= asked
    assert {"Baseline (ours)", "CiSS-Net (Ours)"} <= set(specs["ciss-net-table7"].rows)


def test_scoring_upsamples_to_the_ground_truths_size():
    task = Task.of({"dataset": "pascal_context", "num_classes": 3})
    # logits at 2x2: left column class 1, right column class 2
    logits = torch.zeros(2, 3, 2, 2)
    logits[:, 1, :, 0] = 5
    logits[:, 2, :, 1] = 5
    # original annotations of two sizes; the staged (resized) labels disagree with them
    full = [torch.tensor([[1, 1, 2, 2]] * 3, dtype=torch.uint8),
            torch.tensor([[1, 1, 1, 2, 2, 2]] * 5, dtype=torch.uint8)]
    split = {"label": torch.zeros(2, 4, 4, dtype=torch.uint8), "label_full": full}
    pred = task.predict(logits, split)
    assert [tuple(p.shape) for p in pred] == [(3, 4), (5, 6)]
    assert torch.equal(pred[0], upsample(logits[:1], (3, 4))[0])
    assert task.score(pred, split) == {"miou": 1.0, "pixel_acc": 1.0}
    staged = task.predict(logits, {"label": split["label"]})           # no label_full
    assert staged.shape == (2, 4, 4)
    assert task.score(staged, {"label": split["label"]})["pixel_acc"] == 0.0
    with pytest.raises(ValueError, match="2 predictions for 3"):
        task.score(pred, {"label_full": [*full, full[0]]})


def test_cityscapes_scores_the_full_resolution_instance_map():
    city = Task.of({"dataset": "cityscapes", "num_classes": 19,
                    "train_to_id": [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                                    28, 31, 32, 33]})
    logits = torch.zeros(1, 19, 1, 2)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = 5                       # road | sidewalk
    inst = torch.tensor([[[7, 7, 8, 8]] * 2], dtype=torch.int32)
    split = {"instance": torch.full((1, 1, 1), 7, dtype=torch.int32), "instance_full": inst}
    pred = city.predict(logits, split)
    assert pred.shape == (1, 2, 4)
    assert city.score(pred, split, main_only=True)["iou_class"] == pytest.approx(1.0)


def test_pascal_context_task_scores_background_as_a_class():
    task = Task.of({"dataset": "pascal_context", "num_classes": 60})
    assert task.num_classes == 60 and task.main_metric == "miou"
    label = torch.tensor([[[0, 0, 5, 59]]], dtype=torch.uint8)
    assert task.targets(label).tolist() == [[[0, 0, 5, 59]]]
    s = task.score(torch.tensor([[[0, 5, 5, 59]]]), {"label": label})
    assert s["pixel_acc"] == pytest.approx(3 / 4)
    assert s["miou"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)         # background counted
