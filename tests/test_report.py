"""The report: claim checks, table cells, rendering of not-run and published rows."""

import pytest

from rlcv.report.claims import evaluate_claim
from rlcv.report.data import Metric, TableSpec, load_tables
from rlcv.report.tables import NOT_RUN, PUBLISHED, build_cells, claim_results, markdown

VALUES = {("A", "m"): 50.0, ("B", "m"): 40.0, ("C", "m"): 30.0, ("A", "e"): 1.0,
          ("B", "e"): 3.0, ("A", "n"): 60.0, ("B", "n"): 45.0}


def values(row, metric):
    return VALUES.get((row, metric))


def hib(metric):
    return metric != "e"   # "e" is an error: lower is better


@pytest.mark.parametrize("check, status", [
    ({"type": "better", "a": "A", "b": ["B", "C"], "metric": "m"}, "holds"),
    ({"type": "better", "a": "B", "b": ["A"], "metric": "m"}, "does not hold"),
    ({"type": "better", "a": "A", "b": ["B"], "metric": "e"}, "holds"),
    ({"type": "better", "a": "A", "b": ["Z"], "metric": "m"}, "not run yet"),
    ({"type": "better", "a": "A", "b": ["A"], "metric": "n", "metric_b": "m"}, "holds"),
    ({"type": "close", "a": "A", "b": "B", "metric": "m", "tol": 10}, "holds"),
    ({"type": "close", "a": "A", "b": "B", "metric": "m", "tol": 9.9}, "does not hold"),
    ({"type": "order", "rows": ["A", "B", "C"], "metric": "m"}, "holds"),
    ({"type": "order", "rows": ["B", "A", "C"], "metric": "m"}, "does not hold"),
    ({"type": "increasing", "rows": ["C", "B", "A"], "metric": "m"}, "holds"),
    ({"type": "diminishing", "rows": ["C", "B", "A"], "metric": "m"}, "does not hold"),
    ({"type": "between", "a": "B", "low": "C", "high": "A", "metric": "m"}, "holds"),
    ({"type": "largest_gain", "a": "A", "b": "B", "metrics": ["m", "n"], "top": ["n"]}, "holds"),
    ({"type": "largest_gain", "a": "A", "b": "B", "metrics": ["m", "n"], "top": ["m"]},
     "does not hold"),
])
def test_claims(check, status):
    assert evaluate_claim(check, values, hib)[0] == status


def test_diminishing_holds_on_shrinking_gains():
    v = {("s0", "m"): 10.0, ("s2", "m"): 15.0, ("s4", "m"): 17.0, ("s6", "m"): 17.5}
    check = {"type": "diminishing", "rows": ["s0", "s2", "s4", "s6"], "metric": "m"}
    assert evaluate_claim(check, lambda r, m: v.get((r, m)), hib)[0] == "holds"


def _spec():
    return TableSpec(
        id="x-table1", paper="x", table="1", title="T", source="x.md", dataset="coco",
        metrics=[Metric("m", "M", "%", 100, True)], reproduce=["A", "B"], extra_rows=["E"],
        claims=[{"text": "A beats B", "check": {"type": "better", "a": "A", "b": ["B"],
                                                 "metric": "m"}}],
        published={"A": {"m": 60.0}, "B": {"m": 50.0}, "P": {"m": 70.0}})


def test_cells_mark_not_run_and_published_rows():
    results = {("x-table1", "A"): {"m": [0.5, 0.7]}, ("x-table1", "New"): {"m": [0.1]}}
    cells = build_cells(_spec(), results)
    assert list(cells) == ["A", "B", "P", "E", "New"]
    assert cells["A"]["m"].mean == pytest.approx(60.0)
    assert cells["A"]["m"].std == pytest.approx(14.142, rel=1e-3)
    assert cells["B"]["m"].status == NOT_RUN and cells["E"]["m"].status == NOT_RUN
    assert cells["P"]["m"].status == PUBLISHED
    assert cells["New"]["m"].mean == pytest.approx(10.0)
    (claim, status, _), = claim_results(_spec(), cells)
    assert status == "not run yet"
    md = markdown(_spec(), cells, claim_results(_spec(), cells),
                  {"profile": "ci", "seeds": [0, 1], "data": "synthetic"})
    assert "SYNTHETIC" in md
    assert "| A | 60.0 | 60.0 ± 14.1 (n=2) |" in md
    assert "| P | 70.0 | published (not rerun) |" in md
    assert "| E *(not in paper)* | — | not run yet |" in md


def test_transcribed_tables_load():
    tables = load_tables()
    t1 = tables["eu-rl-table1"]
    assert t1.published["GT Bbox-Deepmask"]["avg_iou"] == 62.6
    assert "Finetune-Deepmask" in t1.reproduce


def test_metric_at_label_reports_under_another_row(tmp_path, monkeypatch):
    import json

    import methods
    from rlcv import params as P
    from rlcv.registry import Row
    from rlcv.report import collect

    row = Row(name="r", tables={"t": "Main"}, data="coco/single", config=object,
              train=lambda *a: None, evaluate=lambda *a: None)
    monkeypatch.setitem(methods.METHODS, "r", row)
    run = tmp_path / "runs" / "r-0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(
        {"row": "r", "seed": 0, "profile": "ci", "metrics": {"m": 1.0, "m@Step 2": 0.5}}))
    params = P.Params({"profile": "ci", "seeds": [0], "methods": {"r": {}}}, tmp_path / "p")
    values, _ = collect(params, tmp_path)
    assert values == {("t", "Main"): {"m": [1.0]}, ("t", "Step 2"): {"m": [0.5]}}


def test_largest_gain_leaves_out_a_metric_undefined_for_every_row():
    check = {"type": "largest_gain", "a": "A", "b": "B", "metrics": ["m", "n", "u"],
             "top": ["n"]}
    status, detail = evaluate_claim(check, values, hib)   # no row has "u"
    assert status == "holds" and "u undefined" in detail
    # a row with no result at all is still "not run yet"
    check_z = {**check, "b": "Z"}
    assert evaluate_claim(check_z, values, hib)[0] == "not run yet"
    # a metric only one row lacks is missing, not undefined
    v = {**VALUES, ("A", "u"): 1.0}
    assert evaluate_claim(check, lambda r, m: v.get((r, m)), hib)[0] == "not run yet"


def test_better_claims_say_when_the_gap_is_inside_the_seed_spread():
    spec = _spec()
    close = {("x-table1", "A"): {"m": [0.50, 0.60, 0.70]},
             ("x-table1", "B"): {"m": [0.55, 0.50, 0.60]}}
    apart = {("x-table1", "A"): {"m": [0.80, 0.81, 0.82]},
             ("x-table1", "B"): {"m": [0.50, 0.51, 0.52]}}
    (_, status, detail), = claim_results(spec, build_cells(spec, close))
    assert status == "holds" and detail.endswith("within the seed spread")
    md = markdown(spec, build_cells(spec, close), claim_results(spec, build_cells(spec, close)),
                  {"profile": "ci", "seeds": [0, 1, 2], "data": "synthetic"})
    assert "✅ holds (within seed spread)" in md
    (_, status, detail), = claim_results(spec, build_cells(spec, apart))
    assert status == "holds" and "spread" not in detail
