"""Render one paper table side by side with our runs: Markdown, CSV and LaTeX.

Per row: the paper's value at the paper's precision, our mean ± sample std (ddof = 1)
over seeds and n, printed to the metric's resolution; one seed is printed without a
spread. A cell that is not a number says why: "published (not rerun)", "not run yet",
"undefined (<reason>)" for a metric a finished run cannot have, "not reproduced: no such
dataset in the suite". Then the claims, each with its effect and 95% interval over seeds
(the paper's effect beside it where the paper has the cells) and a verdict (claims.py).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass

from rlcv.report.claims import Lookup, Verdict, evaluate_claim
from rlcv.report.data import TableSpec
from rlcv.report.runs import RowRuns

OK = "ok"
NOT_RUN = "not run yet"
PUBLISHED = "published (not rerun)"
NO_DATASET = "not reproduced: no such dataset in the suite"


@dataclass
class Cell:
    paper: float | None
    ours: dict[int, float]
    """seed -> value in paper units."""
    status: str  # OK, NOT_RUN, PUBLISHED, NO_DATASET or "undefined (...)"
    paper_digits: int = 1
    digits: int = 1

    @property
    def values(self) -> list[float]:
        return [self.ours[k] for k in sorted(self.ours)]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.ours else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1); None below two seeds, NaN with a NaN."""
        if len(self.ours) < 2:
            return None
        return math.nan if self.nan_seeds else statistics.stdev(self.values)

    @property
    def nan_seeds(self) -> list[int]:
        return [k for k in sorted(self.ours) if math.isnan(self.ours[k])]

    def paper_text(self) -> str:
        return "—" if self.paper is None else f"{self.paper:.{self.paper_digits}f}"

    def ours_text(self, with_n: bool = True) -> str:
        if self.status != OK:
            return self.status
        n = f" (n={len(self.ours)})" if with_n else ""
        if self.nan_seeds:
            return f"NaN (seed {', '.join(map(str, self.nan_seeds))}){n}"
        d = self.digits
        if self.std is None:
            return f"{self.mean:.{d}f}{n}"
        return f"{self.mean:.{d}f} ± {self.std:.{d}f}{n}"


def _as_runs(row) -> RowRuns | None:
    """A RowRuns, or the plain {metric: [values in seed order]} of report.collect."""
    if row is None or isinstance(row, RowRuns):
        return row
    return RowRuns(metrics={m: dict(enumerate(vs)) for m, vs in row.items()})


def build_cells(spec: TableSpec, results: dict[tuple[str, str], RowRuns],
                no_dataset: bool = False) -> dict[str, dict[str, Cell]]:
    """cells[row][metric] from the published values and our per-seed values."""
    runnable = set(spec.reproduce) | set(spec.extra_rows)
    # rows of ours that the table spec does not list (a newly added method) come last
    added = sorted({label for tid, label in results if tid == spec.id} - set(spec.rows))
    runnable |= set(added)
    cells: dict[str, dict[str, Cell]] = {}
    for row in spec.rows + added:
        ours_row = _as_runs(results.get((spec.id, row)))
        cells[row] = {}
        for m in spec.metrics:
            vals = {k: v * m.scale for k, v in (ours_row.metrics.get(m.id, {}) if ours_row
                                               else {}).items()}
            if vals:
                status = OK
            elif row not in runnable:
                status = PUBLISHED
            elif no_dataset:
                status = NO_DATASET
            elif ours_row and ours_row.metrics:
                # the runs finished and reported other metrics: this one is undefined there
                status = f"undefined ({m.undefined or 'not defined on this data'})"
            else:
                status = NOT_RUN
            cells[row][m.id] = Cell(spec.published.get(row, {}).get(m.id), vals, status,
                                    spec.published_digits.get((row, m.id), 1), m.digits)
    return cells


def lookup(spec: TableSpec, cells, results: dict[tuple[str, str], RowRuns]) -> Lookup:
    """What claims.py reads about this table's rows."""
    def samples(row, metric):
        cell = cells.get(row, {}).get(metric)
        return cell.ours if cell is not None and cell.status == OK else None

    def data(row):
        rr = _as_runs(results.get((spec.id, row)))
        return next(iter(rr.data)) if rr is not None and len(rr.data) == 1 else None

    return Lookup(
        samples=samples,
        higher_is_better=lambda m: spec.metric(m).higher_is_better,
        margin=lambda m: spec.metric(m).step / 2,
        digits=lambda m: spec.metric(m).digits,
        paper=lambda r, m: spec.published.get(r, {}).get(m),
        data=data)


def claim_results(spec: TableSpec, cells, results=None) -> list[tuple[dict, Verdict]]:
    """Each claim and suite question of the table with its verdict on our runs."""
    look = lookup(spec, cells, results or {})
    out = []
    for kind, items in (("claim", spec.claims), ("question", spec.questions)):
        for c in items:
            out.append(({**c, "kind": kind}, evaluate_claim(c["check"], look)))
    return out


def _mname(m) -> str:
    return f"{m.name} [{m.dataset}]" if m.dataset else m.name


def weights_line(weights: list[str]) -> str:
    """The header line saying which pretrained weights the runs started from."""
    trained = sorted(w for w in weights if w != "none")
    if not trained:
        return ("> Weights: RANDOM INITIALISATION (`weights: none`): no run started from "
                "pretrained weights (see each paper for the weights it starts from).")
    line = f"> Weights: pretrained {', '.join(f'`{w}`' for w in trained)}"
    if "none" in weights:
        line += "; some runs from a RANDOM INITIALISATION (`weights: none`)"
    return line + "."


def header_lines(spec: TableSpec, provenance: dict) -> list[str]:
    """Title, data, provenance (commit, runs hash), what the table shows and not."""
    synthetic = provenance["data"] == "synthetic"
    if provenance.get("no_dataset"):
        data = (f"none: {spec.dataset} is not a dataset of the suite, so no row is "
                "reproduced; the paper's values only")
    elif synthetic:
        data = (f"SYNTHETIC data: format-faithful synthetic {spec.dataset} written by "
                "`rlcv synth`")
    else:
        data = f"the real {spec.dataset} dataset"
    lines = [
        f"# {spec.paper} {spec.label}: {spec.title}",
        "",
        f"> **Data: {data}. Profile `{provenance['profile']}`, seeds "
        f"{provenance['seeds']}.**",
        f"> Made from commit `{provenance.get('commit', 'unknown')}`, "
        f"{provenance.get('fingerprint', 'no runs')} (sha256 of the metrics.json files "
        "read, by path).",
        ("> Paper column: none — the paper shows this only as a figure or not at all. "
         if spec.pseudo else f"> Paper column: transcribed from `{spec.source}`, at the "
         "paper's precision. ") +
        "Ours: mean ± sample std (ddof 1) over seeds of `rlcv.metrics` on the held-out "
        "split, from `results/runs/*/metrics.json` (regenerate with `dvc repro`).",
        "> Claims: effect (positive = the first row better) with its 95% t interval over "
        "seeds, paired by seed when the rows share seeds and data; ✅ only when the "
        "interval clears the claimed boundary, ❌ only when it lies beyond it, else "
        "inconclusive.",
        "> What this shows: whether each method runs end to end and whether the paper's "
        "qualitative claims hold on our runs. "
        + ("What it does not show: numbers comparable to the paper's — the data are "
           "synthetic and small, the models CPU-sized." if synthetic else
           "What it does not show: the paper's exact training schedule where noted."),
    ]
    weights = provenance.get("weights") or []
    if weights:
        lines.append(weights_line(weights))
    for note in provenance.get("shared", []):
        lines.append(f"> Shared runs: {note}")
    return lines + ([f"> Note: {spec.notes}"] if spec.notes else [])


def markdown(spec: TableSpec, cells, claims, provenance: dict) -> str:
    lines = header_lines(spec, provenance) + [""]
    cols = ["Row"] + [f"{_mname(m)} {h}" for m in spec.metrics for h in ("(paper)", "(ours)")]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row, by_metric in cells.items():
        label = row if row in spec.published or spec.pseudo else f"{row} *(not in paper)*"
        vals = []
        for m in spec.metrics:
            c = by_metric[m.id]
            vals += [c.paper_text(), c.ours_text()]
        lines.append("| " + " | ".join([label, *vals]) + " |")
    units = ", ".join(f"{m.name} in {m.unit}" for m in spec.metrics if m.unit)
    direction = ", ".join(m.name for m in spec.metrics if not m.higher_is_better)
    lines += [""]
    if units:
        lines.append(f"Units: {units}.")
    if direction:
        lines.append(f"Lower is better for: {direction}.")
    if claims:
        lines += ["", "## Claims", "",
                  "| Claim | Paper sentence | On our runs | Effect: paper · ours [95% interval] |",
                  "|---|---|---|---|"]
        for c, v in claims:
            text = c["text"] + (" *(suite question, not a paper claim)*"
                                if c["kind"] == "question" else "")
            quote = c.get("quote", "—").replace("|", "\\|")
            lines.append(f"| {text} | {quote} | {v.label} | {v.detail} |")
    return "\n".join(lines) + "\n"


def csv_text(spec: TableSpec, cells, claims) -> str:
    """Long format: one line per cell (with its dataset), then one per claim."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "row", "dataset", "metric", "paper", "ours_mean", "ours_std", "n",
                "status"])
    for row, by_metric in cells.items():
        for mid, c in by_metric.items():
            m = spec.metric(mid)
            dataset = spec.published_dataset.get((row, mid)) or m.dataset or spec.dataset
            w.writerow([spec.id, row, dataset, mid, c.paper_text() if c.paper is not None else "",
                        "" if c.mean is None else f"{c.mean:.4f}",
                        "" if c.std is None else f"{c.std:.4f}", len(c.ours), c.status])
    for c, v in claims:
        w.writerow([spec.id, c["text"], spec.dataset, c["kind"], "", "", "", v.n,
                    f"{v.status}: {v.detail}"])
    return buf.getvalue()


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("±", r"$\pm$"), ("γ", r"$\gamma$"), ("λ", r"$\lambda$")):
        s = s.replace(a, b)
    return s


def tex(spec: TableSpec, cells, provenance: dict) -> str:
    n = 1 + 2 * len(spec.metrics)
    head = " & ".join(["Row"] + [f"\\multicolumn{{2}}{{c}}{{{_tex_escape(m.name)}}}"
                                 for m in spec.metrics])
    sub = " & ".join([""] + ["paper & ours"] * len(spec.metrics))
    body = []
    for row, by_metric in cells.items():
        vals = []
        for m in spec.metrics:
            c = by_metric[m.id]
            vals += [c.paper_text(), "--" if c.status != OK else c.ours_text(with_n=False)]
        body.append(" & ".join(_tex_escape(v) for v in [row, *vals]) + r" \\")
    caption = (f"{spec.paper} {spec.label}: {spec.title}. Ours: "
               f"{provenance['data']} data, profile {provenance['profile']}, "
               f"mean ± sample std over seeds (at most {len(provenance['seeds'])}); commit "
               f"{provenance.get('commit', 'unknown')}, {provenance.get('fingerprint', '')}.")
    return "\n".join([
        r"\begin{table}[t]", r"\centering",
        f"\\begin{{tabular}}{{l{'r' * (n - 1)}}}", r"\hline", head + r" \\", sub + r" \\",
        r"\hline", *body, r"\hline", r"\end{tabular}",
        f"\\caption{{{_tex_escape(caption)}}}", r"\end{table}", ""])
