"""Plots of the report: training curves per row (a grid, phases marked, mean ± sample
std over seeds), dataset contact sheets."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rlcv import io as rio  # noqa: E402


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    rio.write_bytes(path, buf.getvalue())


WALL_TIME = ("_ms", "_sec", "_seconds", "wall", "time")
"""Columns that measure the machine, not the learning (e.g. step_ms): never plotted."""


def curve_columns(histories: dict[int, pd.DataFrame]) -> list[str]:
    """The logged quantities worth a panel: numeric somewhere, not phase/step/wall time."""
    cols: list[str] = []
    for df in histories.values():
        cols += [c for c in df.columns if c not in ("phase", "step") and c not in cols
                 and not any(c.endswith(w) or c.startswith(w) for w in WALL_TIME)]
    return [c for c in cols if any(pd.to_numeric(df.get(c), errors="coerce").notna().any()
                                   for df in histories.values() if c in df)]


def seed_band(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean over seeds and sample std (ddof = 1, as in the tables; None for one seed),
    over the common length, ignoring NaN."""
    n = min(len(c) for c in curves)
    stack = np.stack([c[:n] for c in curves])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stack, axis=0)
        std = np.nanstd(stack, axis=0, ddof=1) if len(curves) > 1 else None
    return mean, std


def _phases(df: pd.DataFrame) -> list[tuple[int, str]]:
    """(first global step, name) of each training phase, in order."""
    if "phase" not in df:
        return []
    names = df["phase"].astype(str).tolist()
    return [(i + 1, n) for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def training_curves(row: str, histories: dict[int, pd.DataFrame], out: Path, label: str,
                    cols_per_row: int = 3) -> None:
    """A grid with one panel per logged quantity (losses, returns, eval_*): each seed
    thin, the mean over seeds bold with a ± sample-std band, phases marked by dashed lines."""
    cols = curve_columns(histories)
    if not cols:
        return
    ncols = min(cols_per_row, len(cols))
    nrows = -(-len(cols) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    first = histories[min(histories)]
    phases = _phases(first)
    for ax, col in zip(axes.ravel(), cols, strict=False):
        curves, xs = [], None
        for seed, df in sorted(histories.items()):
            if col not in df:
                continue
            x = np.arange(1, len(df) + 1)   # global step across phases
            y = pd.to_numeric(df[col], errors="coerce")
            if not col.startswith("eval_"):
                y = y.rolling(max(1, len(y) // 50), min_periods=1).mean()
            ok = y.notna().to_numpy()
            ax.plot(x[ok], y[ok], lw=0.6, alpha=0.5, marker="o" if col.startswith("eval_")
                    else None, ms=2, label=f"seed {seed}")
            curves.append(y.to_numpy(dtype=float))
            xs = x if xs is None or len(x) < len(xs) else xs
        if len(curves) > 1:
            mean, std = seed_band(curves)
            x = xs[:len(mean)]
            ok = ~np.isnan(mean)
            ax.plot(x[ok], mean[ok], color="black", lw=1.2, label="mean")
            if std is not None:
                ax.fill_between(x[ok], (mean - std)[ok], (mean + std)[ok], color="grey",
                                alpha=0.3, lw=0, label="± sample std")
        for start, name in phases:
            if start > 1:
                ax.axvline(start - 0.5, color="tab:red", ls="--", lw=0.8)
            ax.annotate(name, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=6,
                        va="top", color="tab:red")
        # every panel spans all steps: the phase marks (and one final eval) stay in view
        ax.set_xlim(0.5, max(len(df) for df in histories.values()) + 0.5)
        ax.set_title(col, fontsize=9)
        ax.set_xlabel("step (phases in order)")
        ax.set_ylabel(col + (" (smoothed)" if not col.startswith("eval_") else ""))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{row}: {label}; n = {len(histories)} seeds", fontsize=10)
    _save(fig, out)


def start_curves(jobs: list[tuple], workers: int):
    """Begin drawing `training_curves(*job)` for every job; returns a function that waits
    for all of them (re-raising the first error). With `workers` > 1 (and fork available)
    they are drawn in that many forked processes while the caller goes on (the family
    figures), else here and now. Figures are drawn one per process from the same inputs,
    so the files are the same bytes either way; drawing them was 63 of the report's 105 s
    on one core (cProfile, 46 rows; issue 22)."""
    import multiprocessing as mp

    if workers <= 1 or len(jobs) < 2 or "fork" not in mp.get_all_start_methods():
        for job in jobs:
            training_curves(*job)
        return lambda: None
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                               mp_context=mp.get_context("fork"))
    futures = [pool.submit(training_curves, *job) for job in jobs]

    def wait() -> None:
        try:
            for f in futures:
                f.result()
        finally:
            pool.shutdown(cancel_futures=True)

    return wait


def contact_sheet(images: list[np.ndarray], titles: list[str], out: Path, title: str,
                  cols: int = 6) -> None:
    """A grid of drawn samples (HxWx3 uint8) with captions."""
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, t in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(img)
        ax.set_title(t, fontsize=6)
    fig.suptitle(title, fontsize=9)
    _save(fig, out)
