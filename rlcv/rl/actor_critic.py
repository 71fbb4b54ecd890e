"""EU-RL's TD actor-critic and environment upgrade (Xie et al. 2018, Section 3.3).

Algorithm 1 (training), batched over B episodes that run side by side in a `BoxEnv`:

- after every step, the TD error E_t = r_t + γ·V(s_{t+1}) - V(s_t) drives the policy
  gradient ∇ log π(a_t|s_t)·E_t and the value update (gradient of E_t² with V(s_{t+1})
  held fixed: θ_v += α·2E_t·∂V(s_t)/∂θ_v);
- when the episodes have ended, the environment upgrade: the recognition network is
  trained with its own optimizer and learning rate β, supervised, on each episode's
  last-step input only ("we are only concerned about the recognition performance in the
  last step").

The policy gradient never reaches the recognition network: the env computes s^R under
`no_grad`, so the policy sees it as a constant. `backprop_policy=True` is the paper's
ablation (c) of Table 3 ("back-propagate policy gradient"): s^R is recomputed with
gradient and the *policy term alone* (not the value loss, not the entropy bonus) is
back-propagated into the recognition network (`policy_grad_to_recognizer`); its gradient
is summed over the episode's steps, clipped to the agent's norm, and applied in one
recognition step per batch of episodes (together with the upgrade's gradient when the
environment is upgraded), so ablation (c) takes as many recognition steps as the full model.

Algorithm 2 (inference) is `greedy`: the most probable action until terminate or the
step limit; the last recognition output is the prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlcv import optim
from rlcv.rl.boxenv import TERMINATE, BoxEnv, Recognizer, run_policy


class TDActorCritic:
    """The agent's learner: a `PolicyValueNet` and its optimizer (learning rate α).

    `value_coef` = 1 is Algorithm 1 to the letter (θ_v += α·2E·∂V/∂θ_v); a smaller weight
    keeps the critic's gradient from swamping the policy's in the shared trunk (the
    tiny-environment test and the COCO rows use 0.25). `entropy` adds A3C's entropy bonus
    (Mnih et al. 2016, the paper's ref. [29]) so the terminate action keeps being tried.
    """

    def __init__(self, net: nn.Module, lr: float, gamma: float = 0.95, entropy: float = 0.01,
                 value_coef: float = 1.0, grad_clip: float = 1.0):
        self.net, self.gamma, self.entropy = net, gamma, entropy
        self.value_coef, self.grad_clip = value_coef, grad_clip
        self.opt = optim.adam(net.parameters(), lr)

    def loss(self, logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor,
             rewards: torch.Tensor, next_values: torch.Tensor,
             terminated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, TD errors) of one batch of transitions (s_t, a_t, r_t, s_{t+1})."""
        # terminate ends the MDP (no value after it); the step limit does not (the state
        # has no clock), so truncated episodes still bootstrap from V(s_{t+1})
        target = rewards + self.gamma * next_values.detach() * (~terminated).to(values.dtype)
        td = target - values
        logp = F.log_softmax(logits, 1)
        entropy = -(logp.exp() * logp).sum(1)
        # the TD error is the advantage: detached in the policy term, regressed in the value
        policy = -(logp.gather(1, actions[:, None])[:, 0] * td.detach()).mean()
        loss = policy + self.value_coef * td.pow(2).mean() - self.entropy * entropy.mean()
        return loss, td.detach()


def sample_actions(logits: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Actions drawn from softmax(logits), reproducibly from generator `g`."""
    # drawn on the CPU from the CPU generator: the same actions on every device
    probs = F.softmax(logits.float(), 1).cpu()
    return torch.multinomial(probs, 1, generator=g)[:, 0].to(logits.device)


def upgrade_environment(recognizer: Recognizer, opt: torch.optim.Optimizer, crops: torch.Tensor,
                        boxes: torch.Tensor, targets: dict, extra_grads=None) -> float:
    """Algorithm 1's last line: one supervised step of f on the episodes' last inputs;
    `extra_grads` (one tensor or None per parameter, ablation (c)) join that step."""
    recognizer.net.train()
    loss = recognizer.train_loss(recognizer.net(crops), boxes, targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    _add_grads(recognizer.net, extra_grads)
    opt.step()
    recognizer.net.eval()
    return loss.item()


def _add_grads(net: nn.Module, grads) -> None:
    for p, g in zip(net.parameters(), grads or (), strict=False):
        if g is not None:
            p.grad = g.clone() if p.grad is None else p.grad + g


def policy_grad_to_recognizer(agent: TDActorCritic, env: BoxEnv, idx: torch.Tensor,
                              actions: torch.Tensor, td: torch.Tensor) -> list:
    """Ablation (c): the gradient of the policy term -log π(a|s)·E alone with respect to
    the recognition network's parameters, s^R recomputed with gradient on the crops of
    episodes `idx` (one entry per parameter, None where it does not depend on it)."""
    rec = env.recognizer
    params = list(rec.net.parameters())
    logits, _ = agent.net(env.compose(env.crops[idx], rec.net(env.crops[idx])))
    logp = F.log_softmax(logits, 1).gather(1, actions[:, None])[:, 0]
    policy = -(logp * td.detach()).mean()
    return list(torch.autograd.grad(policy, params, allow_unused=True))


def train_episodes(env: BoxEnv, agent: TDActorCritic, images: torch.Tensor, boxes: torch.Tensor,
                   targets: dict, g: torch.Generator, recognizer_opt=None, upgrade: bool = True,
                   backprop_policy: bool = False) -> dict:
    """Run B episodes of Algorithm 1 from `boxes`; returns episode statistics.

    `recognizer_opt` (learning rate β) updates the recognition network: on the last
    inputs when `upgrade`, and from the policy loss as well when `backprop_policy`.
    """
    rec = env.recognizer
    if backprop_policy and (rec is None or recognizer_opt is None):
        raise ValueError("backprop_policy needs a recognition network and its optimizer")
    obs = env.reset(images, boxes, targets)
    n = images.shape[0]
    ret = torch.zeros(n, device=images.device)
    td_abs, updates = 0.0, 0
    rec_grads = None   # ablation (c): the policy term's gradient into θ_r, summed over steps
    while env.active.any():
        idx = env.active.nonzero()[:, 0]
        # s^R came from the env under no_grad: a constant to the agent's own loss
        logits, values = agent.net(obs[idx])
        acts = sample_actions(logits.detach(), g)
        actions = torch.full((n,), TERMINATE, dtype=torch.long, device=images.device)
        actions[idx] = acts
        res = env.step(actions)
        with torch.no_grad():
            _, next_values = agent.net(res.obs[idx])
        loss, td = agent.loss(logits, values, acts, res.reward[idx], next_values,
                              res.terminated[idx])
        if backprop_policy:   # before the agent's step: the same π that acted
            grads = policy_grad_to_recognizer(agent, env, idx, acts, td)
            rec_grads = grads if rec_grads is None else [
                a if b is None else (b if a is None else a + b)
                for a, b in zip(rec_grads, grads, strict=True)]
        agent.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(agent.net.parameters(), agent.grad_clip)
        agent.opt.step()
        ret += res.reward
        td_abs += td.abs().mean().item()
        updates += 1
        obs = res.obs
    stats = {"return": ret.mean().item(), "final_loss": env.loss.mean().item(),
             "length": env.t.float().mean().item(), "td_error": td_abs / max(updates, 1)}
    if rec_grads is not None:   # clipped like the agent's gradient
        norm = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in rec_grads if g is not None]))
        scale = min(1.0, agent.grad_clip / (norm.item() + 1e-6))
        rec_grads = [None if g is None else g * scale for g in rec_grads]
        stats["policy_grad_norm"] = norm.item()
    if upgrade and recognizer_opt is not None:
        stats["upgrade_loss"] = upgrade_environment(rec, recognizer_opt, env.crops, env.boxes,
                                                    targets, rec_grads)
    elif rec_grads is not None:   # no upgrade: the policy gradient's own step, once
        recognizer_opt.zero_grad(set_to_none=True)
        _add_grads(rec.net, rec_grads)
        recognizer_opt.step()
    return stats


def greedy(env: BoxEnv, net: nn.Module, images: torch.Tensor, boxes: torch.Tensor,
           targets: dict, batch: int = 64, record: bool = False) -> dict:
    """Algorithm 2 on every image: argmax π until terminate or the step limit."""
    net.eval()

    def choose(e: BoxEnv) -> torch.Tensor:
        return net(e.obs())[0].argmax(1)

    return run_policy(env, choose, images, boxes, targets, batch, record)
