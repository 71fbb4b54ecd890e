"""Optimizers and learning-rate schedules by name, as params.yaml sets them: the CPU
profiles' Adam/AdamW at a constant rate and the papers' SGD with momentum (Rao et al. 2018
Section 4.1; Zhou et al. 2019 Section 3.2) with PSPNet's "poly" schedule (Zhao et al.
2017, Section 4.1: lr = base_lr * (1 - iter / max_iter) ** power, power 0.9)."""

from __future__ import annotations

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "poly")


def _trainable(params) -> list:
    """The parameters (or param groups) that require gradients; a group left empty is
    dropped."""
    params = list(params)
    if params and isinstance(params[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        return [g for g in groups if g["params"]]
    return [p for p in params if p.requires_grad]


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """torch's Adam over `params` (all of them, as given) with the multi-tensor update.

    On the CPU torch defaults to updating one parameter tensor at a time, a Python loop
    of ~8 kernel calls per tensor; these models have hundreds of small tensors (the pose
    hourglass 296), so that loop was ~17% of a pose training step. `foreach=True` runs each
    operation over all tensors in one call and computes the same bits
    (tests/test_optim.py checks Adam, AdamW and SGD over 30 steps);
    benchmarks/test_bench_optim.py measures the step at about half the time. On CUDA it
    is torch's default already. Every Adam in the suite is built here or by `build`."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)


def build(name: str, params, lr: float, momentum: float = 0.9,
          weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Optimizer `name` over the parameters that require gradients (frozen ones left out);
    `params` may be torch param groups (dicts with their own "lr"), `lr` the default."""
    params = _trainable(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "adam":
        return adam(params, lr, weight_decay)
    raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")


def poly_factor(step: int, total: int, power: float = 0.9) -> float:
    """The "poly" multiplier (1 - step / total) ** power of the rate at `step` (0-based)."""
    return max(0.0, 1.0 - step / max(1, total)) ** power


def schedule(name: str, opt: torch.optim.Optimizer, total: int, power: float = 0.9):
    """The scheduler of schedule `name` over `total` steps (step it once per optimisation
    step), or None for 'constant'; 'poly' scales every group's initial rate by
    `poly_factor` (closed form, so a resumed run gets the same rates)."""
    if name == "constant":
        return None
    if name == "poly":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: poly_factor(s, total, power))
    raise ValueError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {name!r}")
