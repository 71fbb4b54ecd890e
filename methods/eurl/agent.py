"""EU-RL Table 1, the agent rows (Xie et al. 2018, Sections 3 and 4.1, Algorithms 1-2).

- **Agent-Deepmask**: the actor-critic agent narrows the crop from the whole image to the
  object, DeepMask upgraded under its policy (EU-RL). Its final boxes also fill the
  "Actor-critic agent (EU-RL)" row of `active-loc-table1`.
- **Regress-Agent-Deepmask**: episodes start from the box regressor's box; agent and
  DeepMask jointly optimised by EU-RL (TD actor-critic + environment upgrade).
- **Regress-Agent-Deepmask w/o upgrade** (beyond the paper): the same without upgrading
  DeepMask, the ablation of Table 3(b) applied to COCO.

The environment is `rlcv.rl.boxenv.BoxEnv`: state (crop, DeepMask's mask probabilities),
the 9 actions, Eq. 1 rewards on L = 1 - mask IoU with ε = 1 - `terminal_iou` ("a reward
of 1 ... if the final mask IoU is greater than 0.5"). Training (Algorithm 1) is
`rlcv.rl.actor_critic.train_episodes`, one batch of episodes per engine step; inference
(Algorithm 2) is `greedy`. `figures` draws the refinement of boxes step by step on val
images (the paper's Fig. 3) as `results/plots/eu-rl-refinement.png`.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from methods.eurl.deepmask import jitter_boxes, predict_masks
from methods.eurl.holdout import split_holdout
from methods.eurl.regress import (
    MaskIoULoss,
    as_float,
    box_scores,
    chain_nets,
    deepmask_recognizer,
    load_chain,
    load_deepmask,
    mask_score,
    regress,
)
from rlcv import engine, optim
from rlcv.metrics import mask_iou
from rlcv.models.agent_nets import PolicyValueNet
from rlcv.models.crops import full_boxes
from rlcv.models.deepmask import mask_net
from rlcv.rl.actor_critic import TDActorCritic, greedy, train_episodes
from rlcv.rl.boxenv import BoxEnv, EURLReward


@dataclass
class AgentConfig:
    """Settings of the EU-RL actor-critic rows."""

    start: str = "regressor"
    """Where episodes start: "regressor" (the box regressor's box) or "image" (whole image)."""
    upgrade: bool = True
    """Upgrade the environment (train DeepMask on the episodes' last inputs); false: ablation."""
    episodes: int = 40
    """Batches of training episodes (one engine step each)."""
    batch_size: int = 32
    """Episodes run side by side in one batch."""
    t_max: int = 10
    """Step limit of an episode."""
    lr: float = 1e-3
    """Agent learning rate α (Adam)."""
    recog_lr: float = 1e-4
    """Recognition-network learning rate β of the upgrade (Adam)."""
    gamma: float = 0.95
    """Discount factor γ."""
    entropy: float = 0.05
    """Weight of the policy-entropy bonus (exploration, as in A3C)."""
    value_coef: float = 0.25
    """Weight of the TD value loss E²; 1 is Algorithm 1's θ_v += α·2E·∂V literally, lower
    keeps the critic from swamping the policy gradient in the shared trunk."""
    terminal_iou: float = 0.5
    """Mask IoU above which terminating earns +1 (Eq. 1 with ε = 1 - terminal_iou)."""
    start_jitter: float = 0.0
    """Relative jitter of training start boxes (the regressor is tighter on its own
    training images than on val; the jitter restores a held-out-like error)."""
    width: int = 16
    """Channels of the policy/value trunk's first convolution."""
    hidden: int = 128
    """Width of the shared fully connected layer (unless `head_on_trunk`)."""
    head_on_trunk: bool = False
    """No shared layer: the policy and value heads on the trunk's pooled features (EU-RL's
    ResNet-18, "the last layer is replaced with a fully connected layer with 9 output units")."""
    backbone: str = "small"
    """Policy/value trunk: "small" (three convolutions) or "resnet18" (the paper's)."""
    weights: str = "none"
    """Pretrained weights of the resnet18 trunk (torchvision name, e.g.
    ResNet18_Weights.IMAGENET1K_V1; extra channels start at zero) or "none" (random)."""
    eval_every: int = 10
    """Engine steps between greedy evaluations on a val slice (history.csv)."""
    eval_images: int = 48
    """Val images in that slice."""
    lr_drop_at: float = 0.6
    """Fraction of training after which the agent lr is divided by 5; 0: never (the small
    profiles: their held-out part would be a handful of images)."""
    plateau_patience: int = 0
    """> 0: the paper's schedule instead, the agent lr divided by 5 whenever the greedy IoU
    on a held-out part of train (`methods.eurl.holdout`, never trained on) has not improved
    for this many evaluations."""


def _env(recognizer, cfg: AgentConfig | dict) -> BoxEnv:
    c = cfg if isinstance(cfg, dict) else asdict(cfg)
    reward = EURLReward(alpha=0.1, epsilon=1 - c["terminal_iou"])
    return BoxEnv(recognizer, MaskIoULoss(), reward, t_max=c["t_max"])


def _starts(start: str, images: torch.Tensor, reg=None, size: int = 0) -> torch.Tensor:
    if start == "regressor":
        return regress(reg, size, images)
    if start == "image":
        return full_boxes(images.shape[0], *images.shape[-2:], images.device)
    raise ValueError(f"start must be 'regressor' or 'image', got {start!r}")


class _Plateau:
    """The paper's schedule: training episodes drawn from train minus a held-out part,
    whose greedy mask IoU (up to `eval_images` images) drives ReduceLROnPlateau (/5)."""

    def __init__(self, cfg: AgentConfig, agent, env: BoxEnv, images, starts, train: dict):
        self.trained, held = split_holdout({"image": torch.arange(images.shape[0])})
        held = held[:cfg.eval_images].to(images.device)
        self.trained = self.trained.to(images.device)
        self.env, self.images, self.starts = env, images[held], starts[held]
        self.targets = {"mask": train["mask"][held], "box": train["box"][held]}
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            agent.opt, mode="max", factor=0.2, patience=cfg.plateau_patience)

    def draw(self, batch: int, g: torch.Generator) -> torch.Tensor:
        """`batch` training indices outside the held-out part."""
        pick = torch.randint(self.trained.shape[0], (batch,), generator=g)
        return self.trained[pick.to(self.trained.device)]

    def step(self, net) -> float:
        """Score the held-out part greedily and step the schedule; its IoU."""
        res = greedy(self.env, net, self.images, self.starts, self.targets)
        iou = 1 - res["loss"].mean().item()
        self.sched.step(iou)
        return iou


def train_agent(cfg: AgentConfig, data, run) -> str:
    """Algorithm 1: TD actor-critic refining boxes for DeepMask, with the env upgrade."""
    train, val = data.load("train"), data.load("val")
    if cfg.start == "regressor":
        chain = load_chain(run)
        reg, size, dm, crop_size = chain_nets(chain, run.device)
    else:
        reg, size = None, 0
        dm, crop_size = load_deepmask(run.inputs["gt-bbox-deepmask"], run.device)
        state = engine.load_checkpoint(run.inputs["gt-bbox-deepmask"])
        chain = {"deepmask": state["model"], "deepmask_config": state["config"]}
    starts = _starts(cfg.start, train["image"], reg, size)
    probe = slice(0, min(cfg.eval_images, val["image"].shape[0]))
    val_starts = _starts(cfg.start, val["image"][probe], reg, size)
    env = _env(deepmask_recognizer(dm, crop_size), cfg)
    net = engine.place(PolicyValueNet(env.obs_channels, env.n_actions, cfg.width, cfg.hidden,
                                      cfg.backbone, cfg.weights, cfg.head_on_trunk), run.device)
    agent = TDActorCritic(net, cfg.lr, cfg.gamma, cfg.entropy, cfg.value_coef)
    recog_opt = optim.adam(dm.parameters(), cfg.recog_lr)
    images = as_float(train["image"])
    val_images = as_float(val["image"][probe])
    val_targets = {"mask": val["mask"][probe], "box": val["box"][probe]}
    n = images.shape[0]
    plateau = _Plateau(cfg, agent, env, images, starts, train) if cfg.plateau_patience else None

    def step_fn(step: int) -> dict:
        net.train()
        if plateau is None:
            drop = cfg.lr_drop_at and step >= cfg.lr_drop_at * cfg.episodes
            for group in agent.opt.param_groups:
                group["lr"] = cfg.lr * (0.2 if drop else 1.0)
            g = engine.generator(run.seed, "agent", step)
            idx = torch.randint(n, (cfg.batch_size,), generator=g)
        else:
            g = engine.generator(run.seed, "agent", step)
            idx = plateau.draw(cfg.batch_size, g)
        boxes = starts[idx]
        if cfg.start_jitter:
            boxes = jitter_boxes(boxes, cfg.start_jitter, g)
        targets = {"mask": train["mask"][idx], "box": train["box"][idx]}
        s = train_episodes(env, agent, images[idx], boxes, targets, g,
                           recognizer_opt=recog_opt if cfg.upgrade else None, upgrade=cfg.upgrade)
        s["iou"] = 1 - s.pop("final_loss")
        return s

    def eval_fn() -> dict:
        res = greedy(env, net, val_images, val_starts, val_targets)
        out = {"iou": 1 - res["loss"].mean().item(), "return": res["returns"].mean().item(),
               "length": res["steps"].float().mean().item()}
        if plateau is not None:
            out["holdout_iou"] = plateau.step(net)
        return out

    objects = {"agent": net, "opt": agent.opt, "deepmask": dm, "deepmask_opt": recog_opt}
    if plateau is not None:
        objects["sched"] = plateau.sched
    engine.fit(run, "agent", objects, cfg.episodes, step_fn, eval_fn, cfg.eval_every)
    return engine.save_checkpoint(run, cfg, policy=net.state_dict(), obs_channels=env.obs_channels,
                                  upgraded=dm.state_dict(), **chain)


def _load(ckpt: str, device):
    """(config dict, policy, upgraded DeepMask, crop size, regressor or None, its size, chain),
    the networks on `device`."""
    state = engine.load_checkpoint(ckpt)
    cfg = state["config"]
    net = engine.place(PolicyValueNet(state["obs_channels"], 9, cfg["width"], cfg["hidden"],
                                      cfg["backbone"],
                                      head_on_trunk=cfg.get("head_on_trunk", False)), device)
    net.load_state_dict(state["policy"])
    dm = engine.place(mask_net(state["deepmask_config"]), device)
    dm.load_state_dict(state["upgraded"])
    reg, size = None, 0
    if cfg["start"] == "regressor":
        reg, size, _, _ = chain_nets(state, device)
    return cfg, net.eval(), dm.eval(), state["deepmask_config"]["crop_size"], reg, size, state


def _rollout(ckpt: str, data, record: bool = False, limit: int | None = None):
    cfg, net, dm, crop_size, reg, size, state = _load(ckpt, data.device)
    val = data.load("val")
    sl = slice(0, limit)
    images, masks, gt = val["image"][sl], val["mask"][sl], val["box"][sl]
    env = _env(deepmask_recognizer(dm, crop_size), cfg)
    starts = _starts(cfg["start"], images, reg, size)
    res = greedy(env, net, as_float(images), starts, {"mask": masks, "box": gt}, record=record)
    return res, starts, (dm, crop_size), state, (images, masks, gt)


def evaluate_agent(ckpt: str, data) -> dict:
    """Algorithm 2 on val: DeepMask's mask IoU on the agent's final boxes (Table 1)."""
    res, _, (dm, crop_size), _, (images, masks, _) = _rollout(ckpt, data)
    return {"avg_iou": mask_score(dm, crop_size, images, res["boxes"], masks)}


def evaluate_agent_boxes(ckpt: str, data) -> dict:
    """`evaluate_agent`, plus the final boxes' IoU with the ground truth and their recall
    at IoU 0.5 (the actor-critic row of active-loc-table1)."""
    res, _, (dm, crop_size), _, (images, masks, gt) = _rollout(ckpt, data)
    return {"avg_iou": mask_score(dm, crop_size, images, res["boxes"], masks),
            **box_scores(res["boxes"], gt)}


def figures(params, results: Path) -> list[tuple[Path, str]]:
    """`eu-rl-refinement.png`: Regress-Deepmask's output, then the boxes and masks of
    Regress-Agent-Deepmask step by step on a few val images (the paper's Fig. 3)."""
    from datasets._common import Staged

    ckpt = Path("runs") / f"regress-agent-deepmask-{params.seeds[0]}" / "checkpoint.pt"
    staged = Path("data/staged/coco/single")
    if not ckpt.is_file() or not (staged / "manifest.json").is_file():
        return []
    res, starts, (dm, crop_size), state, (images, masks, gt) = _rollout(
        str(ckpt), Staged(staged), record=True, limit=4)
    _, _, pre, pre_crop = chain_nets(state, "cpu")
    cols = min(res["trace"].shape[0], 7)

    def panel(net, size, box, label):
        m = predict_masks(net, images[i:i + 1], box[None], size)
        return box, m[0], f"{label}\nIoU {mask_iou(m, masks[i:i + 1]).item():.2f}"

    panels = []   # per image: [(box, mask, title)], Regress-Deepmask first
    for i in range(images.shape[0]):
        steps = int(res["steps"][i])
        shown = sorted({round(k * steps / (cols - 1)) for k in range(cols)}) if steps else [0]
        panels.append([panel(pre, pre_crop, starts[i], "Regress-Deepmask")]
                      + [panel(dm, crop_size, res["trace"][t, i], f"agent step {t}")
                         for t in shown])
    path = results / "plots" / "eu-rl-refinement.png"
    _draw(images, gt, panels, path, f"Regress-Agent-Deepmask refining boxes (SYNTHETIC COCO, "
          f"{params.profile} profile, seed {params.seeds[0]}); green: ground-truth box")
    return [(path, "EU-RL Fig. 3: Regress-Deepmask, then Regress-Agent-Deepmask's boxes and "
             "masks step by step on val images (synthetic)")]


def _draw(images, gt, panels, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    from rlcv import io as rio

    cols = max(len(r) for r in panels)
    fig, axes = plt.subplots(len(panels), cols, figsize=(1.9 * cols, 2.0 * len(panels)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, row in enumerate(panels):
        img = images[i].permute(1, 2, 0).numpy()
        for j, (box, mask, text) in enumerate(row):
            ax = axes[i][j]
            ax.imshow(img)
            ax.imshow(np.ma.masked_where(~mask.numpy(), mask.numpy()), alpha=0.5,
                      cmap="autumn", vmin=0, vmax=1, interpolation="nearest")
            for b, colour in ((gt[i], "lime"), (box, "red" if j == 0 else "cyan")):
                x0, y0, x1, y1 = b.tolist()
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2,
                                       edgecolor=colour))
            ax.set_title(text, fontsize=6)
    fig.suptitle(title, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    rio.write_bytes(path, buf.getvalue())
