"""Caicedo & Lazebnik's DQN localiser (ICCV 2015; the survey slides' "Active Object
Localization with Deep Reinforcement Learning"), alone and in EU-RL's pipeline.

- **DQN agent (Caicedo & Lazebnik)** (`dqn-localizer`, `active-loc-table1`): from the
  whole image, the agent narrows the box onto the object; state = the region (crop) and
  the one-hot history of the last actions (9 in the slides); rewards: sign of the box-IoU
  change, trigger ±η at IoU τ (`CaicedoReward`); replay memory, target network,
  ε-greedy with the expert's guided exploration (`rlcv.rl.dqn`). Scored as a localiser:
  mean box IoU and recall at IoU 0.5 on val.
- **Regress-DQN-Deepmask** (`eu-rl-table1`, beyond the paper): the same agent, trained
  from the box regressor's boxes, in place of EU-RL's actor-critic; the pretrained
  DeepMask (never upgraded: Caicedo & Lazebnik's environment is fixed) segments its
  final box.
- **Regress-DQN-Deepmask (EU-RL environment)** (`regress-dqn-deepmask-eurl`, beyond the
  paper, issue 19): Regress-Agent-Deepmask with only the learner swapped: the same start
  (regressor box, jittered), reward (Eq. 1 on 1 - mask IoU, `terminal_iou`), feedback
  (DeepMask's output in the state, at DeepMask's crop size), environment upgrade (one
  DeepMask step per batch of episodes on their last inputs, lr β) and episode budget,
  with Caicedo & Lazebnik's DQN (replay, target network, guided ε-greedy) as the learner.
  The suite question "actor-critic beats DQN" compares these two rows.

The environment is the shared `rlcv.rl.boxenv.BoxEnv` with EU-RL's 9 actions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from methods.eurl.deepmask import jitter_boxes
from methods.eurl.regress import (
    MaskIoULoss,
    as_float,
    box_scores,
    chain_nets,
    deepmask_recognizer,
    load_chain,
    mask_score,
    regress,
)
from rlcv import engine, optim
from rlcv.models.agent_nets import QNet
from rlcv.models.crops import full_boxes
from rlcv.rl.actor_critic import upgrade_environment
from rlcv.rl.boxenv import BoxEnv, BoxIoULoss, CaicedoReward, EURLReward
from rlcv.rl.dqn import DQNAgent, ReplayMemory, greedy, train_episodes


@dataclass
class DQNConfig:
    """Settings of the DQN rows."""

    start: str = "image"
    """Where episodes start: "image" (whole image) or "regressor" (the regressor's box)."""
    feedback: bool = False
    """Show the agent DeepMask's output too (Caicedo & Lazebnik's state has none)."""
    crop_size: int = 32
    """Side of the agent's square crop of the box (pixels); with reward "eurl" the agent
    sees DeepMask's crop, as the actor-critic does, and this is unused."""
    reward: str = "caicedo"
    """"caicedo" (box-IoU sign, trigger ±η at τ) or "eurl" (Eq. 1 on 1 - mask IoU)."""
    terminal_iou: float = 0.5
    """With reward "eurl": mask IoU above which terminating earns +1."""
    upgrade: bool = False
    """Upgrade DeepMask on the episodes' last inputs after each batch (EU-RL)."""
    recog_lr: float = 3e-4
    """DeepMask's learning rate β of that upgrade (Adam)."""
    episodes: int = 40
    """Batches of training episodes (one engine step each)."""
    batch_size: int = 32
    """Episodes run side by side in one batch."""
    t_max: int = 20
    """Step limit of an episode (40 in the paper)."""
    history: int = 9
    """Past actions in the state (one-hot each)."""
    lr: float = 1e-3
    """Adam learning rate of the Q-network."""
    gamma: float = 0.9
    """Discount factor."""
    eta: float = 3.0
    """Trigger reward magnitude η."""
    tau: float = 0.6
    """Box IoU at which the trigger is rewarded, τ."""
    eps_start: float = 1.0
    """ε at the first episode batch."""
    eps_end: float = 0.1
    """ε after the decay."""
    eps_decay: float = 0.7
    """Fraction of the training over which ε decays linearly."""
    guided: float = 1.0
    """Probability that an exploring step follows the expert (a positive-reward action)."""
    replay: int = 5000
    """Replay memory capacity (transitions)."""
    replay_batch: int = 64
    """Minibatch size of a Q-learning step."""
    target_every: int = 100
    """Q-learning steps between copies into the target network."""
    warmup: int = 256
    """Transitions in memory before learning starts."""
    updates: int = 1
    """Q-learning steps per environment step."""
    start_jitter: float = 0.0
    """Relative jitter of training start boxes (see AgentConfig.start_jitter)."""
    width: int = 16
    """Channels of the Q-network trunk's first convolution."""
    hidden: int = 128
    """Width of the Q-network's fully connected layers."""
    backbone: str = "small"
    """Q-network trunk: "small" or "resnet18"."""
    weights: str = "none"
    """Pretrained weights of the resnet18 trunk (torchvision name, e.g.
    ResNet18_Weights.IMAGENET1K_V1; extra channels start at zero) or "none" (random)."""
    eval_every: int = 10
    """Engine steps between greedy evaluations on a val slice (history.csv)."""
    eval_images: int = 48
    """Val images in that slice."""


def _env(cfg: dict, dm=None, crop_size: int = 0) -> BoxEnv:
    """The box environment; DeepMask runs in it only when the agent sees its output or
    the reward is EU-RL's (on its mask)."""
    recognizer = None
    eurl = cfg.get("reward", "caicedo") == "eurl"
    if cfg.get("reward", "caicedo") not in ("caicedo", "eurl"):
        raise ValueError(f"reward must be 'caicedo' or 'eurl', got {cfg['reward']!r}")
    if cfg["feedback"] or eurl or cfg.get("upgrade"):
        if dm is None:
            raise ValueError("feedback, reward: eurl and upgrade need DeepMask, i.e. "
                             "start: regressor")
        recognizer = deepmask_recognizer(dm, crop_size)
    loss, reward = ((MaskIoULoss(), EURLReward(0.1, 1 - cfg["terminal_iou"])) if eurl
                    else (BoxIoULoss(), CaicedoReward(cfg["eta"], cfg["tau"])))
    return BoxEnv(recognizer, loss, reward, t_max=cfg["t_max"],
                  crop_size=None if eurl else cfg["crop_size"],
                  feedback=cfg["feedback"], history_len=cfg["history"])


def _parts(state: dict, cfg: dict, device):
    """(regressor, its size, DeepMask, crop size) of a checkpoint or `load_chain` dict, on
    `device`; regressor None for whole-image starts, DeepMask None when no row needs it."""
    if cfg["start"] == "regressor":
        return chain_nets(state, device)
    return None, 0, None, 32


def _starts(cfg: dict, images: torch.Tensor, reg, size: int) -> torch.Tensor:
    if cfg["start"] == "regressor":
        return regress(reg, size, images)
    return full_boxes(images.shape[0], *images.shape[-2:], images.device)


def train_dqn(cfg: DQNConfig, data, run) -> str:
    """Train the DQN localiser with replay, a target network and guided exploration."""
    c = asdict(cfg)
    train, val = data.load("train"), data.load("val")
    state = load_chain(run) if cfg.start == "regressor" else {}
    reg, size, dm, crop_size = _parts(state, c, run.device)
    env = _env(c, dm, crop_size)
    qnet = QNet(env.obs_channels, env.history_len * env.n_actions, env.n_actions, cfg.width,
                cfg.hidden, cfg.backbone, cfg.weights)
    qnet = engine.place(qnet, run.device)
    agent = DQNAgent(qnet, cfg.lr, cfg.gamma, cfg.replay_batch, cfg.target_every)
    memory = ReplayMemory(cfg.replay, cfg.history)
    recog_opt = optim.adam(dm.parameters(), cfg.recog_lr) if cfg.upgrade else None
    images = as_float(train["image"])
    starts = _starts(c, train["image"], reg, size)
    probe = slice(0, min(cfg.eval_images, val["image"].shape[0]))
    val_images = as_float(val["image"][probe])
    val_starts = _starts(c, val["image"][probe], reg, size)
    val_targets = {"mask": val["mask"][probe], "box": val["box"][probe]}
    n = images.shape[0]

    def step_fn(step: int) -> dict:
        qnet.train()   # `greedy` (eval_fn) leaves it in eval mode (BatchNorm of resnet18)
        g = engine.generator(run.seed, "dqn", step)
        frac = min(1.0, step / max(1.0, cfg.eps_decay * cfg.episodes))
        eps = cfg.eps_start + (cfg.eps_end - cfg.eps_start) * frac
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        boxes = starts[idx]
        if cfg.start_jitter:
            boxes = jitter_boxes(boxes, cfg.start_jitter, g)
        targets = {"mask": train["mask"][idx], "box": train["box"][idx]}
        s = train_episodes(env, agent, memory, images, idx, boxes, targets, g, eps, cfg.guided,
                           updates=cfg.updates, warmup=cfg.warmup)
        s["iou"] = 1 - s.pop("final_loss")
        s["epsilon"] = eps
        if recog_opt is not None:   # EU-RL's upgrade, as the actor-critic rows do it
            s["upgrade_loss"] = upgrade_environment(env.recognizer, recog_opt, env.crops,
                                                    env.boxes, targets)
        return s

    def eval_fn() -> dict:
        res = greedy(env, qnet, val_images, val_starts, val_targets)
        return {"iou": 1 - res["loss"].mean().item(), "return": res["returns"].mean().item(),
                "length": res["steps"].float().mean().item()}

    objects = {"agent": agent, "memory": memory}
    if recog_opt is not None:
        objects.update(deepmask=dm, deepmask_opt=recog_opt)
    engine.fit(run, "dqn", objects, cfg.episodes, step_fn, eval_fn, cfg.eval_every)
    upgraded = {"upgraded": dm.state_dict()} if recog_opt is not None else {}
    return engine.save_checkpoint(run, cfg, q=qnet.state_dict(), obs_channels=env.obs_channels,
                                  **upgraded, **state)


def evaluate_dqn(ckpt: str, data) -> dict:
    """The agent's final boxes on val: alone, their IoU with the ground truth and recall at
    0.5 (active-loc-table1); in the pipeline, DeepMask's mask IoU on them (Table 1)."""
    state = engine.load_checkpoint(ckpt)
    c = state["config"]
    reg, size, dm, crop_size = _parts(state, c, data.device)
    if "upgraded" in state:   # the upgraded DeepMask serves the env and the final mask
        dm.load_state_dict(state["upgraded"])
    env = _env(c, dm, crop_size)
    qnet = QNet(state["obs_channels"], c["history"] * env.n_actions, env.n_actions, c["width"],
                c["hidden"], c["backbone"])
    qnet = engine.place(qnet, data.device)
    qnet.load_state_dict(state["q"])
    val = data.load("val")
    res = greedy(env, qnet, as_float(val["image"]), _starts(c, val["image"], reg, size),
                 {"mask": val["mask"], "box": val["box"]})
    if dm is None:   # the localiser alone: box quality
        return box_scores(res["boxes"], val["box"])
    # in the pipeline: DeepMask as it came from gt-bbox-deepmask, or as upgraded
    return {"avg_iou": mask_score(dm, crop_size, val["image"], res["boxes"], val["mask"])}
