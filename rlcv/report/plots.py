"""Plots of the report: training curves per row, dataset contact sheets."""

from __future__ import annotations

import io
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


def training_curves(row: str, histories: dict[int, pd.DataFrame], out: Path, label: str) -> None:
    """One panel per logged quantity (loss, return, eval_*), one line per seed."""
    cols = []
    for df in histories.values():
        cols += [c for c in df.columns if c not in ("phase", "step") and c not in cols]
    cols = [c for c in cols if any(pd.to_numeric(df.get(c), errors="coerce").notna().any()
                                   for df in histories.values())]
    if not cols:
        return
    fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        for seed, df in sorted(histories.items()):
            if col not in df:
                continue
            x = np.arange(1, len(df) + 1)   # global step across phases
            y = pd.to_numeric(df[col], errors="coerce")
            ok = y.notna().to_numpy()
            if col.startswith("eval_"):
                ax.plot(x[ok], y[ok], marker="o", ms=3, label=f"seed {seed}")
            else:
                smooth = y.rolling(max(1, len(y) // 50), min_periods=1).mean()
                ax.plot(x[ok], smooth[ok], label=f"seed {seed}")
        ax.set_title(col)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    suffix = " (synthetic data)" if "synthetic" in label else ""
    fig.suptitle(f"{label} — {row}{suffix}")
    _save(fig, out)


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
