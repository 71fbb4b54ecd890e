"""Compute-matched controls of EU-RL's environment upgrade (issue 19; DESIGN.md, Controls).

The environment upgrade (Xie et al. 2018, Algorithm 1's last line) gives the recognition
network extra supervised steps: one per batch of episodes, on that batch's last inputs,
at learning rate β. The pipelines the agent rows are compared with (Regress-Deepmask on
COCO, RMPE on MPII) never get them, so part of an agent row's gain may be more training.
Each control here is that baseline plus exactly the upgrade's steps:

- **Regress-Deepmask + equal-steps DeepMask fine-tune (compute-matched)**
  (`regress-deepmask-matched`, eu-rl-table1; trained in `methods.eurl.regress`): the
  pretrained DeepMask fine-tuned with Regress-Agent-Deepmask's upgrade budget, then
  evaluated as Regress-Deepmask;
- **RMPE + equal extra steps (compute-matched)** (`eurl-pose-rmpe-matched`,
  eu-rl-table2; trained in `methods.eurl.pose_agent`): RMPE's tight-finetuned hourglass
  fine-tuned with the `eurl-pose` row's upgrade budget, then evaluated as RMPE.

The budget (`upgrade_budget`) is read from the agent row's own checkpoint config, so it
stays equal when the agent's settings change: as many steps as the agent has batches of
episodes, of the same batch size, at the same learning rate β and optimizer (Adam), with
the same supervised loss (`Recognizer.train_loss`, the upgrade's). Data: the agent's
upgrade trains on the boxes where its episodes *end*, which only the agent can produce;
the control trains on the boxes where the agent's episodes *start* (the regressor's box /
the detection matched to each person, jittered by the agent's `start_jitter`), drawn from
the same generator stream as the agent's episodes, so step k sees the same images (people).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.eurl.deepmask import jitter_boxes
from rlcv import engine, optim
from rlcv.models.crops import crop
from rlcv.rl.actor_critic import upgrade_environment


@dataclass
class MatchedConfig:
    """Settings of a compute-matched control: only which agent row it matches."""

    agent_row: str = "regress-agent-deepmask"
    """The agent row whose environment-upgrade budget this control receives."""


def upgrade_budget(agent_cfg: dict) -> dict:
    """The supervised steps the environment upgrade gives an agent row with config
    `agent_cfg`: `steps` (one per batch of episodes; none when it does not upgrade),
    `batch_size` (one input per episode) and `lr` (β)."""
    upgrades = agent_cfg.get("upgrade", True) not in (False, "none")
    return {"steps": int(agent_cfg["episodes"]) if upgrades else 0,
            "batch_size": int(agent_cfg["batch_size"]), "lr": float(agent_cfg["recog_lr"])}


def agent_config(cfg: MatchedConfig, run) -> dict:
    """The config of the agent row the control `cfg` matches (from its checkpoint)."""
    if cfg.agent_row not in run.inputs:
        raise ValueError(f"compute-matched control: agent row {cfg.agent_row!r} is not among "
                         f"the row's requirements {sorted(run.inputs)}")
    return engine.load_checkpoint(run.inputs[cfg.agent_row])["config"]


def fit_matched(run, recognizer, budget: dict, starts: torch.Tensor, jitter: float,
                batch_fn, pool: torch.Tensor | None = None) -> None:
    """`budget["steps"]` supervised steps of `recognizer` (Adam, lr β), each on
    `batch_size` start boxes drawn as the agent draws its episodes (engine phase
    "matched", generator stream "agent"; from the indices `pool` when given, as the pose
    agent draws its trained people); `batch_fn(idx) -> (images, targets)` gives the
    images the boxes are in and the targets of the drawn starts `idx`."""
    opt = optim.adam(recognizer.net.parameters(), budget["lr"])
    n = starts.shape[0] if pool is None else pool.shape[0]

    def step_fn(step: int) -> dict:
        g = engine.generator(run.seed, "agent", step)
        idx = torch.randint(n, (budget["batch_size"],), generator=g)
        if pool is not None:
            idx = pool[idx.to(pool.device)]
        boxes = starts[idx]
        if jitter:
            boxes = jitter_boxes(boxes, jitter, g)
        images, targets = batch_fn(idx)
        crops = crop(images, boxes, recognizer.crop_size)
        return {"loss": upgrade_environment(recognizer, opt, crops, boxes, targets)}

    engine.fit(run, "matched", {"net": recognizer.net, "opt": opt}, budget["steps"], step_fn)
