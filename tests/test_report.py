"""The report: intervals and verdicts of claims, table cells, rendering of not-run,
undefined and published rows."""

import math

import numpy as np
import pytest

from rlcv.report import intervals as iv
from rlcv.report.claims import Lookup, evaluate_claim
from rlcv.report.data import Metric, TableSpec, load_tables
from rlcv.report.runs import RowRuns
from rlcv.report.tables import NOT_RUN, PUBLISHED, build_cells, claim_results, markdown

PROV = {"profile": "ci", "seeds": [0, 1, 2], "data": "synthetic", "commit": "abc",
        "fingerprint": "runs 123"}


def look(table: dict, data=None, margin=0.05, paper=None) -> Lookup:
    """A Lookup over {(row, metric): {seed: value}}; metric 'e' is lower-is-better."""
    return Lookup(samples=lambda r, m: table.get((r, m)),
                  higher_is_better=lambda m: m != "e", margin=lambda m: margin,
                  paper=lambda r, m: (paper or {}).get((r, m)),
                  data=lambda r: (data or {}).get(r, "d"))


def seeds(*vals):
    return dict(enumerate(vals))


def gains(*g):
    """Rows A and B whose per-seed differences A - B are `g`."""
    return {("A", "m"): seeds(*(10 + x for x in g)), ("B", "m"): seeds(*([10.0] * len(g)))}


BETTER = {"type": "better", "a": "A", "b": ["B"], "metric": "m"}


# ------------------------------------------------------------------------ the intervals
def test_paired_t_interval_matches_a_hand_computation():
    # d = (0.2, -0.1, 0.3): mean 2/15, sd sqrt(0.13/3), se sd/sqrt(3), t(0.975, 2) = 4.302653
    e = iv.contrast([seeds(0.2, -0.1, 0.3), seeds(0, 0, 0)], [1, -1])
    sd = math.sqrt(((0.2 - 2 / 15) ** 2 + (-0.1 - 2 / 15) ** 2 + (0.3 - 2 / 15) ** 2) / 2)
    half = 4.302653 * sd / math.sqrt(3)
    assert e.paired and e.n == 3
    assert e.estimate == pytest.approx(2 / 15)
    assert (e.lo, e.hi) == pytest.approx((2 / 15 - half, 2 / 15 + half), abs=1e-5)
    assert (e.lo, e.hi) == pytest.approx((-0.3838, 0.6505), abs=1e-4)


def test_welch_interval_matches_a_hand_computation():
    # a = (1, 2, 3): mean 2, var 1; b = (0, 0, 1, 1) on other seeds: mean 0.5, var 1/3
    # se^2 = 1/3 + 1/12 = 5/12; df = (5/12)^2 / ((1/3)^2/2 + (1/12)^2/3) = 3; t = 3.182446
    e = iv.contrast([seeds(1, 2, 3), {5: 0, 6: 0, 7: 1, 8: 1}], [1, -1])
    half = 3.182446 * math.sqrt(5 / 12)
    assert not e.paired and e.n == 3
    assert (e.estimate, e.lo, e.hi) == pytest.approx((1.5, 1.5 - half, 1.5 + half), abs=1e-5)


def test_rows_on_other_data_are_not_paired():
    same = iv.contrast([seeds(1, 2, 3), seeds(0, 1, 2)], [1, -1], ["x", "x"])
    other = iv.contrast([seeds(1, 2, 3), seeds(0, 1, 2)], [1, -1], ["x", "y"])
    assert same.paired and same.lo == same.hi == 1.0
    assert not other.paired and other.lo < 0 < other.hi


def test_verdict_needs_the_interval_clear_of_the_boundary():
    exact = iv.Effect(0.3, 0.05, 0.5, 3, True)
    assert iv.above(exact, 0.0, 0.05) == iv.INCONCLUSIVE      # touches the dead zone
    assert iv.above(iv.Effect(0.3, 0.051, 0.5, 3, True), 0.0, 0.05) == iv.HOLDS
    assert iv.above(iv.Effect(-0.3, -0.5, -0.051, 3, True), 0.0, 0.05) == iv.FAILS
    assert iv.within(iv.Effect(0.0, -0.4, 0.4, 3, True), 0.5, 0.05) == iv.HOLDS
    assert iv.within(iv.Effect(0.0, -0.4, 0.46, 3, True), 0.5, 0.05) == iv.INCONCLUSIVE
    assert iv.within(iv.Effect(1.0, 0.6, 1.4, 3, True), 0.5, 0.05) == iv.FAILS
    assert iv.all_of([]) == iv.INCONCLUSIVE and iv.any_of([]) == iv.INCONCLUSIVE


# ------------------------------------------------------------- claims: the acceptance
def test_small_mixed_gains_are_inconclusive():
    v = evaluate_claim(BETTER, look(gains(0.2, -0.1, 0.3)))
    assert v.status == "inconclusive" and v.n == 3 and v.label == "inconclusive (n = 3)"


def test_large_consistent_gains_hold():
    v = evaluate_claim(BETTER, look(gains(2.0, 1.8, 2.2)))
    assert v.status == "holds" and "ours +2.0 [1.5, 2.5]" in v.detail


def test_consistent_losses_do_not_hold():
    assert evaluate_claim(BETTER, look(gains(-2.0, -1.8, -2.2))).status == "does not hold"


def test_one_seed_and_empty_comparisons_are_inconclusive():
    v = evaluate_claim(BETTER, look(gains(5.0)))
    assert v.status == "inconclusive" and "n = 1" in v.detail
    empty = {**BETTER, "b": []}
    assert evaluate_claim(empty, look(gains(2.0, 1.8, 2.2))).status == "inconclusive"


def test_largest_gain_with_every_gain_negative_does_not_hold():
    t = {("A", "m"): seeds(8, 8.1, 7.9), ("B", "m"): seeds(9, 9, 9),
         ("A", "n"): seeds(7, 7.1, 6.9), ("B", "n"): seeds(9, 9, 9)}
    check = {"type": "largest_gain", "a": "A", "b": "B", "metrics": ["m", "n"], "top": ["m"]}
    # m's gain (-1) is larger than n's (-2), but no gain is positive
    assert evaluate_claim(check, look(t)).status == "does not hold"
    t_pos = {**t, ("A", "m"): seeds(11, 11.1, 10.9)}
    assert evaluate_claim(check, look(t_pos)).status == "holds"


def test_stated_size_is_tested_against_half_of_it():
    sized = {**BETTER, "size": 2.0}
    assert evaluate_claim(sized, look(gains(0.3, 0.35, 0.25))).status == "does not hold"
    assert evaluate_claim(BETTER, look(gains(0.3, 0.35, 0.25))).status == "holds"
    assert evaluate_claim(sized, look(gains(2.0, 1.8, 2.2))).status == "holds"
    big = {**BETTER, "min_effect": 1.0}
    assert evaluate_claim(big, look(gains(0.6, 0.5, 0.7))).status == "does not hold"


def test_paper_effect_is_shown_beside_ours():
    v = evaluate_claim(BETTER, look(gains(2.0, 1.8, 2.2), paper={("A", "m"): 38.3,
                                                                ("B", "m"): 36.3}))
    assert "A − B: paper +2.0 · ours +2.0 [1.5, 2.5]" in v.detail


def test_direction_of_lower_is_better_metrics():
    t = {("A", "e"): seeds(1.0, 1.1, 0.9), ("B", "e"): seeds(3.0, 3.1, 2.9)}
    check = {"type": "better", "a": "A", "b": ["B"], "metric": "e"}
    assert evaluate_claim(check, look(t)).status == "holds"


@pytest.mark.parametrize("rows, status", [
    (["A", "B", "C"], "holds"), (["B", "A", "C"], "does not hold")])
def test_order(rows, status):
    t = {("A", "m"): seeds(50, 51, 49), ("B", "m"): seeds(40, 41, 39),
         ("C", "m"): seeds(30, 31, 29)}
    assert evaluate_claim({"type": "order", "rows": rows, "metric": "m"}, look(t)).status == status


def test_diminishing_and_between():
    t = {("s0", "m"): seeds(10, 10.2, 9.8), ("s2", "m"): seeds(15, 15.2, 14.8),
         ("s4", "m"): seeds(17, 17.2, 16.8), ("s6", "m"): seeds(17.5, 17.7, 17.3)}
    dim = {"type": "diminishing", "rows": ["s0", "s2", "s4", "s6"], "metric": "m"}
    assert evaluate_claim(dim, look(t)).status == "holds"
    growing = {**t, ("s6", "m"): seeds(30, 30.2, 29.8)}
    assert evaluate_claim(dim, look(growing)).status == "does not hold"
    btw = {"type": "between", "a": "s2", "low": "s0", "high": "s4", "metric": "m"}
    assert evaluate_claim(btw, look(t)).status == "holds"
    assert evaluate_claim({**btw, "a": "s6"}, look(t)).status == "does not hold"


def test_close_is_judged_inside_the_tolerance():
    t = {("A", "m"): seeds(10.0, 10.1, 9.9), ("B", "m"): seeds(10.1, 10.0, 10.0)}
    close = {"type": "close", "a": "A", "b": "B", "metric": "m", "tol": 0.5}
    assert evaluate_claim(close, look(t)).status == "holds"
    far = {**t, ("B", "m"): seeds(12, 12.1, 11.9)}
    assert evaluate_claim(close, look(far)).status == "does not hold"
    noisy = {**t, ("B", "m"): seeds(10, 11, 9)}
    assert evaluate_claim(close, look(noisy)).status == "inconclusive"


def test_smaller_gain_and_also():
    t = {("ours+s", "m"): seeds(10.2, 10.3, 10.2), ("ours", "m"): seeds(10, 10.1, 10),
         ("base+s", "m"): seeds(9.0, 9.1, 9.0), ("base", "m"): seeds(8, 8.1, 8)}
    check = {"type": "better", "a": "ours+s", "b": ["ours"], "metric": "m",
             "also": [{"type": "smaller_gain", "a": "ours+s", "b": "ours",
                       "than": ["base+s", "base"], "metric": "m"}]}
    assert evaluate_claim(check, look(t)).status == "holds"
    t2 = {**t, ("base+s", "m"): seeds(8.0, 8.1, 8.0)}   # baseline gains nothing
    assert evaluate_claim(check, look(t2)).status == "does not hold"


def test_nan_is_never_a_verdict():
    t = gains(2.0, 1.8, 2.2)
    t[("A", "m")][1] = float("nan")
    assert evaluate_claim(BETTER, look(t)).status == "inconclusive"


def test_missing_and_undefined_metrics():
    t = gains(2.0, 1.8, 2.2)
    assert evaluate_claim({**BETTER, "b": ["Z"]}, look(t)).status == NOT_RUN
    t.update({("A", "n"): seeds(9, 9, 9), ("B", "n"): seeds(9, 9.1, 9)})
    check = {"type": "largest_gain", "a": "A", "b": "B", "metrics": ["m", "n", "u"],
             "top": ["m"]}
    v = evaluate_claim(check, look(t))   # no row has "u": undefined, left out
    assert v.status == "holds" and "u undefined" in v.detail


# ---------------------------------------------------------------------- cells and tables
def _spec():
    return TableSpec(
        id="x-table1", paper="x", table="1", title="T", source="x.md", dataset="coco",
        metrics=[Metric("m", "M", "%", 100, True), Metric("l", "L", "%", 100, True,
                                                          undefined="no large object")],
        reproduce=["A", "B"], extra_rows=["E"],
        claims=[{"text": "A beats B", "quote": "\"A beats B\" (Sec. 1)",
                 "check": {"type": "better", "a": "A", "b": ["B"], "metric": "m"}}],
        published={"A": {"m": 60.0, "l": 1.08}, "B": {"m": 50.0}, "P": {"m": 70.0}},
        published_digits={("A", "l"): 2})


def _runs(**rows):
    return {("x-table1", k): RowRuns(metrics={"m": v}, runs={k}, data={"d"}, seeds=set(v))
            for k, v in rows.items()}


def test_cells_mark_not_run_undefined_and_published_rows():
    results = _runs(A={0: 0.5, 1: 0.7}, New={0: 0.1})
    cells = build_cells(_spec(), results)
    assert list(cells) == ["A", "B", "P", "E", "New"]
    assert cells["A"]["m"].mean == pytest.approx(60.0)
    assert cells["A"]["m"].std == pytest.approx(14.142, rel=1e-3)
    assert cells["B"]["m"].status == NOT_RUN and cells["E"]["m"].status == NOT_RUN
    assert cells["P"]["m"].status == PUBLISHED
    assert cells["A"]["l"].status == "undefined (no large object)"
    (claim, v), = claim_results(_spec(), cells, results)
    assert v.status == NOT_RUN
    md = markdown(_spec(), cells, claim_results(_spec(), cells, results), PROV)
    assert "SYNTHETIC" in md and "commit `abc`, runs 123" in md
    assert "| A | 60.0 | 60.0 ± 14.1 (n=2) | 1.08 | undefined (no large object) |" in md
    assert "| P | 70.0 | published (not rerun) |" in md
    assert "| E *(not in paper)* | — | not run yet |" in md
    assert "| New *(not in paper)* | — | 10.0 (n=1) |" in md     # one seed: no ± 0.0


def test_claim_row_shows_quote_effect_and_verdict():
    results = _runs(A={0: 0.60, 1: 0.61, 2: 0.62}, B={0: 0.50, 1: 0.51, 2: 0.52})
    cells = build_cells(_spec(), results)
    md = markdown(_spec(), cells, claim_results(_spec(), cells, results), PROV)
    line = next(ln for ln in md.splitlines() if ln.startswith("| A beats B"))
    assert "(Sec. 1)" in line and "✅ holds" in line
    assert "paper +10.0 · ours +10.0 [10.0, 10.0]" in line


def test_transcribed_tables_load_at_the_papers_precision():
    tables = load_tables()
    t1 = tables["eu-rl-table1"]
    assert t1.published["GT Bbox-Deepmask"]["avg_iou"] == 62.6
    assert "Finetune-Deepmask" in t1.reproduce
    acis = tables["acis-table1"]
    cells = build_cells(acis, {})
    assert cells["BL"]["abs_dic"].paper_text() == "1.08"
    assert acis.published_dataset[("BL", "abs_dic")] == "cvppp"


def test_pg_detector_large_margin_claims_fail_when_every_gain_is_negative():
    """The case of issue 21: gains -0.2, -0.4, -0.1, -0.7 (APl undefined) over 3 seeds."""
    spec = load_tables()["pg-detector-table1"]
    base = {"ap": 0.10, "ap50": 0.17, "ap75": 0.10, "aps": 0.15, "apm": 0.16}
    gain = {"ap": -0.002, "ap50": -0.004, "ap75": -0.001, "aps": -0.007, "apm": -0.003}
    noise = (-0.0002, 0.0, 0.0002)
    results = {}
    for label in spec.reproduce:
        ours = "ours" in label
        metrics = {m: {s: base[m] + (gain[m] if ours else 0.0) + noise[s] for s in range(3)}
                   for m in base}
        results[(spec.id, label)] = RowRuns(metrics=metrics, runs={label}, data={"coco"},
                                            seeds={0, 1, 2})
    cells = build_cells(spec, results)
    assert cells["Faster R-CNN standard"]["apl"].status.startswith("undefined (")
    verdicts = {c["text"]: v for c, v in claim_results(spec, cells, results)}
    for text, v in verdicts.items():
        if "large margins" in text:
            assert v.status == "does not hold", (text, v.detail)
            assert "apl undefined" in v.detail
    assert verdicts["Our method improves mAP of Faster R-CNN by 2.0 points over the "
                    "standard baseline"].status == "does not hold"


def test_training_curves_grid_without_wall_time(tmp_path):
    import matplotlib.pyplot as plt
    import pandas as pd

    from rlcv.report import plots

    hist = {s: pd.DataFrame({"phase": ["pre"] * 3 + ["train"] * 3, "step": [1, 2, 3, 1, 2, 3],
                             "loss": [3.0, 2.0, 1.0, 1.0, 0.5, 0.2 + s], "step_ms": [9.0] * 6,
                             "eval_iou": [None, None, 0.5, None, None, 0.6 + s / 10]})
            for s in range(3)}
    assert plots.curve_columns(hist) == ["loss", "eval_iou"]
    assert plots._phases(hist[0]) == [(1, "pre"), (4, "train")]
    mean, std = plots.seed_band([np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    assert mean.tolist() == [2.0, 3.0] and std == pytest.approx([2 ** 0.5, 2 ** 0.5])  # ddof 1
    assert plots.seed_band([np.array([1.0, 2.0])])[1] is None
    seen = {}
    real_save = plots._save

    def spy(fig, path):
        seen["axes"] = [a for a in fig.axes if a.get_visible() and a.axison]
        seen["ylabels"] = [a.get_ylabel() for a in seen["axes"]]
        real_save(fig, path)

    plots._save = spy
    try:
        plots.training_curves("r", hist, tmp_path / "c.png", "training curves")
    finally:
        plots._save = real_save
    assert (tmp_path / "c.png").stat().st_size > 0
    assert len(seen["axes"]) == 2 and all(seen["ylabels"])
    plt.close("all")


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
    values, seen = collect(params, tmp_path)
    assert values == {("t", "Main"): {"m": [1.0]}, ("t", "Step 2"): {"m": [0.5]}}
    assert seen == {"r": {0}}


def test_csv_keeps_the_dataset_column():
    from rlcv.report.tables import csv_text

    spec = load_tables()["ciss-net-table1"]
    cells = build_cells(spec, {})
    rows = [ln.split(",") for ln in csv_text(spec, cells, []).splitlines()]
    assert rows[0][:4] == ["table", "row", "dataset", "metric"]
    by_metric = {r[3]: r[2] for r in rows[1:]}
    assert by_metric == {"iou_class": "cityscapes", "miou": "ade20k"}


def test_index_counts_claims_apart_from_questions_and_shared_comparisons_once():
    from rlcv.report import _claim_key, index_text
    from rlcv.report.claims import Verdict

    check = {"type": "better", "a": "Ours", "b": ["Base"], "metric": "ap"}
    res = {("t1", "Ours"): RowRuns(runs={"r-ours"}), ("t1", "Base"): RowRuns(runs={"r-base"}),
           ("t2", "ours (again)"): RowRuns(runs={"r-ours"}),
           ("t2", "Base"): RowRuns(runs={"r-base"})}
    check2 = {**check, "a": "ours (again)"}
    k1, k2 = _claim_key("claim", check, "t1", res), _claim_key("claim", check2, "t2", res)
    assert k1 == k2 and k1 != _claim_key("question", check, "t1", res)
    spec = load_tables()["eu-rl-table1"]
    held = Verdict("holds", "", 3)
    tables = [("t1", spec, 1, 1, [(k1, "claim", held), ("q", "question", held)], False),
              ("t2", spec, 1, 1, [(k2, "claim", held)], False)]
    text = index_text({"data": "synthetic", "profile": "ci", "seeds": [0], "commit": "c"},
                      tables, [])
    assert "**Paper claims** (sentences of the papers): 1 distinct, 1 / 0 / 0 / 0" in text
    assert "**Suite questions** (comparisons no sentence states): 1 distinct" in text


def test_float_noise_never_turns_a_verdict_into_its_opposite():
    """Another CPU moves values in the 3rd decimal: the dead zone (2 x 0.05 wide) keeps a
    conclusive verdict from jumping to the opposite one."""
    rng = np.random.default_rng(0)
    for margin, flips_allowed in ((0.05, False), (0.0, True)):
        flips = 0
        for _ in range(300):
            g = rng.normal(rng.uniform(-0.01, 0.01), rng.uniform(0.0005, 0.003), size=5)
            noisy = g + rng.uniform(-0.01, 0.01) + rng.uniform(-1e-3, 1e-3, size=5)
            pair = {evaluate_claim(BETTER, look(gains(*x), margin=margin)).status
                    for x in (g, noisy)}
            flips += pair == {"holds", "does not hold"}
        assert (flips > 0) == flips_allowed   # without the dead zone verdicts do flip


def _histories(n_rows: int, steps: int = 40) -> dict:
    import pandas as pd

    rng = np.random.default_rng(0)
    return {f"row{r}": {s: pd.DataFrame({"phase": ["train"] * steps, "step": range(steps),
                                         "loss": rng.random(steps), "eval_x": rng.random(steps)})
                        for s in range(3)} for r in range(n_rows)}


def test_curves_drawn_in_worker_processes_are_the_same_bytes(tmp_path):
    from rlcv.report import plots

    hists = _histories(3)
    files = {}
    for workers in (1, 2):
        jobs = [(row, h, tmp_path / f"w{workers}" / f"curves-{row}.png", "curves")
                for row, h in hists.items()]
        plots.start_curves(jobs, workers)()
        files[workers] = {p.name: p.read_bytes() for p in (tmp_path / f"w{workers}").iterdir()}
    assert len(files[2]) == 3 and files[2] == files[1]


def test_a_curve_that_fails_in_a_worker_fails_the_wait(tmp_path):
    import pandas as pd

    from rlcv.report import plots

    hists = _histories(2)
    bad = {0: pd.DataFrame({"phase": ["train"], "step": [0], "loss": [1.0]})}
    jobs = [(row, h, tmp_path / f"{row}.png", "c") for row, h in hists.items()]
    jobs.append(("bad", bad, tmp_path / "no-such-dir" / "\0bad.png", "c"))
    wait = plots.start_curves(jobs, 2)
    with pytest.raises(ValueError):
        wait()


def test_step_curves_read_the_recorded_steps_of_each_seed(tmp_path):
    """Family figures draw a per-step metric from metrics.json: consecutive steps from
    `first`, cut to what every seed has, runs of another profile left out, and a value
    that is not a number refused in one line."""
    import json

    from rlcv.errors import RlcvError
    from rlcv.params import Params
    from rlcv.report.runs import step_curves

    def write(seed, metrics, profile="ci"):
        path = tmp_path / "runs" / f"r-{seed}" / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"profile": profile, "metrics": metrics}))

    params = Params({"profile": "ci", "seeds": [0, 1, 2, 3], "methods": {"r": {}}},
                    tmp_path / "params.yaml")
    write(0, {"m@s 1": 0.1, "m@s 2": 0.2, "m@s 3": 0.3, "m": 9.0})
    write(1, {"m@s 1": 0.4, "m@s 2": 0.5, "m@s 4": 0.7})        # step 3 missing: stops at 2
    write(2, {"m@s 1": 0.9}, profile="smoke")                    # another profile
    out = step_curves(tmp_path, "r", params, "m@s {t}", first=1)  # seed 3 never ran
    assert out.tolist() == [[0.1, 0.2], [0.4, 0.5]]
    assert step_curves(tmp_path, "r", params, "x@s {t}").shape == (0, 0)
    write(1, {"m@s 1": "high"})
    with pytest.raises(RlcvError, match="m@s 1"):
        step_curves(tmp_path, "r", params, "m@s {t}", first=1)
