"""Issue 23: one test per reliability defect (no data loss, no stale model, no mislabelled
result, one clear line for every bad input). Numbered as in the issue."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import set_params

from rlcv import io as rio
from rlcv.cli import main
from rlcv.errors import DataError, ParamsError
from rlcv.workers import python_path

ROW = "gt-bbox-deepmask"


def _one_line(capsys, rc: int, expect: int = 2) -> str:
    """The command failed with `expect` and printed exactly one line to stderr."""
    err = capsys.readouterr().err
    assert rc == expect, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(ci_coco, tmp_path_factory) -> Path:
    """ci_coco with ROW trained for seed 0 (not evaluated)."""
    root = Path(shutil.copytree(ci_coco, tmp_path_factory.mktemp("rel") / "repo"))
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", ROW, "--seed", "0"]) == 0
    finally:
        os.chdir(old)
    return root


@pytest.fixture
def work(trained, tmp_path, chdir):
    """A private copy of `trained`, as the working folder."""
    root = Path(shutil.copytree(trained, tmp_path / "repo"))
    with chdir(root):
        yield root


# 1 ------------------------------------------------------------------ data loss
def test_stage_refuses_a_folder_of_user_files(work, capsys):
    mine = work / "v"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    _one_line(capsys, main(["stage", "coco", "--out", str(mine)]))
    assert (mine / "notes.txt").read_text() == "precious"
    for out in (".", ".."):
        _one_line(capsys, main(["synth", "coco", "--out", out]))
    assert not list(work.glob(".*partial*")) and (work / "params.yaml").is_file()
    fresh = work / "fresh"
    assert main(["stage", "coco", "--out", str(fresh)]) == 0
    assert main(["stage", "coco", "--out", str(fresh)]) == 0   # an earlier rlcv output


# 2 --------------------------------------------------------- mislabelled results
def test_evaluate_refuses_data_of_another_profile(work, capsys, monkeypatch):
    monkeypatch.setenv("RLCV_PROFILE", "paper")
    monkeypatch.setenv("RLCV_DATA", str(work))
    (work / "results" / "runs" / f"{ROW}-0" / "metrics.json").unlink(missing_ok=True)
    _one_line(capsys, main(["evaluate", ROW, "--seed", "0"]))
    assert not (work / "results" / "runs" / f"{ROW}-0" / "metrics.json").exists()


def test_evaluate_refuses_a_checkpoint_of_other_settings(work, capsys):
    set_params(work, **{f"methods__{ROW}__ci__steps": 7})
    err = _one_line(capsys, main(["evaluate", ROW, "--seed", "0"]))
    assert "other settings" in err


def test_metrics_labels_come_from_the_staged_manifest(work):
    manifest = work / "data" / "staged" / "coco" / "single" / "manifest.json"
    assert json.loads(manifest.read_text())["data"] == "synthetic"
    assert main(["evaluate", ROW, "--seed", "0"]) == 0
    record = json.loads((work / "results" / "runs" / f"{ROW}-0" / "metrics.json").read_text())
    assert (record["profile"], record["data"]) == ("ci", "synthetic")


# 3, 11 ------------------------------------------- orphan workers, SIGTERM, .partial
def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _start_long_train(root: Path) -> tuple[subprocess.Popen, list[int]]:
    set_params(root, **{f"methods__{ROW}__ci__steps": 100000})
    env = {**os.environ, "RLCV_JOBS": "2", "PYTHONPATH": python_path(root)}
    proc = subprocess.Popen([sys.executable, "-m", "rlcv.cli", "train", ROW, "--seed", "0",
                             "1", "--checkpoint-every", "1"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        kids = _children(proc.pid)
        ready = all((root / "runs" / f"{ROW}-{s}" / "history.csv").exists() for s in (0, 1))
        if len(kids) == 2 and ready:
            return proc, kids
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the seed workers did not start")


def _wait_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill9_of_train_leaves_no_worker_behind(work):
    proc, kids = _start_long_train(work)
    proc.kill()
    proc.wait()
    left = _wait_gone(kids)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "seed workers outlived their parent"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_workers_and_leaves_no_partial_file(work):
    proc, kids = _start_long_train(work)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    left = _wait_gone(kids)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left
    assert not [p for p in (work / "runs").rglob("*") if ".partial" in p.name]


# 4 ---------------------------------------------------------- dvc repro resumes
def test_train_run_folders_persist_across_dvc_reruns(repo):
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    trains = {k: v for k, v in stages.items() if k.startswith("train-")}
    assert trains
    for name, stage in trains.items():
        runs = [o for o in stage["outs"] if isinstance(o, dict) and
                next(iter(o)).startswith("runs/")]
        assert runs and all(next(iter(o.values())) == {"persist": True} for o in runs), name


def test_train_does_not_resume_the_runs_of_other_code(work, capsys, monkeypatch):
    """DVC reruns a train stage when its code changes and keeps its run folders
    (persist): the finished phases the old code wrote are not resumed (the seed trains
    afresh), and its checkpoint is refused for scoring until then."""
    from rlcv import pipeline

    ckpt = work / "runs" / f"{ROW}-0" / "checkpoint.pt"
    before = ckpt.read_bytes()
    assert main(["train", ROW, "--seed", "0"]) == 0   # same code: every phase is done
    assert "afresh" not in capsys.readouterr().err and ckpt.read_bytes() == before
    code_hash = pipeline.code_hash
    monkeypatch.setattr(pipeline, "code_hash", lambda paths: "edited " + code_hash(paths))
    assert "other code" in _one_line(capsys, main(["evaluate", ROW, "--seed", "0"]))
    assert main(["train", ROW, "--seed", "0"]) == 0
    assert "other settings or code; starting" in capsys.readouterr().err
    assert main(["evaluate", ROW, "--seed", "0"]) == 0


def test_the_code_hash_covers_every_file_but_byte_code(tmp_path, monkeypatch):
    from rlcv import pipeline

    monkeypatch.setattr(pipeline, "ROOT", tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    paths = ["pkg", "b.py"]
    first = pipeline.code_hash(paths)
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert pipeline.code_hash(paths) == first
    (tmp_path / "pkg" / "sub").mkdir()
    (tmp_path / "pkg" / "sub" / "c.py").write_text("")
    second = pipeline.code_hash(paths)
    assert second != first
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert pipeline.code_hash(paths) not in (first, second)
    assert pipeline.code_hash(["b.py"]) != pipeline.code_hash(["pkg"])


# 5 ------------------------------------------------------------ one line, always
def test_truncated_checkpoint_is_one_line(work, capsys):
    ckpt = work / "runs" / f"{ROW}-0" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    Path(f"{ckpt}.sha256").unlink(missing_ok=True)
    _one_line(capsys, main(["evaluate", ROW, "--seed", "0"]))


def test_truncated_phase_checkpoint_is_one_line(work, capsys):
    (phase,) = (work / "runs" / f"{ROW}-0").glob("*.ckpt.pt")
    phase.write_bytes(b"not a zip")
    Path(f"{phase}.sha256").unlink(missing_ok=True)
    _one_line(capsys, main(["train", ROW, "--seed", "0"]))


@pytest.mark.parametrize("text", ["{not json", "[]", '{"shards": {"train": "x"}}'])
def test_malformed_manifest_is_one_line(work, capsys, text):
    (work / "data" / "staged" / "coco" / "single" / "manifest.json").write_text(text)
    _one_line(capsys, main(["train", ROW, "--seed", "0"]))


@pytest.mark.parametrize("text", ["stages: [unclosed", "- a list\n"])
def test_malformed_dvc_lock_is_one_line(work, capsys, text):
    (work / "dvc.lock").write_text(text)
    _one_line(capsys, main(["pipeline"]))


def test_os_errors_are_one_line(work, capsys):
    (work / "afile").write_text("x")
    _one_line(capsys, main(["stage", "coco", "--out", "afile/sub"]))


def test_negative_lr_is_one_line(work, capsys):
    set_params(work, **{f"methods__{ROW}__config__lr": -1})
    _one_line(capsys, main(["train", ROW, "--seed", "0"]))


def test_checkpoint_every_zero_is_refused(work):
    with pytest.raises(SystemExit) as exc:
        main(["train", ROW, "--checkpoint-every", "0"])
    assert exc.value.code == 2


# 6 ---------------------------------------------------------------- bit-rot
def test_garbled_checkpoint_is_refused(work, capsys):
    ckpt = work / "runs" / f"{ROW}-0" / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    data[-400:-300] = bytes(100)
    ckpt.write_bytes(bytes(data))
    assert "sha256" in _one_line(capsys, main(["evaluate", ROW, "--seed", "0"]))


def test_garbled_shard_is_refused(work, capsys):
    shard = sorted((work / "data" / "staged" / "coco" / "single").glob("*.pt"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert "sha256" in _one_line(capsys, main(["train", ROW, "--seed", "0", "--fresh"]))


# 7 ------------------------------------------------------------ numbers in range
@pytest.mark.parametrize("key, value", [("steps", -5), ("steps", 0), ("batch_size", 0)])
def test_nonpositive_budgets_are_refused(work, capsys, key, value):
    set_params(work, **{f"methods__{ROW}__ci__{key}": value})
    _one_line(capsys, main(["train", ROW, "--seed", "0", "--fresh"]))


def test_missing_steps_does_not_take_the_dataclass_default(work, capsys):
    raw = yaml.safe_load((work / "params.yaml").read_text())
    del raw["methods"][ROW]["ci"]["steps"]
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "steps" in _one_line(capsys, main(["train", ROW, "--seed", "0", "--fresh"]))


def test_dataset_image_size_zero_is_refused(work, capsys):
    set_params(work, datasets__coco__ci__image_size=0)
    _one_line(capsys, main(["stage", "coco", "--out", "elsewhere"]))


# 8 ------------------------------------------------------------------ COCO boxes
def _coco_copy(work: Path, tmp_path: Path) -> tuple[Path, dict]:
    root = Path(shutil.copytree(work / "data" / "raw" / "coco", tmp_path / "coco"))
    doc = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    return root, doc


def _write(root: Path, doc: dict) -> None:
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(doc))


def test_coco_invalid_boxes_are_skipped_with_a_message(work, tmp_path, capsys):
    from datasets.coco import CocoReader

    root, doc = _coco_copy(work, tmp_path)
    doc["annotations"][0]["bbox"] = [float("nan"), 1, 20, 20]
    doc["annotations"][1]["bbox"] = [10, 10, -30, -30]
    bad = {doc["annotations"][0]["id"], doc["annotations"][1]["id"]}
    _write(root, doc)
    reader = CocoReader(root, "train")
    assert not bad & set(reader.coco.anns)
    assert "skipped 2 annotations" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["missing_image", "no_file_name", "text_bbox"])
def test_coco_malformed_annotations_are_one_line(work, tmp_path, damage):
    from datasets.coco import CocoReader

    root, doc = _coco_copy(work, tmp_path)
    if damage == "missing_image":
        doc["annotations"][0]["image_id"] = 10**9
    elif damage == "no_file_name":
        del doc["images"][0]["file_name"]
    else:
        doc["annotations"][0]["bbox"] = ["a", 1, 2, 3]
    _write(root, doc)
    with pytest.raises(DataError):
        CocoReader(root, "train")


# 9 --------------------------------------------------------------- thread count
def test_rlcv_threads_is_capped_at_the_cores(monkeypatch):
    from rlcv.engine import set_threads, torch_threads

    monkeypatch.setenv("RLCV_THREADS", "99999")
    with torch_threads(1), pytest.raises(ParamsError, match="cores"):
        set_threads()


# 10 ------------------------------------------------------------ path traversal
@pytest.mark.parametrize("name", ["../../x.jpg", "/etc/passwd"])
def test_coco_file_name_stays_under_the_root(work, tmp_path, name):
    from datasets.coco import CocoReader

    root, doc = _coco_copy(work, tmp_path)
    doc["images"][0]["file_name"] = name
    _write(root, doc)
    reader = CocoReader(root, "train")
    with pytest.raises(DataError, match="outside"):
        reader.image(doc["images"][0]["id"])


def test_mpii_image_name_stays_under_the_root(tmp_path):
    from datasets._common import under

    with pytest.raises(DataError, match="outside"):
        under(tmp_path / "images", "../secret.jpg", "an MPII image")


def test_manifest_shard_names_stay_under_the_subset(work, capsys):
    path = work / "data" / "staged" / "coco" / "single" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"]["train"] = ["../../../../params.yaml"]
    path.write_text(json.dumps(manifest))
    assert "outside" in _one_line(capsys, main(["train", ROW, "--seed", "0", "--fresh"]))


# 13 ------------------------------------------------------------------- umask
def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        rio.write_text(tmp_path / "f.txt", "x")
        with rio.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("a")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


# 14 ---------------------------------------------------------- byte-reproducible
def test_checkpoint_bytes_are_deterministic(tmp_path):
    state = {"w": torch.arange(6.0), "config": {"lr": 0.1}}
    rio.torch_save(state, tmp_path / "a.pt")
    rio.torch_save(state, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


# 15 ------------------------------------------------------- seeds, lock, --params
def test_negative_seed_is_refused():
    with pytest.raises(SystemExit) as exc:
        main(["train", ROW, "--seed", "-1"])
    assert exc.value.code == 2


def test_duplicate_seeds_are_refused(work, capsys):
    assert "more than once" in _one_line(capsys, main(["train", ROW, "--seed", "0", "0"]))


def test_a_second_train_of_one_row_and_seed_is_refused(work, capsys):
    lock = work / "runs" / f".{ROW}-0.lock"
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert "another" in _one_line(capsys, main(["train", ROW, "--seed", "0"]))


def test_errors_name_the_params_file_in_use(work, capsys):
    other = work / "other.yaml"
    shutil.copy(work / "params.yaml", other)
    raw = yaml.safe_load(other.read_text())
    raw["methods"][ROW]["ci"]["nonsense"] = 1
    other.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "other.yaml" in _one_line(capsys, main(["--params", str(other), "train", ROW]))


@pytest.mark.slow
def test_dvc_repro_resumes_an_interrupted_train(tmp_path):
    from test_e2e import _env, _repo_copy, sh

    root = _repo_copy(tmp_path, rows=(ROW,), seeds=[0],
                      **{f"methods__{ROW}__ci__steps": 100000})
    sh(root, "rlcv", "pipeline")
    sh(root, "dvc", "repro", "stage-coco")
    runs = root / "runs" / f"{ROW}-0"

    def repro_until(done) -> str:
        proc = subprocess.Popen(["dvc", "repro", f"train-{ROW}"], cwd=root, env=_env(root),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        seen = []

        def read() -> None:
            for line in proc.stdout:
                seen.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 240
        try:   # polled, not per output line: progress lines come only every ~30 s
            while not done("".join(seen)) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            reader.join(10)
        return "".join(seen)

    # killed (like a kill -9 of the whole job) once a phase checkpoint exists
    repro_until(lambda out: list(runs.glob("*.ckpt.pt")))
    assert list(runs.glob("*.ckpt.pt"))
    out = repro_until(lambda out: "resumed" in out or "afresh" in out)
    assert "resumed" in out, out
