"""The `rlcv` command: help, unknown names, the pipeline file in sync."""

import subprocess
import sys

import pytest

import methods
from rlcv import params as P
from rlcv.cli import main
from rlcv.pipeline import render


@pytest.mark.parametrize("sub", ["synth", "stage", "train", "evaluate", "report", "pipeline"])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert f"usage: rlcv {sub}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, kind", [
    (["synth", "imagenet"], "dataset"), (["stage", "voc"], "dataset"),
    (["train", "nope"], "row"), (["evaluate", "nope"], "row"),
])
def test_unknown_name_lists_known_names(argv, kind, repo):
    proc = subprocess.run([sys.executable, "-m", "rlcv.cli", *argv], cwd=repo,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert f"unknown {kind}" in proc.stderr
    known = "coco" if kind == "dataset" else "gt-bbox-deepmask"
    assert known in proc.stderr


def test_committed_dvc_yaml_is_current(repo, chdir):
    with chdir(repo):
        assert (repo / "dvc.yaml").read_text() == render(P.load())


def test_every_params_row_is_registered(repo):
    params = P.load(repo / "params.yaml")
    assert set(params.method_names) <= set(methods.METHODS)
    for name in params.method_names:
        row = methods.METHODS[name]
        for profile in P.PROFILES:   # every profile's settings build the row's config
            raw = {**params.raw, "profile": profile}
            cfg = P.Params(raw, params.path).method(name)
            P.build_config(row.config, cfg, name)
