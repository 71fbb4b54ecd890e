"""The report: per-paper tables beside the published numbers, plots and an index.

`build(params, results)` reads `results/runs/<row>-<seed>/{metrics.json,history.csv}`
and the staged datasets and writes `results/tables/<paper>-table<N>.{md,csv,tex}`,
`results/plots/*.png` and `results/README.md`, all swapped in together.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rlcv import io as rio
from rlcv.errors import RlcvError
from rlcv.params import Params
from rlcv.report import plots, runs, tables
from rlcv.report.data import load_tables


def collect(params: Params, results: Path) -> tuple[dict, dict[str, set[int]]]:
    """Our per-seed values keyed by (table id, row label) -> metric -> [values in seed
    order], and run name -> seeds read (runs.collect has the full records)."""
    rows, seen = runs.collect(params, Path(results), load_tables())
    return ({key: {m: [v[k] for k in sorted(v)] for m, v in rr.metrics.items()}
             for key, rr in rows.items()}, seen)


def _contact_sheets(params: Params, out_dir: Path) -> list[Path]:
    import datasets
    from datasets._common import Staged

    written = []
    for name in params.dataset_names:
        if name not in datasets.available():
            continue
        staged_root = Path("data/staged") / name
        subsets = sorted(p.parent for p in staged_root.glob("*/manifest.json"))
        if not subsets:
            continue
        module = datasets.get(name)
        images, titles = [], []
        for sub in subsets:
            staged = Staged(sub)
            split = "val" if "val" in staged.splits else staged.splits[0]
            data = staged.dataset(split)   # an indexed split decodes only what is drawn
            for i in range(min(12 // len(subsets) or 1, len(data))):
                images.append(module.draw(data[i]))
                titles.append(f"{sub.name}/{split} #{i}")
        kind = "synthetic" if params.synthetic else "real"
        path = out_dir / f"dataset-{name}.png"
        plots.contact_sheet(images, titles, path, f"{name} ({kind}, {params.profile} profile): "
                            "staged samples with labels drawn")
        written.append(path)
    return written


def figure_modules(params: Params) -> list:
    """Method family modules (of the rows in params) that draw figures of their own."""
    import importlib

    import methods

    mods = []
    for name in params.method_names:
        row = methods.METHODS.get(name)
        if row is None:
            continue
        mod = importlib.import_module(row.train.__module__)
        if hasattr(mod, "figures") and mod not in mods:
            mods.append(mod)
    return mods


def _family_figures(params: Params, results: Path) -> list[tuple[Path, str]]:
    """Each family's `figures(params, results) -> [(png path, caption)]` (e.g. EU-RL's box
    refinement, ACIS's Dice per step); they read runs/ and data/staged/ as needed."""
    out = []
    for mod in figure_modules(params):
        out += list(mod.figures(params, results))
    return out


def _shared_notes(spec, results: dict) -> list[str]:
    """One line per row of `spec` whose runs also fill rows of other tables."""
    import methods

    notes = []
    for row in spec.rows + sorted({lb for t, lb in results if t == spec.id} - set(spec.rows)):
        rr = results.get((spec.id, row))
        if rr is None:
            continue
        others = [f"{tid} «{label}»" for run in sorted(rr.runs)
                  for tid, label in methods.METHODS[run].tables.items() if tid != spec.id]
        if others:
            notes.append(f"«{row}» is the same run ({', '.join(sorted(rr.runs))}) as "
                         + ", ".join(others) + ".")
        if rr.twins:
            notes.append(f"«{row}» ({', '.join(sorted(rr.runs))}) has the settings of "
                         f"{', '.join(sorted(rr.twins))} on this profile: its runs are "
                         "copies of those (training would give the same bytes).")
    return notes


def _claim_key(kind: str, check: dict, tid: str, results: dict) -> str:
    """A comparison's identity across tables: its check with each row label replaced by
    the runs behind it, so two tables stating one comparison count it once."""
    def run_of(label):
        rr = results.get((tid, label))
        return "+".join(sorted(rr.runs)) if rr else f"{tid}:{label}"

    norm = {}
    for k, v in check.items():
        if k in ("a", "low", "high") or (k == "b" and isinstance(v, str)):
            norm[k] = run_of(v)
        elif k in ("b", "rows", "than"):
            norm[k] = [run_of(x) for x in v]
        else:
            norm[k] = v
    return kind + repr(sorted(norm.items(), key=lambda kv: kv[0]))


def _no_dataset(spec) -> bool:
    """True when none of the table's datasets is a dataset of the suite."""
    import datasets

    names = [d.strip() for d in spec.dataset.split(",") if d.strip()]
    return bool(names) and not any(d in datasets.NAMES for d in names)


def check_params(params: Params) -> None:
    """Refuse a params file the report cannot be made from (one line)."""
    if not params.method_names:
        raise RlcvError(f"{params.path}: no `methods:` section (or it is empty): the "
                        "report would have no rows; refusing to write empty tables")


def build(params: Params, results: Path) -> list[Path]:
    """Write every table, plot and the index; returns the files written.

    Everything is read and checked first (runs.py), then written to a temporary sibling
    folder that replaces `tables/`, `plots/` and `README.md` only once it is complete: a
    damaged input leaves the previous report whole.
    """
    results = Path(results)
    check_params(params)
    specs = load_tables()
    values, seen = runs.collect(params, results, specs)
    hists = runs.histories(results, seen)
    provenance = {"profile": params.profile, "seeds": params.seeds,
                  "data": "synthetic" if params.synthetic else "real",
                  "commit": runs.git_commit()}
    stage = _staging(results)
    try:
        names = _render(params, stage, specs, values, hists, provenance)
        _swap_in(stage, results)
    finally:
        _drop(stage)
    return [results / n for n in names]


def _render(params, stage: Path, specs, values, hists, provenance) -> list[str]:
    """Write the report under `stage` (which has `runs` linked to results/runs)."""
    written: list[Path] = []
    index_tables = []
    for tid, spec in specs.items():
        no_dataset = _no_dataset(spec)
        cells = tables.build_cells(spec, values, no_dataset=no_dataset)
        claims = tables.claim_results(spec, cells, values)
        files, weights = {}, set()
        for (t, _label), rr in values.items():
            if t == tid:
                files.update(rr.files)
                weights |= rr.weights
        prov = {**provenance, "fingerprint": runs.fingerprint(files), "no_dataset": no_dataset,
                "weights": sorted(weights),
                "shared": _shared_notes(spec, values)}
        for ext, text in (("md", tables.markdown(spec, cells, claims, prov)),
                          ("csv", tables.csv_text(spec, cells, claims)),
                          ("tex", tables.tex(spec, cells, prov))):
            path = stage / "tables" / f"{tid}.{ext}"
            rio.write_text(path, text)
            written.append(path)
        ran = sum(1 for r in cells.values() if any(c.status == tables.OK for c in r.values()))
        keyed = [(_claim_key(c["kind"], c["check"], tid, values), c["kind"], v)
                 for c, v in claims]
        index_tables.append((tid, spec, ran, len(cells), keyed, no_dataset))
    plot_dir = stage / "plots"
    index_plots = []
    from rlcv.engine import usable_cores

    label = f"training curves ({provenance['data']} data)"
    jobs = [(row, by_seed, plot_dir / f"curves-{row}.png", label)
            for row, by_seed in sorted(hists.items())]
    wait = plots.start_curves(jobs, usable_cores())
    try:
        family = _family_figures(params, stage)  # drawn here while the curves are drawn
    finally:
        wait()
    for row, _, path, _ in jobs:
        if path.exists():
            written.append(path)
            index_plots.append((path, f"training curves of {row} (all seeds)"))
    for path, what in family:
        written.append(path)
        index_plots.append((path, what))
    for path in _contact_sheets(params, plot_dir):
        written.append(path)
        index_plots.append((path, f"contact sheet of staged {path.stem[8:]} samples"))
    rio.write_text(stage / "README.md", index_text(provenance, index_tables, index_plots))
    written.append(stage / "README.md")
    return [p.relative_to(stage).as_posix() for p in written]


OUTPUTS = ("tables", "plots", "README.md")


def _staging(results: Path) -> Path:
    """An empty sibling folder of the outputs, with `runs` linked to the real runs (the
    family figures read results/runs and write results/plots)."""
    results.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report-", suffix=".partial", dir=results))
    (stage / "tables").mkdir()
    (stage / "plots").mkdir()
    os.symlink(os.path.join("..", "runs"), stage / "runs")
    return stage


def _drop(stage: Path) -> None:
    link = stage / "runs"
    if link.is_symlink():
        link.unlink()
    shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, results: Path) -> None:
    """Move the staged outputs into place; the old ones go only once all new ones are in."""
    old = []
    for name in OUTPUTS:
        final = results / name
        if final.exists():
            aside = stage / f"old-{name}"
            os.replace(final, aside)
            old.append(aside)
        os.replace(stage / name, final)
    for aside in old:
        if aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)


def _counts(verdicts: list) -> str:
    """'holds / does not hold / inconclusive / not run' counts of verdicts."""
    from rlcv.report.intervals import FAILS, HOLDS, INCONCLUSIVE

    c = [sum(v.status == s for v in verdicts) for s in (HOLDS, FAILS, INCONCLUSIVE)]
    return f"{c[0]} / {c[1]} / {c[2]} / {len(verdicts) - sum(c)}"


def index_text(provenance, index_tables, index_plots) -> str:
    """results/README.md: per table its rows and verdicts, paper claims apart from suite
    questions; the totals count a comparison two tables share once."""
    synthetic = provenance["data"] == "synthetic"
    unique: dict[str, dict] = {"claim": {}, "question": {}}
    for *_rest, keyed, _nd in index_tables:
        for key, kind, v in keyed:
            unique[kind].setdefault(key, v)
    lines = [
        "# rlcv results",
        "",
        f"Generated by `rlcv report` (stage `report` of `dvc repro`) from commit "
        f"`{provenance['commit']}`, profile `{provenance['profile']}`, seeds "
        f"{provenance['seeds']}.",
        "",
        ("**All numbers here come from SYNTHETIC data** (format-faithful synthetic versions of "
         "the datasets, small models on the CPU). They test whether each method runs and "
         "whether the papers' qualitative claims hold; they are not comparable to the "
         "published numbers." if synthetic else
         "Numbers from the real datasets (`paper` profile)."),
        "",
        "Verdicts come from 95% intervals over seeds (see any table's header): "
        "holds / does not hold / inconclusive / not run yet.",
        "",
        f"- **Paper claims** (sentences of the papers): {len(unique['claim'])} distinct, "
        f"{_counts(list(unique['claim'].values()))}.",
        f"- **Suite questions** (comparisons no sentence states): "
        f"{len(unique['question'])} distinct, {_counts(list(unique['question'].values()))}.",
        "",
        "A comparison that two tables share (the same runs, metric and check) is counted "
        "once in these totals and listed in both tables below.",
        "",
        "## Tables",
        "",
        "| Table | Title | Rows with results | Paper claims: holds / not / inconclusive / "
        "not run | Suite questions: holds / not / inconclusive / not run |",
        "|---|---|---|---|---|",
    ]
    for tid, spec, ran, total, keyed, no_dataset in index_tables:
        claims = [v for _k, kind, v in keyed if kind == "claim"]
        questions = [v for _k, kind, v in keyed if kind == "question"]
        rows = f"{ran}/{total}" + (" (dataset not in the suite)" if no_dataset else "")
        lines.append(f"| [{tid}](tables/{tid}.md) | {spec.title.replace('|', '∣')} | {rows} | "
                     f"{_counts(claims) if claims else '—'} | "
                     f"{_counts(questions) if questions else '—'} |")
    lines += ["", "Each table also exists as `.csv` and `.tex` beside the `.md`.", "",
              "## Plots", ""]
    for path, what in index_plots:
        lines.append(f"- [{path.name}](plots/{path.name}): {what}")
    lines += ["", "## Runs", "",
              "`runs/<row>-<seed>/metrics.json` (the values in the tables) and `history.csv` "
              "(losses, returns and evaluation values over training steps).", ""]
    return "\n".join(lines)
