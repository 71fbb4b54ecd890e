"""The transcribed paper tables: rlcv/report/data/paper_numbers.csv and tables.yaml.

Checks the two files against each other (every table declared, every metric / row / claim
reference resolvable), re-reads every published cell from the paper markdown files in
`../shared/papers` (cell by cell, so a mistyped or shifted number fails), and evaluates
every claim whose cells are all published on the paper's own numbers.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "rlcv" / "report" / "data"
CSV_PATH = DATA / "paper_numbers.csv"
YAML_PATH = DATA / "tables.yaml"
PAPERS = REPO.parent / "shared" / "papers"

HEADER = ["paper", "table", "row", "dataset", "metric", "value"]
PAPER_IDS = {"eu-rl", "acis", "pg-detector", "ciss-net", "active-loc"}
DATASETS = {"coco", "mpii", "cvppp", "kitti", "ade20k", "cityscapes", "voc", "pascal_context"}
PAPER_FILES = {
    "eu-rl": "eu-rl_environment-upgrade-rl_xie2018.md",
    "acis": "acis_actor-critic-instance-segmentation_araslanov2019.md",
    "pg-detector": "pg-detector_globally-optimized-detector_rao2018.md",
    "ciss-net": "ciss-net_context-reinforced-segmentation_zhou2019.md",
    "active-loc": "rl-for-cv_survey-slides_ramoul.md",
}
CHECK_KEYS = {
    "better": {"a", "b", "metric"},
    "close": {"a", "b", "metric", "tol"},
    "order": {"rows", "metric"},
    "increasing": {"rows", "metric"},
    "diminishing": {"rows", "metric"},
    "largest_gain": {"a", "b", "metrics", "top"},
    "between": {"a", "low", "high", "metric"},
    "smaller_gain": {"a", "b", "than", "metric"},
}
OPTIONAL_CHECK_KEYS = {t: {"size", "min_effect", "also"} | (
    {"metric_b"} if t in ("better", "close") else set()) for t in CHECK_KEYS}


# ------------------------------------------------------------------------------ loading
@pytest.fixture(scope="module")
def records() -> list[dict]:
    with CSV_PATH.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == HEADER
        return list(reader)


@pytest.fixture(scope="module")
def tables() -> dict:
    return yaml.safe_load(YAML_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def by_table(records) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in records:
        out[f"{r['paper']}-table{r['table']}"].append(r)
    return out


def _claims(entry: dict, key: str = "claims") -> list[dict]:
    return list(entry.get(key) or [])


def _rows_of(check: dict) -> list[str]:
    t = check["type"]
    if t in ("order", "increasing", "diminishing"):
        return list(check["rows"])
    if t == "between":
        return [check["a"], check["low"], check["high"]]
    if t == "smaller_gain":
        return [check["a"], check["b"], *check["than"]]
    b = check["b"]
    return [check["a"], *(b if isinstance(b, list) else [b])]


def _metrics_of(check: dict) -> list[str]:
    if check["type"] == "largest_gain":
        return list(check["metrics"]) + list(check["top"])
    return [check["metric"]] + ([check["metric_b"]] if "metric_b" in check else [])


# --------------------------------------------------------------------- file-level checks
def test_csv_header_and_pandas_agree(records):
    df = pd.read_csv(CSV_PATH, dtype=str, keep_default_na=False)
    assert list(df.columns) == HEADER
    assert len(df) == len(records)
    assert df["row"].tolist() == [r["row"] for r in records]


def test_csv_cells_well_formed(records):
    seen = set()
    for r in records:
        where = f"{r}"
        assert r["paper"] in PAPER_IDS, where
        assert r["dataset"] in DATASETS, where
        assert re.fullmatch(r"[1-9][0-9]*", r["table"]), where
        assert re.fullmatch(r"[a-z][a-z0-9_]*", r["metric"]), where
        assert r["row"] and r["row"] == r["row"].strip() and "<" not in r["row"], where
        v = r["value"]
        assert v not in ("", "-") and "%" not in v, where
        assert math.isfinite(float(v)), where
        key = (r["paper"], r["table"], r["row"], r["dataset"], r["metric"])
        assert key not in seen, f"duplicate cell {key}"
        seen.add(key)


def test_every_csv_table_declared_and_vice_versa(tables, by_table):
    for tid in by_table:
        assert tid in tables, f"{tid} has CSV cells but no tables.yaml entry"
    for tid, entry in tables.items():
        if entry.get("pseudo"):
            assert tid not in by_table, f"pseudo-table {tid} must have no CSV cells"
        else:
            assert by_table.get(tid), f"{tid} declared but has no CSV cells"


def test_table_entries_well_formed(tables):
    for tid, e in tables.items():
        assert e["paper"] in PAPER_IDS, tid
        assert tid.startswith(e["paper"] + "-"), tid
        if e.get("pseudo") and e.get("table") is None:
            assert tid == f"{e['paper']}-fig{e['figure']}", tid
        else:
            assert tid == f"{e['paper']}-table{e['table']}", tid
        for key in ("title", "source", "dataset", "metrics", "reproduce", "extra_rows"):
            assert key in e, f"{tid}: missing {key}"
        src_file = e["source"].split(",")[0].strip()
        assert src_file == PAPER_FILES[e["paper"]], tid
        datasets = e["dataset"] if isinstance(e["dataset"], list) else [e["dataset"]]
        assert set(datasets) <= DATASETS, tid
        ids = [m["id"] for m in e["metrics"]]
        assert len(ids) == len(set(ids)), f"{tid}: duplicate metric ids"
        for m in e["metrics"]:
            assert {"id", "name", "unit", "scale", "higher_is_better"} <= set(m), (tid, m)
            assert m["scale"] in (1, 100), (tid, m)
            assert isinstance(m["higher_is_better"], bool), (tid, m)
            assert (m["unit"] == "%") == (m["scale"] == 100), (tid, m)
            if isinstance(e["dataset"], list):
                assert m.get("dataset") in datasets, f"{tid}: metric {m['id']} needs a dataset"
        rep, extra = list(e["reproduce"]), list(e["extra_rows"])
        assert len(rep) == len(set(rep)) and not set(rep) & set(extra), tid


def test_csv_metrics_and_datasets_declared(tables, by_table):
    for tid, rows in by_table.items():
        e = tables[tid]
        metrics = {m["id"]: m for m in e["metrics"]}
        for r in rows:
            assert r["metric"] in metrics, f"{tid}: metric {r['metric']} not declared"
            want = metrics[r["metric"]].get("dataset", e["dataset"])
            assert r["dataset"] == want, f"{tid}: {r['row']}/{r['metric']} dataset {r['dataset']}"


def test_reproduce_rows_are_published_rows(tables, by_table):
    for tid, e in tables.items():
        published = {r["row"] for r in by_table.get(tid, [])}
        if e.get("pseudo"):
            continue
        for row in e["reproduce"]:
            assert row in published, f"{tid}: reproduce row {row!r} not in the CSV"
        for row in e["extra_rows"]:
            assert row not in published, f"{tid}: extra row {row!r} is a published row"


def test_claims_reference_declared_rows_and_metrics(tables):
    for tid, e in tables.items():
        metrics = {m["id"] for m in e["metrics"]}
        runnable = set(e["reproduce"]) | set(e["extra_rows"])
        assert "claims" in e, f"{tid}: claims list missing (may be empty)"
        for key in ("claims", "questions"):
            for c in _claims(e, key):
                assert isinstance(c.get("text"), str) and c["text"], (tid, c)
                for chk in [c["check"], *c["check"].get("also", [])]:
                    t = chk["type"]
                    assert t in CHECK_KEYS, (tid, chk)
                    allowed = CHECK_KEYS[t] | OPTIONAL_CHECK_KEYS.get(t, set()) | {"type"}
                    assert CHECK_KEYS[t] <= set(chk) <= allowed, (tid, chk)
                    if t == "better":
                        assert isinstance(chk["b"], list) and chk["b"], (tid, chk)
                    if t in ("close", "largest_gain"):
                        assert isinstance(chk["b"], str), (tid, chk)
                    if t == "close":
                        assert chk["tol"] > 0, (tid, chk)
                    if t == "largest_gain":
                        assert set(chk["top"]) <= set(chk["metrics"]), (tid, chk)
                    if t in ("order", "increasing", "diminishing"):
                        assert len(chk["rows"]) >= (3 if t == "diminishing" else 2), (tid, chk)
                    for row in _rows_of(chk):
                        assert row in runnable, f"{tid}: claim row {row!r} is not rerun"
                    for m in _metrics_of(chk):
                        assert m in metrics, f"{tid}: claim metric {m!r} not declared"
                    if "metric_b" in chk:
                        hib = {m["id"]: m["higher_is_better"] for m in e["metrics"]}
                        assert hib[chk["metric"]] == hib[chk["metric_b"]], (tid, chk)


def test_every_claim_quotes_its_sentence_and_questions_are_labelled(tables):
    """A claim points to the paper sentence it encodes; a comparison no sentence states
    is a suite question (issue 21)."""
    for tid, e in tables.items():
        for c in _claims(e):
            quote = c.get("quote", "")
            assert quote.startswith(e["paper"] + " ") and '"' in quote, (tid, c["text"])
        for c in _claims(e, "questions"):
            assert "quote" not in c, (tid, c["text"])
    assert tables["acis-table4"]["claims"] == [] and len(tables["acis-table4"]["questions"]) == 8


def test_issue_rows_and_labels(tables):
    """Rows the issues ask for, with the paper's labels."""
    t = tables
    assert t["eu-rl-table1"]["extra_rows"] == [
        "Regress-Agent-Deepmask w/o upgrade",
        "Regress-DQN-Deepmask",
        "Regress-Deepmask + equal-steps DeepMask fine-tune (compute-matched)",   # issue 19
        "Regress-DQN-Deepmask (EU-RL environment)",
    ]
    assert t["eu-rl-table2"]["extra_rows"] == ["RMPE + equal extra steps (compute-matched)"]
    assert t["eu-rl-table2"]["reproduce"] == ["Fang et al. [11]", "ours"]
    assert t["acis-table3"]["reproduce"] == ["Ours (AC-Dice)"]
    assert t["acis-table4"]["reproduce"] == ["Ours (BL-Trunc)", "Ours (AC-IoU)"]
    assert t["active-loc-table1"]["reproduce"] == [
        "DQN agent (Caicedo & Lazebnik)",
        "Box regressor",
        "Actor-critic agent (EU-RL)",
    ]
    assert t["active-loc-table1"]["questions"], "suite-level questions expected"
    for tid in ("eu-rl-fig4", "acis-fig3", "active-loc-table1"):
        assert t[tid].get("pseudo") is True, tid
    fig4 = t["eu-rl-fig4"]["reproduce"]
    assert fig4 == [
        "Loose bbox model",
        "Tight bbox model",
        "Upgrade at last step",
        "Upgrade at every step",
    ]


# --------------------------------------------------------------- claims on paper numbers
def _holds(chk: dict, val, hib: dict) -> bool | None:
    """Evaluate a check on published values; None when a needed cell is not published."""

    def q(row, metric):  # quality: larger is better
        v = val.get((row, metric))
        return None if v is None else (v if hib[metric] else -v)

    parts = [_holds_one(c, val, hib) for c in [chk, *chk.get("also", [])]]
    return None if None in parts else all(parts)


def _bound(chk: dict, metric: str | None = None) -> float:
    size = chk.get("size")
    size = size.get(metric) if isinstance(size, dict) else size
    return size / 2 if size is not None else chk.get("min_effect", 0.0)


def _holds_one(chk: dict, val, hib: dict) -> bool | None:
    def q(row, metric):  # quality: larger is better
        v = val.get((row, metric))
        return None if v is None else (v if hib[metric] else -v)

    t = chk["type"]
    if t == "smaller_gain":
        m = chk["metric"]
        qs = [q(r, m) for r in (chk["a"], chk["b"], *chk["than"])]
        if None in qs:
            return None
        return (qs[0] - qs[1]) - (qs[2] - qs[3]) < -_bound(chk) + 1e-9
    if t in ("better", "close"):
        mb = chk.get("metric_b", chk["metric"])
        a = q(chk["a"], chk["metric"])
        bs = chk["b"] if isinstance(chk["b"], list) else [chk["b"]]
        qb = [q(b, mb) for b in bs]
        if a is None or None in qb:
            return None
        if t == "better":
            return all(a - b > _bound(chk) for b in qb)
        return abs(a - qb[0]) <= chk["tol"] + 1e-9
    if t in ("order", "increasing", "diminishing"):
        qs = [q(r, chk["metric"]) for r in chk["rows"]]
        if None in qs:
            return None
        if t == "order":
            return all(x > y for x, y in zip(qs, qs[1:], strict=False))
        steps = [y - x for x, y in zip(qs, qs[1:], strict=False)]
        if t == "increasing":
            return all(s > 0 for s in steps)
        return all(s > 0 for s in steps) and all(
            x > y for x, y in zip(steps, steps[1:], strict=False)
        )
    if t == "between":
        a, lo, hi = (q(chk[k], chk["metric"]) for k in ("a", "low", "high"))
        if None in (a, lo, hi):
            return None
        return lo < a < hi
    if t == "largest_gain":
        gains = {}
        for m in chk["metrics"]:
            a, b = q(chk["a"], m), q(chk["b"], m)
            if a is None or b is None:
                return None
            gains[m] = a - b
        best = max(gains, key=gains.get)
        return best in chk["top"] and gains[best] > _bound(chk, best)
    raise AssertionError(t)


def test_claims_hold_on_published_numbers(tables, by_table):
    evaluated = 0
    for tid, e in tables.items():
        val = {(r["row"], r["metric"]): float(r["value"]) for r in by_table.get(tid, [])}
        hib = {m["id"]: m["higher_is_better"] for m in e["metrics"]}
        for c in _claims(e):
            ok = _holds(c["check"], val, hib)
            if ok is None:
                continue
            evaluated += 1
            assert ok, f"{tid}: claim fails on the paper's own numbers: {c['text']}"
    assert evaluated >= 50   # paper claims only; suite questions are not the paper's


def test_claim_evaluator_is_direction_aware():
    hib = {"abs_dic": False, "sbd": True}
    val = {("A", "abs_dic"): 0.88, ("B", "abs_dic"): 1.08, ("A", "sbd"): 1.0, ("B", "sbd"): 2.0}
    assert _holds({"type": "better", "a": "A", "b": ["B"], "metric": "abs_dic"}, val, hib)
    assert not _holds({"type": "better", "a": "A", "b": ["B"], "metric": "sbd"}, val, hib)
    dim = {"type": "diminishing", "rows": ["x", "y", "z"], "metric": "sbd"}
    assert _holds(dim, {("x", "sbd"): 1, ("y", "sbd"): 3, ("z", "sbd"): 4}, hib)
    assert not _holds(dim, {("x", "sbd"): 1, ("y", "sbd"): 2, ("z", "sbd"): 4}, hib)


# -------------------------------------------------------------- cells vs the paper text
def _paper_lines(paper: str) -> list[str]:
    path = PAPERS / PAPER_FILES[paper]
    if not path.is_file():
        pytest.skip(f"paper files not found at {PAPERS}")
    return path.read_text(encoding="utf-8").splitlines()


def _clean(cell: str) -> str:
    s = re.sub(r"<sup>.*?</sup>", "", cell)
    s = re.sub(r"</?(b|i|sub)>", "", s)
    s = s.replace("\\gamma", "γ").replace("^{\\dagger}", "").replace("\\dagger", "")
    s = s.replace("$", "").replace("†", "").replace("*", "").replace("%", "")
    return s.strip()


def _ws(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _is_num(s: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", s) is not None


def _caption_re(n: int) -> re.Pattern:
    return re.compile(rf"^\s*Table\s*{n}\s*[.:]")


def _block(lines: list[str], n: int) -> list[str]:
    """The lines above the caption of Table n, back to the previous caption."""
    idx = [i for i, ln in enumerate(lines) if _caption_re(n).match(ln)]
    assert len(idx) == 1, f"caption of Table {n}: {len(idx)} matches"
    out = []
    for ln in reversed(lines[max(0, idx[0] - 80) : idx[0]]):
        if re.match(r"^\s*Table\s*\d+\s*[.:]", ln):
            break
        out.append(ln)
    return out[::-1]


PG1 = {
    "Faster R-CNN standard": ["Faster R-CNN", "standard", "✓", ""],
    "Faster R-CNN standard + soft NMS": ["Faster R-CNN", "standard", "", "✓"],
    "Faster R-CNN OHEM": ["Faster R-CNN", "OHEM", "✓", ""],
    "Faster R-CNN ours (γ = 0)": ["Faster R-CNN", "ours (γ = 0)", "✓", ""],
    "Faster R-CNN ours (γ = 1)": ["Faster R-CNN", "ours (γ = 1)", "✓", ""],
    "Faster R-CNN ours (γ = 1) + soft NMS": ["Faster R-CNN", "ours (γ = 1)", "", "✓"],
    "Faster R-CNN with FPN standard": ["Faster R-CNN with FPN", "standard", "✓", ""],
    "Faster R-CNN with FPN ours (γ = 1)": ["Faster R-CNN with FPN", "ours (γ = 1)", "✓", ""],
}
# Printed leading cells of rows whose label differs from the printed first cell.
ALIASES: dict[tuple[str, int, str], list[str]] = {
    **{("pg-detector", 1, k): v for k, v in PG1.items()},
    **{
        ("ciss-net", 1, f"Step {s}"): [s, c]
        for s, c in [("0", "no"), ("2", "yes"), ("4", "yes"), ("6", "yes")]
    },
    **{("ciss-net", 2, f"γ={g}"): [g] for g in ("0.1", "0.3", "0.9")},
    **{("ciss-net", 3, f"λ2={x}"): [x] for x in ("0.001", "0.005", "0.01", "0.02", "0.05")},
    ("ciss-net", 6, "PSPNet [37] (Res101)"): ["PSPNet [37]", "Res101"],
    ("ciss-net", 6, "PSPNet [37] (Res50)"): ["PSPNet [37]", "Res50"],
    ("ciss-net", 7, "Context-Contrasted [11] (Res101)"): ["Context-Contrasted [11]", "Res101"],
    ("ciss-net", 7, "Context-Contrasted [11] (Res50)"): ["Context-Contrasted [11]", "Res50"],
    ("ciss-net", 7, "Context-Contrasted (CCL) [11] (Res101)"): [
        "Context-Contrasted (CCL) [11]",
        "Res101",
    ],
    ("ciss-net", 7, "Context-Contrasted (CCL) [11] (Res50)"): [
        "Context-Contrasted (CCL) [11]",
        "Res50",
    ],
}
# Leading non-metric columns of the printed table (label, backbone, NMS marks, ...).
LABEL_COLS = {
    ("pg-detector", 1): 4,
    ("pg-detector", 2): 3,
    ("ciss-net", 1): 2,
    ("ciss-net", 6): 2,
    ("ciss-net", 7): 2,
}
# Tables printed as sub-tables: metric -> index of the sub-table (split at 'Model' headers).
SEGMENT = {("acis", 4): lambda m: 0 if m.endswith("_test") else 1}
TRANSPOSED = {("ciss-net", 5): {"City.": "iou_class", "Ade.": "miou"}}


def _printed_cells(paper: str, n: int, entry: dict) -> dict[tuple[str, str], str | None]:
    """(row label, metric) -> printed cell (None for '-' / empty) for every CSV row label."""
    block = [ln for ln in _block(_paper_lines(paper), n) if "\t" in ln]
    metric_ids = [m["id"] for m in entry["metrics"]]
    if (paper, n) in TRANSPOSED:
        names = TRANSPOSED[(paper, n)]
        head = next(
            ln.split("\t")
            for ln in block
            if ln.split("\t")[0] == "" and not any(_is_num(_clean(c)) for c in ln.split("\t"))
        )
        out = {}
        for ln in block:
            cells = ln.split("\t")
            if cells[0] in names:
                for label, c in zip(head[1:], cells[1:], strict=True):
                    c = _clean(c)
                    out[(label.strip(), names[cells[0]])] = None if c in ("", "-") else c
        return out
    seg_of = SEGMENT.get((paper, n), lambda m: 0)
    segments: list[list[str]] = [[]]
    for ln in block:
        if SEGMENT.get((paper, n)) and ln.split("\t")[0] == "Model" and segments[-1]:
            segments.append([])
        segments[-1].append(ln)
    ncol = LABEL_COLS.get((paper, n), 1)
    return {"segments": segments, "ncol": ncol, "seg_of": seg_of, "metric_ids": metric_ids}


def _check_table_against_paper(paper: str, n: int, entry: dict, rows: list[dict]) -> int:
    csv_cells = {(r["row"], r["metric"]): r["value"] for r in rows}
    labels = list(dict.fromkeys(r["row"] for r in rows))
    printed = _printed_cells(paper, n, entry)
    if "segments" not in printed:  # transposed table: direct comparison
        assert {k for k, v in printed.items() if v is not None} == set(csv_cells)
        for k, v in csv_cells.items():
            assert printed[k] == v, f"{paper} Table {n} {k}: CSV {v} vs paper {printed[k]}"
        return len(csv_cells)
    segments, ncol, seg_of = printed["segments"], printed["ncol"], printed["seg_of"]
    metric_ids = printed["metric_ids"]
    matched: set[tuple[int, int]] = set()
    checked = 0
    for label in labels:
        key = [_ws(k) for k in ALIASES.get((paper, n, label), [label])]
        found_any = False
        for si, seg in enumerate(segments):
            seg_metrics = [m for m in metric_ids if seg_of(m) == si]
            hits = [
                (li, ln.split("\t"))
                for li, ln in enumerate(seg)
                if [_ws(_clean(c)) for c in ln.split("\t")[: len(key)]] == key
            ]
            wanted = [m for m in seg_metrics if (label, m) in csv_cells]
            if not hits:
                assert not wanted, f"{paper} Table {n}: no printed line for {label!r}"
                continue
            assert len(hits) == 1, f"{paper} Table {n}: {len(hits)} lines for {label!r}"
            li, cells = hits[0]
            matched.add((si, li))
            found_any = True
            values = cells[ncol : ncol + len(seg_metrics)]
            values += [""] * (len(seg_metrics) - len(values))
            for m, c in zip(seg_metrics, values, strict=True):
                c = _clean(c)
                pv = None if c in ("", "-") else c
                assert csv_cells.get((label, m)) == pv, (
                    f"{paper} Table {n} {label!r} {m}: CSV {csv_cells.get((label, m))} "
                    f"vs paper {pv}"
                )
                checked += 1
        assert found_any, f"{paper} Table {n}: row {label!r} not found in the paper"
    # every printed data line is transcribed
    for si, seg in enumerate(segments):
        for li, ln in enumerate(seg):
            cells = [_clean(c) for c in ln.split("\t")[ncol:]]
            if any(_is_num(c) for c in cells):
                assert (si, li) in matched, f"{paper} Table {n}: untranscribed line {ln!r}"
    return checked


def test_every_cell_matches_the_paper_text(tables, by_table):
    total = 0
    for tid, rows in sorted(by_table.items()):
        e = tables[tid]
        total += _check_table_against_paper(e["paper"], int(e["table"]), e, rows)
    assert total >= 400


@pytest.mark.parametrize(
    "paper,line_start,value",
    [
        ("eu-rl", "Regress-Agent-Deepmask\t", "55.4%"),
        ("eu-rl", "GT Bbox-Deepmask\t", "62.6%"),
        ("eu-rl", "ours\t", "78.5"),
        ("eu-rl", "(b) w/o upgrading recognition\t", "70.1"),
        ("acis", "AC-Dice\t", "0.88"),
        ("acis", "Ours (AC-Dice)\t", "79.1"),
        ("pg-detector", "Faster R-CNN (ours)\t", "38.3"),
        ("ciss-net", "CiSS-Net\t", "79.10"),
        ("ciss-net", "CiSS-Net (Ours)\tRes50\t", "80.77"),
    ],
)
def test_spot_cells(records, paper, line_start, value):
    """A handful of explicit cells: the CSV value is on the paper's line for that row."""
    lines = [ln for ln in _paper_lines(paper) if ln.startswith(line_start)]
    assert lines, line_start
    assert any(value in ln.split("\t") for ln in lines), (line_start, value)
    label = line_start.split("\t")[0]
    csv_values = {r["value"] for r in records if r["paper"] == paper and r["row"] == label}
    assert value.rstrip("%") in csv_values, (paper, label, value)
