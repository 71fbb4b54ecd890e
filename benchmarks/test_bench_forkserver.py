"""A stage's `rlcv` through the warm server against a fresh process, in the same run (issue 22).

Every stage of `make repro` is one `rlcv` command. A fresh process imports torch (~1.8 s)
and, for most stages, torchvision (~1 s more) before any work; `rlcv.forkserver` imports
them once, and each command is a fork of that process. The workload: `rlcv train` of an
unknown row, which starts, imports rlcv's command line and the row registry, and exits 2:
a stage's start-up without its work. Benchmarked: the command through the server (client
start, fork, rlcv's own imports); reference, in the same run: the command as a fresh
process (`python -m rlcv.cli`, the code before). Asserted: ratio <= 0.5; measured here
about 0.1 (0.15-0.2 s against 1.6-1.7 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _timing import best_time

from rlcv.workers import python_path

REPO = Path(__file__).resolve().parents[1]
ARGS = ("train", "no-such-row")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RLCV_FORKSERVER", "RLCV_PROFILE")}
    return {**env, "PYTHONPATH": python_path(REPO), **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sock = tmp_path_factory.mktemp("sock") / "s"
    proc = subprocess.Popen([sys.executable, "-m", "rlcv.forkserver", "serve", str(sock)],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline().strip() == b"ready"
    yield sock
    proc.terminate()
    proc.wait(10)


def _run(cmd: list[str], env: dict) -> None:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown row" in proc.stderr, proc.stderr


def test_bench_stage_start_up_through_the_server(benchmark, server):
    served = ([sys.executable, "-m", "rlcv.forkserver", "client", *ARGS],
              _env(RLCV_FORKSERVER=str(server)))
    fresh = ([sys.executable, "-m", "rlcv.cli", *ARGS], _env())
    _run(*served), _run(*fresh)                                  # warm both
    benchmark.pedantic(_run, args=served, rounds=5, iterations=1)
    stats = getattr(benchmark, "stats", None)
    ours = stats.stats.min if stats is not None else best_time(_run, 5, *served)
    ref = best_time(_run, 3, *fresh)
    ratio = ours / ref
    benchmark.extra_info.update(ratio=round(ratio, 3), served_s=round(ours, 3),
                                fresh_s=round(ref, 3))
    print(f"\nstage start-up through the server: {ours:.2f} s against {ref:.2f} s fresh "
          f"({ratio:.2f}x, asserted <= 0.5)")
    assert ratio <= 0.5, f"served start-up took {ratio:.2f}x a fresh process's"
