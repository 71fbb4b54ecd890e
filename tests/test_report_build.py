"""`rlcv.report.build` on damaged inputs: all or nothing, one clear line (issue 23, 12),
and the provenance every table header carries."""

import json

import pytest

from rlcv import params as P
from rlcv.errors import RlcvError
from rlcv.registry import Row
from rlcv.report import build, runs


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A results/ folder with one new row of eu-rl-table1 over three seeds."""
    import methods

    row = Row(name="box-mask", tables={"eu-rl-table1": "Box-as-mask"}, data="coco/single",
              config=object, train=lambda *a: None, evaluate=lambda *a: None)
    monkeypatch.setitem(methods.METHODS, "box-mask", row)
    monkeypatch.chdir(tmp_path)
    for seed, v in enumerate([0.40, 0.42, 0.41]):
        write_run(tmp_path, seed, {"avg_iou": v})
    params = P.Params({"profile": "ci", "seeds": [0, 1, 2], "methods": {"box-mask": {}}},
                      tmp_path / "params.yaml")
    return tmp_path, params


def write_run(root, seed, metrics, history="phase,step,loss,step_ms\ntrain,1,0.5,3.0\n"):
    run = root / "results" / "runs" / f"box-mask-{seed}"
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.json").write_text(json.dumps(
        {"row": "box-mask", "seed": seed, "profile": "ci", "dataset": "coco/single",
         "metrics": metrics}))
    (run / "history.csv").write_text(history)


def _line(md: str) -> str:
    return next(ln for ln in md.splitlines() if ln.startswith("| Box-as-mask"))


def test_report_has_rows_fingerprint_and_curves(project):
    root, params = project
    build(params, root / "results")
    md = (root / "results/tables/eu-rl-table1.md").read_text()
    assert "41.0 ± 1.0 (n=3)" in _line(md)
    head = md.split("\n| Row")[0]
    assert "Made from commit `unknown`, runs " in head
    assert (root / "results/plots/curves-box-mask.png").exists()
    assert not list((root / "results").glob(".report-*"))
    # the fingerprint follows the runs' content
    write_run(root, 2, {"avg_iou": 0.43})
    build(params, root / "results")
    head2 = (root / "results/tables/eu-rl-table1.md").read_text().split("\n| Row")[0]
    assert head2 != head and "runs " in head2


def test_header_says_which_weights_the_runs_started_from(project):
    root, params = project
    build(params, root / "results")   # no `weights` recorded (older runs): no line
    assert "> Weights:" not in (root / "results/tables/eu-rl-table1.md").read_text()
    for seed in range(3):
        path = root / "results" / "runs" / f"box-mask-{seed}" / "metrics.json"
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({**rec, "weights": "none"}))
    build(params, root / "results")
    head = (root / "results/tables/eu-rl-table1.md").read_text().split("\n| Row")[0]
    assert "> Weights: RANDOM INITIALISATION (`weights: none`)" in head


def test_bad_history_leaves_the_previous_report_whole(project):
    root, params = project
    build(params, root / "results")
    before = {p: p.read_bytes() for p in (root / "results").rglob("*") if p.is_file()
              and "runs" not in p.parts}
    write_run(root, 1, {"avg_iou": 0.9}, history="phase,step\n1,2,3,4,5\n\x00\x01")
    with pytest.raises(RlcvError, match="box-mask-1/history.csv: not a readable history.csv"):
        build(params, root / "results")
    after = {p: p.read_bytes() for p in (root / "results").rglob("*") if p.is_file()
             and "runs" not in p.parts}
    assert after == before
    assert not list((root / "results").glob(".report-*"))


def test_nan_metric_is_shown_not_fatal(project):
    root, params = project
    write_run(root, 1, {"avg_iou": float("nan")})
    build(params, root / "results")
    assert "NaN (seed 1) (n=3)" in _line((root / "results/tables/eu-rl-table1.md").read_text())


def test_metric_out_of_range_is_refused_and_nothing_written(project):
    root, params = project
    write_run(root, 0, {"avg_iou": 99.0})
    with pytest.raises(RlcvError, match=r"avg_iou = 99.0 is outside its range \[0, 1\]"):
        build(params, root / "results")
    assert not (root / "results" / "tables").exists()
    assert not (root / "results" / "README.md").exists()


def test_params_without_methods_are_refused(project):
    root, _params = project
    bare = P.Params({"profile": "ci", "seeds": [0]}, root / "params.yaml")
    with pytest.raises(RlcvError, match="no `methods:` section"):
        build(bare, root / "results")


def test_malformed_metrics_json_is_one_line(project):
    root, params = project
    (root / "results/runs/box-mask-0/metrics.json").write_text("{not json")
    with pytest.raises(RlcvError, match="box-mask-0/metrics.json: not a readable metrics.json"):
        build(params, root / "results")


def test_fingerprint_depends_on_paths_and_contents():
    a = runs.fingerprint({"r/0/metrics.json": "aa", "r/1/metrics.json": "bb"})
    assert a == runs.fingerprint({"r/1/metrics.json": "bb", "r/0/metrics.json": "aa"})
    assert a != runs.fingerprint({"r/0/metrics.json": "aa", "r/1/metrics.json": "bc"})
    assert runs.fingerprint({}) == "no runs"
