"""The device path (issue 16): data reaches the run's device in one place
(`datasets._common.Staged.load`), models are built on it, train and evaluate honour
RLCV_DEVICE, and metrics.json records where a run was scored.

No GPU here: the rows also run on torch's lazy-tensor backend (`RLCV_DEVICE=lazy`), a
second device that computes on the CPU and, like CUDA, refuses to mix its tensors with
CPU tensors, so a row whose data or model stays on the CPU fails as it would on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, copy_repo, run_rows, set_params

from rlcv import engine
from rlcv.cli import main


def test_bad_rlcv_device_is_one_line(ci_coco, chdir, monkeypatch, capsys):
    monkeypatch.setenv("RLCV_DEVICE", "tpu")
    with chdir(ci_coco):
        assert main(["train", "gt-bbox-deepmask", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RLCV_DEVICE must be one of" in err[0], err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_without_cuda_is_one_line(ci_coco, chdir, monkeypatch, capsys):
    monkeypatch.setenv("RLCV_DEVICE", "cuda")
    with chdir(ci_coco):
        assert main(["evaluate", "gt-bbox-deepmask", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sees no CUDA device" in err[0], err


def test_staged_data_is_loaded_onto_the_run_device(ci_coco):
    from datasets._common import Staged

    data = Staged(ci_coco / "data" / "staged" / "coco" / "single", "meta")
    train = data.load("train")
    tensors = [v for v in train.values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    assert Staged(data.path).load("train")["image"].device.type == "cpu"


def test_train_and_evaluate_honour_rlcv_device_cpu_and_record_it(ci_coco, monkeypatch):
    monkeypatch.setenv("RLCV_DEVICE", "cpu")
    run_rows(ci_coco, ["gt-bbox-deepmask"], seed=7)
    rec = json.loads((ci_coco / "results" / "runs" / "gt-bbox-deepmask-7" /
                      "metrics.json").read_text())
    assert rec["device"] == "cpu" and rec["torch"] == torch.__version__ and rec["gpu"] is None
    ckpt = torch.load(ci_coco / "runs" / "gt-bbox-deepmask-7" / "checkpoint.pt",
                      weights_only=True)
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())


def test_device_record_names_the_gpu_only_on_cuda():
    assert engine.device_record(torch.device("cpu"))["gpu"] is None


@pytest.mark.slow
def test_rows_train_and_evaluate_on_a_second_device(tmp_path):
    """Three EU-RL / active-localisation rows end to end on the lazy device: a tensor left
    on the CPU anywhere in train or evaluate (data, model, a random draw, a factory call)
    fails the row. ~1-2 min."""
    root = copy_repo(tmp_path)
    set_params(root, profile="ci")
    env = {**os.environ, "RLCV_DEVICE": "lazy", "RLCV_JOBS": "1"}
    rlcv = [sys.executable, "-m", "rlcv.cli"]

    def run(*args):
        proc = subprocess.run([*rlcv, *args], cwd=root, env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])

    run("synth", "coco")
    run("stage", "coco")
    for row in ("gt-bbox-deepmask", "box-regressor", "regress-dqn-deepmask"):
        run("train", row, "--seed", "0")
        run("evaluate", row, "--seed", "0")
        rec = json.loads((root / "results" / "runs" / f"{row}-0" / "metrics.json").read_text())
        assert rec["device"] == "lazy", rec


def test_gpu_check_refuses_without_cuda(tmp_path):
    from rlcv import gpucheck

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert gpucheck.main(["--out", str(tmp_path / "out"), "--skip-tests"]) == 2
    assert not (tmp_path / "out").exists()


def test_gpu_check_refuses_an_unknown_row_before_copying_anything(tmp_path, capsys):
    from rlcv import gpucheck

    work, out = tmp_path / "w", tmp_path / "out"
    assert gpucheck.main(["--device", "cpu", "--rows", "box-regressor", "no-such-row",
                          "--workdir", str(work), "--out", str(out)]) == 2
    assert "--rows no-such-row: not a row of params.yaml" in capsys.readouterr().err
    assert not work.exists() and not out.exists()


def test_gpu_check_adds_the_rows_a_row_reads_and_orders_the_grid(tmp_path):
    """--rows X adds the rows X starts from and the twin whose runs it copies; each
    train waits for its data and for them."""
    from rlcv import gpucheck
    from rlcv import params as P

    params = P.load(REPO / "params.yaml")
    params.raw["profile"] = "ci"
    rows = gpucheck._with_requires(params, ["eurl-pose-t2-boxes", "finetune-deepmask"])
    assert rows == ["gt-bbox-deepmask", "finetune-deepmask", "eurl-pose-boxes",
                    "eurl-pose-t2-boxes"]
    tasks = {t.name: t for t in gpucheck.tasks(params, rows, ["0", "1"], ["rlcv"], 16, {},
                                               ["pytest"])}
    assert set(tasks["train-eurl-pose-t2-boxes"].after) == {"stage-mpii", "train-eurl-pose-boxes"}
    assert set(tasks["train-finetune-deepmask"].after) == {"stage-coco", "train-gt-bbox-deepmask"}
    assert tasks["train-finetune-deepmask"].cores == 2 and tasks["tests"].after == ()
    assert tasks["report"].always and len(tasks["report"].after) == 4
    # the tests run in the checkout (its committed params.yaml), the rows in the copy
    assert tasks["tests"].cwd == gpucheck.ROOT and tasks["train-gt-bbox-deepmask"].cwd is None


def test_gpu_check_runs_its_grid_with_the_packages_pythonpath_reached(tmp_path, monkeypatch):
    """`.ci/device` puts the wheels the device image lacks on PYTHONPATH; the grid's
    commands run the scratch copy's code first and keep that folder (without it every
    row failed at `import pycocotools`)."""
    from rlcv import gpucheck

    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    env = gpucheck.grid_env(tmp_path, "cuda")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/tmp/site"]
    assert env["RLCV_DEVICE"] == "cuda"


def test_a_gpu_check_whose_rows_failed_does_not_read_as_completed(tmp_path):
    """A check that ran in seconds because every row failed is no check within the limit."""
    from types import SimpleNamespace

    from rlcv import gpucheck

    row = {"row": "gt-bbox-deepmask", "device": "cpu", "start_s": "1.3", "train_s": "",
           "evaluate_s": "", "cpu_train_s": "", "cpu_evaluate_s": "", "exit": "skipped"}
    gpucheck._write(tmp_path / "out", tmp_path, [row], "skipped",
                    SimpleNamespace(device="cpu"), SimpleNamespace(profile="ci", seeds=[0]),
                    {"wall_s": 6.0, "cores": 2, "tasks": 5, "report": 1, "cpu_from": "-"})
    readme = (tmp_path / "out" / "README.md").read_text()
    assert ("it did not complete: 1 of 1 rows failed, were stopped or were skipped "
            "(gt-bbox-deepmask)") in readme
    assert "within the" not in readme and "deadline" not in readme
    gpucheck._write(tmp_path / "out", tmp_path, [row], "skipped",
                    SimpleNamespace(device="cpu"), SimpleNamespace(profile="ci", seeds=[0]),
                    {"wall_s": 541.0, "cores": 2, "tasks": 5, "report": None, "cpu_from": "-",
                     "deadline": 540.0})
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "it did not complete: stopped at its --deadline of 540 s, 1 of 1 rows" in readme


@pytest.mark.slow
def test_gpu_check_writes_its_record(tmp_path):
    """The record `make gpu-check` writes, timed here on the CPU for a ci row and the row
    it starts from (added by --rows), run as a grid of commands."""
    import csv

    from rlcv import gpucheck

    out = tmp_path / "out"
    rc = gpucheck.main(["--device", "cpu", "--profile", "ci", "--seeds", "0", "1", "--rows",
                        "finetune-deepmask", "--skip-tests", "--cores", "2",
                        "--workdir", str(tmp_path / "w"), "--out", str(out)])
    assert rc == 0
    readme = (out / "README.md").read_text()
    assert "| gt-bbox-deepmask | cpu |" in readme and "SYNTHETIC" in readme
    assert "The whole check took" in readme
    assert "every row and the report completed, within the 10-minute limit" in readme
    assert (out / "tables" / "eu-rl-table1.md").is_file()
    rows = {r["row"]: r for r in csv.DictReader((out / "times.csv").open())}
    assert list(rows) == ["gt-bbox-deepmask", "finetune-deepmask"]
    first, then = rows["gt-bbox-deepmask"], rows["finetune-deepmask"]
    assert first["exit"] == then["exit"] == "0" and first["device"] == "cpu"
    # finetune-deepmask starts from gt-bbox-deepmask's checkpoints: it waited for them
    # (each of the three figures is rounded to 0.1 s, off by up to 0.05: 0.15 of slack;
    # 0.1 failed once, 6.8 against 3.5 + 3.4)
    assert float(then["start_s"]) >= float(first["start_s"]) + float(first["train_s"]) - 0.151


def test_gpu_check_compares_with_the_timed_repro_of_the_same_seeds(tmp_path):
    from rlcv import gpucheck

    log = tmp_path / "stage-times.csv"
    log.write_text("stage,start,startup_s,end,rc\n"
                   "train a --seed 0 1,10.0,2.0,40.5,0\nevaluate a --seed 0 1,41.0,2.0,44.0,0\n"
                   "train b --seed 0,50.0,2.0,60.0,0\n")
    assert gpucheck._repro_times(log, ["a", "b"], ["0", "1"]) == {"a": ("30.5", "3.0")}
    # b's evaluate did not run (DVC skipped it): blank, not a time of 0
    assert gpucheck._repro_times(log, ["a", "b"], ["0"]) == {"b": ("10.0", "")}
    assert gpucheck._repro_times(tmp_path / "none.csv", ["a"], ["0"]) == {}
