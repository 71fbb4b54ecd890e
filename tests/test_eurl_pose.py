"""EU-RL on MPII pose (issue 9): boxes, heatmaps, pose NMS, metrics through rlcv.metrics,
and which rows' pose network receives policy gradients."""

from __future__ import annotations

import math

import pytest
import torch

import methods
from methods.eurl import pose_agent as ea
from methods.eurl import pose_data as pd_
from methods.eurl import pose_env as pe
from rlcv import engine
from rlcv import params as P
from rlcv.models.agent_nets import PolicyValueNet
from rlcv.models.hourglass import (
    StackedHourglass,
    decode,
    from_heatmap,
    heatmap_mse,
    heatmap_targets,
)
from rlcv.models.pose_nms import PoseNMS
from rlcv.rl import actor_critic
from rlcv.rl.actor_critic import TDActorCritic

VARIANTS = ("full", "(a) w/o feedback", "(b) w/o upgrading recognition",
            "(c) back-propagate policy gradient", "every step")
"""The agent variants the rows train: eurl-pose, the three of eurl-pose-ablations, and
eurl-pose-every-step."""


def _person(x0=20.0, y0=10.0, w=20.0, h=50.0) -> dict:
    """A hand-made person: joints spread over a w x h box at (x0, y0)."""
    g = torch.linspace(0, 1, 16)
    joints = torch.stack([x0 + w * (g * 7 % 1), y0 + h * g], 1)
    return {"joints": joints[None], "vis": torch.ones(1, 16, dtype=torch.bool),
            "center": torch.tensor([[x0 + w / 2, y0 + h / 2]]), "scale": torch.tensor([h / 200]),
            "head": torch.tensor([[x0, y0, x0 + 6.0, y0 + 6.0]]), "image": torch.zeros(1).long()}


def test_loose_and_tight_boxes_follow_the_paper():
    p = _person()
    loose = pd_.person_boxes("loose", p)[0]
    # loose: a square of side 200 x scale centred on MPII's centre
    assert torch.allclose(loose, torch.tensor([5.0, 10.0, 55.0, 60.0]))
    tight = pd_.person_boxes("tight", p)[0]
    lo, hi = p["joints"][0].min(0).values, p["joints"][0].max(0).values
    c, size = (lo + hi) / 2, (hi - lo) * 1.3
    assert torch.allclose(tight, torch.cat([c - size / 2, c + size / 2]), atol=1e-4)


def test_heatmap_targets_decode_back_to_the_joints():
    p = _person()
    box = pd_.person_boxes("loose", p)
    maps, w, outside = heatmap_targets(p["joints"], p["vis"], box, 32, sigma=1.0)
    coords, peak = decode(maps)
    back = from_heatmap(coords, box, 32)
    inside = (p["joints"][0] > box[0, :2]).all(1) & (p["joints"][0] < box[0, 2:] - 1).all(1)
    err = (back[0] - p["joints"][0]).norm(dim=-1)[inside]
    assert err.max() < 0.75 * (box[0, 2] - box[0, 0]) / 32   # within a heatmap pixel
    assert torch.all(w == 1) and peak[0, inside].min() > 0.6


def test_a_joint_cut_off_by_the_crop_costs_its_whole_mass():
    joints = torch.tensor([[[16.0, 16.0], [500.0, 500.0]]])
    vis = torch.ones(1, 2, dtype=torch.bool)
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    maps, w, outside = heatmap_targets(joints, vis, box, 32, sigma=1.5)
    assert outside[0, 0] < 1e-6
    assert outside[0, 1] == pytest.approx(math.pi * 1.5**2 / 32**2, rel=1e-4)
    # an empty prediction is not free when the box leaves a joint out
    empty = torch.zeros(1, 2, 32, 32)
    assert heatmap_mse(empty, maps, w, outside)[0] > heatmap_mse(empty, maps, w)[0]


def test_pose_nms_removes_a_duplicated_pose_and_keeps_a_neighbour():
    base = _person()["joints"][0]
    poses = torch.stack([base, base + 0.8, base + torch.tensor([30.0, 0.0])])
    boxes = torch.tensor([[15.0, 5.0, 45.0, 65.0], [15.5, 5.5, 45.5, 65.5],
                          [45.0, 5.0, 75.0, 65.0]])
    conf = torch.full((3, 16), 0.8)
    scores = torch.tensor([0.9, 0.7, 0.8])
    keep = PoseNMS()(poses, conf, boxes, scores)
    assert keep.tolist() == [0, 2]   # the shifted copy of pose 0 is gone, the neighbour stays
    assert PoseNMS()(poses[[0, 2]], conf[:2], boxes[[0, 2]], scores[[0, 2]]).tolist() == [0, 1]


def test_scores_come_only_from_rlcv_metrics(monkeypatch):
    """The pipeline's numbers are whatever rlcv.metrics returns: stub the metric, the
    stub's values come out."""
    val = {"image": torch.zeros(2, 3, 8, 8), "num_people": torch.tensor([1, 1]),
           "joints": _person()["joints"][None].expand(2, 1, 16, 2).clone(),
           "joints_vis": torch.ones(2, 1, 16, dtype=torch.uint8),
           "head_boxes": torch.tensor([[[0.0, 0.0, 6.0, 6.0]]] * 2)}
    dets = {"image": torch.tensor([0, 1]), "boxes": torch.tensor([[0.0, 0, 30, 60]] * 2),
            "scores": torch.tensor([0.9, 0.8])}
    joints = val["joints"][:, 0]
    seen = {}

    def fake_ap(preds, scores, gts, vis, heads):
        seen["n"] = len(preds)
        return {k: 0.125 for k in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle",
                                   "Total")}

    monkeypatch.setattr(pd_, "mpii_multi_person_ap", fake_ap)
    out = pd_.multi_person_ap(val, dets, joints, torch.ones(2, 16), PoseNMS())
    assert seen["n"] == 2 and set(out.values()) == {0.125}
    assert set(out) == {"head", "shoulder", "elbow", "wrist", "hip", "knee", "ankle", "total"}
    monkeypatch.setattr(pd_, "pckh", lambda *a, **k: {"Total": 0.375})
    assert pd_.pckh_total(joints, {"joints": joints, "vis": torch.ones(2, 16, dtype=torch.bool),
                                   "head": val["head_boxes"][:, 0]}) == 0.375


def test_real_metric_on_perfect_predictions_is_one():
    p = _person()
    split = {"image": torch.zeros(1, 3, 8, 8), "num_people": torch.tensor([1]),
             "joints": p["joints"][None], "joints_vis": torch.ones(1, 1, 16, dtype=torch.uint8),
             "head_boxes": p["head"][None]}
    dets = {"image": torch.tensor([0]), "boxes": torch.tensor([[0.0, 0, 50, 70]]),
            "scores": torch.tensor([0.9])}
    out = pd_.multi_person_ap(split, dets, p["joints"], torch.ones(1, 16), PoseNMS())
    assert out["total"] == pytest.approx(1.0)
    assert pd_.pckh_total(p["joints"], p) == pytest.approx(1.0)


def _row_cfg(row: str) -> dict:
    params = P.load()
    params.raw["profile"] = "ci"
    return vars(P.build_config(methods.METHODS[row].config, params.method(row), row))


def _variant_cfg(variant: str) -> dict:
    """The settings a variant trains with, as its row builds them from params.yaml."""
    if variant == "full":
        return _row_cfg("eurl-pose")
    if variant == "every step":
        return _row_cfg("eurl-pose-every-step")
    return ea.ablation_settings(_row_cfg("eurl-pose-ablations"))[variant]


def _tiny_setup(cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    arch = {"crop_size": 16, "channels": 8, "stacks": 2, "depth": 2, "downsample": 2,
            "sigma": 1.0}
    net = pd_.build_pose_net(arch).eval()
    env = pe.make_env(net, arch, cfg)
    policy = PolicyValueNet(env.obs_channels, 9, 4, 16)
    agent = TDActorCritic(policy, 1e-2, 0.9, 0.05)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    images = torch.rand(6, 3, 40, 40)
    boxes = torch.tensor([[8.0, 4.0, 28.0, 36.0]]).repeat(6, 1)
    joints = torch.rand(6, 16, 2) * 20 + 10
    targets = {"joints": joints, "vis": torch.ones(6, 16, dtype=torch.bool)}
    return net, env, agent, opt, images, boxes, targets


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def _changed(net, before) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_ablation_c_sends_policy_gradients_into_the_pose_network(variant, monkeypatch):
    """With the supervised upgrade switched off, the pose network changes only through the
    policy loss, and only ablation (c) lets it."""
    cfg = _variant_cfg(variant)
    net, env, agent, opt, images, boxes, targets = _tiny_setup(cfg)
    # the supervised upgrade contributes a zero gradient (ablation (c) joins its policy
    # gradient to the upgrade's step, one recognition step per batch)
    env.recognizer.train_loss = lambda out, b, t: out.sum() * 0
    monkeypatch.setattr(pe, "upgrade_every_step", lambda *a, **k: 0.0)
    before = _params(net)
    pe.agent_step(env, agent, opt, cfg, images, boxes, targets, engine.generator(0, "t", 0))
    assert _changed(net, before) == variant.startswith("(c)")


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_ablation_b_leaves_the_pose_network_as_pretrained(variant):
    cfg = _variant_cfg(variant)
    net, env, agent, opt, images, boxes, targets = _tiny_setup(cfg)
    before = _params(net)
    pe.agent_step(env, agent, opt, cfg, images, boxes, targets, engine.generator(0, "t", 0))
    assert _changed(net, before) == (not variant.startswith("(b)"))


def test_every_step_upgrade_draws_from_the_whole_sequence(monkeypatch):
    cfg = {**_variant_cfg("every step"), "t_max": 3}
    net, env, agent, opt, images, boxes, targets = _tiny_setup(cfg)
    seen = {}

    def spy(rec, opt, crops, b, tg):
        seen["boxes"] = b
        return 0.0

    monkeypatch.setattr(actor_critic, "upgrade_environment", spy)
    pe.agent_step(env, agent, opt, cfg, images, boxes, targets, engine.generator(0, "t", 1))
    visited = torch.cat([b for _, b in env.visited])
    assert visited.shape[0] > boxes.shape[0]          # initial boxes plus every moved box
    assert seen["boxes"].shape == boxes.shape          # same upgrade batch size as last-step
    # the drawn inputs are visited boxes, not only the final ones
    assert all((visited == b).all(1).any() for b in seen["boxes"])


def test_row_configs_select_the_ablations():
    cfgs = {v: _variant_cfg(v) for v in VARIANTS}
    assert [c["feedback"] for c in cfgs.values()] == [True, False, True, True, True]
    assert [c["upgrade"] for c in cfgs.values()] == ["last", "last", "none", "last", "every"]
    assert [c["backprop_policy"] for c in cfgs.values()] == [False, False, False, True, False]
    env = pe.make_env(StackedHourglass(1, 4, 1), {"crop_size": 8, "sigma": 1.0,
                                                   "downsample": 2}, cfgs["(a) w/o feedback"])
    assert env.obs_channels == 3   # (a): the agent sees only the crop


@pytest.mark.parametrize("profile", ["ci", "smoke", "paper"])
def test_an_empty_heatmap_never_earns_the_terminal_reward(profile):
    """L is relative to the empty heatmap's loss: an all-zero heatmap scores L = 1 for any
    person, box and map size, above every profile's ε, so terminating on it costs -1."""
    params = P.load()
    params.raw["profile"] = profile
    eps = {vars(P.build_config(methods.METHODS[r].config, params.method(r), r))["epsilon"]
           for r in ("eurl-pose", "eurl-pose-ablations", "eurl-pose-every-step")}
    assert len(eps) == 1 and 0 < eps.pop() < 1
    g = torch.Generator().manual_seed(0)
    for size, sigma in ((16, 1.5), (64, 1.0)):
        arch = {"crop_size": size, "downsample": 1, "sigma": sigma, "stacks": 1}
        loss = pe.HeatmapLoss(arch)
        joints = torch.rand(5, 16, 2, generator=g) * 60
        vis = torch.rand(5, 16, generator=g) > 0.3
        boxes = torch.tensor([[0.0, 0, 64, 64], [10, 10, 30, 50], [40, 40, 70, 70],
                              [0, 0, 8, 8], [5, 5, 60, 60]])
        empty = torch.zeros(5, 16, size, size)
        L = loss(empty, boxes, {"joints": joints, "vis": vis})
        assert torch.allclose(L, torch.ones(5))
        reward = pe.EURLReward(alpha=0.1, epsilon=_row_cfg("eurl-pose")["epsilon"])
        assert (reward(L, L, torch.ones(5, dtype=torch.bool)) == -1).all()
        # no annotated joint at all (test-time blank targets): still no +1
        none = loss(empty, boxes, {"joints": joints, "vis": torch.zeros_like(vis)})
        assert (reward(none, none, torch.ones(5, dtype=torch.bool)) == -1).all()
        # the targets themselves as heatmaps earn it where the box holds the person
        tg, _, _ = pd_.pose_targets(arch, joints, vis, boxes)
        assert loss(tg, boxes, {"joints": joints, "vis": vis})[0] < reward.epsilon


def test_multi_person_ap_scores_groups_only():
    """A separated single person is no ground truth, and a pose on it is ignored rather
    than counted a false positive (the MPII multi-person benchmark's groups)."""
    a, b = _person(10.0, 10.0), _person(120.0, 10.0)   # b far from a: a separated person
    split = {"image": torch.zeros(1, 3, 8, 8), "num_people": torch.tensor([2]),
             "joints": torch.cat([a["joints"], b["joints"]])[None],
             "joints_vis": torch.ones(1, 2, 16, dtype=torch.uint8),
             "head_boxes": torch.cat([a["head"], b["head"]])[None],
             "single": torch.tensor([[0, 1]], dtype=torch.uint8)}
    dets = {"image": torch.tensor([0, 0]), "boxes": torch.tensor([[0.0, 0, 40, 70],
                                                                   [110.0, 0, 150, 70]]),
            "scores": torch.tensor([0.5, 0.9])}
    wrong_b = b["joints"] + 30.0   # a bad pose on the separated person, scored higher
    joints = torch.cat([a["joints"], wrong_b])
    out = pd_.multi_person_ap(split, dets, joints, torch.ones(2, 16), PoseNMS())
    assert out["total"] == pytest.approx(1.0)
    split["single"][:] = 0      # both in the group: the bad pose now costs
    assert pd_.multi_person_ap(split, dets, joints, torch.ones(2, 16), PoseNMS())["total"] < 0.9


def test_holdout_part_of_train_is_disjoint_from_the_trained_people():
    """The plateau schedules are measured on people of held-out training images, never
    drawn for training (issue 19)."""
    image = torch.repeat_interleave(torch.arange(20), torch.tensor([1, 2, 3, 1] * 5))
    trained, held = pd_.split_holdout({"image": image})
    assert set(trained.tolist()) | set(held.tolist()) == set(range(len(image)))
    assert not set(image[trained].tolist()) & set(image[held].tolist())
    assert len(set(image[held].tolist())) == 2          # 10% of the 20 images
    again = pd_.split_holdout({"image": image})
    assert torch.equal(again[1], held)
    g = engine.generator(0, "t", 0)
    assert set(ea.draw_people(trained, 200, g).tolist()) <= set(trained.tolist())
    one = pd_.split_holdout({"image": torch.zeros(3, dtype=torch.long)})
    assert one[1].numel() == 0 and one[0].numel() == 3   # one image: nothing held out
