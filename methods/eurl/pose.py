"""EU-RL on MPII multi-person pose: the supervised rows and Fig. 4 (Xie et al. 2018,
Sections 4.2.1-4.2.3 and 5).

- **Loose bbox model** / **Tight bbox model** (Section 4.2.2, Fig. 4a, b), one row
  (`eurl-pose-boxes`; `eurl-pose-t2-boxes` is Table 2's own, 8 stacks on the paper
  profile): two hourglasses, one trained on loose crops (square of
  side 200 x scale about MPII's centre), one on tight crops (joints' extent x 1.3), same
  settings otherwise; each scored by PCKh on the val people's crops of its own kind. The
  loose model is RMPE's pretrained model.
- **Fang et al. [11]** (RMPE, Table 2: `eurl-pose-t2-rmpe`; `eurl-pose-rmpe` is the one
  Table 3's agents start from): person detector (tight boxes) -> hourglass
  "pretrained on loose-bounding-box cropped images, then finetuned to fit
  tight-bounding-box cropped images" -> pose NMS; multi-person AP on the val images.

The agent rows are in `methods.eurl.pose_agent`. `figures` draws the paper's Fig. 4 from
the rows' history.csv as `results/plots/eu-rl-fig4.png`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from methods.eurl.pose_data import (
    DET_ARCH,
    as_float,
    build_person_detector,
    build_pose_net,
    detections,
    detector_state,
    fit_detector,
    fit_pose,
    load_detector,
    load_pose_net,
    multi_person_ap,
    pckh_total,
    people,
    person_boxes,
    pose_arch,
    predict,
)
from rlcv import engine
from rlcv.models.pose_nms import PoseNMS


@dataclass
class PoseNetConfig:
    """Settings of the loose and tight bbox models (two-stack hourglasses, same settings)."""

    crop_size: int = 32
    """Side of the square crop fed to the hourglass (pixels)."""
    channels: int = 16
    """Feature channels of the hourglass (256 in Newell et al.)."""
    stacks: int = 2
    """Stacked hourglasses (two for Fig. 4 and Table 3)."""
    depth: int = 3
    """Pooling levels of each hourglass (4 in Newell et al.)."""
    downsample: int = 2
    """Stride of the stem: heatmaps have side crop_size / downsample (4 in the paper)."""
    sigma: float = 1.5
    """Standard deviation of the Gaussian heatmap targets (heatmap pixels)."""
    steps: int = 300
    """Optimisation steps."""
    batch_size: int = 32
    """Crops per step."""
    lr: float = 1e-2
    """Adam learning rate (the paper: 2.5e-4, divided by 5 on validation plateaus)."""
    plateau_patience: int = 2
    """Evaluations without val improvement before the learning rate is divided by 5."""
    jitter: float = 0.05
    """Relative shift / scale noise of the training boxes."""
    eval_every: int = 50
    """Steps between train / val PCKh evaluations (the curves of Fig. 4)."""


@dataclass
class RMPEConfig:
    """Settings of the RMPE pipeline row: person detector, tight fine-tuning, pose NMS."""

    det_backbone: str = "small"
    """Detector: "small" (CPU CNN) or "resnet101" (Faster R-CNN), or "ssd300_vgg16" (RMPE's)."""
    det_weights: str = "none"
    """The detector backbone's pretrained weights (torchvision name) or "none"."""
    det_width: int = 16
    """Channels of the small backbone's first stage."""
    det_proposals: int = 50
    """RPN proposals kept per image."""
    det_steps: int = 200
    """Detector optimisation steps."""
    det_batch: int = 8
    """Images per detector step."""
    det_lr: float = 2e-3
    """Detector Adam learning rate."""
    det_score: float = 0.3
    """Detections below this score are dropped before pose estimation."""
    max_dets: int = 8
    """At most this many detections per image (highest scores)."""
    finetune_steps: int = 100
    """Steps fine-tuning the loose model on tight crops."""
    finetune_lr: float = 2e-3
    """Adam learning rate of the fine-tuning."""
    batch_size: int = 32
    """Crops per fine-tuning step."""
    jitter: float = 0.05
    """Relative shift / scale noise of the fine-tuning boxes."""
    nms_eta: float = 8.0
    """η of RMPE's pose NMS (see rlcv.models.pose_nms)."""


BOXES = {"loose": "Loose bbox model", "tight": "Tight bbox model"}


def train_posenets(cfg: PoseNetConfig, data, run) -> str:
    """Train the loose and the tight bbox models (Section 4.2.2), logging train/val PCKh."""
    arch = pose_arch(cfg)
    weights = {}
    for kind in BOXES:
        with torch.random.fork_rng():   # the same initial weights for both models
            torch.manual_seed(run.seed)
            net = engine.place(build_pose_net(arch), run.device)
        fit_pose(run, f"pose_{kind}", net, arch, data, kind, cfg.steps, cfg.batch_size,
                 cfg.lr, cfg.jitter, cfg.eval_every, cfg.plateau_patience)
        weights[kind] = net.state_dict()
    return engine.save_checkpoint(run, cfg, pose=weights, pose_arch=arch)


def evaluate_posenets(ckpt: str, data) -> dict:
    """PCKh Total of each model on the val people's crops of its own kind (Fig. 4a, b):
    the loose model's as `pckh_total`, the tight one's as `pckh_total@Tight bbox model`."""
    state = engine.load_checkpoint(ckpt)
    val = data.load("val")
    p = people(val)
    out = {}
    for kind, label in BOXES.items():
        net = load_pose_net(state["pose"][kind], state["pose_arch"], data.device)
        joints, _ = predict(net, state["pose_arch"], as_float(val["image"]), p["image"],
                            person_boxes(kind, p))
        out["pckh_total" + ("" if kind == "loose" else f"@{label}")] = pckh_total(joints, p)
    return out


def train_rmpe(cfg: RMPEConfig, data, run) -> str:
    """RMPE: train the person detector, fine-tune the loose model on tight crops."""
    return _train_rmpe(cfg, data, run)


def _train_rmpe(cfg: RMPEConfig, data, run) -> str:
    """Body of `train_rmpe` (run with one torch thread)."""
    (boxes,) = run.inputs.values()   # the chain's pose networks (eurl-pose[-t2]-boxes)
    loose = engine.load_checkpoint(boxes)
    arch = loose["pose_arch"]
    image_size = data.load("train")["image"].shape[-1]
    det_arch = {k: getattr(cfg, k) for k in DET_ARCH}
    detector = engine.place(build_person_detector(det_arch, image_size, load=True), run.device)
    fit_detector(run, "detector", detector, data, cfg.det_steps, cfg.det_batch, cfg.det_lr)
    net = load_pose_net(loose["pose"]["loose"], arch, run.device)
    fit_pose(run, "finetune_tight", net, arch, data, "tight", cfg.finetune_steps, cfg.batch_size,
             cfg.finetune_lr, cfg.jitter, max(cfg.finetune_steps // 2, 1), 0)
    return engine.save_checkpoint(run, cfg, pose=net.state_dict(), pose_arch=arch,
                                  **detector_state(detector, det_arch))


def evaluate_rmpe(ckpt: str, data) -> dict:
    """Multi-person AP of detector -> fine-tuned hourglass -> pose NMS on val (Table 2)."""
    return _evaluate_rmpe(ckpt, data)


def _evaluate_rmpe(ckpt: str, data) -> dict:
    """Body of `evaluate_rmpe` (run with one torch thread)."""
    state = engine.load_checkpoint(ckpt)
    cfg = state.get("rmpe_config", state["config"])   # the compute-matched control's: RMPE's
    val = data.load("val")
    images = as_float(val["image"])
    dets = detections(load_detector(state, images.shape[-1], data.device), images,
                      cfg["det_score"], cfg["max_dets"])
    net = load_pose_net(state["pose"], state["pose_arch"], data.device)
    joints, peaks = predict(net, state["pose_arch"], images, dets["image"], dets["boxes"])
    return multi_person_ap(val, dets, joints, peaks, PoseNMS(eta=cfg["nms_eta"]))


# ------------------------------------------------------------------------ Fig. 4

FIG4 = (("a", (("eurl-pose-boxes", "pose_loose", "Loose bbox model"),
               ("eurl-pose-boxes", "pose_tight", "Tight bbox model"))),
        ("c", (("eurl-pose", "agent", "Upgrade at last step"),
               ("eurl-pose-every-step", "agent", "Upgrade at every step"))))
"""Fig. 4's rows of panels: (row, engine phase, label) of the two curves compared."""


def _curves(results: Path, row: str, phase: str, seeds: list[int]
            ) -> tuple[pd.DataFrame, pd.DataFrame, int] | None:
    """Mean and sample std (ddof 1, as in the tables) over seeds of a row phase's
    train_pckh / val_pckh evaluations by step, and the number of seeds."""
    frames = []
    cols = ["step", "eval_train_pckh", "eval_val_pckh"]
    for s in seeds:
        path = results / "runs" / f"{row}-{s}" / "history.csv"
        if path.is_file():
            df = pd.read_csv(path)
            if "eval_val_pckh" in df:
                df = df[(df["phase"] == phase) & df["eval_val_pckh"].notna()]
                frames.append(df[cols].reset_index(drop=True))
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    by_step = pd.concat(frames).groupby("step", as_index=False)
    return by_step.mean(), by_step.std(ddof=1), len(frames)


def figures(params, results: Path) -> list[tuple[Path, str]]:
    """`eu-rl-fig4.png`: training and validation PCKh curves of the loose vs tight bbox
    models (a, b) and of upgrading the pose network at the last vs every step (c, d),
    mean over seeds, from the rows' history.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlcv import io as rio

    curves = {(row, phase): _curves(results, row, phase, params.seeds)
              for _, pair in FIG4 for row, phase, _ in pair}
    if all(c is None for c in curves.values()):
        return []
    fig, axes = plt.subplots(2, 2, figsize=(9, 7), squeeze=False)
    fig.subplots_adjust(hspace=0.45, wspace=0.25)
    for r, (letter, pair) in enumerate(FIG4):
        for c, (col, what) in enumerate((("eval_train_pckh", "training"),
                                         ("eval_val_pckh", "validation"))):
            ax = axes[r][c]
            for row, phase, label in pair:
                got = curves[(row, phase)]
                if got is not None:
                    df, sd, n = got
                    line, = ax.plot(df["step"], 100 * df[col], marker="o", ms=3,
                                    label=f"{label} (n={n})")
                    if n > 1:   # ± sample std over seeds, as in the tables
                        ax.fill_between(df["step"], 100 * (df[col] - sd[col]),
                                        100 * (df[col] + sd[col]), color=line.get_color(),
                                        alpha=0.2, lw=0)
            ax.set_title(f"({chr(ord(letter) + c)}) {what} accuracy", fontsize=9)
            ax.set_xlabel("step" if r == 0 else "agent episode batch")
            ax.set_ylabel("PCKh@0.5 Total (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    kind = "SYNTHETIC MPII" if params.synthetic else "MPII"
    fig.suptitle(f"EU-RL Fig. 4 ({kind}, {params.profile} profile, mean ± sample std "
                 f"over seeds {params.seeds}): two-stack hourglass accuracy", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    path = results / "plots" / "eu-rl-fig4.png"
    rio.write_bytes(path, buf.getvalue())
    what = "synthetic data" if params.synthetic else "real data"
    return [(path, f"EU-RL Fig. 4: training/validation PCKh of the loose vs tight bbox models "
             f"and of upgrading at the last vs every step ({what})")]
