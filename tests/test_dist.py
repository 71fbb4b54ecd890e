"""Data-parallel training under torchrun (issue 18, `rlcv.dist`): a small supervised row
(the CiSS-Net baseline on the ci profile) trained by two gloo processes on the CPU
against the single process with the same global batch, and resumed after a kill."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from rlcv.workers import python_path
from tests.conftest import staged_ci_copy

ROW = "ciss-baseline-ade20k"


def _env(root) -> dict:
    return {**os.environ, "PYTHONPATH": python_path(root), "RLCV_THREADS": "1", "RLCV_JOBS": "1",
            "RLCV_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


def _cmd(procs: int, *extra) -> list[str]:
    train = ["-m", "rlcv.cli", "train", ROW, "--seed", "0", *extra]
    if procs == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={procs}", *train]


def _run(root, procs: int, *extra) -> subprocess.CompletedProcess:
    done = subprocess.run(_cmd(procs, *extra), cwd=root, env=_env(root), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _weights(root) -> dict:
    state = torch.load(root / "runs" / f"{ROW}-0" / "checkpoint.pt", weights_only=True)
    return {f"{part}.{k}": v for part in ("domain", "base") for k, v in state[part].items()}


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first listed before theirs."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task"):
            with open(f"/proc/{p}/task/{task}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
            out += kids
            todo += kids
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return staged_ci_copy(tmp_path_factory.mktemp("dist"), "ade20k")


def _steps(root, steps: int, batch: int = 4) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["methods"][ROW]["ci"].update(steps=steps, batch_size=batch, eval_every=0)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


STEPS = 200


def test_two_gloo_processes_match_one_with_the_same_global_batch(work):
    """Tolerance 1e-3 (absolute, on weights of order 0.1-1) after 8 steps: the runs differ
    by float summation order (all_reduce adds the two half-batch gradients) and by
    cross-entropy's mean over the non-ignored pixels, which each process takes over its
    half (ADE20K's 'other' pixels do not split evenly). Measured: 4e-5; one process on
    half the batch (gradients not averaged) differs from the two-process run by 3e-2.
    Over hundreds of steps such differences grow (3e-2 after 200): compare early."""
    _steps(work, 8)
    _run(work, 1, "--fresh")
    one = _weights(work)
    _run(work, 2, "--fresh")
    two = _weights(work)
    assert one.keys() == two.keys()
    worst = max((one[k].float() - two[k].float()).abs().max().item() for k in one)
    assert worst <= 1e-3, worst


def test_killed_two_process_run_resumes_and_matches(work):
    """Killed (torchrun and both workers, SIGKILL) after a checkpoint, the two-process
    run resumes from rank 0's checkpoint and ends with the uninterrupted run's weights."""
    _steps(work, STEPS)
    _run(work, 2, "--fresh")
    reference = _weights(work)
    shutil.rmtree(work / "runs" / f"{ROW}-0")
    ckpt = work / "runs" / f"{ROW}-0" / "baseline.ckpt.pt"
    proc = subprocess.Popen(_cmd(2, "--checkpoint-every", "10"), cwd=work, env=_env(work),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    for pid in [proc.pid, *_descendants(proc.pid)]:   # torchrun starts each worker in
        os.kill(pid, signal.SIGKILL)                   # its own session: kill them all
    proc.wait()
    time.sleep(0.5)
    assert not (work / "runs" / f"{ROW}-0" / "checkpoint.pt").exists()
    resumed = _run(work, 2, "--checkpoint-every", "10")
    assert resumed.stderr.count("resumed baseline from step") == 1   # rank 0 logs
    step = int(resumed.stderr.split("resumed baseline from step ")[1].split()[0])
    assert 0 < step < STEPS
    again = _weights(work)
    for k, v in reference.items():
        torch.testing.assert_close(again[k], v, rtol=0, atol=0)
