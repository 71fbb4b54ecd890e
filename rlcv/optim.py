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


def _kernel(params: list) -> dict:
    """How torch updates `params`: its fused kernel (one C++ loop over every tensor and
    every element) where all of them live on the CPU or CUDA, else the multi-tensor
    ("foreach") update (the lazy test device has no fused kernel).

    On the CPU torch defaults to updating one parameter tensor at a time, a Python loop
    of ~8 kernel calls per tensor; these models have hundreds of small tensors (the pose
    hourglass 296), so that loop was ~17% of a pose training step. The multi-tensor update
    computed its bits at half the time; the fused one reads and writes each element once
    (benchmarks/test_bench_optim.py: the Adam step about a third of the multi-tensor
    one's time). It rounds differently (tests/test_optim.py: within 1e-5 of the per-tensor
    loop after 30 steps)."""
    flat = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if flat and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in flat):
        return {"fused": True}
    return {"foreach": True}


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """torch's Adam over `params` (all of them, as given) with `_kernel`'s update. Every
    Adam in the suite is built here or by `build`."""
    params = list(params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **_kernel(params))


def build(name: str, params, lr: float, momentum: float = 0.9,
          weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Optimizer `name` over the parameters that require gradients (frozen ones left out);
    `params` may be torch param groups (dicts with their own "lr"), `lr` the default."""
    params = _trainable(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               **_kernel(params))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **_kernel(params))
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
