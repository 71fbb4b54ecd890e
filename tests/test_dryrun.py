"""`rlcv train ROW --profile paper --dry-run` (rlcv.dryrun): every registry row builds its
paper-profile models and optimizers, takes its steps and evaluates on tiny synthetic data,
and the printed parameter counts match the papers' architectures."""

from __future__ import annotations

import re
import time

import pytest

LINE = re.compile(r"^(?P<row>[\w-]+): paper settings, (?P<m>\d+\.\d) M parameters, "
                  r"weights (?P<w>\S+), (?P<dev>\S+), ok$")


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    """The dry run of every row of the registry, in one process (shared tiny datasets)."""
    import os

    import methods
    from rlcv import engine
    from rlcv import params as P
    from rlcv.dryrun import dry_run
    from tests.conftest import REPO

    # an empty hub cache: pretrained files absent, so random weights and "weights none"
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("hub"))
    try:
        engine.set_threads()
        params = P.load(REPO / "params.yaml")
        params.raw["profile"] = "paper"
        t0 = time.perf_counter()
        out = {r["row"]: r for r in dry_run(params, list(methods.METHODS), "cpu")}
        print(f"dry run of {len(out)} rows: {time.perf_counter() - t0:.0f} s")
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = old
    return out


@pytest.mark.slow
def test_every_row_dry_runs(dry):
    import methods

    assert set(dry) == set(methods.METHODS)
    for row, r in dry.items():
        m = LINE.match(r["line"])
        assert m, r["line"]
        assert m["row"] == row and m["w"] == "none" and m["dev"] == "cpu"
        assert r["metrics"], row


def _m(dry, row) -> float:
    return dry[row]["parameters"] / 1e6


@pytest.mark.slow
def test_parameter_counts_match_the_papers(dry):
    # ResNet-18 agent: torchvision's ResNet-18 is 11.7 M with its 1000-way fc; without it
    # 11.2 M, plus the agent's 512-unit layer and heads
    agent = [n for name, n in dry["agent-deepmask"]["optimizers"] if n > 5e6]
    assert len(agent) == 1 and 11.0e6 < agent[0] < 12.0e6
    # Faster R-CNN on ResNet-101 (42.5 M without fc) with the C4/dilated-C5 head: tens of M
    for row in ("pgdet-standard", "pgdet-ours-g1", "pgdet-fpn-standard"):
        assert 45 < _m(dry, row) < 120, (row, _m(dry, row))
    # RMPE: 8-stack hourglass (~25 M) + SSD300-VGG16 person detector (~24 M)
    pose = [n for name, n in dry["eurl-pose-boxes"]["optimizers"]]
    assert 20e6 < max(pose) < 30e6, pose
    assert _m(dry, "eurl-pose-rmpe") > 40
    # the paper-profile optimizers are the configured ones
    assert {name for name, _ in dry["pgdet-standard"]["optimizers"]} == {"SGD"}


def test_dry_run_cli_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from rlcv.cli import main
    from tests.conftest import copy_repo

    root = copy_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    assert main(["train", "box-regressor", "--profile", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    m = LINE.match(out)
    assert m and m["row"] == "box-regressor", out
    assert not (root / "runs").exists() and not (root / "data").exists()
    assert not (root / "results" / "runs" / "box-regressor-0").exists()


def test_shrink_keeps_architecture_and_optimizer():
    from rlcv.dryrun import shrink

    values = {"steps": 60000, "base_steps": 80000, "batch_size": 16, "det_batch": 8,
              "stacks": 8, "channels": 256, "lr": 2.5e-4, "crop_size": 256, "table_steps": [0, 2],
              "max_steps": 20, "weights": "ResNet18_Weights.IMAGENET1K_V1", "eval_every": 2000}
    out = shrink(values)
    assert out["steps"] == 2 and out["base_steps"] == 1 and out["batch_size"] == 2
    assert out["det_batch"] == 2 and out["crop_size"] == 64 and out["eval_every"] == 0
    for key in ("stacks", "channels", "lr", "table_steps", "max_steps", "weights"):
        assert out[key] == values[key]
