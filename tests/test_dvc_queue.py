"""The grid through DVC's own queue (issue 18, README "The grid as jobs"): two ci-profile
experiments queued with `dvc exp run --queue -S ...` and run side by side by
`dvc queue start -j 2`, each in its own temporary workspace, leaving the workspace alone."""

import json
import time

import pytest
from test_e2e import _repo_copy, sh

pytestmark = pytest.mark.slow

LRS = {"lr-a": 1e-3, "lr-b": 5e-3}
"""The swept setting: box-regressor's lr (params.yaml: 2e-3), one experiment each."""


def _wait(root, timeout=600.0) -> str:
    """`dvc queue status` once nothing is queued or running (or the timeout passed)."""
    end = time.monotonic() + timeout
    while True:
        out = sh(root, "dvc", "queue", "status").stdout
        if not any(w in out for w in (" Queued ", " Running ")) or time.monotonic() > end:
            return out
        time.sleep(3)


def test_dvc_queue_runs_two_ci_experiments_side_by_side(tmp_path, monkeypatch):
    for k in ("GIT_AUTHOR", "GIT_COMMITTER"):   # experiments are git commits
        monkeypatch.setenv(f"{k}_NAME", "rlcv test")
        monkeypatch.setenv(f"{k}_EMAIL", "test@rlcv.invalid")
    root = _repo_copy(tmp_path, rows=("box-regressor",), seeds=[0])
    sh(root, "rlcv", "pipeline")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "ci grid")
    params_before = (root / "params.yaml").read_text()
    for name, lr in LRS.items():
        sh(root, "dvc", "exp", "run", "--queue", "-n", name,
           "-S", f"methods.box-regressor.config.lr={lr}", "evaluate-box-regressor")
    try:
        started = sh(root, "dvc", "queue", "start", "-j", "2")
        assert "Started '2' new experiments task queue workers" in started.stdout, started
        status = _wait(root)
        for name in LRS:
            line = next((ln for ln in status.splitlines() if f" {name} " in f" {ln} "), "")
            assert "Success" in line, status
    finally:
        sh(root, "dvc", "queue", "stop", "--kill", check=False)   # no worker outlives it
    refs = sh(root, "git", "for-each-ref", "refs/exps", "--format=%(refname)").stdout.split()
    metrics = {}
    for name in LRS:
        ref = next(r for r in refs if r.endswith(f"/{name}"))
        blob = sh(root, "git", "show", f"{ref}:results/runs/box-regressor-0/metrics.json")
        m = json.loads(blob.stdout)
        assert m["profile"] == "ci" and m["seed"] == 0
        metrics[name] = m["metrics"]
    assert metrics["lr-a"] != metrics["lr-b"]   # each trained with its own setting
    # the workspace is untouched: no run, no changed params, nothing to commit
    assert (root / "params.yaml").read_text() == params_before
    assert not (root / "runs").exists()
