"""Policy, value and Q networks of the box-refining agents (EU-RL, Caicedo & Lazebnik).

EU-RL (Xie et al. 2018, Sections 3.2 and 4.1): the policy network π(a|s; θ_p) and the
value network V(s; θ_v) share every layer but the last ("the value network shares most
layers with the policy network, except in the last layer"); the input is the state
(s^I, s^R), the crop and the recognition network's output stacked as channels. The
paper uses a ResNet-18 (`backbone="resnet18"`, the `paper` profile); the CPU profiles use
a three-convolution trunk. Caicedo & Lazebnik's Q-network takes the same trunk plus the
one-hot history of the last actions, concatenated after the convolutions as in their
"feature vector + history" input layer.

Input range: the first three channels are the RGB crop centred as `crop - 0.5` (in
[-0.5, 0.5]; `BoxEnv.compose`), the others (s^R) whatever the environment scales them to.
The resnet18 trunk maps the RGB channels back to [0, 1] and normalises them with
ImageNet's mean and std, the input its pretrained filters expect; the extra channels reach
it unchanged. The small trunk takes the observation as it comes (the pose environment
standardises its crops per image for it, `methods.eurl.pose_env.SequenceEnv`).
"""

from __future__ import annotations

import torch
from torch import nn

import rlcv.models.pretrained as pretrained
from rlcv.models.deepmask import IMAGENET_MEAN, IMAGENET_STD


class ConvTrunk(nn.Module):
    """(N, C, S, S) observation [+ (N, E) vector] -> (N, out_dim) features; channels 0-2
    the RGB crop in [-0.5, 0.5] (see the module docstring). `hidden` > 0 adds one fully
    connected ReLU layer of that width after the convolutions (out_dim = hidden);
    `hidden` = 0 adds none (out_dim: the pooled features [+ the vector]), so the heads sit
    directly on the backbone (`PolicyValueNet(head_on_trunk=True)`: EU-RL's ResNet-18)."""

    def __init__(self, in_ch: int, width: int = 16, hidden: int = 128, extra: int = 0,
                 backbone: str = "small", weights: str = "none"):
        super().__init__()
        if backbone == "small":
            w = width
            self.conv = nn.Sequential(
                nn.Conv2d(in_ch, w, 3, 2, 1), nn.ReLU(inplace=True),
                nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(inplace=True),
                nn.Conv2d(2 * w, 2 * w, 3, 2, 1), nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            )
            feat = 2 * w * 16
        elif backbone == "resnet18":
            from torchvision.models import resnet18

            net = resnet18(weights=None)
            net.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
            net.fc = nn.Identity()
            # ImageNet filters for the RGB channels, zero for the recognition output
            pretrained.load_into(net, weights)
            self.conv, feat = net, 512
            # not in state dicts: checkpoints keep their keys
            self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                                 persistent=False)
            self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                                 persistent=False)
        else:
            raise ValueError(f"backbone must be 'small' or 'resnet18', got {backbone!r}")
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        self.fc = (nn.Sequential(nn.Linear(feat + extra, hidden), nn.ReLU(inplace=True))
                   if hidden else nn.Identity())
        self.out_dim = hidden or feat + extra
        self.extra = extra
        self.imagenet = backbone == "resnet18"

    def forward(self, obs: torch.Tensor, vec: torch.Tensor | None = None) -> torch.Tensor:
        if self.imagenet:   # RGB crop - 0.5 -> [0, 1] -> ImageNet-normalised; s^R unchanged
            rgb = (obs[:, :3] + 0.5 - self.rgb_mean) / self.rgb_std
            obs = torch.cat([rgb, obs[:, 3:]], 1)
        f = self.conv(obs)
        if self.extra:
            f = torch.cat([f, vec], 1)
        return self.fc(f)


class PolicyValueNet(nn.Module):
    """Actor-critic with a shared trunk: obs -> (action logits (N, A), value (N,))."""

    def __init__(self, in_ch: int, n_actions: int = 9, width: int = 16, hidden: int = 128,
                 backbone: str = "small", weights: str = "none", head_on_trunk: bool = False):
        super().__init__()
        # head_on_trunk: no shared `hidden` layer, the heads on the pooled trunk features
        self.trunk = ConvTrunk(in_ch, width, 0 if head_on_trunk else hidden, backbone=backbone,
                               weights=weights)
        self.pi = nn.Linear(self.trunk.out_dim, n_actions)
        self.v = nn.Linear(self.trunk.out_dim, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        return self.pi(h), self.v(h)[:, 0]


class QNet(nn.Module):
    """Q-network: (obs, action history (N, E)) -> Q values (N, A)."""

    def __init__(self, in_ch: int, history_dim: int, n_actions: int = 9, width: int = 16,
                 hidden: int = 128, backbone: str = "small", weights: str = "none"):
        super().__init__()
        if hidden < 1:   # Caicedo & Lazebnik's two fully connected layers need a width
            raise ValueError(f"the Q-network's hidden must be >= 1, got {hidden}")
        self.trunk = ConvTrunk(in_ch, width, hidden, extra=history_dim, backbone=backbone,
                               weights=weights)
        self.q = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                               nn.Linear(hidden, n_actions))

    def forward(self, obs: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.q(self.trunk(obs, history))
