"""Five seeds on the CPU: all at once (the default since issue 22) against four and then
one (the default before, 2 workers per core), measured in the same run.

Each seed is a CPU-bound single-threaded torch workload of about the same length. On two
cores the old schedule runs four seeds two to a core and then the fifth alone while the
other core idles (3 units of time); all five at once share both cores (2.5 units): the
ideal ratio is 1.2 on two cores. Asserted: the new schedule is not slower (ratio >= 0.95),
as the figure moves with the machine's load; the ratio is printed and kept in extra_info.
"""

from __future__ import annotations

import time

import torch

from rlcv.engine import usable_cores
from rlcv.workers import for_each_seed

SEEDS = [0, 1, 2, 3, 4]


def _seed_work(seed: int) -> None:
    torch.set_num_threads(1)
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(seed))
    for _ in range(2000):
        a = torch.tanh(a @ a.T / 256)


def _wall(jobs: int, monkeypatch) -> float:
    monkeypatch.setenv("RLCV_JOBS", str(jobs))
    t0 = time.perf_counter()
    for_each_seed(SEEDS, _seed_work)
    return time.perf_counter() - t0


def test_five_seeds_at_once(benchmark, monkeypatch):
    cores = usable_cores()
    old = min(len(SEEDS), 2 * cores)
    before = min(_wall(old, monkeypatch) for _ in range(2))
    monkeypatch.setenv("RLCV_THREADS", "1")
    monkeypatch.delenv("RLCV_JOBS", raising=False)
    from rlcv.workers import jobs

    new = jobs(len(SEEDS))
    monkeypatch.setenv("RLCV_JOBS", str(new))
    benchmark.pedantic(for_each_seed, args=(SEEDS, _seed_work), rounds=2, iterations=1)
    stats = getattr(benchmark, "stats", None)      # None under --benchmark-disable
    now = stats.stats.min if stats is not None else min(_wall(new, monkeypatch)
                                                        for _ in range(2))
    ratio = before / now
    benchmark.extra_info.update(cores=cores, jobs_before=old, jobs_now=new, ratio=ratio)
    print(f"\n5 seeds on {cores} cores: {old} jobs {before:.2f} s, {new} jobs "
          f"{now:.2f} s, ratio {ratio:.2f}x")
    assert ratio >= 0.95


def _conv_seed(seed: int) -> None:
    """A smoke-sized training loop: small convolutions, batch norm, backward, Adam (the
    shape of the EU-RL pose network's work, whose seeds this was measured on)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(*[m for _ in range(4) for m in (
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())])
    opt = torch.optim.Adam(net.parameters(), 1e-3, foreach=True)
    x = torch.randn(16, 8, 32, 32)
    for _ in range(300):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()


def _run_seeds(monkeypatch, slice_ms) -> tuple[float, int]:
    """Wall seconds and involuntary context switches of the five seeds' workers."""
    import resource

    from rlcv import workers

    monkeypatch.setattr(workers, "SLICE_MS", slice_ms)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nivcsw
    t0 = time.perf_counter()
    for_each_seed(SEEDS, _conv_seed)
    wall = time.perf_counter() - t0
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_nivcsw - before


def test_long_time_slices_for_oversubscribed_seeds(benchmark, monkeypatch):
    """Five seeds on fewer cores, all at once: with 100 ms time slices (since issue 22)
    against the kernel's default slice (the code before), in the same run. Asserted where
    the kernel takes the slice (Linux 6.12+): the workers were switched out at most half as
    often, and the row was not slower (ratio <= 1.05: the gain, 0.92-0.94x here and 0.91x
    on eurl-pose-boxes, moves with the machine's caches and load); the ratio is printed
    and kept in extra_info."""
    import multiprocessing as mp

    from rlcv.workers import long_time_slice

    cores = usable_cores()
    if cores >= len(SEEDS):
        import pytest
        pytest.skip(f"{cores} cores: five seeds do not outnumber them")
    with mp.get_context("fork").Pool(1) as pool:
        taken = pool.apply(long_time_slice, (50,))
    monkeypatch.setenv("RLCV_JOBS", str(len(SEEDS)))
    monkeypatch.setenv("RLCV_DEVICE", "cpu")
    ref = min(_run_seeds(monkeypatch, None) for _ in range(2))
    ours = min(_run_seeds(monkeypatch, 100) for _ in range(2))
    benchmark.pedantic(_run_seeds, args=(monkeypatch, 100), rounds=1, iterations=1)
    ratio, switches = ours[0] / ref[0], ours[1] / max(1, ref[1])
    benchmark.extra_info.update(cores=cores, slice_taken=taken, ratio=round(ratio, 3),
                                switch_ratio=round(switches, 3))
    print(f"\n5 seeds on {cores} cores: default slice {ref[0]:.2f} s ({ref[1]} switches), "
          f"100 ms slices {ours[0]:.2f} s ({ours[1]} switches): {ratio:.2f}x")
    if not taken:
        return
    assert switches <= 0.5, f"the workers switched {switches:.2f}x as often"
    assert ratio <= 1.05, f"five seeds with long slices took {ratio:.2f}x the time"
