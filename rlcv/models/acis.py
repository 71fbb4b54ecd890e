"""The networks of ACIS (Araslanov et al., "Actor-Critic Instance Segmentation", CVPR 2019).

- `angle_targets` / `aux_channels`: the pre-processing targets and features of Sec. 5.2 —
  foreground and the 8-bin instance-angle quantisation of Uhrig et al. [35] (the angle
  of each object pixel about its instance's centroid), predicted by a standalone network
  (`rlcv.models.segnet.MaskNet` with 1 + 8 output channels).
- `state_pyramid`: the State Pyramid (Sec. 5.1-5.2, Fig. 2) — image and auxiliary channels
  at the decoder's scales.
- `MaskEncoder`, `MaskDecoder`: the cVAE of Sec. 5.2. The encoder maps (image, one
  ground-truth mask) to an l-dimensional Gaussian; the decoder maps a latent code to mask
  logits, conditioned on the State Pyramid (or not, `pyramid=False`: AC-Dice-NoSP).
- `Actor`: the new encoder of Sec. 5.3 over (image, aux channels, accumulated mask M_t)
  with an LSTM at the bottleneck; it outputs the action distribution (mean, log-variance
  of the latent code, sampled by reparametrisation) and the termination unit, which reads
  the hidden state and, through a skip connection, the layer preceding it.
- `Critic`: Q(s_t, a_t) of Eq. 6 from the state (image, aux channels, M_t) and the decoded
  mask m_t = D(a_t) of the action.
- `transition`: Eq. 3, M_{t+1} = max(M_t, D(a_t)) pixelwise.

All networks run at a working resolution (h, w) divisible by 8.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

N_ANGLES = 8
AUX = 1 + N_ANGLES
"""Auxiliary channels: foreground probability and 8 angle-bin probabilities."""


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm: batch-size independent (rollouts run one step of a few episodes at a time)
    # and it shortens the cVAE's initial all-background plateau considerably
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1),
                         nn.GroupNorm(4 if cout % 4 == 0 else 1, cout), nn.ReLU(inplace=True))


def angle_targets(inst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground (B, h, w) float and angle bins (B, h, w) long in [0, 8) from instance
    stacks `inst` (B, K, h, w) bool: each object pixel's angle about its instance centroid,
    quantised into 8 bins (Uhrig et al. [35]); background pixels get bin 0 (ignored)."""
    b, k, h, w = inst.shape
    m = inst.float()
    ys = torch.arange(h, dtype=torch.float32, device=inst.device)[:, None].expand(h, w)
    xs = torch.arange(w, dtype=torch.float32, device=inst.device)[None, :].expand(h, w)
    area = m.sum((2, 3)).clamp(min=1)
    cy, cx = (m * ys).sum((2, 3)) / area, (m * xs).sum((2, 3)) / area
    # every pixel belongs to at most one instance: sum the per-instance offsets
    dy = (m * (ys - cy[:, :, None, None])).sum(1)
    dx = (m * (xs - cx[:, :, None, None])).sum(1)
    fg = m.amax(1)
    bins = ((torch.atan2(dy, dx) + math.pi) / (2 * math.pi) * N_ANGLES).long() % N_ANGLES
    return fg, bins * fg.long()


def aux_channels(logits: torch.Tensor) -> torch.Tensor:
    """Pre-processing logits (B, 9, h, w) -> aux channels: foreground probability and the
    angle-bin probabilities masked by it (B, 9, h, w)."""
    fg = torch.sigmoid(logits[:, :1])
    return torch.cat([fg, torch.softmax(logits[:, 1:], 1) * fg], 1)


def preproc_loss(logits: torch.Tensor, fg: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """BCE on the foreground plus cross-entropy of the angle bins on object pixels."""
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], fg)
    ce = F.cross_entropy(logits[:, 1:], bins, reduction="none")
    return bce + (ce * fg).sum() / fg.sum().clamp(min=1)


def state_pyramid(image: torch.Tensor, aux: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """The State Pyramid: (image, aux) at scales 1/8, 1/4, 1/2, 1 (coarse to fine)."""
    x = torch.cat([image, aux], 1)
    out = [x]
    for _ in range(levels - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out[::-1]


class MaskEncoder(nn.Module):
    """cVAE encoder: (image, one instance mask) at (h, w) -> (mean, log-variance) of z."""

    def __init__(self, hw: tuple[int, int], latent: int, width: int = 16, in_ch: int = 4):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv(in_ch, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2))
        self.head = nn.Linear(2 * w * (hw[0] // 8) * (hw[1] // 8), 2 * latent)
        # start near a deterministic auto-encoder: with unit noise on z from the first step
        # the decoder learns to ignore the code (posterior collapse)
        nn.init.constant_(self.head.bias[latent:], -4.0)

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        z = self.head(self.body(torch.cat([image, mask], 1)).flatten(1))
        return z.chunk(2, 1)


class MaskDecoder(nn.Module):
    """cVAE decoder D: latent code (N, l) [+ State Pyramid] -> mask logits (N, 1, h, w).

    With `pyramid`, the image and aux channels are concatenated at every scale
    (1/8 ... 1), compensating the resolution lost at the bottleneck.
    """

    def __init__(self, hw: tuple[int, int], latent: int, width: int = 16, pyramid: bool = True):
        super().__init__()
        self.hw, self.pyramid = hw, pyramid
        sp = 3 + AUX if pyramid else 0
        w = width
        chans = [2 * w, 2 * w, w, w]   # at 1/8, 1/4, 1/2, 1
        self.fc = nn.Linear(latent, chans[0] * (hw[0] // 8) * (hw[1] // 8))
        self.stages = nn.ModuleList(
            _conv(c_in + sp, c_out) for c_in, c_out in zip([chans[0], *chans[:-1]], chans,
                                                           strict=True))
        self.head = nn.Conv2d(chans[-1], 1, 3, 1, 1)
        # start at a small object probability (~5%), near the share of an instance's
        # pixels, instead of 0.5: the cVAE then leaves its all-background plateau early
        nn.init.constant_(self.head.bias, -3.0)

    def forward(self, z: torch.Tensor, pyramid: list[torch.Tensor] | None = None):
        h8, w8 = self.hw[0] // 8, self.hw[1] // 8
        x = F.relu(self.fc(z)).view(z.shape[0], -1, h8, w8)
        for i, stage in enumerate(self.stages):
            if i:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if self.pyramid:
                x = torch.cat([x, pyramid[i]], 1)
            x = stage(x)
        return self.head(x)


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample (summed over latent dimensions)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


class Actor(nn.Module):
    """The actor's encoder: state (image, aux, M_t) and LSTM state -> action distribution,
    termination logit ("1" = continue) and the new LSTM state."""

    def __init__(self, hw: tuple[int, int], latent: int, width: int = 16, hidden: int = 128,
                 init_logvar: float = -4.0):
        super().__init__()
        w = width
        self.body = nn.Sequential(_conv(3 + AUX + 1, w, 2), _conv(w, 2 * w, 2),
                                  _conv(2 * w, 2 * w, 2))
        self.fc = nn.Linear(2 * w * (hw[0] // 8) * (hw[1] // 8), hidden)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.mu = nn.Linear(2 * hidden, latent)
        self.logvar = nn.Linear(2 * hidden, latent)
        self.stop = nn.Linear(2 * hidden, 1)
        self.hidden = hidden
        # start with little exploration noise; the KL term (Algorithm 1) pulls it up
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, init_logvar)

    def initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero LSTM state (h, c) for `n` episodes."""
        z = torch.zeros(n, self.hidden, device=self.logvar.bias.device)
        return z, z.clone()

    def forward(self, image, aux, mask, state):
        """Returns mean, log-variance, termination logit (N,) and the new (h, c)."""
        f = F.relu(self.fc(self.body(torch.cat([image, aux, mask], 1)).flatten(1)))
        h, c = self.lstm(f, state)
        x = torch.cat([h, f], 1)   # skip connection from the layer preceding the LSTM
        return self.mu(x), self.logvar(x).clamp(-8, 4), self.stop(x)[:, 0], (h, c)


class Critic(nn.Module):
    """Q(s_t, a_t): (image, aux, M_t) and the decoded action mask m_t -> a scalar.

    A convolutional branch sees the state and the mask together (with the products
    m_t * M_t and m_t * fg); a mask-pooling branch summarises the state's channels inside
    m_t (their mask-weighted means, the mask's area). The pooled features make Q a smooth
    function of every pixel of m_t, so its gradient (what the actor follows) is informative
    early in training.
    """

    def __init__(self, hw: tuple[int, int], width: int = 16, hidden: int = 64):
        super().__init__()
        w = width
        state = 3 + AUX + 1
        self.body = nn.Sequential(_conv(state + 3, w, 2), _conv(w, 2 * w, 2),
                                  _conv(2 * w, 2 * w, 2))
        conv_out = 2 * w * (hw[0] // 8) * (hw[1] // 8) + 4 * w
        self.head = nn.Sequential(nn.Linear(conv_out + state + 1, hidden),
                                  nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, image, aux, mask, action_mask):
        """Q-values (N,) of decoded action masks (N, 1, h, w) in states (image, aux, mask)."""
        s = torch.cat([image, aux, mask], 1)
        x = torch.cat([s, action_mask, action_mask * mask, action_mask * aux[:, :1]], 1)
        f = self.body(x)
        area = action_mask.sum((2, 3))
        pooled = (s * action_mask).sum((2, 3)) / (area + 1.0)
        # the area as a fraction of the image (shape-based: an empty batch, every episode
        # of it finished, gives empty Q-values)
        feats = [f.flatten(1), f.mean((2, 3)), f.amax((2, 3)), pooled,
                 area / (action_mask.shape[-2] * action_mask.shape[-1])]
        return self.head(torch.cat(feats, 1))[:, 0]


def transition(mask: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    """Eq. 3: the accumulated mask after adding the decoded prediction (pixelwise max)."""
    return torch.maximum(mask, decoded)
