"""Judge a table's claims from intervals over seeds (see intervals.py for the statistics).

Every claim check (tables.yaml `check:`) is reduced to one or more *comparisons*, each an
effect (a contrast of rows' per-seed values, in quality units: positive = the first row
better, whatever the metric's direction) with a claimed side. A comparison holds when its
95% interval lies on the claimed side, fails when it lies on the other, and is
inconclusive otherwise; a claim combines its comparisons (all_of / any_of). Check types:

    better        {a, b: [rows], metric}      a beats every row of b
    close         {a, b, metric, tol}         |a - b| <= tol (the interval inside +-tol)
    order         {rows: [...], metric}       strictly decreasing quality along rows
    increasing    {rows: [...], metric}       strictly increasing quality along rows
    diminishing   {rows: [...], metric}       increasing, with shrinking increments
    largest_gain  {a, b, metrics, top}        on some metric of `top`, a gains over b, and
                                              more than on every metric not in `top`
    between       {a, low, high, metric}      better than low, worse than high
    smaller_gain  {a, b, than: [c, d], metric}  a's gain over b is below c's gain over d

Sizes: a sentence that states a size ("by 2.0 points") carries `size: 2.0`; the claim is
then "the gain is that size rather than none" and holds when the interval lies above
half the size (the midpoint between the two readings), fails when it lies below it. A
size word without a number ("a large margin", "significantly", "much better") carries
`min_effect`, the suite's reading of the word written beside the sentence in tables.yaml.
Without either, the boundary is 0. `better` and `close` may carry `metric_b` (b is read
on that metric: two columns of one table). Any check may carry `also: [checks]`, further
parts of the same sentence that must hold too.

A claim is "not run yet" while a row it names has no result. `largest_gain` leaves out a
metric that no row has although all have others (undefined on the data, e.g. APl on
images without large objects) and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rlcv.report import intervals as iv

NOT_RUN = "not run yet"


@dataclass
class Lookup:
    """What the claim checker reads about a table's rows."""
    samples: Callable[[str, str], dict[int, float] | None]
    """(row, metric) -> {seed: value in paper units}, or None when not run."""
    higher_is_better: Callable[[str], bool]
    margin: Callable[[str], float]
    """metric -> the dead zone around a boundary (half the display resolution)."""
    digits: Callable[[str], int] = lambda m: 1
    paper: Callable[[str, str], float | None] = lambda r, m: None
    data: Callable[[str], str | None] = lambda r: None
    """row -> the data it was run on (rows on the same data and seeds are paired)."""


@dataclass
class Verdict:
    status: str
    """'holds', 'does not hold', 'inconclusive' or 'not run yet'."""
    detail: str
    n: int = 0
    """The fewest seeds behind any of the claim's comparisons (0: not run)."""

    @property
    def label(self) -> str:
        return {iv.HOLDS: "✅ holds", iv.FAILS: "❌ does not hold",
                iv.INCONCLUSIVE: f"inconclusive (n = {self.n})"}.get(self.status, self.status)


Term = tuple[str, str, float]
"""(row, metric, coefficient) of a contrast."""


def _rows_of(check: dict) -> list[str]:
    rows = [check[k] for k in ("a", "low", "high") if k in check]
    b = check.get("b")
    rows += b if isinstance(b, list) else ([b] if b else [])
    return rows + list(check.get("rows", [])) + list(check.get("than", []))


def _metrics_of(check: dict) -> list[str]:
    ms = list(check.get("metrics") or [check["metric"]])
    return ms + ([check["metric_b"]] if "metric_b" in check else [])


def bound(check: dict, metric: str | None = None) -> float:
    """The boundary a comparison's effect must clear: half a stated `size` (a mapping
    metric -> size for `largest_gain`), else `min_effect`, else 0."""
    size = check.get("size")
    if isinstance(size, dict):
        size = size.get(metric)
    if size is not None:
        return float(size) / 2
    return float(check.get("min_effect", 0.0))


class _Judge:
    def __init__(self, look: Lookup):
        self.look = look
        self.parts: list[str] = []
        self.ns: list[int] = []

    def effect(self, terms: list[Term]) -> iv.Effect:
        look = self.look
        sign = [1.0 if look.higher_is_better(m) else -1.0 for _r, m, _c in terms]
        samples = [{k: s * v for k, v in look.samples(r, m).items()}
                   for (r, m, _c), s in zip(terms, sign, strict=True)]
        return iv.contrast(samples, [c for _r, _m, c in terms],
                           [look.data(r) for r, _m, _c in terms])

    def paper(self, terms: list[Term]) -> float | None:
        vals = [self.look.paper(r, m) for r, m, _c in terms]
        if any(v is None for v in vals):
            return None
        return sum(c * v * (1 if self.look.higher_is_better(m) else -1)
                   for v, (_r, m, c) in zip(vals, terms, strict=True))

    def compare(self, label: str, terms: list[Term], side: str, bound: float = 0.0) -> str:
        """One comparison: its verdict, recorded with its effect for the detail."""
        metrics = [m for _r, m, _c in terms]
        margin = max(self.look.margin(m) for m in metrics)
        digits = max(self.look.digits(m) for m in metrics)
        e = self.effect(terms)
        verdict = {"above": iv.above, "below": iv.below, "within": iv.within}[side](
            e, bound, margin)
        p = self.paper(terms)
        paper = f"paper {p:+.{digits}f} · " if p is not None and math.isfinite(p) else ""
        self.parts.append(f"{label}: {paper}ours {e.fmt(digits)}")
        self.ns.append(e.n)
        return verdict


def _diff(a: str, ma: str, b: str, mb: str) -> list[Term]:
    return [(a, ma, 1.0), (b, mb, -1.0)]


def _judge(check: dict, j: _Judge, metrics: list[str]) -> str:
    kind = check["type"]
    if kind == "better":
        m, mb = check["metric"], check.get("metric_b", check["metric"])
        bs = check["b"] if isinstance(check["b"], list) else [check["b"]]
        tag = "" if mb == m else f" ({m} vs {mb})"
        return iv.all_of([j.compare(f"{check['a']} − {b}{tag}", _diff(check["a"], m, b, mb),
                                    "above", bound(check)) for b in bs])
    if kind == "close":
        m, mb = check["metric"], check.get("metric_b", check["metric"])
        # |a - b| is symmetric, so the quality sign of the metric does not matter
        terms = _diff(check["a"], m, check["b"], mb)
        label = f"{check['a']} − {check['b']} (tol ±{check['tol']})"
        return j.compare(label, terms, "within", float(check["tol"]))
    if kind in ("order", "increasing", "diminishing", "between"):
        m = check["metric"]
        rows = ([check["low"], check["a"], check["high"]] if kind == "between"
                else list(check["rows"]))
        if kind == "order":
            rows = rows[::-1]
        steps = [j.compare(f"{hi} − {lo}", _diff(hi, m, lo, m), "above", bound(check))
                 for lo, hi in zip(rows, rows[1:], strict=False)]
        if kind == "diminishing":
            steps += [j.compare(f"step {b} → {c} − step {a} → {b}",
                                [(c, m, 1.0), (b, m, -2.0), (a, m, 1.0)], "below")
                      for a, b, c in zip(rows, rows[1:], rows[2:], strict=False)]
        return iv.all_of(steps)
    if kind == "largest_gain":
        a, b = check["a"], check["b"]
        others = [m for m in metrics if m not in check["top"]]
        options = []
        for t in check["top"]:
            if t not in metrics:
                continue
            parts = [j.compare(f"{t} gain", _diff(a, t, b, t), "above", bound(check, t))]
            parts += [j.compare(f"{t} gain − {o} gain", [*_diff(a, t, b, t), (a, o, -1.0),
                                                          (b, o, 1.0)], "above")
                      for o in others]
            options.append(iv.all_of(parts))
        return iv.any_of(options)
    if kind == "smaller_gain":
        m = check["metric"]
        c, d = check["than"]
        terms = [*_diff(check["a"], m, check["b"], m), (c, m, -1.0), (d, m, 1.0)]
        # "less by 0.4 points": the difference of gains lies below -size/2
        return j.compare(f"({check['a']} − {check['b']}) − ({c} − {d})", terms, "below",
                         -bound(check))
    raise ValueError(f"unknown claim check type {kind!r}")


def _missing(check: dict, look: Lookup) -> tuple[list[str], list[str], list[str]]:
    """(rows without a result, metrics undefined for every row, metrics to judge)."""
    rows = _rows_of(check)
    metrics = _metrics_of(check)
    has = {(r, m): bool(look.samples(r, m)) for r in rows for m in metrics}
    undefined = []
    if check["type"] == "largest_gain":
        # a metric no row has while every row has others is undefined on this data (e.g.
        # COCO's APl on images too small to hold a large object): compare the rest
        ran = all(any(has[(r, m)] for m in metrics) for r in rows)
        undefined = [m for m in metrics if not any(has[(r, m)] for r in rows)]
        if ran and undefined and set(check["top"]) - set(undefined):
            metrics = [m for m in metrics if m not in undefined]
        else:
            undefined = []
    missing = sorted({r for r in rows for m in metrics if not has[(r, m)]})
    for extra in check.get("also", []):
        missing += [r for r in _missing(extra, look)[0] if r not in missing]
    return missing, undefined, metrics


def evaluate_claim(check: dict, look: Lookup) -> Verdict:
    """The claim's verdict on our runs, with each comparison's effect and interval."""
    missing, undefined, metrics = _missing(check, look)
    if missing:
        return Verdict(NOT_RUN, "no result for " + ", ".join(missing))
    j = _Judge(look)
    verdicts = [_judge(check, j, metrics)]
    for extra in check.get("also", []):
        verdicts.append(_judge(extra, j, _missing(extra, look)[2]))
    detail = "; ".join(j.parts)
    if undefined:
        detail += f" ({', '.join(undefined)} undefined on this data)"
    return Verdict(iv.all_of(verdicts), detail, min(j.ns) if j.ns else 0)
