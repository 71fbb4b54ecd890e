"""A batched box-refinement environment: EU-RL's environment, also Caicedo & Lazebnik's.

EU-RL (Xie et al. 2018), Section 3.2 and Section 4.1 ("Implementation details"):

- Environment: an image I, the first stage's output Ω (here a box) and the recognition
  network f(·; θ_r). The state is s_t = (s^I_t, s^R_t): the crop s^I_t = g(I; Ω) and the
  recognition output s^R_t = f(s^I_t; θ_r).
- Actions (9): move the box centre left/right/up/down by 0.1 x width/height, scale the
  width or the height up/down by a factor 0.2, terminate (`apply_actions`).
- Reward, Eq. 1 (`EURLReward`): α·sign[L(s^R_t) - L(s^R_{t+1})] for a move (α = 0.1;
  "a reward of 0.1 is returned if the mask IoU is improved, otherwise -0.1"), and
  sign[ε - L(s^R_t)] on terminate.

Caicedo & Lazebnik (2015), as summarised in the survey slides (`CaicedoReward`): a move
earns sign(IoU(b', g) - IoU(b, g)) and the trigger +η if IoU(b, g) >= τ, else -η.

One `BoxEnv` runs a batch of episodes at once: the crops of the whole batch come from one
`roi_align` call (`rlcv.models.crops.crop`), the recognition network sees them as one
batch, rewards are tensor operations. Episodes end independently (terminate, or the step
limit `t_max`); finished episodes stay frozen and cost nothing while the others go on.

What is pluggable, so other pipelines (issue 9, MPII pose with heatmap MSE) reuse this
unchanged:

- `Recognizer`: the network f, its crop size, how its output is shown to the agent
  (`observe`) and its supervised loss for the environment upgrade (`train_loss`);
  `None` for an environment without one (plain active localisation).
- `loss_fn(outputs, boxes, targets) -> (B,)`: the loss L the reward compares, e.g. one
  minus the mask IoU (needs the outputs) or one minus the box IoU (`BoxIoULoss`).
- `reward_fn(loss_before, loss_after, terminate) -> (B,)`: `EURLReward`, `CaicedoReward`.

`targets` is a dict of per-episode tensors (ground-truth box, mask, joints...) that the
loss functions index; the environment only slices it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlcv.metrics.image_ap import box_iou_coco
from rlcv.models.crops import crop

LEFT, RIGHT, UP, DOWN, WIDER, NARROWER, TALLER, SHORTER, TERMINATE = range(9)
ACTIONS = ("move left", "move right", "move up", "move down", "scale up width",
           "scale down width", "scale up height", "scale down height", "terminate")
N_ACTIONS = len(ACTIONS)


def apply_actions(boxes: torch.Tensor, actions: torch.Tensor, height: int, width: int,
                  move: float = 0.1, scale: float = 0.2, min_size: float = 2.0) -> torch.Tensor:
    """The boxes (B, 4) xyxy after `actions` (B,), kept inside the (height, width) image.

    Moves shift the centre by `move` x the box's width (height); scales multiply the
    width (height) by 1 ± `scale` about the centre; terminate changes nothing. The size
    is then capped at the image (and floored at `min_size`), and the centre shifted so
    the whole box lies inside the image.
    """
    a = actions.to(boxes.device)
    x0, y0, x1, y1 = boxes.unbind(1)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    f = boxes.dtype
    cx = cx + move * w * ((a == RIGHT).to(f) - (a == LEFT).to(f))
    cy = cy + move * h * ((a == DOWN).to(f) - (a == UP).to(f))
    w = w * (1 + scale * ((a == WIDER).to(f) - (a == NARROWER).to(f)))
    h = h * (1 + scale * ((a == TALLER).to(f) - (a == SHORTER).to(f)))
    w, h = w.clamp(min_size, width), h.clamp(min_size, height)
    cx = torch.minimum(torch.maximum(cx, w / 2), width - w / 2)
    cy = torch.minimum(torch.maximum(cy, h / 2), height - h / 2)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


@dataclass(frozen=True)
class EURLReward:
    """EU-RL Eq. 1 on a loss L (lower is better)."""

    alpha: float = 0.1
    """Scale of the intermediate reward (0.1 in the paper)."""
    epsilon: float = 0.5
    """Loss threshold of the terminal reward (COCO: L = 1 - mask IoU, IoU > 0.5)."""

    def __call__(self, before: torch.Tensor, after: torch.Tensor,
                 terminate: torch.Tensor) -> torch.Tensor:
        # "0.1 if the mask IoU is improved, otherwise -0.1": no change is no improvement
        step = _pick(after < before, self.alpha, -self.alpha, before)
        final = _pick(before < self.epsilon, 1.0, -1.0, before)
        return torch.where(terminate, final, step)


@dataclass(frozen=True)
class CaicedoReward:
    """Caicedo & Lazebnik's rewards on L = 1 - IoU(box, ground truth)."""

    eta: float = 3.0
    """Magnitude of the trigger (terminate) reward."""
    tau: float = 0.6
    """IoU at which the trigger is rewarded."""

    def __call__(self, before: torch.Tensor, after: torch.Tensor,
                 terminate: torch.Tensor) -> torch.Tensor:
        step = torch.sign(before - after)
        final = _pick(1 - before >= self.tau, self.eta, -self.eta, before)
        return torch.where(terminate, final, step)


def _pick(cond: torch.Tensor, a: float, b: float, like: torch.Tensor) -> torch.Tensor:
    """`a` where `cond`, else `b`, in `like`'s dtype and device (no float64 scalars)."""
    return torch.where(cond, torch.full_like(like, a), torch.full_like(like, b))


class BoxIoULoss:
    """L = 1 - IoU(box, targets["box"]): the loss of plain localisation (no outputs)."""

    uses_output = False

    def __call__(self, outputs, boxes: torch.Tensor, targets: dict) -> torch.Tensor:
        return 1 - paired_box_iou(boxes, targets["box"])


def paired_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of a[i] with b[i] (rlcv.metrics' COCO box IoU, taken on the diagonal)."""
    return box_iou_coco(a.double(), b.double()).diagonal().to(a.dtype)


@dataclass
class Recognizer:
    """The environment's recognition network f(·; θ_r) and what the agent sees of it."""

    net: nn.Module
    """f: (B, 3, S, S) crops with values in [0, 1] -> (B, C, S, S) raw outputs."""
    crop_size: int
    """S, the side of the square crop g(I; Ω)."""
    observe: Callable[[torch.Tensor], torch.Tensor]
    """Raw outputs -> the s^R channels stacked onto the crop for the agent."""
    train_loss: Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]
    """(outputs, boxes, targets) -> scalar supervised loss: the environment upgrade."""
    channels: int = 1
    """C, number of channels `observe` returns."""


@dataclass
class StepResult:
    """What one `BoxEnv.step` returns; every tensor has the batch size B."""

    obs: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    """Episodes that ended at this step (terminated or truncated)."""
    terminated: torch.Tensor
    """Ended by the terminate action: no value after it."""
    truncated: torch.Tensor
    """Ended by the step limit: the state still has a value."""
    stepped: torch.Tensor
    """Episodes that were running before this step (the ones the actions applied to)."""


class BoxEnv:
    """A batch of box-refinement episodes (see the module docstring)."""

    n_actions = N_ACTIONS

    def __init__(self, recognizer: Recognizer | None, loss_fn, reward_fn, t_max: int,
                 crop_size: int | None = None, feedback: bool = True, move: float = 0.1,
                 scale: float = 0.2, min_size: float = 4.0, history_len: int = 0):
        self.recognizer, self.loss_fn, self.reward_fn = recognizer, loss_fn, reward_fn
        self.history_len = history_len
        self.t_max, self.move, self.scale, self.min_size = t_max, move, scale, min_size
        self.crop_size = crop_size or (recognizer.crop_size if recognizer else 32)
        self.feedback = feedback and recognizer is not None
        if recognizer is not None:
            recognizer.net.to(memory_format=torch.channels_last)
        self.trace: list[torch.Tensor] | None = None

    @property
    def obs_channels(self) -> int:
        """Channels of the agent's observation: RGB (+ s^R when the agent gets feedback)."""
        return 3 + (self.recognizer.channels if self.feedback else 0)

    def compose(self, crops: torch.Tensor, outputs: torch.Tensor | None) -> torch.Tensor:
        """The agent's observation from s^I (and s^R): channels centred around zero."""
        if not self.feedback:
            return crops - 0.5
        return torch.cat([crops - 0.5, self.recognizer.observe(outputs) - 0.5], 1)

    def _look(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        index = None if isinstance(idx, slice) else idx   # a slice: every episode
        crops = crop(self.images, self.boxes[idx], self.crop_size, index)
        return crops, self._recognize(crops)

    def _recognize(self, crops: torch.Tensor) -> torch.Tensor | None:
        if self.recognizer is None:
            return None
        # channels-last convolutions are ~1.5x faster on the CPU; same values
        out = self.recognizer.net(crops.contiguous(memory_format=torch.channels_last))
        return out.contiguous()

    def _loss(self, idx: torch.Tensor | slice, outputs, boxes) -> torch.Tensor:
        return self.loss_fn(outputs, boxes, {k: v[idx] for k, v in self.targets.items()}).float()

    @torch.no_grad()
    def reset(self, images: torch.Tensor, boxes: torch.Tensor, targets: dict,
              record: bool = False) -> torch.Tensor:
        """Start B episodes: images (B, 3, H, W) in [0, 1], start boxes (B, 4) xyxy."""
        if self.recognizer is not None:
            self.recognizer.net.eval()
        self.images, self.targets = images, targets
        self.height, self.width = images.shape[-2:]
        n, dev = images.shape[0], images.device
        self.boxes = apply_actions(boxes.float(), torch.full((n,), TERMINATE, device=dev),
                                   self.height, self.width, min_size=self.min_size)
        self.t = torch.zeros(n, dtype=torch.long, device=dev)
        self.active = torch.ones(n, dtype=torch.bool, device=dev)
        self.history = torch.full((n, self.history_len), -1, dtype=torch.long, device=dev)
        self.crops, self.outputs = self._look(slice(None))
        self.loss = self._loss(slice(None), self.outputs, self.boxes)
        self.trace = [self.boxes.clone()] if record else None
        return self.obs()

    def obs(self) -> torch.Tensor:
        """The current observation of every episode (frozen for finished ones)."""
        return self.compose(self.crops, self.outputs)

    @torch.no_grad()
    def observe_at(self, images: torch.Tensor, boxes: torch.Tensor,
                   index: torch.Tensor | None = None) -> torch.Tensor:
        """The observation of arbitrary (image, box) pairs, e.g. replayed states: box i
        on image `index[i]` of `images` (on image i without `index`)."""
        crops = crop(images, boxes, self.crop_size, index)
        return self.compose(crops, self._recognize(crops) if self.feedback else None)

    def history_onehot(self) -> torch.Tensor:
        """(B, history_len * 9) one-hot of the last actions (Caicedo & Lazebnik's state)."""
        return onehot_history(self.history)

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> StepResult:
        """Apply `actions` (B,) to the running episodes; finished ones ignore theirs."""
        run = self.active.clone()
        term = run & (actions == TERMINATE)
        moved = run & ~term
        reward = torch.zeros_like(self.loss)
        if term.any():   # Eq. 1, a_t = terminate: judged on the current loss
            reward[term] = self.reward_fn(self.loss[term], self.loss[term],
                                          torch.ones_like(self.loss[term], dtype=torch.bool))
        if moved.any():   # all moving (the usual case): views and copies, no gather/scatter
            idx = slice(None) if bool(moved.all()) else moved.nonzero()[:, 0]
            self.boxes[idx] = apply_actions(self.boxes[idx], actions[idx], self.height,
                                            self.width, self.move, self.scale, self.min_size)
            crops, outputs = self._look(idx)
            self.crops[idx] = crops
            if outputs is not None:
                self.outputs[idx] = outputs
            new = self._loss(idx, outputs, self.boxes[idx])
            reward[idx] = self.reward_fn(self.loss[idx], new,
                                         torch.zeros_like(new, dtype=torch.bool))
            self.loss[idx] = new
        self.t[run] += 1
        if self.history_len:   # newest action last; -1 marks "no action yet"
            self.history[run] = torch.cat([self.history[run, 1:], actions[run, None]], 1)
        trunc = moved & (self.t >= self.t_max)
        self.active = run & ~term & ~trunc
        if self.trace is not None:
            self.trace.append(self.boxes.clone())
        return StepResult(self.obs(), reward, term | trunc, term, trunc, run)

    @torch.no_grad()
    def action_rewards(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 9) the reward every action would earn from the current states (no step).

        The "expert" of Caicedo & Lazebnik's guided exploration: it knows the ground truth
        and sees which actions pay. Runs the recognition network on the 8 moved boxes
        only when the loss needs its outputs (terminating keeps the box and its loss).
        `rows` (a bool mask or indices): preview only those episodes, the ones that follow
        the expert this step; the other rows are NaN. With EU-RL's mask reward every
        previewed box costs a DeepMask forward, so this is most of a DQN step's time.
        """
        n = self.boxes.shape[0]
        dev = self.boxes.device
        sel = torch.arange(n, device=dev) if rows is None else (
            rows.nonzero()[:, 0] if rows.dtype == torch.bool else rows.to(dev))
        out = torch.full((n, N_ACTIONS), float("nan"), device=dev)
        m = sel.numel()
        if m == 0:
            return out
        moves = torch.tensor([a for a in range(N_ACTIONS) if a != TERMINATE], device=dev)
        acts = moves.repeat_interleave(m)
        idx = sel.repeat(len(moves))
        boxes = apply_actions(self.boxes[idx], acts, self.height, self.width, self.move,
                              self.scale, self.min_size)
        outputs = None
        if getattr(self.loss_fn, "uses_output", True):
            outputs = self._recognize(crop(self.images, boxes, self.crop_size, idx))
        after = self._loss(idx, outputs, boxes)
        moved = self.reward_fn(self.loss[idx], after,
                               torch.zeros_like(after, dtype=torch.bool)).view(len(moves), m).T
        stay = self.reward_fn(self.loss[sel], self.loss[sel],
                              torch.ones_like(self.loss[sel], dtype=torch.bool))
        out[sel[:, None], moves[None, :]] = moved.to(out.dtype)
        out[sel, TERMINATE] = stay.to(out.dtype)
        return out


def onehot_history(history: torch.Tensor) -> torch.Tensor:
    """(B, k) past actions, -1 for none -> (B, k * 9) one-hot, all-zero rows for none."""
    onehot = F.one_hot(history.clamp(min=0), N_ACTIONS).float()
    return (onehot * (history >= 0)[..., None]).flatten(1)


def run_policy(env: BoxEnv, choose: Callable[[BoxEnv], torch.Tensor], images: torch.Tensor,
               boxes: torch.Tensor, targets: dict, batch: int = 64, record: bool = False) -> dict:
    """Roll a deterministic policy `choose(env) -> (B,) actions` over every image.

    Episodes run `batch` at a time in inference mode. Returns the final `boxes`, the
    recognition `outputs` on them (None without a network), the final `loss`, `returns`
    and `steps` per image, and with `record` the `trace` of boxes, (T + 1, N, 4) with
    finished episodes repeating their last box.
    """
    out: dict[str, list] = {k: [] for k in ("boxes", "outputs", "loss", "returns", "steps")}
    traces = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch):
            sl = slice(i, i + batch)
            env.reset(images[sl], boxes[sl], {k: v[sl] for k, v in targets.items()}, record)
            ret = torch.zeros_like(env.loss)
            while env.active.any():
                ret += env.step(choose(env)).reward
            out["boxes"].append(env.boxes.clone())
            out["outputs"].append(env.outputs.clone() if env.outputs is not None else None)
            out["loss"].append(env.loss.clone())
            out["returns"].append(ret)
            out["steps"].append(env.t.clone())
            if record:
                traces.append(torch.stack(env.trace))
    res = {k: (torch.cat(v) if v and v[0] is not None else None) for k, v in out.items()}
    if record:
        t = max(tr.shape[0] for tr in traces)
        pad = [torch.cat([tr, tr[-1:].expand(t - tr.shape[0], -1, -1)]) for tr in traces]
        res["trace"] = torch.cat(pad, 1)
    return res
