"""The report: per-paper tables beside the published numbers, plots and an index.

`build(params, results)` reads `results/runs/<row>-<seed>/{metrics.json,history.csv}`
and the staged datasets and writes `results/tables/<paper>-table<N>.{md,csv,tex}`,
`results/plots/*.png` and `results/README.md`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rlcv import io as rio
from rlcv.params import Params
from rlcv.report import plots, tables
from rlcv.report.data import load_tables


def collect(params: Params, results: Path) -> tuple[dict, dict]:
    """Our per-seed values keyed by (table id, row label) -> metric -> [values], and the
    run records by row. Only runs of the active profile and seeds count."""
    import methods

    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    records: dict[str, list[dict]] = {}
    wanted = set(params.method_names)
    specs = load_tables()
    for path in sorted((results / "runs").glob("*/metrics.json")):
        rec = json.loads(path.read_text())
        if (rec.get("profile") != params.profile or rec.get("seed") not in params.seeds
                or rec.get("row") not in wanted or rec.get("row") not in methods.METHODS):
            continue
        records.setdefault(rec["row"], []).append(rec)
        for tid, label in methods.METHODS[rec["row"]].tables.items():
            for key, v in rec["metrics"].items():
                # "metric@Label" reports under another row label of the same tables
                metric, _, other = key.partition("@")
                if other and tid in specs and other not in specs[tid].rows:
                    continue   # a row in several tables: "@Label" fills only those listing it
                slot = values.setdefault((tid, other or label), {})
                slot.setdefault(metric, []).append(float(v))
    return values, records


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
            data = staged.load(split)
            n = len(next(iter(data.values())))
            for i in range(min(12 // len(subsets) or 1, n)):
                images.append(module.draw({k: v[i] for k, v in data.items()}))
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


def build(params: Params, results: Path) -> list[Path]:
    """Write every table, plot and the index; returns the files written."""
    results = Path(results)
    specs = load_tables()
    values, records = collect(params, results)
    provenance = {"profile": params.profile, "seeds": params.seeds,
                  "data": "synthetic" if params.synthetic else "real"}
    written: list[Path] = []
    index_tables = []
    for tid, spec in specs.items():
        cells = tables.build_cells(spec, values)
        claims = tables.claim_results(spec, cells)
        for ext, text in (("md", tables.markdown(spec, cells, claims, provenance)),
                          ("csv", tables.csv_text(spec, cells, claims)),
                          ("tex", tables.tex(spec, cells, provenance))):
            path = results / "tables" / f"{tid}.{ext}"
            rio.write_text(path, text)
            written.append(path)
        ran = sum(1 for r in cells.values() if any(c.status == "ok" for c in r.values()))
        held = sum(1 for _c, s, _d in claims if s == "holds")
        judged = sum(1 for _c, s, _d in claims if s != "not run yet")
        index_tables.append((tid, spec, ran, len(cells), held, judged, len(claims)))
    plot_dir = results / "plots"
    index_plots = []
    for row, recs in sorted(records.items()):
        hists = {}
        for rec in recs:
            h = results / "runs" / f"{row}-{rec['seed']}" / "history.csv"
            if h.exists():
                df = pd.read_csv(h)
                if len(df):
                    hists[rec["seed"]] = df
        if hists:
            path = plot_dir / f"curves-{row}.png"
            plots.training_curves(row, hists, path, f"training curves ({provenance['data']} data)")
            if path.exists():
                written.append(path)
                index_plots.append((path, f"training curves of {row} (all seeds)"))
    for path, what in _family_figures(params, results):
        written.append(path)
        index_plots.append((path, what))
    for path in _contact_sheets(params, plot_dir):
        written.append(path)
        index_plots.append((path, f"contact sheet of staged {path.stem[8:]} samples"))
    readme = results / "README.md"
    rio.write_text(readme, _index(provenance, index_tables, index_plots, results))
    written.append(readme)
    return written


def _index(provenance, index_tables, index_plots, results: Path) -> str:
    synthetic = provenance["data"] == "synthetic"
    lines = [
        "# rlcv results",
        "",
        f"Generated by `rlcv report` (stage `report` of `dvc repro`), profile "
        f"`{provenance['profile']}`, seeds {provenance['seeds']}.",
        "",
        ("**All numbers here come from SYNTHETIC data** (format-faithful synthetic versions of "
         "the datasets, small models on the CPU). They test whether each method runs and "
         "whether the papers' qualitative claims hold; they are not comparable to the "
         "published numbers." if synthetic else
         "Numbers from the real datasets (`paper` profile)."),
        "",
        "## Tables",
        "",
        "| Table | Title | Rows with results | Claims holding / judged / total |",
        "|---|---|---|---|",
    ]
    for tid, spec, ran, total, held, judged, nclaims in index_tables:
        lines.append(f"| [{tid}](tables/{tid}.md) | {spec.title} | {ran}/{total} | "
                     f"{held}/{judged}/{nclaims} |")
    lines += ["", "Each table also exists as `.csv` and `.tex` beside the `.md`.", "",
              "## Plots", ""]
    for path, what in index_plots:
        lines.append(f"- [{path.name}](plots/{path.name}): {what}")
    lines += ["", "## Runs", "",
              "`runs/<row>-<seed>/metrics.json` (the values in the tables) and `history.csv` "
              "(losses, returns and evaluation values over training steps).", ""]
    return "\n".join(lines)
