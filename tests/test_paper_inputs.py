"""The paper profile's pretrained agent trunks get their ImageNet input (issue 17): the
resnet18 trunk normalises the RGB crop with ImageNet's mean and std, the pose agent hands
it the crop as the COCO agents do (not standardised per image), the policy and value
heads sit on the ResNet-18's features, the DQN optimises in train mode after an
evaluation, and RMPE's SSD keeps the row's max_dets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from methods.activeloc import dqn as dqn_rows
from methods.eurl import pose_data as pd_
from methods.eurl import pose_env as pe
from rlcv import engine
from rlcv.models.agent_nets import ConvTrunk, PolicyValueNet, QNet
from rlcv.rl import dqn
from rlcv.rl.boxenv import BoxEnv, BoxIoULoss, CaicedoReward

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _first_conv_input(trunk: ConvTrunk, conv: torch.nn.Module, obs: torch.Tensor):
    seen = {}
    hook = conv.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].clone()))
    trunk.eval()
    with torch.no_grad():
        trunk(obs)
    hook.remove()
    return seen["x"]


def test_resnet18_trunk_normalises_the_rgb_crop_and_passes_the_rest():
    torch.manual_seed(0)
    crops = torch.rand(2, 3, 32, 32)
    extra = torch.randn(2, 1, 32, 32)
    obs = torch.cat([crops - 0.5, extra], 1)   # BoxEnv.compose's range
    trunk = ConvTrunk(4, backbone="resnet18", weights="none")
    x = _first_conv_input(trunk, trunk.conv.conv1, obs)
    torch.testing.assert_close(x[:, :3], (crops - MEAN) / STD)
    assert torch.equal(x[:, 3:], extra)
    # the buffers are not saved: state dicts and checkpoints keep their keys
    assert not any("rgb_" in k for k in trunk.state_dict())
    # the small trunk takes the observation as it comes
    small = ConvTrunk(4, width=4, hidden=8)
    assert torch.equal(_first_conv_input(small, small.conv[0], obs), obs)


def _pose_env(backbone: str, feedback: bool = True):
    torch.manual_seed(0)
    arch = {"crop_size": 16, "channels": 8, "stacks": 2, "depth": 2, "downsample": 2,
            "sigma": 1.0}
    net = pd_.build_pose_net(arch).eval()
    cfg = {"epsilon": 0.5, "t_max": 3, "feedback": feedback, "backbone": backbone}
    return pe.make_env(net, arch, cfg), net


def test_pose_agent_standardises_crops_only_for_the_small_trunk():
    crops = torch.rand(3, 3, 16, 16) * 0.3 + 0.2
    for backbone in ("small", "resnet18"):
        env, net = _pose_env(backbone)
        with torch.no_grad():
            out = net(crops)
        obs = env.compose(crops, out)
        heat = env.heat_gain * env.recognizer.observe(out)
        assert torch.equal(obs[:, 3:], heat)   # heatmaps as before on both trunks
        if backbone == "small":
            x = crops - crops.mean((2, 3), keepdim=True)
            x = x / crops.std((2, 3), keepdim=True).clamp(min=0.02)
            assert torch.equal(obs[:, :3], x)
        else:
            assert torch.equal(obs[:, :3], crops - 0.5)
    env, _ = _pose_env("resnet18", feedback=False)
    assert torch.equal(env.compose(crops, None), crops - 0.5)


def test_pose_and_coco_agents_feed_resnet18_the_same_imagenet_input():
    """One rule for both: the crop reaches the pretrained conv1 ImageNet-normalised."""
    crops = torch.rand(2, 3, 16, 16)
    pose_env, net = _pose_env("resnet18", feedback=False)
    coco_env = BoxEnv(None, BoxIoULoss(), CaicedoReward(), t_max=3, crop_size=16)
    for env in (pose_env, coco_env):
        policy = PolicyValueNet(env.obs_channels, 9, backbone="resnet18")
        x = _first_conv_input(policy.trunk, policy.trunk.conv.conv1, env.compose(crops, None))
        torch.testing.assert_close(x, (crops - MEAN) / STD)


def test_dqn_optimises_in_train_mode_after_an_evaluation(monkeypatch):
    """rlcv.rl.dqn.greedy leaves the Q-network in eval mode; the next training step's
    Q-learning updates must run in train mode (BatchNorm of the resnet18 trunk)."""
    g = torch.Generator().manual_seed(0)
    n, size = 8, 32
    boxes = torch.tensor([[4.0, 6.0, 20.0, 26.0]]).repeat(n, 1)
    split = {"image": torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
             "mask": torch.zeros(n, size, size, dtype=torch.bool), "box": boxes}
    data = SimpleNamespace(load=lambda name: split, device=torch.device("cpu"))
    run = SimpleNamespace(device=torch.device("cpu"), seed=0, inputs={})
    cfg = dqn_rows.DQNConfig(episodes=3, batch_size=4, t_max=3, history=2, crop_size=16,
                             width=4, hidden=16, replay=64, replay_batch=8, warmup=4,
                             eval_every=1, eval_images=4)
    modes = []
    learn = dqn.DQNAgent.learn

    def spy(self, *a, **k):
        modes.append(self.q.training)
        return learn(self, *a, **k)

    def fit(run, phase, objects, steps, step_fn, eval_fn=None, eval_every=0):
        for step in range(steps):   # an evaluation before every step
            eval_fn()
            step_fn(step)

    monkeypatch.setattr(dqn.DQNAgent, "learn", spy)
    monkeypatch.setattr(engine, "fit", fit)
    monkeypatch.setattr(engine, "save_checkpoint", lambda *a, **k: "ckpt")
    dqn_rows.train_dqn(cfg, data, run)
    assert modes and all(modes), modes


def test_ssd_keeps_the_rows_max_dets():
    assert "max_dets" in pd_.DET_ARCH
    arch = {"det_backbone": "ssd300_vgg16", "det_weights": "none", "det_width": 64,
            "det_proposals": 300, "max_dets": 7}
    assert pd_.build_person_detector(arch, 300).detections_per_img == 7
    old = {k: v for k, v in arch.items() if k != "max_dets"}   # checkpoints before it
    assert pd_.build_person_detector(old, 300).detections_per_img == 20


def test_head_on_trunk_puts_the_heads_on_the_resnet18_features():
    """EU-RL: the ResNet-18's "last layer is replaced with a fully connected layer with 9
    output units" (and the value head's with 1): no layer between them on the paper profile."""
    net = PolicyValueNet(4, 9, hidden=512, backbone="resnet18", weights="none",
                         head_on_trunk=True)
    assert isinstance(net.trunk.fc, torch.nn.Identity)
    assert (net.pi.in_features, net.v.in_features) == (512, 512)
    logits, value = net.eval()(torch.zeros(2, 4, 64, 64))
    assert logits.shape == (2, 9) and value.shape == (2,)
    small = PolicyValueNet(4, 9, width=4, hidden=8)   # the small profiles keep their layer
    assert small.pi.in_features == 8 and isinstance(small.trunk.fc[0], torch.nn.Linear)


def test_paper_agents_have_no_extra_layer_and_the_dqn_its_two():
    from rlcv import params as P
    from tests.conftest import REPO

    params = P.load(REPO / "params.yaml")
    params.raw["profile"] = "paper"
    for row in ("agent-deepmask", "regress-agent-deepmask", "eurl-pose", "eurl-pose-t2"):
        assert params.method(row)["head_on_trunk"] is True, row
    for row in ("dqn-localizer", "regress-dqn-deepmask"):
        got = params.method(row)
        assert (got["hidden"], got["history"]) == (1024, 10), row
    with pytest.raises(ValueError, match="hidden"):
        QNet(4, 9, hidden=0)
