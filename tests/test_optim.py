"""rlcv.optim: the multi-tensor ("foreach") update computes what torch's per-tensor CPU
default computes, bit for bit, so switching every optimizer of the suite to it (issue 22)
moves no trained weight; and every optimizer the rows build takes that path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rlcv import optim
from rlcv.models.hourglass import StackedHourglass


def _train(net: nn.Module, make, steps: int = 30) -> list[torch.Tensor]:
    net = copy.deepcopy(net)
    opt = make(net.parameters())
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        loss = sum(o.square().mean() for o in net(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("name,kw", [("adam", {}), ("adam", {"weight_decay": 1e-2}),
                                     ("adamw", {"weight_decay": 1e-2}),
                                     ("sgd", {"weight_decay": 1e-4})])
def test_the_multi_tensor_update_is_bit_identical_to_the_per_tensor_loop(name, kw):
    torch.manual_seed(0)
    net = StackedHourglass(stacks=2, channels=8, depth=2)
    ref_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    extra = {"momentum": 0.9} if name == "sgd" else {}
    ours = _train(net, lambda p: optim.build(name, p, 1e-3, **kw))
    ref = _train(net, lambda p: ref_cls(p, lr=1e-3, foreach=False, **extra, **kw))
    start = [p.detach() for p in net.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(ours, start, strict=True))      # it trained
    assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))


def test_every_optimizer_takes_the_multi_tensor_path():
    params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2), requires_grad=False)]
    built = [optim.build(n, params, 1e-3) for n in optim.OPTIMIZERS]
    for opt in (optim.adam(params, 1e-3), *built):
        assert opt.param_groups[0]["foreach"] is True
    assert len(optim.adam(params, 1e-3).param_groups[0]["params"]) == 2     # as given
    assert len(optim.build("adam", params, 1e-3).param_groups[0]["params"]) == 1  # trainable


def test_no_row_builds_a_torch_optimizer_of_its_own():
    """Every optimizer of rlcv/ and methods/ comes from rlcv.optim, so none falls back to
    the per-tensor loop (issue 22) and the pipeline's SHARED_CODE covers them all."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = [f"{p.relative_to(root)}" for d in ("rlcv", "methods") for p in (root / d).rglob("*.py")
             if p.name != "optim.py" and any(f"torch.optim.{c}(" in p.read_text()
                                             for c in ("Adam", "AdamW", "SGD"))]
    assert found == []
