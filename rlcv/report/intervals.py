"""95% intervals of an effect over seeds, and the three-way verdict they support.

An *effect* is a linear contrast of rows' per-seed values, sum_i c_i * x_i (for "A beats
B": c = (+1, -1)). Its 95% interval is a Student t interval:

- **paired** when every row of the contrast has the same seeds and was run on the same
  data (the usual case: rows differ only in method): the per-seed contrast
  d_s = sum_i c_i x_i[s] gives mean(d) +- t(0.975, n - 1) * sd(d) / sqrt(n), with the
  sample standard deviation (ddof = 1);
- **unpaired** otherwise (Welch): sum_i c_i mean_i +- t(0.975, df) * se with
  se^2 = sum_i c_i^2 s_i^2 / n_i and the Welch-Satterthwaite df.

Why t and not a percentile bootstrap (rliable's choice for aggregates over many tasks):
with 3 to 5 seeds a percentile bootstrap of the mean has only a handful of distinct
resamples and is known to be too narrow; the t interval is exact under normal seed noise,
needs no RNG, and is the same on every machine. An interval from one seed is unbounded.

A verdict compares the interval to the claimed boundary, with a dead zone of `margin`
(half the metric's display resolution) around it: a claim holds only when the whole
interval clears the boundary by more than the margin, fails only when the whole interval
lies beyond it on the other side, and is inconclusive otherwise. An interval touching the
boundary therefore never decides a verdict, and float differences between machines in
the third decimal cannot flip a conclusive verdict unless the interval edge sits within
them of the dead zone's edge.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Effect:
    """A contrast's estimate and 95% interval; lo/hi are infinite when n < 2."""
    estimate: float
    lo: float
    hi: float
    n: int
    """Seeds behind it: the shared seeds when paired, the smallest row's otherwise."""
    paired: bool

    def fmt(self, digits: int = 1) -> str:
        """'+0.3 [-0.5, 1.1]' or '+0.3 (n = 1, no interval)'."""
        if math.isnan(self.estimate):
            return f"NaN (n = {self.n}, no interval)"
        if not math.isfinite(self.lo):
            return f"{self.estimate:+.{digits}f} (n = {self.n}, no interval)"
        return f"{self.estimate:+.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def t_quantile(df: float) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom."""
    return float(stats.t.ppf(0.975, df))


def contrast(samples: list[dict[int, float]], coefs: list[float],
             data: list[str | None] | None = None) -> Effect:
    """The effect sum_i coefs[i] * row_i with its 95% interval over seeds.

    `samples[i]` maps seed -> value of row i; `data[i]` names the data row i was run on
    (None: unknown). Paired by seed when all rows share seeds and data, Welch otherwise.
    """
    terms = [(s, c) for s, c in zip(samples, coefs, strict=True) if c != 0]
    if not terms or any(not s for s, _c in terms):
        raise ValueError("contrast of an empty row")
    n_min = min(len(s) for s, _c in terms)
    if any(not math.isfinite(v) for s, _c in terms for v in s.values()):
        # a NaN (or inf) metric: shown in the table, never judged
        return Effect(math.nan, -math.inf, math.inf, n_min, False)
    same_data = data is None or (len(set(data)) == 1 and data[0] is not None)
    seeds = set(terms[0][0])
    if same_data and all(set(s) == seeds for s, _c in terms):
        d = [sum(c * s[k] for s, c in terms) for k in sorted(seeds)]
        mean, n = statistics.fmean(d), len(d)
        if n < 2:
            return Effect(mean, -math.inf, math.inf, n, True)
        half = t_quantile(n - 1) * statistics.stdev(d) / math.sqrt(n)
        return Effect(mean, mean - half, mean + half, n, True)
    mean = sum(c * statistics.fmean(s.values()) for s, c in terms)
    n = n_min
    if n < 2:
        return Effect(mean, -math.inf, math.inf, n, False)
    parts = [c * c * statistics.variance(s.values()) / len(s) for s, c in terms]
    se2 = sum(parts)
    if se2 == 0:
        return Effect(mean, mean, mean, n, False)
    df = se2 ** 2 / sum(p * p / (len(s) - 1) for p, (s, _c) in zip(parts, terms, strict=True))
    half = t_quantile(df) * math.sqrt(se2)
    return Effect(mean, mean - half, mean + half, n, False)


def above(e: Effect, bound: float, margin: float) -> str:
    """Verdict on 'the effect is greater than `bound`'."""
    if e.lo > bound + margin:
        return HOLDS
    if e.hi < bound - margin:
        return FAILS
    return INCONCLUSIVE


def below(e: Effect, bound: float, margin: float) -> str:
    """Verdict on 'the effect is less than `bound`'."""
    flipped = Effect(-e.estimate, -e.hi, -e.lo, e.n, e.paired)
    return above(flipped, -bound, margin)


def within(e: Effect, tol: float, margin: float) -> str:
    """Verdict on '|effect| <= tol' (a 'close' or 'similar' claim)."""
    if -tol + margin < e.lo and e.hi < tol - margin:
        return HOLDS
    if e.lo > tol + margin or e.hi < -tol - margin:
        return FAILS
    return INCONCLUSIVE


def all_of(verdicts: list[str]) -> str:
    """Every part holds -> holds; any part fails -> fails; else (or none) inconclusive."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if FAILS in verdicts:
        return FAILS
    return INCONCLUSIVE


def any_of(verdicts: list[str]) -> str:
    """Some part holds -> holds; every part fails -> fails; else (or none) inconclusive."""
    if HOLDS in verdicts:
        return HOLDS
    if verdicts and all(v == FAILS for v in verdicts):
        return FAILS
    return INCONCLUSIVE
