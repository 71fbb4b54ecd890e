"""CiSS-Net building blocks (issue 6): context map Eq. 2, reward Eq. 4, k-step returns
Eqs. 5-6, the C-Net's shared trunk, the S-Net's Eq. 1, and how the rows report."""

from __future__ import annotations

import json

import pytest
import torch

from methods.cissnet import rows as C
from methods.cissnet.data import IGNORE, Task
from methods.cissnet.rl import (
    choose,
    context_reward,
    context_reward_reference,
    improvement,
    rollout,
    train_step,
)
from rlcv.models.cissnet import ContextNet, PyramidEncoder, SegmentNet, context_map
from rlcv.rl.advantage import actor_critic_terms, kstep_returns


def _maps(n=2, h=7, w=9, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    before = torch.randint(classes, (n, h, w), generator=g)
    after = torch.randint(classes, (n, h, w), generator=g)
    target = torch.randint(-1, classes, (n, h, w), generator=g)    # -1 = IGNORE
    adopt = torch.randint(2, (n, h, w), generator=g)
    return before, after, target, context_map(before, adopt)


def test_context_map_is_y_plus_one_times_b():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(19, (3, 8, 8), generator=g)
    b = torch.randint(2, (3, 8, 8), generator=g)
    k = context_map(y, b)
    assert torch.equal(k, (y + 1) * b)
    assert torch.equal(k[b == 0], torch.zeros_like(k[b == 0]))      # uncertain
    assert torch.equal(k[b == 1], y[b == 1] + 1)                    # classes from one


def test_rollout_feeds_the_greedy_context_map_back():
    torch.manual_seed(0)
    snet, cnet = SegmentNet(6, 4, width=8, dim=2), ContextNet(6, 4, width=8, dim=2)
    torch.nn.init.normal_(cnet.policy.weight)
    torch.nn.init.normal_(snet.bias[-1].weight)
    x = torch.randn(2, 6, 8, 8)
    logits, contexts = rollout(snet, cnet, x, 3)
    assert len(logits) == 4 and len(contexts) == 3
    with torch.no_grad():
        assert torch.equal(logits[0], snet(x))                      # Y^0: Base Net only
        for t in range(3):
            y = logits[t].argmax(1)
            b = cnet(x, y)[0].argmax(1)
            assert torch.equal(contexts[t], context_map(y, b))
            assert torch.equal(logits[t + 1], snet(x, contexts[t]))
        assert 0 < (contexts[0] == 0).float().mean() < 1            # a mixed decision
    _, full = rollout(snet, None, x, 2)                              # w/o RL: all adopted
    assert torch.equal(full[0], logits[0].argmax(1) + 1)
    # Eq. 2 at evaluation: B ~ Q from a fixed generator, repeatable
    a = rollout(snet, cnet, x, 2, "sample", torch.Generator().manual_seed(3))[1]
    b = rollout(snet, cnet, x, 2, "sample", torch.Generator().manual_seed(3))[1]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    p_adopt = torch.softmax(cnet(x, logits[0].argmax(1))[0], 1)[:, 1]
    assert abs((a[0] > 0).float().mean() - p_adopt.mean()) < 0.15


@pytest.mark.parametrize("window", [1, 3, 5, (3, 5)])
def test_reward_equals_plain_loop_eq4(window):
    before, after, target, k = _maps()
    fast = context_reward(before, after, target, k, 0.4, 0.2, window)
    slow = context_reward_reference(before, after, target, k, 0.4, 0.2, window)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


def test_reward_terms_by_hand():
    # the four transitions of M, and the beta terms on a 1x4 map with a 1x1 window
    target = torch.tensor([[[1, 1, 1, 1]]])
    before = torch.tensor([[[0, 1, 0, 1]]])
    after = torch.tensor([[[1, 0, 0, 1]]])
    assert improvement(before, after, target).tolist() == [[[1.0, -1.0, 0.0, 0.5]]]
    k = torch.tensor([[[0, 2, 1, 3]]])   # uncertain, correct context, wrong, wrong
    r = context_reward(before, after, target, k, 0.4, 0.2, 1)
    torch.testing.assert_close(r, torch.tensor([[[1.2, -0.6, 0.0, 0.5]]]))
    # a window that leaves the image averages only over the positions inside it
    r3 = context_reward(before, after, target, torch.ones_like(k), 0.4, 0.2, (1, 3))
    torch.testing.assert_close(r3[0, 0, 0], torch.tensor(0.0))      # (1 - 1) / 2
    # ignored ground truth counts in no mean and earns no correct-context reward
    ignored = torch.full_like(target, IGNORE)
    r_ign = context_reward(before, after, ignored, k, 0.4, 0.2, 3)
    torch.testing.assert_close(r_ign, 0.2 * (k == 0).float())


def test_kstep_returns_eq6():
    r = torch.tensor([1.0, 2.0, 3.0])
    v = torch.tensor([10.0, 20.0, 30.0, 40.0])      # V(s_0..s_3)
    g = 0.5
    full = kstep_returns(r, v, g)
    assert full.tolist() == pytest.approx([1 + g * 2 + g**2 * 3 + g**3 * 40,
                                           2 + g * 3 + g**2 * 40, 3 + g * 40])
    one = kstep_returns(r, v, g, k=1)                # TD(0)
    assert one.tolist() == pytest.approx([1 + g * 20, 2 + g * 30, 3 + g * 40])
    two = kstep_returns(r, v, g, k=2)
    assert two.tolist() == pytest.approx([1 + g * 2 + g**2 * 30, 2 + g * 3 + g**2 * 40,
                                          3 + g * 40])
    maps = kstep_returns(r[:, None, None].expand(3, 2, 2), v[:, None, None].expand(4, 2, 2), g)
    assert torch.allclose(maps[:, 0, 0], full)
    with pytest.raises(ValueError, match="values"):
        kstep_returns(r, v[:3], g)


def test_actor_critic_terms_detach_advantage_and_target():
    logits = torch.randn(4, 2, 3, 3, requires_grad=True)
    values = torch.randn(4, 3, 3, requires_grad=True)
    returns = torch.randn(4, 3, 3, requires_grad=True)
    actions = torch.randint(2, (4, 3, 3))
    terms = actor_critic_terms(logits, actions, values, returns)
    (gv,) = torch.autograd.grad(terms["policy"], values, allow_unused=True)
    assert gv is None                                 # the advantage is a constant weight
    gv, gr = torch.autograd.grad(terms["value"], [values, returns], allow_unused=True)
    assert gr is None and torch.allclose(gv, -2 * (returns - values).detach() / values.numel())
    p = torch.softmax(logits, 1)
    assert terms["entropy"].item() == pytest.approx((p * p.log()).sum(1).mean().item(), abs=1e-6)


def test_value_head_shares_all_but_the_last_layer():
    net = ContextNet(6, 4, width=8, dim=2)
    x, y = torch.randn(2, 6, 5, 5), torch.randint(4, (2, 5, 5))
    pol, val = net(x, y)
    assert pol.shape == (2, 2, 5, 5) and val.shape == (2, 5, 5)
    names = dict(net.named_parameters())

    def touched(out):
        grads = torch.autograd.grad(out.sum(), list(names.values()), allow_unused=True,
                                    retain_graph=True)
        return {n for n, gr in zip(names, grads, strict=True) if gr is not None and gr.any()}

    torch.nn.init.normal_(net.policy.weight)
    pol, val = net(x, y)
    by_policy, by_value = touched(pol[:, 1] - pol[:, 0]), touched(val)
    shared = by_policy & by_value
    assert {n for n in names if n.startswith(("trunk.", "encoder."))} <= shared
    assert by_policy - shared == {"policy.weight", "policy.bias"}
    assert by_value - shared == {"value.weight", "value.bias"}
    convs = [m for m in net.trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 5                       # five layers: 4 shared + 1 head


def test_segment_net_eq1_and_zero_uncertain_embedding():
    torch.manual_seed(0)
    snet = SegmentNet(6, 4, width=8, dim=2)
    x = torch.randn(2, 6, 6, 6)
    assert torch.equal(snet(x), snet.base(x))         # K None: Base Net only
    torch.nn.init.normal_(snet.bias[-1].weight)
    k = torch.randint(5, (2, 6, 6))
    expect = snet.base(x) + snet.bias(torch.cat([x, snet.encoder(k)], 1))
    torch.testing.assert_close(snet(x, k), expect)
    enc = PyramidEncoder(4, dim=3, bins=(1, 2))
    assert enc(torch.zeros(1, 4, 4, dtype=torch.long)).abs().sum() == 0   # uncertain = 0
    assert enc.out_channels == 9


def test_train_step_updates_bias_and_cnet_not_base():
    torch.manual_seed(0)
    cfg = C.CissConfig(width=8, embed=2, rollout=2)
    snet, cnet = SegmentNet(6, 4, width=8, dim=2), ContextNet(6, 4, width=8, dim=2)
    snet.base.requires_grad_(False)
    x, target = torch.randn(3, 6, 6, 6), torch.randint(-1, 4, (3, 6, 6))
    loss, stats = train_step(snet, cnet, x, target, cfg, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in snet.base.parameters())
    assert snet.bias[-1].weight.grad.abs().sum() > 0
    assert cnet.policy.weight.grad.abs().sum() > 0 and cnet.value.weight.grad.abs().sum() > 0
    assert {"loss_s", "reward", "loss_p", "loss_v", "entropy", "adopt"} <= set(stats)
    assert stats["entropy"] == pytest.approx(0.6931, abs=1e-3)   # starts at Q = (0.5, 0.5)


def test_choose_samples_from_the_policy():
    logits = torch.zeros(1, 2, 64, 64)
    logits[:, 1, :, :32] = 5.0                        # left half: adopt almost surely
    logits[:, 0, :, 32:] = 5.0
    b = choose(logits, "sample", torch.Generator().manual_seed(0))
    assert b[..., :32].float().mean() > 0.95 and b[..., 32:].float().mean() < 0.05
    assert torch.equal(choose(logits, "greedy"), logits.argmax(1))


def test_task_maps_labels_and_scores_with_rlcv_metrics():
    ade = Task.of({"dataset": "ade20k", "classes": {"3": "sky", "22": "water", "7": "road"},
                   "ignore_index": 0})
    label = torch.tensor([[[0, 3, 7, 22]]], dtype=torch.uint8)
    assert ade.targets(label).tolist() == [[[IGNORE, 0, 1, 2]]]   # sorted official ids
    s = ade.score(torch.tensor([[[0, 0, 1, 0]]]), {"label": label})
    assert s["pixel_acc"] == pytest.approx(2 / 3)     # the 'other' pixel is not scored
    city = Task.of({"dataset": "cityscapes", "num_classes": 19,
                    "train_to_id": [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                                    28, 31, 32, 33]})
    label = torch.tensor([[[0, 1, 255, 13]]], dtype=torch.uint8)
    inst = torch.tensor([[[7, 8, 1, 26001]]], dtype=torch.int32)
    assert city.targets(label).tolist() == [[[0, 1, IGNORE, 13]]]
    s = city.score(torch.tensor([[[0, 1, 0, 13]]]), {"label": label, "instance": inst})
    assert s["iou_class"] == pytest.approx(1.0) and set(s) == {"iou_class", "iiou_class",
                                                               "iou_category"}


def test_ablation_variants_and_their_labels_are_table_rows():
    import methods
    from rlcv.report.data import load_tables

    specs = load_tables()
    cfg = C.AblationConfig(lambda2=0.02, gamma=0.9)
    variants = C.ablation_variants(cfg)
    settings = [(v.context, v.lambda2, v.gamma) for v, _ in variants]
    assert settings == [("pmap", 0.02, 0.9), ("learned", 0.001, 0.9), ("learned", 0.005, 0.9),
                        ("learned", 0.01, 0.9), ("learned", 0.02, 0.9), ("learned", 0.02, 0.1),
                        ("learned", 0.02, 0.3)]
    labels = dict(zip(settings, (lb for _, lb in variants), strict=True))
    assert labels[("learned", 0.02, 0.9)] == ["λ2=0.02", "γ=0.9"]
    assert labels[("learned", 0.001, 0.9)] == ["λ2=0.001", "Baseline+gated(p-map)"]
    for ds in ("ade20k", "cityscapes"):
        for kind in ("baseline", "net", "ablations"):
            row = methods.METHODS[f"ciss-{kind}-{ds}"]
            rows = {lb for tid in row.tables for lb in specs[tid].rows}
            assert set(row.tables.values()) <= rows | {"Baseline (ours)"}
        every = {lb for _, lbs in variants for lb in lbs} | {"Step 0", "Step 4", "Step 6"}
        tables = {*methods.METHODS[f"ciss-ablations-{ds}"].tables,
                  *methods.METHODS[f"ciss-net-{ds}"].tables}
        assert every <= {lb for tid in tables for lb in specs[tid].rows}


def test_step_labels_fill_only_table1(tmp_path, monkeypatch):
    from rlcv import params as P
    from rlcv.report import collect

    run = tmp_path / "runs" / "ciss-net-ade20k-0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({
        "row": "ciss-net-ade20k", "seed": 0, "profile": "ci",
        "metrics": {"miou": 0.5, "pixel_acc": 0.8, "miou@Step 0": 0.4, "miou@Step 6": 0.52}}))
    params = P.Params({"profile": "ci", "seeds": [0], "methods": {"ciss-net-ade20k": {}}},
                      tmp_path / "p")
    values, _ = collect(params, tmp_path)
    assert values[("ciss-net-table1", "Step 0")] == {"miou": [0.4]}
    assert values[("ciss-net-table1", "Step 2")]["miou"] == [0.5]
    assert values[("ciss-net-table4", "CiSS-Net")]["miou"] == [0.5]
    assert not [key for key in values if key[0] != "ciss-net-table1" and key[1].startswith("Step")]


def test_bad_settings_fail_with_one_clear_line():
    from rlcv import params as P
    from rlcv.errors import ParamsError

    with pytest.raises(ParamsError, match="context: expected one of learned, pmap, empty"):
        P.build_config(C.CissConfig, {"context": "gate"}, "methods.ciss-net-ade20k")
    with pytest.raises(ParamsError, match="window: expected an odd"):
        C.AblationConfig(window=4)
    with pytest.raises(ParamsError, match="unknown settings"):
        P.build_config(C.CissConfig, {"lambda3": 1.0}, "methods.ciss-net-ade20k")
