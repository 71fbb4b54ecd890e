"""The report's training curves drawn in forked workers against one after another in the
report's process (issue 22; the code before). Workload: 8 rows of 5 seeds, 600 steps
and 4 logged quantities each, about the size of a smoke row's history. Benchmarked: the
curves drawn with `plots.start_curves(jobs, usable_cores())`; reference, in the same run:
`workers=1`. The files are the same bytes (tests/test_report.py). Asserted: on two or
more cores the workers take at most 0.8x the time (measured here ~0.55 on 2 cores)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _timing import best_time

from rlcv.engine import usable_cores
from rlcv.report import plots

ROWS, SEEDS, STEPS = 8, 5, 600


@pytest.fixture(scope="module")
def histories():
    rng = np.random.default_rng(0)
    return {f"row{r}": {s: pd.DataFrame({"phase": ["a"] * (STEPS // 2) + ["b"] * (STEPS // 2),
                                         "step": range(STEPS), **{c: rng.random(STEPS) for c in
                                         ("loss", "return", "lr", "eval_iou")}})
                        for s in range(SEEDS)} for r in range(ROWS)}


def _draw(histories, folder, workers) -> None:
    jobs = [(row, h, folder / f"curves-{row}.png", "bench") for row, h in histories.items()]
    plots.start_curves(jobs, workers)()


def test_bench_report_curves_in_workers(benchmark, histories, tmp_path):
    cores = usable_cores()
    benchmark.pedantic(_draw, args=(histories, tmp_path / "ours", cores), rounds=2,
                       iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_ref = best_time(_draw, 2, histories, tmp_path / "ref", 1)
    t_ours = (stats.stats.min if stats is not None                  # --benchmark-disable: None
              else best_time(_draw, 1, histories, tmp_path / "ours", cores))
    ratio = t_ours / t_ref
    benchmark.extra_info.update(ratio=round(ratio, 3), cores=cores, rows=ROWS)
    print(f"\nreport curves of {ROWS} rows: {t_ours:.2f} s in {cores} workers, {t_ref:.2f} s "
          f"one after another ({ratio:.2f}x)")
    if cores >= 2:
        assert ratio <= 0.8, f"drawing in {cores} workers took {ratio:.2f}x the serial time"
