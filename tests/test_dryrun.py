"""`rlcv train ROW --profile paper --dry-run` (rlcv.dryrun): every registry row builds its
paper-profile models and optimizers, takes its steps and evaluates on tiny synthetic data,
and the printed parameter counts match the papers' architectures."""

from __future__ import annotations

import re

import pytest

LINE = re.compile(r"^(?P<row>[\w-]+): paper settings, (?P<m>\d+\.\d) M parameters, "
                  r"weights (?P<w>\S+), (?P<dev>\S+), ok$")


HEAVY = ("pgdet-", "eurl-pose", "ciss-ablations-")
"""Rows whose dry run takes 10-100 s on a CPU (ResNet-101 detectors and their 1 GB
checkpoints, SSD300 and the 8-stack hourglass, the CiSS-Net ablation sweeps): marked
`paper`, run by `make test-paper`, left out of `make test` (the CI budget); their
architectures' parameter counts are checked below without training."""


def _rows():
    import methods

    return [pytest.param(r, marks=pytest.mark.paper) if r.startswith(HEAVY) else r
            for r in methods.METHODS]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One dry-run folder for the module (tiny datasets and requirements made once), the
    paper profile, an empty torch hub cache (so random weights, `weights none`), the
    engine's device (CUDA when present: `make test-paper` on a GPU)."""
    import os

    from rlcv import engine
    from rlcv import params as P
    from rlcv.dryrun import DryRun, scratch
    from tests.conftest import REPO

    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("hub"))
    engine.set_threads()
    params = P.load(REPO / "params.yaml")
    params.raw["profile"] = "paper"
    with scratch() as tmp:   # removed at the end: the paper rows write GBs of checkpoints
        yield DryRun(params, tmp, engine.device())
    if old is None:
        os.environ.pop("TORCH_HOME")
    else:
        os.environ["TORCH_HOME"] = old


@pytest.mark.parametrize("row", _rows())
def test_row_dry_runs(session, row):
    r = session.check(row)
    m = LINE.match(r["line"])
    assert m, r["line"]
    assert m["row"] == row and m["w"] == "none" and m["dev"] == str(session.device)
    assert r["metrics"] and r["parameters"] > 0, row
    if row == "agent-deepmask":
        # the ResNet-18 agent: 11.2 M without ImageNet's fc, plus its 512-unit layer; the
        # upgrade's optimizer over DeepMask (VGG-A trunk and low-rank mask branch, 62.5 M)
        agent, deepmask = sorted(n for _, n in r["optimizers"])
        assert 11.0e6 < agent < 12.0e6 and 62.0e6 < deepmask < 63.0e6, r["optimizers"]
    if row == "pgdet-standard":
        assert {name for name, _ in r["optimizers"]} == {"SGD"}   # the paper's optimizer


def _count(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_paper_architectures_parameter_counts(repo):
    """The paper profile's heavy architectures, built as the rows build them."""
    from methods.eurl.pose_data import build_person_detector, build_pose_net
    from methods.pgdetector.detector import _arch, _model
    from rlcv import params as P

    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    methods_cfg = {r: params.method(r) for r in ("pgdet-standard", "pgdet-fpn-standard",
                                                 "eurl-pose-t2-boxes", "eurl-pose-boxes",
                                                 "eurl-pose-t2-rmpe")}
    gt = {"categories": [{"id": i} for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66,
                                                                       68, 69, 71, 83)]}
    for row in ("pgdet-standard", "pgdet-fpn-standard"):
        from methods.pgdetector.detector import PGDetectorConfig

        cfg = P.build_config(PGDetectorConfig, methods_cfg[row], row)
        arch = _arch(cfg, gt)
        assert arch["num_classes"] == 81   # COCO's 80 categories (ids to 90) + background
        # Faster R-CNN on ResNet-101 (42.5 M without its fc): tens of millions
        assert 45 < _count(_model(arch, (64, 64))) < 120, row
    pose = methods_cfg["eurl-pose-t2-boxes"]   # Table 2's own run (issue 19)
    assert 24 < _count(build_pose_net(pose)) < 27   # Newell et al.'s 8-stack: ~25 M
    two = methods_cfg["eurl-pose-boxes"]   # Table 3 and Fig. 4: the two-stack hourglass
    assert two["stacks"] == 2 and 5 < _count(build_pose_net(two)) < 8
    det = {k: methods_cfg["eurl-pose-t2-rmpe"][k] for k in ("det_backbone", "det_width",
                                                            "det_proposals", "det_weights")}
    ssd = build_person_detector(det, 64)
    assert type(ssd).__name__ == "SSD" and 20 < _count(ssd) < 30   # SSD300-VGG16


def test_dry_run_cli_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from rlcv.cli import main
    from tests.conftest import copy_repo

    root = copy_repo(tmp_path / "repo")
    before = sorted(p for p in root.rglob("*") if p.is_file())
    monkeypatch.chdir(root)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    assert main(["train", "box-regressor", "--profile", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    m = LINE.match(out)
    assert m and m["row"] == "box-regressor", out
    assert sorted(p for p in root.rglob("*") if p.is_file()) == before   # nothing written


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


def test_dry_run_loads_weights_found_in_the_hub_cache(tmp_path, monkeypatch, repo):
    """With the file in $TORCH_HOME/hub/checkpoints the row starts from it and says so."""
    import torch
    from torchvision.models import resnet18

    from rlcv import params as P
    from rlcv.dryrun import DryRun
    from rlcv.models import pretrained

    name = "ResNet18_Weights.IMAGENET1K_V1"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLCV_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    pretrained.cache_file(name).parent.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), pretrained.cache_file(name))
    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    r = DryRun(params, tmp_path / "dry", torch.device("cpu")).check("dqn-localizer")
    assert LINE.match(r["line"])["w"] == name, r["line"]
