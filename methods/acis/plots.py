"""ACIS figures for the report (Araslanov et al., CVPR 2019, Figs. 3 and 4).

- `results/plots/acis-dice-per-step.png` (Fig. 3): the max-matching Dice of the t-th
  prediction (ground-truth stopping), averaged per timestep over the CVPPP val images,
  AC-Dice vs BL-Trunc, mean and spread over seeds.
- `results/plots/acis-order.png` (Fig. 4): predictions of AC-Dice (CVPPP val) and AC-IoU
  (KITTI val) coloured by prediction order, blue = first, red = last.

Fig. 3 draws what the rows' evaluation recorded in metrics.json (`evaluate.TIMESTEP`);
Fig. 4 re-runs inference from `runs/<row>-<seed>/checkpoint.pt` on a few staged images.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from methods.acis.evaluate import (
    TIMESTEP,
    infer,
    label_maps,
    load_models,
    n_predicted,
    upsample,
)
from methods.acis.train import compute_aux, prepare
from rlcv import engine
from rlcv import io as rio
from rlcv.report.runs import step_curves

RUNS = Path("runs")
STAGED = Path("data/staged")


def _checkpoints(params, row: str) -> list[tuple[int, dict]]:
    if row not in params.method_names:
        return []
    out = []
    for seed in params.seeds:
        path = RUNS / f"{row}-{seed}" / "checkpoint.pt"
        if path.is_file():
            out.append((seed, engine.load_checkpoint(path)))
    return out


def _staged_split(data: str, split: str) -> dict | None:
    from datasets._common import Staged

    path = STAGED / data
    if not (path / "manifest.json").is_file():
        return None
    return Staged(path).load(split)


def _rollout(state: dict, split: dict, steps: int):
    preproc, decoder, actor = load_models(state, split["image"].device)
    data = prepare(split, state["arch"]["downsample"])
    data.aux = compute_aux(preproc, data)
    probs, stop = infer(actor, decoder, data, steps)
    return upsample(probs, tuple(split["label"].shape[-2:])), stop


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    rio.write_bytes(path, buf.getvalue())
    return path


def _kind(params) -> str:
    return f"SYNTHETIC data, {params.profile} profile" if params.synthetic else "real data"


def dice_per_step_plot(params, results: Path, out: Path) -> Path | None:
    """Fig. 3: per-timestep Dice of AC-Dice vs BL-Trunc on CVPPP val, as their evaluation
    recorded it (`TIMESTEP` keys of metrics.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for label, row in (("BL-Trunc", "acis-bl-trunc"), ("AC-Dice", "acis-ac-dice")):
        if row not in params.method_names:
            continue
        means = step_curves(results, row, params, TIMESTEP, first=1)
        if means.size:
            curves[label] = means
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.4
    for i, (label, m) in enumerate(curves.items()):
        x = np.arange(1, m.shape[1] + 1) + (i - 0.5) * width
        ax.bar(x, m.mean(0) * 100, width, yerr=m.std(0, ddof=1) * 100 if len(m) > 1 else None,
               label=f"{label} (n={len(m)} seeds)", capsize=2)
    ax.set_xticks(range(1, max(m.shape[1] for m in curves.values()) + 1))
    ax.set_xlabel("timestep (prediction order, ground-truth stopping)")
    ax.set_ylabel("Dice (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"ACIS Fig. 3 on CVPPP val ({_kind(params)}): Dice per timestep", fontsize=9)
    return _save(fig, out)


def _overlay(image: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["jet"]
    out = image.astype(np.float64) / 255.0
    for t in range(1, n + 1):
        sel = labels == t
        colour = np.array(cmap((t - 1) / max(n - 1, 1))[:3])
        out[sel] = 0.35 * out[sel] + 0.65 * colour
    return out


def order_plot(params, out: Path, per_dataset: int = 4) -> Path | None:
    """Fig. 4: predictions coloured by prediction order (blue first, red last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for title, row, data in (("AC-Dice, CVPPP val", "acis-ac-dice", "cvppp/ablation"),
                             ("AC-IoU, KITTI val", "acis-kitti-ac-iou", "kitti/cars")):
        runs = _checkpoints(params, row)
        split = _staged_split(data, "val")
        if not runs or split is None:
            continue
        seed, state = runs[0]
        sub = {k: v[:per_dataset] for k, v in split.items()}
        probs, stop = _rollout(state, sub, state["config"]["max_steps"])
        keep = n_predicted(stop)
        labels = label_maps(probs, keep)
        for i in range(labels.shape[0]):
            img = sub["image"][i].permute(1, 2, 0).numpy()
            panels.append((_overlay(img, labels[i].numpy(), int(keep[i])),
                           f"{title} #{i} (seed {seed}): {int(keep[i])} predicted, "
                           f"{int((torch.unique(sub['label'][i]) > 0).sum())} true"))
    if not panels:
        return None
    cols = per_dataset
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (img, caption) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(img)
        ax.set_title(caption, fontsize=6)
    fig.suptitle(f"ACIS Fig. 4-style prediction order ({_kind(params)}): "
                 "blue = first prediction, red = last", fontsize=9)
    return _save(fig, out)


def figures(params, results: Path) -> list[tuple[Path, str]]:
    """The report hook: Fig. 3 of ACIS from the rows' metrics.json, Fig. 4 from the trained
    checkpoints."""
    plots = Path(results) / "plots"
    out = []
    path = dice_per_step_plot(params, results, plots / "acis-dice-per-step.png")
    if path is not None:
        out.append((path, "ACIS Fig. 3: Dice per timestep, AC-Dice vs BL-Trunc "
                          "(CVPPP val)"))
    path = order_plot(params, plots / "acis-order.png")
    if path is not None:
        out.append((path, "ACIS Fig. 4: prediction order of AC-Dice (CVPPP) and AC-IoU "
                          "(KITTI)"))
    return out
