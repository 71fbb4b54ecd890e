"""The resumable training loop: checkpoints, resume, stale checkpoints, history."""

import copy
import csv
import subprocess
import sys

import pytest
import torch

from rlcv import engine


class Kill(Exception):
    pass


def _train(tmp_path, steps, kill_at=None, signature="s"):
    engine.seed_everything(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    run = engine.Run(row="toy", seed=0, dir=tmp_path, checkpoint_every=4, signature=signature)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    y = x.sum(1, keepdim=True)

    def step_fn(step):
        if step == kill_at:
            raise Kill
        g = engine.generator(0, "toy", step)
        idx = torch.randint(64, (8,), generator=g)
        noise = torch.randn(8, 1) * 0.01   # global RNG: must be restored on resume
        loss = ((model(x[idx]) - y[idx] - noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    engine.fit(run, "main", {"model": model, "opt": opt}, steps, step_fn)
    engine.write_history(run)
    return model, run


def test_resume_after_interruption_equals_uninterrupted(tmp_path, capsys):
    ref, _ = _train(tmp_path / "a", 20)
    with pytest.raises(Kill):
        _train(tmp_path / "b", 20, kill_at=10)   # checkpoint at step 8 survives
    resumed, run = _train(tmp_path / "b", 20)
    assert "resumed main from step 8" in capsys.readouterr().err
    for p, q in zip(ref.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    rows = list(csv.DictReader((tmp_path / "b" / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 21))


def test_finished_phase_is_skipped(tmp_path):
    _train(tmp_path, 8)
    model, run = _train(tmp_path, 8, kill_at=0)   # would raise if any step ran
    assert len(run.history) == 8


def test_stale_checkpoint_is_not_resumed(tmp_path, capsys):
    _train(tmp_path, 8, signature="old")
    with pytest.raises(Kill):
        _train(tmp_path, 8, kill_at=0, signature="new")
    assert "written for other settings" in capsys.readouterr().err


def test_fit_hooks_see_each_loop_and_step_until_removed(tmp_path):
    """A registered hook is told each loop's phase, start and steps as it starts (a
    resumed loop: from its checkpoint; a finished one: not at all) and each step after it
    ran; a removed one nothing."""
    calls = []

    def hook(run, phase, start, steps):
        calls.append((phase, start, steps))
        return lambda step: calls.append(step)

    handle = engine.register_fit_hook(hook)
    try:
        with pytest.raises(Kill):
            _train(tmp_path, 12, kill_at=6)     # checkpoint at step 4 survives
        assert calls == [("main", 0, 12), *range(6)]
        calls.clear()
        _train(tmp_path, 12)
        assert calls == [("main", 4, 12), *range(4, 12)]
        calls.clear()
        _train(tmp_path, 12)                    # finished: no loop runs
        assert calls == []
    finally:
        handle.remove()
    _train(tmp_path / "b", 3)
    assert calls == [] and not engine._FIT_HOOKS


def test_generator_is_keyed():
    a = torch.rand(3, generator=engine.generator(1, "x", 5))
    b = torch.rand(3, generator=engine.generator(1, "x", 5))
    c = torch.rand(3, generator=engine.generator(1, "x", 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_set_threads_reads_rlcv_threads(monkeypatch):
    import torch

    from rlcv.errors import ParamsError

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("RLCV_THREADS", raising=False)
        assert engine.set_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("RLCV_THREADS", "2")
        assert engine.set_threads() == 2 and torch.get_num_threads() == 2
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv("RLCV_THREADS", bad)
            with pytest.raises(ParamsError, match="RLCV_THREADS"):
                engine.set_threads()
    finally:
        torch.set_num_threads(before)


def test_seeding_makes_kernels_deterministic_without_loading_inductor():
    """seed_everything sets torch's deterministic flag (warn-only) in a fresh process and
    leaves torch._inductor unimported (its import is ~1.7 s per process); where inductor
    is loaded already, compiled code is flagged too."""
    code = (
        "import sys, torch\n"
        "from rlcv import engine\n"
        "before = torch.are_deterministic_algorithms_enabled()\n"
        "engine.seed_everything(3)\n"
        "print(before, torch.are_deterministic_algorithms_enabled(),\n"
        "      torch.is_deterministic_algorithms_warn_only_enabled(),\n"
        "      'torch._inductor.config' in sys.modules)\n"
        "import torch._inductor.config as c\n"
        "torch.use_deterministic_algorithms(False)\n"
        "engine.seed_everything(3)\n"
        "print(torch.are_deterministic_algorithms_enabled(), c.deterministic)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0].split() == ["False", "True", "True", "False"]
    assert out[1].split() == ["True", "True"]


def _train_steps(fill: bool) -> list[torch.Tensor]:
    """Six Adam steps of the suite's encoder-decoder (convolutions, batch norm, bilinear
    upsampling, concatenation) and the hourglass, in deterministic mode, with torch's NaN
    fill of new tensors on or off; returns the final weights."""
    from rlcv import optim
    from rlcv.models.hourglass import StackedHourglass
    from rlcv.models.segnet import MaskNet

    engine.seed_everything(0)
    torch.utils.deterministic.fill_uninitialized_memory = fill
    try:
        nets = [MaskNet(8), StackedHourglass(stacks=2, channels=8, depth=2, downsample=2)]
        x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        opt = optim.adam([p for n in nets for p in n.parameters()], 1e-2)
        for _ in range(6):
            loss = nets[0](x).square().mean() + sum(o.square().mean() for o in nets[1](x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return [p.detach().clone() for n in nets for p in n.parameters()]
    finally:
        engine.deterministic_kernels()


def test_seeding_skips_the_nan_fill_of_new_tensors_and_training_reads_no_unwritten_memory():
    """Deterministic mode fills every new tensor with NaN unless told not to (2-7% of a
    CPU training step); seed_everything turns the fill off. Were a kernel to read memory
    it never wrote, the filled run would carry NaN and the other garbage: the two runs
    would differ."""
    torch.utils.deterministic.fill_uninitialized_memory = True
    engine.seed_everything(0)
    assert not torch.utils.deterministic.fill_uninitialized_memory
    assert torch.are_deterministic_algorithms_enabled()
    with engine.torch_threads(1):
        filled, unfilled = _train_steps(True), _train_steps(False)
    assert all(torch.isfinite(w).all() for w in filled)
    assert all(torch.equal(a, b) for a, b in zip(filled, unfilled, strict=True))


def test_place_puts_networks_channels_last_on_the_cpu_and_checkpoints_load_either_way():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 2))
    ref = copy.deepcopy(net)
    placed = engine.place(net, torch.device("cpu"))
    assert placed[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not placed[0].weight.is_contiguous()                  # not NCHW any more
    assert engine.memory_format("cuda") == torch.preserve_format
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(placed(x), ref(x), rtol=1e-5, atol=1e-6)   # same values
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 2))
    fresh.load_state_dict(placed.state_dict())                   # a checkpoint loads into NCHW
    assert torch.equal(fresh[0].weight, placed[0].weight) and fresh[0].weight.is_contiguous()
