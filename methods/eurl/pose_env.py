"""EU-RL on MPII pose: the agent's environment and one training batch (Xie et al. 2018,
Sections 3 and 4.2.3), for the agent rows of `methods.eurl.pose_agent`.

- `HeatmapLoss`: L of Eq. 1, the heatmap MSE relative to an empty heatmap's;
- `pose_recognizer`: the pose network as the box environment's recognition network;
- `SequenceEnv` / `make_env`: the shared `rlcv.rl.boxenv.BoxEnv` remembering every box
  shown to the pose network (Fig. 4c, d's every-step upgrade) and normalising the agent's
  input;
- `agent_step`: one batch of Algorithm 1 episodes with the row's upgrade (at the last
  step, at every step: `upgrade_every_step`, or none) and, for ablation (c), the policy
  gradient back-propagated into the pose network.
"""

from __future__ import annotations

import torch

from methods.eurl.pose_data import pose_targets, upsample_heatmaps
from rlcv.models.crops import crop
from rlcv.models.hourglass import heatmap_mse, last
from rlcv.rl import actor_critic
from rlcv.rl.actor_critic import TDActorCritic, train_episodes
from rlcv.rl.boxenv import BoxEnv, EURLReward, Recognizer


class HeatmapLoss:
    """L of Eq. 1: the last stack's heatmap MSE against the person's Gaussian targets
    (joints cut off by the crop count with their whole mass), per episode, divided by the
    MSE an all-zero heatmap would score against the same targets; `targets` holds
    `joints` (B, 16, 2) image pixels and `vis` (B, 16).

    Why relative (issue 19): the pixel-averaged MSE of an empty heatmap is tiny and
    depends on the map size and σ (7.7e-4 at 64x64, σ = 1: below the paper's ε = 1e-3;
    0.0276 at 16x16, σ = 1.5), so an absolute ε means something different in every
    profile and an empty heatmap can earn the terminal +1. Relative, L = 1 is "no better
    than predicting nothing" in every profile, and ε < 1 (params.yaml) is never met by an
    empty heatmap. The intermediate ±0.1 only compares L before and after a move of the
    same person's box; dividing by the empty-map loss of the new box's targets keeps
    that comparison about how well the heatmaps fit the crop."""

    uses_output = True

    def __init__(self, arch: dict):
        self.arch = arch

    def __call__(self, outputs, boxes: torch.Tensor, targets: dict) -> torch.Tensor:
        tg, w, out = pose_targets(self.arch, targets["joints"], targets["vis"], boxes)
        hm = last(outputs)
        empty = heatmap_mse(torch.zeros_like(hm), tg, w, out, stacks=1)
        # no annotated joint (test-time blank targets): L = 1, never a terminal +1
        rel = heatmap_mse(hm, tg, w, out, stacks=1) / empty.clamp(min=1e-12)
        return torch.where(empty > 0, rel, torch.ones_like(rel))


def pose_recognizer(net, arch: dict) -> Recognizer:
    """The pose network as the environment's recognition network: the agent sees its
    last-stack heatmaps at crop size; the upgrade supervises every stack."""

    def train_loss(outputs, boxes, targets):
        tg, w, out = pose_targets(arch, targets["joints"], targets["vis"], boxes)
        return heatmap_mse(outputs, tg, w, out).mean()

    size = arch["crop_size"]
    return Recognizer(net, size, lambda out: upsample_heatmaps(last(out), size), train_loss,
                      channels=16)


class SequenceEnv(BoxEnv):
    """The pose pipeline's `BoxEnv`: it remembers every box the pose network was shown
    during the episodes (`visited`: (episode index, box) pairs) for the every-step upgrade
    of Fig. 4c, d, and normalises the agent's input: heatmaps scaled by `heat_gain`; for
    the small trunk (`standardise`) each crop channel standardised per image (it has no
    normalisation layer and, fed raw crops and faint heatmaps, sees nearly the same input
    in every state); for the pretrained resnet18 trunk the crop centred as the COCO
    agents' (`crop - 0.5`), which the trunk renormalises with ImageNet's mean and std
    (`rlcv.models.agent_nets.ConvTrunk`).
    """

    heat_gain = 4.0
    standardise = True
    """Standardise each crop channel per image (small trunk); false: `crop - 0.5`."""

    def compose(self, crops: torch.Tensor, outputs: torch.Tensor | None) -> torch.Tensor:
        if self.standardise:
            x = crops - crops.mean((2, 3), keepdim=True)
            x = x / crops.std((2, 3), keepdim=True).clamp(min=0.02)
        else:
            x = crops - 0.5
        if not self.feedback:
            return x
        return torch.cat([x, self.heat_gain * self.recognizer.observe(outputs)], 1)

    def reset(self, images, boxes, targets, record=False):
        obs = super().reset(images, boxes, targets, record)
        self.visited = [(torch.arange(self.boxes.shape[0], device=self.boxes.device),
                         self.boxes.clone())]
        return obs

    def step(self, actions):
        res = super().step(actions)
        moved = (res.stepped & ~res.terminated).nonzero()[:, 0]
        self.visited.append((moved, self.boxes[moved].clone()))
        return res


def make_env(net, arch: dict, cfg: dict) -> SequenceEnv:
    """The box environment of the pose pipeline with Eq. 1 rewards (α = 0.1, ε); the crop
    in the range the agent's trunk (`backbone`) expects."""
    env = SequenceEnv(pose_recognizer(net, arch), HeatmapLoss(arch),
                      EURLReward(alpha=0.1, epsilon=cfg["epsilon"]), t_max=cfg["t_max"],
                      feedback=cfg["feedback"])
    env.standardise = cfg.get("backbone", "small") != "resnet18"
    return env


def upgrade_every_step(env: SequenceEnv, opt, images: torch.Tensor, targets: dict, n: int,
                       g: torch.Generator) -> float:
    """The every-step upgrade: one supervised step on `n` inputs drawn uniformly from all
    the episodes' steps (the recognition loss averaged over the whole sequence)."""
    ep = torch.cat([e for e, _ in env.visited])
    boxes = torch.cat([b for _, b in env.visited])
    pick = torch.randint(ep.shape[0], (n,), generator=g)
    ep, boxes = ep[pick], boxes[pick]
    crops = crop(images, boxes, env.crop_size, ep)
    return actor_critic.upgrade_environment(env.recognizer, opt, crops, boxes,
                                            {k: v[ep] for k, v in targets.items()})


def agent_step(env: SequenceEnv, agent: TDActorCritic, recog_opt, cfg: dict,
               images: torch.Tensor, boxes: torch.Tensor, targets: dict,
               g: torch.Generator) -> dict:
    """One batch of Algorithm 1 episodes with the row's upgrade / back-propagation."""
    last_step = cfg["upgrade"] == "last"
    use_opt = recog_opt if (last_step or cfg["backprop_policy"]) else None
    stats = train_episodes(env, agent, images, boxes, targets, g, recognizer_opt=use_opt,
                           upgrade=last_step, backprop_policy=cfg["backprop_policy"])
    if cfg["upgrade"] == "every":
        stats["upgrade_loss"] = upgrade_every_step(env, recog_opt, images, targets,
                                                   boxes.shape[0], g)
    return stats
