"""Render one paper table side by side with our runs: Markdown, CSV and LaTeX.

Per row: the paper's value, our mean ± std over seeds and n; rows the suite does not
rerun are marked "published (not rerun)", rows it reruns but has no result for yet are
"not run yet" — never blank, never invented. Then the claims, each marked as holding
or not on our runs.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass

from rlcv.report.claims import evaluate_claim
from rlcv.report.data import TableSpec

NOT_RUN = "not run yet"
PUBLISHED = "published (not rerun)"


@dataclass
class Cell:
    paper: float | None
    ours: list[float]
    status: str  # "ok", NOT_RUN, PUBLISHED

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.ours) if self.ours else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.ours) if len(self.ours) > 1 else (0.0 if self.ours else None)


def build_cells(spec: TableSpec, results: dict[tuple[str, str], dict[str, list[float]]]):
    """cells[row][metric] from the published values and our per-seed values."""
    runnable = set(spec.reproduce) | set(spec.extra_rows)
    # rows of ours that the table spec does not list (a newly added method) come last
    added = sorted({label for tid, label in results if tid == spec.id} - set(spec.rows))
    runnable |= set(added)
    cells: dict[str, dict[str, Cell]] = {}
    for row in spec.rows + added:
        ours_row = results.get((spec.id, row), {})
        cells[row] = {}
        for m in spec.metrics:
            paper = spec.published.get(row, {}).get(m.id)
            vals = [v * m.scale for v in ours_row.get(m.id, [])]
            status = "ok" if vals else (NOT_RUN if row in runnable else PUBLISHED)
            cells[row][m.id] = Cell(paper, vals, status)
    return cells


def claim_results(spec: TableSpec, cells) -> list[tuple[dict, str, str]]:
    def values(row, metric):
        cell = cells.get(row, {}).get(metric)
        return cell.mean if cell is not None else None

    out = []
    for kind, items in (("claim", spec.claims), ("question", spec.questions)):
        for c in items:
            status, detail = evaluate_claim(
                c["check"], values, lambda mid: spec.metric(mid).higher_is_better)
            if status in ("holds", "does not hold") and _within_spread(c["check"], cells):
                detail += f"; {WITHIN_SPREAD}"
            out.append(({**c, "kind": kind}, status, detail))
    return out


WITHIN_SPREAD = "within the seed spread"
"""Added to a `better` claim's detail when a compared gap is smaller than the two rows'
combined standard deviation over seeds: the verdict could flip with other seeds."""


def _within_spread(check: dict, cells) -> bool:
    if check["type"] != "better":
        return False
    m = check["metric"]
    a = cells[check["a"]][m]
    for row in check["b"] if isinstance(check["b"], list) else [check["b"]]:
        b = cells[row][check.get("metric_b", m)]
        if len(a.ours) > 1 and len(b.ours) > 1 and \
                abs(a.mean - b.mean) < (a.std ** 2 + b.std ** 2) ** 0.5:
            return True
    return False


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _ours(cell: Cell) -> str:
    if cell.status != "ok":
        return cell.status
    return f"{cell.mean:.1f} ± {cell.std:.1f} (n={len(cell.ours)})"


def _mname(m) -> str:
    return f"{m.name} [{m.dataset}]" if m.dataset else m.name


def header_lines(spec: TableSpec, provenance: dict) -> list[str]:
    synthetic = provenance["data"] == "synthetic"
    data = ("SYNTHETIC data: format-faithful synthetic "
            f"{spec.dataset} written by `rlcv synth`"
            if synthetic else f"the real {spec.dataset} dataset")
    return [
        f"# {spec.paper} {spec.label}: {spec.title}",
        "",
        f"> **Data: {data}. Profile `{provenance['profile']}`, seeds "
        f"{provenance['seeds']}.**",
        ("> Paper column: none — the paper shows this only as a figure or not at all. "
         if spec.pseudo else f"> Paper column: transcribed from `{spec.source}`. ") +
        "Ours: mean ± std over seeds of "
        "`rlcv.metrics` on the held-out split, from `results/runs/*/metrics.json` "
        "(regenerate with `dvc repro`).",
        "> What this shows: whether each method runs end to end and whether the paper's "
        "qualitative claims hold on our runs. "
        + ("What it does not show: numbers comparable to the paper's — the data are "
           "synthetic and small, the models CPU-sized." if synthetic else
           "What it does not show: the paper's exact training schedule where noted."),
    ] + ([f"> Note: {spec.notes}"] if spec.notes else [])


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
            vals += [_fmt(c.paper), _ours(c)]
        lines.append("| " + " | ".join([label, *vals]) + " |")
    units = ", ".join(f"{m.name} in {m.unit}" for m in spec.metrics if m.unit)
    direction = ", ".join(m.name for m in spec.metrics if not m.higher_is_better)
    lines += [""]
    if units:
        lines.append(f"Units: {units}.")
    if direction:
        lines.append(f"Lower is better for: {direction}.")
    if claims:
        lines += ["", "## Claims", "", "| Claim | On our runs | Values (ours) |", "|---|---|---|"]
        for c, status, detail in claims:
            text = c["text"] + (" *(suite question, not a paper claim)*"
                                if c["kind"] == "question" else "")
            mark = {"holds": "✅ holds", "does not hold": "❌ does not hold"}.get(status, status)
            if detail.endswith(WITHIN_SPREAD):
                mark += " (within seed spread)"
            lines.append(f"| {text} | {mark} | {detail} |")
    return "\n".join(lines) + "\n"


def csv_text(spec: TableSpec, cells, claims) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "row", "metric", "paper", "ours_mean", "ours_std", "n", "status"])
    for row, by_metric in cells.items():
        for mid, c in by_metric.items():
            w.writerow([spec.id, row, mid, "" if c.paper is None else c.paper,
                        "" if c.mean is None else f"{c.mean:.4f}",
                        "" if c.std is None else f"{c.std:.4f}", len(c.ours), c.status])
    for c, status, detail in claims:
        w.writerow([spec.id, c["text"], c["kind"], "", "", "", "", f"{status}: {detail}"])
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
            vals += [_fmt(c.paper), "--" if c.status != "ok" else f"{c.mean:.1f} ± {c.std:.1f}"]
        body.append(" & ".join(_tex_escape(v) for v in [row, *vals]) + r" \\")
    caption = (f"{spec.paper} {spec.label}: {spec.title}. Ours: "
               f"{provenance['data']} data, profile {provenance['profile']}, "
               f"mean ± std over {len(provenance['seeds'])} seeds.")
    return "\n".join([
        r"\begin{table}[t]", r"\centering",
        f"\\begin{{tabular}}{{l{'r' * (n - 1)}}}", r"\hline", head + r" \\", sub + r" \\",
        r"\hline", *body, r"\hline", r"\end{tabular}",
        f"\\caption{{{_tex_escape(caption)}}}", r"\end{table}", ""])
