"""The held-out part of a training split that EU-RL's learning-rate plateaus are measured
on (Xie et al. 2018: "decreases by a factor of 5 whenever it reaches validation plateau";
our val split is the paper's test part, so it never steers training)."""

from __future__ import annotations

import torch

HOLDOUT = 0.1
"""Share of the training images whose samples are held out of training to measure the
learning-rate plateaus on (issues 17, 19): the reported val split never steers training."""


def split_holdout(p: dict, fraction: float = HOLDOUT) -> tuple[torch.Tensor, torch.Tensor]:
    """(trained, held) indices of training samples `p` (`p["image"]`: each sample's image,
    e.g. MPII's people; subset D has one sample per image): the samples of a fixed seeded
    draw of `fraction` of the images (at least one when there are two or more) are held
    out."""
    n_img = int(p["image"].max()) + 1 if p["image"].numel() else 0
    k = min(max(round(fraction * n_img), 1), n_img - 1) if n_img > 1 else 0
    held_img = torch.randperm(n_img, generator=torch.Generator().manual_seed(0))[:k]
    held = torch.isin(p["image"].cpu(), held_img).to(p["image"].device)
    return (~held).nonzero()[:, 0], held.nonzero()[:, 0]
