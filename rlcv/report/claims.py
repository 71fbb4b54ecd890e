"""Check a table's qualitative claims on our runs' mean values.

Claim checks (tables.yaml `check:`), all direction-aware through the metric's
`higher_is_better`; values are compared in the paper's units:

    better        {a, b: [rows], metric}      a beats every row of b
    close         {a, b, metric, tol}         |a - b| <= tol
    order         {rows: [...], metric}       strictly decreasing quality along rows
    increasing    {rows: [...], metric}       strictly increasing quality along rows
    diminishing   {rows: [...], metric}       increasing, with shrinking increments
    largest_gain  {a, b, metrics, top}        a's gain over b is largest on one of `top`
    between       {a, low, high, metric}      better than low, worse than high

`better` and `close` may carry `metric_b`: b is then read on that metric (comparing two
columns of one table, e.g. a state blocked vs not).

A claim is "not run yet" while any row it names has no result. `largest_gain` leaves
out a metric that no row has although all have others (undefined on the data, e.g. APl
on images without large objects) and says so in its detail.
"""

from __future__ import annotations

from collections.abc import Callable

Values = Callable[[str, str], float | None]
"""values(row, metric) -> our mean in paper units, or None when not run."""


def _rows_of(check: dict) -> list[str]:
    rows = []
    for key in ("a", "low", "high"):
        if key in check:
            rows.append(check[key])
    b = check.get("b")
    rows += b if isinstance(b, list) else ([b] if b else [])
    rows += check.get("rows", [])
    return rows


def evaluate_claim(check: dict, values: Values, higher_is_better: Callable[[str], bool]):
    """Return (status, detail): status is 'holds', 'does not hold' or 'not run yet'."""
    kind = check["type"]
    metrics = check.get("metrics") or [check["metric"]]
    if "metric_b" in check:
        metrics = [*metrics, check["metric_b"]]
    rows = _rows_of(check)
    table = {(r, m): values(r, m) for r in rows for m in metrics}
    undefined = []
    if kind == "largest_gain":
        # a metric no row has while every row has others is undefined on this data (e.g.
        # COCO's APl on images too small to hold a large object): compare the rest
        ran = all(any(table[(r, m)] is not None for m in metrics) for r in rows)
        undefined = [m for m in metrics if all(table[(r, m)] is None for r in rows)]
        if ran and undefined and set(check["top"]) - set(undefined):
            metrics = [m for m in metrics if m not in undefined]
            table = {(r, m): v for (r, m), v in table.items() if m in metrics}
        else:
            undefined = []
    missing = sorted({r for (r, _m), v in table.items() if v is None})
    if missing:
        return "not run yet", "no result for " + ", ".join(missing)

    def q(row: str, metric: str) -> float:
        """Quality: the value, negated when lower is better."""
        v = table[(row, metric)]
        return v if higher_is_better(metric) else -v

    def fmt(row, metric):
        return f"{row} {table[(row, metric)]:.1f}"

    if kind == "better":
        m = check["metric"]
        mb = check.get("metric_b", m)
        b = check["b"] if isinstance(check["b"], list) else [check["b"]]
        ok = all(q(check["a"], m) > q(r, mb) for r in b)
        return _status(ok), "; ".join([fmt(check["a"], m), *(fmt(r, mb) for r in b)])
    if kind == "close":
        m = check["metric"]
        mb = check.get("metric_b", m)
        gap = abs(table[(check["a"], m)] - table[(check["b"], mb)])
        return _status(gap <= float(check["tol"])), f"gap {gap:.1f} (tol {check['tol']})"
    if kind in ("order", "increasing", "diminishing"):
        m = check["metric"]
        qs = [q(r, m) for r in check["rows"]]
        steps = [b - a for a, b in zip(qs, qs[1:], strict=False)]
        if kind == "order":
            ok = all(s < 0 for s in steps)
        elif kind == "increasing":
            ok = all(s > 0 for s in steps)
        else:
            ok = all(s > 0 for s in steps) and all(
                b < a for a, b in zip(steps, steps[1:], strict=False))
        return _status(ok), "; ".join(fmt(r, m) for r in check["rows"])
    if kind == "largest_gain":
        gains = {m: q(check["a"], m) - q(check["b"], m) for m in metrics}
        best = max(gains, key=gains.get)
        detail = ", ".join(f"{m} {g:+.1f}" for m, g in gains.items())
        if undefined:
            detail += f" ({', '.join(undefined)} undefined on this data)"
        return _status(best in check["top"]), f"gains {detail}"
    if kind == "between":
        m = check["metric"]
        ok = q(check["low"], m) < q(check["a"], m) < q(check["high"], m)
        return _status(ok), "; ".join(fmt(r, m) for r in (check["low"], check["a"], check["high"]))
    raise ValueError(f"unknown claim check type {kind!r}")


def _status(ok: bool) -> str:
    return "holds" if ok else "does not hold"
