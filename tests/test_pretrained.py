"""Pretrained weights (rlcv.models.pretrained): the torch hub cache, the one-line error
for a missing file, the extra-channel initialisation of the agents' first convolution."""

from __future__ import annotations

import pytest
import torch

from rlcv.models import pretrained
from rlcv.models.agent_nets import PolicyValueNet

NAME = "ResNet18_Weights.IMAGENET1K_V1"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache under a temporary TORCH_HOME, offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("RLCV_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "hub" / "checkpoints"


def _write_resnet18(hub_dir):
    """A ResNet-18 state dict with torchvision's keys (random values) at the file name
    torchvision gives ResNet18_Weights.IMAGENET1K_V1."""
    from torchvision.models import resnet18

    torch.manual_seed(1)
    state = resnet18(weights=None).state_dict()
    hub_dir.mkdir(parents=True, exist_ok=True)
    path = pretrained.cache_file(NAME)
    assert path.parent == hub_dir
    torch.save(state, path)
    return state


def test_loads_from_hub_cache_and_widens_first_conv(hub):
    state = _write_resnet18(hub)
    net = PolicyValueNet(in_ch=4, backbone="resnet18", weights=NAME)
    body = net.trunk.conv
    w = body.conv1.weight.detach()
    assert w.shape == (64, 4, 7, 7)
    assert torch.equal(w[:, :3], state["conv1.weight"])      # RGB filters copied
    assert torch.count_nonzero(w[:, 3:]) == 0                  # the extra channel starts at 0
    assert torch.equal(body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(body.bn1.running_var, state["bn1.running_var"])


def test_missing_file_is_one_clear_error(hub):
    with pytest.raises(pretrained.WeightsError) as err:
        PolicyValueNet(in_ch=4, backbone="resnet18", weights=NAME)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(hub / "resnet18-f37072fd.pth") in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert not pretrained.available(NAME)


def test_none_is_random_and_bad_names_are_refused(hub):
    torch.manual_seed(0)
    a = PolicyValueNet(in_ch=4, backbone="resnet18", weights="none").trunk.conv.conv1.weight
    assert torch.count_nonzero(a[:, 3:]) > 0                   # random, nothing loaded
    assert pretrained.available("none")
    with pytest.raises(pretrained.WeightsError, match="not a torchvision weights name"):
        pretrained.resolve("ResNet18_Weights.NOPE")


def test_wrong_keys_are_refused(hub):
    hub.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bogus.weight": torch.zeros(1)},
               pretrained.cache_file(NAME))
    with pytest.raises(pretrained.WeightsError, match="bogus.weight"):
        PolicyValueNet(in_ch=4, backbone="resnet18", weights=NAME)


def test_runs_record_their_weights_and_tables_say_random_init(repo):
    import methods
    from rlcv import params as P
    from rlcv.report.tables import weights_line
    from rlcv.seedrun import weights_used

    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    # the agent's own trunk and, through its requirement, DeepMask's VGG-A trunk
    agent = weights_used(params, methods.get("regress-agent-deepmask")).split("+")
    assert agent == [NAME, "VGG11_Weights.IMAGENET1K_V1"]
    # a row's requirements count: the pose agent starts from RMPE's SSD trunk
    pose = weights_used(params, methods.get("eurl-pose")).split("+")
    assert set(pose) == {NAME, "VGG16_Weights.IMAGENET1K_FEATURES"}
    params.raw["profile"] = "smoke"
    assert weights_used(params, methods.get("regress-agent-deepmask")) == "none"
    assert "RANDOM INITIALISATION" in weights_line(["none"])
    mixed = weights_line(["none", NAME])
    assert NAME in mixed and "RANDOM INITIALISATION" in mixed
    assert "RANDOM" not in weights_line([NAME])
