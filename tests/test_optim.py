"""rlcv.optim: the fused update computes what torch's per-tensor CPU default computes up
to rounding (issue 22), every optimizer the rows build takes it on the CPU, and a device
without the fused kernel gets the multi-tensor update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlcv import optim
from rlcv.models.hourglass import StackedHourglass


def _steps(params: list[nn.Parameter], opt, grads: list[list[torch.Tensor]]) -> list:
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("name,kw", [("adam", {}), ("adam", {"weight_decay": 1e-2}),
                                     ("adamw", {"weight_decay": 1e-2}),
                                     ("sgd", {"weight_decay": 1e-4})])
def test_the_fused_update_is_the_per_tensor_loop_up_to_rounding(name, kw):
    """Fed the same gradients (the hourglass's 100+ tensors, 50 steps), the fused update
    lands within float rounding of the per-tensor loop. (Through a network the two
    trajectories part after the first step, as any rounding change does: Adam turns the
    sign of a near-zero gradient into a full step.)"""
    torch.manual_seed(0)
    start = [p.detach() for p in StackedHourglass(stacks=2, channels=8, depth=2).parameters()]
    g = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=g) * 1e-2 for p in start] for _ in range(50)]
    ref_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    extra = {"momentum": 0.9} if name == "sgd" else {}
    ours_p = [nn.Parameter(p.clone()) for p in start]
    ref_p = [nn.Parameter(p.clone()) for p in start]
    ours = _steps(ours_p, optim.build(name, ours_p, 1e-3, **kw), grads)
    ref = _steps(ref_p, ref_cls(ref_p, lr=1e-3, foreach=False, **extra, **kw), grads)
    moved = max((a - b).abs().max().item() for a, b in zip(ref, start, strict=True))
    assert moved > 1e-3                                                    # it stepped
    gap = max((a - b).abs().max().item() for a, b in zip(ours, ref, strict=True))
    assert gap < 1e-6                            # ~1e-7 here: rounding, not another update


def test_every_optimizer_takes_the_fused_path_on_the_cpu():
    params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2), requires_grad=False)]
    built = [optim.build(n, params, 1e-3) for n in optim.OPTIMIZERS]
    for opt in (optim.adam(params, 1e-3), *built):
        assert opt.param_groups[0]["fused"] is True
    assert len(optim.adam(iter(params), 1e-3).param_groups[0]["params"]) == 2     # as given
    assert len(optim.build("adam", params, 1e-3).param_groups[0]["params"]) == 1  # trainable
    groups = [{"params": [params[0]], "lr": 1e-2}]
    assert optim.build("sgd", groups, 1e-3).param_groups[0]["fused"] is True


def test_a_device_without_the_fused_kernel_gets_the_multi_tensor_update():
    meta = [nn.Parameter(torch.zeros(3, device="meta"))]
    for opt in (optim.adam(meta, 1e-3), *(optim.build(n, meta, 1e-3) for n in optim.OPTIMIZERS)):
        assert opt.param_groups[0]["foreach"] is True and not opt.param_groups[0]["fused"]


def test_no_row_builds_a_torch_optimizer_of_its_own():
    """Every optimizer of rlcv/ and methods/ comes from rlcv.optim, so none falls back to
    the per-tensor loop (issue 22) and the pipeline's SHARED_CODE covers them all."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = [f"{p.relative_to(root)}" for d in ("rlcv", "methods") for p in (root / d).rglob("*.py")
             if p.name != "optim.py" and any(f"torch.optim.{c}(" in p.read_text()
                                             for c in ("Adam", "AdamW", "SGD"))]
    assert found == []
