"""Caicedo & Lazebnik's deep Q-network for active object localisation (ICCV 2015).

As summarised in the survey slides (rl-for-cv_survey-slides_ramoul.md, "Active Object
Localization with Deep Reinforcement Learning"): the state is the region's features plus
the one-hot history of the last actions; a Q-network with 9 outputs picks
argmax Q; training uses a replay memory ("history sampling") and a periodically copied
target network ("periodic duplication of the q-network"); exploration is ε-greedy with
an expert agent ("expert agent to optimize exploration"): when exploring, the agent takes
with probability `guided` one of the actions that earn a positive reward, which the
expert knows from the ground truth (`BoxEnv.action_rewards`), else a uniform one.
Episodes end on the trigger or after a step limit (40 in the paper). The rewards are
`rlcv.rl.boxenv.CaicedoReward`; the environment is the shared `BoxEnv`.

The Q-learning target is r + γ·max_a' Q_target(s', a'), with no bootstrap at the end of
an episode, trigger or step limit, as in DQN. (The actor-critic bootstraps at the step
limit; here bootstrapping through the limit let the max-operator's overestimation of the
moves outgrow the trigger's exact value, and the greedy agent stopped triggering.)
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from rlcv import optim
from rlcv.rl.boxenv import TERMINATE, BoxEnv, onehot_history, run_policy


class ReplayMemory:
    """A ring buffer of transitions stored as states' keys, not pixels: the image index,
    the box and the action history of s and s', the action, the reward and whether the
    episode ended there. Observations are rebuilt from the keys when a minibatch is
    replayed (`BoxEnv.observe_at`), so the memory is a few MB and goes into checkpoints.
    It lives on the CPU whatever the run's device; `sample` returns a minibatch on
    `device`."""

    FIELDS = ("image", "box", "hist", "action", "reward", "next_box", "next_hist", "terminated")

    def __init__(self, capacity: int, history_len: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.image = torch.zeros(capacity, dtype=torch.long)
        self.box = torch.zeros(capacity, 4)
        self.next_box = torch.zeros(capacity, 4)
        self.hist = torch.zeros(capacity, history_len, dtype=torch.long)
        self.next_hist = torch.zeros_like(self.hist)
        self.action = torch.zeros(capacity, dtype=torch.long)
        self.reward = torch.zeros(capacity)
        self.terminated = torch.zeros(capacity, dtype=torch.bool)

    def push(self, **batch: torch.Tensor) -> None:
        """Add a batch of transitions, one tensor per field (the oldest are overwritten)."""
        n = batch["action"].shape[0]
        idx = (self.pos + torch.arange(n)) % self.capacity
        for k in self.FIELDS:
            getattr(self, k)[idx] = batch[k].to("cpu", getattr(self, k).dtype)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch: int, g: torch.Generator, device="cpu") -> dict:
        """A uniform minibatch (with replacement), field by field, on `device`."""
        idx = torch.randint(self.size, (batch,), generator=g)
        return {k: getattr(self, k)[idx].to(device) for k in self.FIELDS}

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in (*self.FIELDS, "size", "pos")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class DQNAgent:
    """Q-network, its target copy and optimizer; `target_every` updates between copies."""

    def __init__(self, qnet: nn.Module, lr: float, gamma: float = 0.9, batch_size: int = 64,
                 target_every: int = 50, grad_clip: float = 1.0):
        self.q, self.target = qnet, copy.deepcopy(qnet).eval()
        self.gamma, self.batch_size, self.target_every = gamma, batch_size, target_every
        self.grad_clip = grad_clip
        self.opt = optim.adam(qnet.parameters(), lr)
        self.updates = 0

    def state_dict(self) -> dict:
        return {"q": self.q.state_dict(), "target": self.target.state_dict(),
                "opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["opt"])
        self.updates = state["updates"]

    def learn(self, memory: ReplayMemory, observe, g: torch.Generator) -> float:
        """One Huber-loss Q-learning step on a replayed minibatch; `observe(image index,
        boxes)` rebuilds the observations."""
        b = memory.sample(self.batch_size, g, next(self.q.parameters()).device)
        q = self.q(observe(b["image"], b["box"]), onehot_history(b["hist"]))
        q = q.gather(1, b["action"][:, None])[:, 0]
        with torch.no_grad():   # the target network is frozen between copies
            # a terminal transition's target is its reward: only the others' next states
            # are observed (most EU-RL episodes end after a step or two, and each
            # observation costs a recognition-network forward)
            best = torch.zeros_like(b["reward"])
            live = (~b["terminated"]).nonzero()[:, 0]
            if live.numel():
                nobs = observe(b["image"][live], b["next_box"][live])
                best[live] = self.target(nobs, onehot_history(b["next_hist"][live])).max(1).values
            target = b["reward"] + self.gamma * best
        loss = F.smooth_l1_loss(q, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), self.grad_clip)
        self.opt.step()
        self.updates += 1
        if self.updates % self.target_every == 0:
            self.target.load_state_dict(self.q.state_dict())
        return loss.item()


def explore(env: BoxEnv, greedy_actions: torch.Tensor, epsilon: float, guided: float,
            g: torch.Generator) -> torch.Tensor:
    """ε-greedy with guided exploration: an exploring episode follows the expert (a
    random positive-reward action) with probability `guided`, else a uniform action."""
    # every draw on the CPU from the CPU generator, then moved: the same on every device
    n, dev = greedy_actions.shape[0], greedy_actions.device
    explore_ = (torch.rand(n, generator=g) < epsilon).to(dev)
    uniform = torch.randint(env.n_actions, (n,), generator=g).to(dev)
    actions = torch.where(explore_, uniform, greedy_actions)
    use_expert = explore_ & (torch.rand(n, generator=g) < guided).to(dev)
    if use_expert.any():
        # only the episodes that follow the expert are previewed (the others' rows are NaN,
        # never picked below); the draw below consumes the generator the same either way
        good = (env.action_rewards(use_expert & env.active) > 0).float()
        has = good.sum(1) > 0
        weights = (good + (~has[:, None]).float()).cpu()
        # inverse-CDF draw, one uniform per episode: each row's pick depends on its own
        # weights only (torch.multinomial's picks also move with the other rows' weights)
        cdf = weights.cumsum(1)
        u = torch.rand(n, 1, generator=g) * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u, right=True)[:, 0].clamp(max=env.n_actions - 1)
        pick = pick.to(dev)
        actions = torch.where(use_expert & has, pick, actions)
    return actions


def train_episodes(env: BoxEnv, agent: DQNAgent, memory: ReplayMemory, images: torch.Tensor,
                   image_idx: torch.Tensor, boxes: torch.Tensor, targets: dict,
                   g: torch.Generator, epsilon: float, guided: float, updates: int = 1,
                   warmup: int = 256) -> dict:
    """Run B episodes on `images[image_idx]` with exploration, storing every transition
    and making `updates` Q-learning steps on replayed minibatches after each environment
    step once `warmup` transitions are stored (`images`: the whole training set)."""
    image_idx = image_idx.to(images.device)
    env.reset(images[image_idx], boxes, targets)
    n = image_idx.shape[0]
    ret, losses = torch.zeros(n, device=images.device), []

    def observe(idx, b):
        return env.observe_at(images, b, idx)   # no gather of whole images

    while env.active.any():
        idx = env.active.nonzero()[:, 0]
        box, hist = env.boxes[idx].clone(), env.history[idx].clone()
        actions = torch.full((n,), TERMINATE, dtype=torch.long, device=images.device)
        with torch.no_grad():
            actions[idx] = agent.q(env.obs()[idx], env.history_onehot()[idx]).argmax(1)
        actions = explore(env, actions, epsilon, guided, g)   # finished episodes ignore theirs
        res = env.step(actions)
        # every episode end is terminal for the Q target (see the module docstring)
        memory.push(image=image_idx[idx], box=box, hist=hist, action=actions[idx],
                    reward=res.reward[idx], next_box=env.boxes[idx],
                    next_hist=env.history[idx], terminated=res.done[idx])
        ret += res.reward
        if memory.size >= warmup:
            losses += [agent.learn(memory, observe, g) for _ in range(updates)]
    return {"return": ret.mean().item(), "final_loss": env.loss.mean().item(),
            "length": env.t.float().mean().item(),
            "q_loss": sum(losses) / len(losses) if losses else float("nan")}


def greedy(env: BoxEnv, qnet: nn.Module, images: torch.Tensor, boxes: torch.Tensor,
           targets: dict, batch: int = 64, record: bool = False) -> dict:
    """The trained agent: argmax Q (with its action history) until the trigger or the limit."""
    qnet.eval()

    def choose(e: BoxEnv) -> torch.Tensor:
        return qnet(e.obs(), e.history_onehot()).argmax(1)

    return run_policy(env, choose, images, boxes, targets, batch, record)
