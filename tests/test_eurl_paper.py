"""DeepMask's published architecture on the paper profile (rlcv.models.deepmask, issue 17):
the VGG-A trunk at stride 16, the low-rank mask branch, ImageNet weights from the hub
cache, and the factory that rebuilds the network from a (checkpoint's) config (the rows
themselves run in tests/test_dryrun.py: Finetune-Deepmask's evaluation rebuilds the
network from its own checkpoint config, which takes the trunk of its source.)"""

from __future__ import annotations

import pytest
import torch


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_deepmask_architecture_matches_the_paper():
    from rlcv.models.deepmask import DeepMask

    net = DeepMask(load=False)
    x = torch.rand(2, 3, 224, 224)
    trunk = net.features((x - net.mean) / net.std)
    assert trunk.shape == (2, 512, 14, 14)   # 224 / 16: the last max-pool removed
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8   # VGG-A
    assert net.low_rank.out_features == 512 and net.mask.out_features == 56 * 56
    assert net(x).shape == (2, 1, 224, 224)
    # 9.2 M in the trunk, 0.3 M in the 1x1 conv, 51.4 M + 1.6 M in the two linear layers
    assert 62.0e6 < _count(net) < 63.0e6
    # a dry run's small crop keeps the architecture (the pooled grid stays 14 x 14)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_deepmask_loads_vgg11_weights_from_the_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import vgg11

    from rlcv.models import pretrained
    from rlcv.models.deepmask import DeepMask

    name = "VGG11_Weights.IMAGENET1K_V1"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLCV_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(pretrained.WeightsError, match="vgg11-"):
        DeepMask(name)   # no file: one error naming it
    torch.manual_seed(1)
    state = vgg11(weights=None).state_dict()
    pretrained.cache_file(name).parent.mkdir(parents=True)
    torch.save(state, pretrained.cache_file(name))
    net = DeepMask(name)
    for key, value in net.features.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    fresh = DeepMask(load=False)
    assert not torch.equal(fresh.features[0].weight, net.features[0].weight)


def test_mask_net_picks_the_trunk_from_the_config():
    from rlcv.models.deepmask import DeepMask, mask_net
    from rlcv.models.segnet import MaskNet

    assert isinstance(mask_net({"width": 4}), MaskNet)   # configs from before `trunk`
    assert isinstance(mask_net({"width": 4, "trunk": "small"}), MaskNet)
    assert isinstance(mask_net({"width": 4, "trunk": "vgg11"}), DeepMask)
    with pytest.raises(ValueError, match="trunk"):
        mask_net({"width": 4, "trunk": "vgg16"})



def test_agent_plateau_schedule_trains_outside_its_held_out_part():
    """The paper's schedule for the COCO agent: episodes never start on the held-out
    images; the lr is divided by 5 once the held-out IoU stalls for `patience` evaluations."""
    from types import SimpleNamespace

    from methods.eurl import agent as A
    from methods.eurl.holdout import split_holdout

    n = 40
    cfg = A.AgentConfig(lr=1e-3, plateau_patience=2, eval_images=3)
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    train = {"mask": torch.zeros(n, 8, 8, dtype=torch.bool), "box": torch.zeros(n, 4)}
    images, starts = torch.rand(n, 3, 8, 8), torch.rand(n, 4)
    plateau = A._Plateau(cfg, SimpleNamespace(opt=opt), None, images, starts, train)
    _, held = split_holdout({"image": torch.arange(n)})
    assert held.numel() == 4 and plateau.images.shape[0] == 3   # eval_images caps it
    assert torch.equal(plateau.images, images[held[:3]])
    g = torch.Generator().manual_seed(0)
    drawn = torch.cat([plateau.draw(16, g) for _ in range(50)])
    assert not torch.isin(drawn, held).any() and drawn.unique().numel() == n - held.numel()
    lrs = []
    for iou in (0.5, 0.6, 0.6, 0.6, 0.6):   # improves once, then stalls
        plateau.sched.step(iou)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == [1e-3] * 4 and abs(lrs[4] - 2e-4) < 1e-12
