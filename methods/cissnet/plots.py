"""CiSS-Net's figures (Zhou et al., CVPR 2019, Figs. 1 and 5; Table 1 as a curve).

`context_figure` writes `results/plots/ciss-net-context.png`: for a few val images of
each dataset, the p-map Y^t and the context map K^t at steps t = 0, 1, 2 of the trained
CiSS-Net (uncertain regions white, as in the paper), and the main metric of the evaluated
chain against the iteration step (mean ± std over seeds), beside the complete-p-map
model (w/o RL) and the Baseline (step 0). The curves are read from the rows' metrics.json
(`rows.chain_key`, written by their evaluation with `rlcv.metrics`), so they
cover the steps each evaluation scored (0-6 where Table 1 asks for them, 0-2 on
Pascal-Context) and match its scores exactly; only the drawn maps are inferred here, from
one checkpoint.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from methods.cissnet import rows as C
from methods.cissnet.data import Task
from methods.cissnet.paper import val_chunks
from rlcv import engine
from rlcv import io as rio
from rlcv.report.runs import step_curves

PLOT = "ciss-net-context.png"
SHOW_STEPS = 3
"""Context maps K^0..K^2 and p-maps Y^0..Y^2 are drawn."""


def _palette(task: Task) -> np.ndarray:
    """Class index -> RGB (the dataset's official colours); index -1 (ignored) black."""
    import datasets

    module = datasets.get(task.dataset)
    colours = module.COLORS if task.dataset == "cityscapes" else module.PALETTE
    return np.concatenate([colours[task.to_output.numpy()], np.zeros((1, 3), np.uint8)])


def _colour(idx: torch.Tensor, palette: np.ndarray) -> np.ndarray:
    return palette[idx.numpy()]          # -1 picks the last entry (black)


def _context_colour(k: torch.Tensor, palette: np.ndarray) -> np.ndarray:
    img = palette[(k - 1).clamp(min=0).numpy()]
    img[(k == 0).numpy()] = 255          # 'uncertain' drawn white
    return img


def _rows(params, train_fn) -> list[str]:
    import methods

    return [n for n in params.method_names
            if n in methods.METHODS and methods.METHODS[n].train is train_fn]


def context_figure(params, results: Path, runs: Path = Path("runs"), images: int = 2):
    """Write the context-map figure; [(path, caption)], or [] before any CiSS-Net run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import methods
    from datasets._common import Staged

    panels = []
    for row in _rows(params, C.train_ciss):
        staged = Path("data/staged") / methods.METHODS[row].data
        seed = next((s for s in params.seeds
                     if (runs / f"{row}-{s}" / "checkpoint.pt").is_file()), None)
        if seed is None or not (staged / "manifest.json").is_file():
            continue
        data = Staged(staged)
        task, val = Task.of(data.manifest), data.load("val")
        state = engine.load_checkpoint(runs / f"{row}-{seed}" / "checkpoint.pt")
        domain, snet, cnet, cfg = C.load_models(state)
        # the first chunk of the val set, as evaluated, so the drawn context maps are the
        # scored ones (the whole set when eval_batch is 0)
        x, _ = next(val_chunks(domain, val, cfg.eval_batch))
        logits, contexts = C.inference_chain(snet, cnet, cfg, x, SHOW_STEPS)
        logits = [lg[:images] for lg in logits]
        contexts = [k[:images] for k in contexts]
        ablation = next((r for r in _rows(params, C.train_ablations)
                         if methods.METHODS[r].data == methods.METHODS[row].data), None)
        panels.append({
            "row": row, "seed": seed, "task": task, "val": val,
            "pmaps": [lg.argmax(1) for lg in logits[:SHOW_STEPS]], "contexts": contexts,
            "ours": 100 * step_curves(results, row, params, C.chain_key(task.main_metric)),
            "pmap": 100 * (step_curves(results, ablation, params,
                                       C.chain_key(task.main_metric, pmap=True))
                           if ablation else np.zeros((0, 0))),
        })
    if not panels:
        return []
    cols = 2 + 2 * SHOW_STEPS
    n_img = sum(p["pmaps"][0].shape[0] for p in panels)   # at most `images` each
    fig = plt.figure(figsize=(1.7 * cols, 1.6 * n_img + 2.8))
    grid = fig.add_gridspec(n_img + 1, cols, height_ratios=[1] * n_img + [1.6])
    r = 0
    for p in panels:
        pal = _palette(p["task"])
        for i in range(p["pmaps"][0].shape[0]):
            tiles = [(p["val"]["image"][i].permute(1, 2, 0).numpy(), "image"),
                     (_colour(p["task"].targets(p["val"]["label"][i]), pal), "ground truth")]
            for t in range(SHOW_STEPS):
                tiles.append((_colour(p["pmaps"][t][i], pal), f"p-map Y{t}"))
                tiles.append((_context_colour(p["contexts"][t][i], pal), f"context K{t}"))
            for c, (img, title) in enumerate(tiles):
                ax = fig.add_subplot(grid[r, c])
                ax.imshow(img, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0 or c == 0:
                    ax.set_title(title if c else f"{p['task'].dataset} val #{i}", fontsize=7)
            r += 1
    sub = grid[n_img, :].subgridspec(1, len(panels))
    for j, p in enumerate(panels):
        ax = fig.add_subplot(sub[0, j])
        for name, curve, style in (("CiSS-Net", p["ours"], "o-"), ("w/o RL (p-map)", p["pmap"],
                                                                     "s--")):
            steps = np.arange(curve.shape[1])
            if len(curve) and len(steps):
                ax.errorbar(steps, curve.mean(0), yerr=curve.std(0, ddof=1) if len(curve) > 1
                            else None, fmt=style, ms=3,
                            capsize=2, label=f"{name} (n={len(curve)})")
        ax.set_xticks(np.arange(max(p["ours"].shape[1], p["pmap"].shape[1])))
        ax.set_xlabel("iteration step t (step 0: the retrained Base Net, no context)")
        ax.set_ylabel(f"{p['task'].main_metric} (%)")
        ax.set_title(f"{p['task'].dataset}: val {p['task'].main_metric} vs step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    kind = "SYNTHETIC" if params.synthetic else "real"
    fig.suptitle(f"CiSS-Net p-maps and learned context maps at steps 0-{SHOW_STEPS - 1} "
                 f"(white = uncertain), {kind} data, profile {params.profile}, "
                 f"seed {panels[0]['seed']}", fontsize=9)
    out = Path(results) / "plots" / PLOT
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    rio.write_bytes(out, buf.getvalue())
    return [(out, "CiSS-Net p-maps and context maps at steps 0, 1, 2 (Figs. 1/5) and the "
                  "main metric against the iteration step")]
