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


_CHECKED: dict[str, dict] = {}
"""The summaries `test_row_dry_runs` got (reused by the tests of particular rows)."""


def _check(session, row) -> dict:
    if row not in _CHECKED:
        _CHECKED[row] = session.check(row)
    return _CHECKED[row]


@pytest.mark.parametrize("row", _rows())
def test_row_dry_runs(session, row):
    r = _check(session, row)
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


@pytest.mark.parametrize("row", ["acis-ac-dice", "acis-kitti-ac-iou"])
def test_acis_rows_are_built_at_the_paper_input_size(session, row):
    """ACIS's actor, critic and mask decoder have fully connected layers sized by the
    staged image: the dry run stages cvppp and kitti at the paper profile's size (224 x 224,
    128 x 448), so it counts the paper-size model (its evaluation runs the pre-processing
    net, the decoder and the actor, their architecture set by the pre-training row)."""
    import methods
    from methods.acis.rows import AcisConfig
    from rlcv import params as P
    from rlcv.models.acis import AUX, Actor, MaskDecoder
    from rlcv.models.segnet import MaskNet

    r, data = _check(session, row), methods.get(row)
    (pretrain,) = data.requires
    cfg = P.build_config(AcisConfig, session.params.method(pretrain), pretrain)
    paper = session.params.dataset(data.dataset)
    hw = (paper["size"],) * 2 if data.dataset == "cvppp" else tuple(paper["size_hw"])
    assert hw == {"cvppp": (224, 224), "kitti": (128, 448)}[data.dataset]
    nets = (MaskNet(cfg.preproc_width, in_ch=3, out_ch=AUX),
            MaskDecoder(hw, cfg.latent, cfg.width, cfg.state_pyramid),
            Actor(hw, cfg.latent, cfg.width, cfg.hidden))
    want = sum(p.numel() for n in nets for p in n.parameters())
    assert r["parameters"] == want, (r["line"], want)
    # 29.7 M and 36.4 M: the actor's 512-unit layer over the 1/8-scale map (224/8)^2 x 64
    # holds 25.7 M of them (at the ci sizes, 32 x 32 and 32 x 96: 3.7 M and 10.1 M)
    low, high = {"cvppp": (29.0e6, 30.5e6), "kitti": (35.5e6, 37.5e6)}[data.dataset]
    assert low < r["parameters"] < high, r["line"]


def test_dry_run_caps_acis_episodes_also_by_default(repo):
    """ACIS's episode cap `max_steps` (21 by default, not set in params.yaml's paper
    block) is the dry run's episode length, 3: at 224 x 224 each step costs ~50 ci ones."""
    import methods
    from rlcv import params as P
    from rlcv.dryrun import DryRun

    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    session = DryRun(params, repo / "unused", None)
    for row in ("acis-pretrain-cvppp", "acis-ac-dice", "acis-kitti-ac-iou"):
        assert params.method(row).get("max_steps", 21) > 3
        assert session.settings(row)["max_steps"] == 3, row
    for row in methods.METHODS:   # no other family has the setting
        if not row.startswith("acis-"):
            assert "max_steps" not in session.settings(row), row


def test_parameters_of_a_network_loaded_twice_count_once():
    """`distinct`: the same checkpoint loaded once per evaluated split (ACIS on KITTI's
    val and test) is one network; another of the same class with other weights is not."""
    import torch
    from torch import nn

    from rlcv.dryrun import distinct

    def net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))

    a, b, other = net(0), net(0), net(1)
    shared = nn.Linear(2, 2)
    c, d = nn.Sequential(shared, nn.Linear(2, 2)), nn.Sequential(shared, nn.Linear(2, 2))
    d[1].load_state_dict(c[1].state_dict())

    def count(mods):   # as DryRun.check: each module and parameter once
        mods = list({id(m): m for m in mods}.values())
        return sum({id(p): p.numel() for m in distinct(mods)
                    for p in m.parameters(recurse=False)}.values())

    assert count([a, *a, b, *b]) == 23 and count([a, *a, other, *other]) == 46
    assert count([*a, *b]) == 23   # no outer module ran: its layers, compared one by one
    assert count([c, *c, d, *d]) == 12   # shared layer and all


def test_dry_run_data_keeps_ci_sizes_but_the_model_sizing_ones(repo):
    """Only the settings that size a model (INPUT_SIZE) take the profile's value: every
    other dataset is synthesized and staged exactly as the ci profile says."""
    from rlcv import params as P
    from rlcv.dryrun import INPUT_SIZE, DryRun

    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    ci = P.Params(raw={**params.raw, "profile": "ci"}, path=params.path)
    session = DryRun(params, repo / "unused", None)
    assert INPUT_SIZE == {"cvppp": ("size",), "kitti": ("size_hw",)}
    for name in params.dataset_names:
        want = ci.dataset(name)
        want.update({k: params.dataset(name)[k] for k in INPUT_SIZE.get(name, ())})
        assert session.data_cfg(name) == want, name
    assert session.data_cfg("cvppp")["size"] == 224
    assert session.data_cfg("cvppp")["image_hw"] == ci.dataset("cvppp")["image_hw"]
    assert session.data_cfg("kitti")["size_hw"] == [128, 448]


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
    assert out["max_steps"] == 3   # an episode's length (ACIS), as t_max
    for key in ("stacks", "channels", "lr", "table_steps", "weights"):
        assert out[key] == values[key]


def test_shrink_keeps_eval_steps(repo):
    """CiSS-Net's `eval_steps` is the iteration t its models are scored at (t = 2), not a
    training phase: the dry run keeps it (the module docstring: every other setting is
    the profile's), while the phases' `*_steps` go to 1."""
    from rlcv import params as P
    from rlcv.dryrun import shrink

    out = shrink({"eval_steps": 3, "init_steps": 500, "cvae_steps": 8})
    assert out == {"eval_steps": 3, "init_steps": 1, "cvae_steps": 1}
    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    for row in ("ciss-net-ade20k", "ciss-net-cityscapes", "ciss-net-pascal-context"):
        values = params.method(row)
        assert values["eval_steps"] == 2 and shrink(values)["eval_steps"] == 2, row


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


def test_dry_run_reports_the_weights_of_required_rows(tmp_path, monkeypatch, repo):
    """Finetune-Deepmask names no weights of its own but starts from GT Bbox-Deepmask,
    whose VGG11 trunk starts from ImageNet: with the file in the hub cache the line names
    it, as `rlcv.seedrun.weights_used` does for real runs (without it: `weights none`, as
    `test_row_dry_runs` checks)."""
    import torch

    import methods
    from rlcv import params as P
    from rlcv.dryrun import DryRun
    from rlcv.models import pretrained
    from rlcv.models.deepmask import DeepMask

    name = "VGG11_Weights.IMAGENET1K_V1"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLCV_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    assert not params.method("finetune-deepmask").get("weights")
    assert params.method("gt-bbox-deepmask")["weights"] == name
    assert methods.get("finetune-deepmask").requires == ("gt-bbox-deepmask",)
    # the trunk's keys only (DeepMask skips VGG's classifier): 37 MB instead of 531 MB
    trunk = {f"features.{k}": v
             for k, v in DeepMask(load=False).features.state_dict().items()}
    pretrained.cache_file(name).parent.mkdir(parents=True)
    torch.save(trunk, pretrained.cache_file(name))
    r = DryRun(params, tmp_path / "dry", torch.device("cpu")).check("finetune-deepmask")
    assert LINE.match(r["line"])["w"] == name, r["line"]
