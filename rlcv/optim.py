"""Optimizers by name, as params.yaml sets them: the CPU profiles' Adam/AdamW and the
papers' SGD with momentum (Rao et al. 2018 Section 4.1; Zhou et al. 2019 Section 4)."""

from __future__ import annotations

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")


def build(name: str, params, lr: float, momentum: float = 0.9,
          weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Optimizer `name` over the parameters that require gradients (frozen ones left out)."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
