"""k-step returns, advantages and the advantage actor-critic loss terms.

Follows CiSS-Net (Zhou et al., CVPR 2019), Section 2.4, Eqs. 5-7, the k-step form of
A3C (Mnih et al. 2016):

    R_t = sum_{l=0}^{n-1} gamma^l r_{t+l} + gamma^n V(s_{t+n}),  n = min(k, T - t)   (Eq. 6)
    A(s_t, a_t) = R_t - V(s_t)                                                   (Eq. 5)
    Loss_p = -log pi(a_t | s_t) A,  Loss_v = (R_t - V(s_t))^2,
    Loss_e = sum_a pi log pi   (minimising it raises the entropy)                 (Eq. 7)

Rewards and values may be maps (one decision per position, as CiSS-Net's policy map):
every function works elementwise on any trailing shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kstep_returns(rewards: torch.Tensor, values: torch.Tensor, gamma: float,
                  k: int | None = None) -> torch.Tensor:
    """k-step bootstrapped returns R_t (Eq. 6) of a rollout of length T.

    `rewards` (T, ...) are r_0..r_{T-1}; `values` (T + 1, ...) are V(s_0)..V(s_T), the
    last one bootstrapping the unfinished (infinite-horizon) episode. `k=None` uses all
    remaining steps (n = T - t). Returns (T, ...); treat it as a constant target.
    """
    steps = rewards.shape[0]
    if values.shape[0] != steps + 1:
        raise ValueError(f"values: expected {steps + 1} states for {steps} rewards, "
                         f"got {values.shape[0]}")
    k = steps if k is None else int(k)
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    out = []
    for t in range(steps):
        n = min(k, steps - t)
        ret = values[t + n] * gamma ** n
        for l in range(n):
            ret = ret + rewards[t + l] * gamma ** l
        out.append(ret)
    return torch.stack(out)


def actor_critic_terms(logits: torch.Tensor, actions: torch.Tensor, values: torch.Tensor,
                       returns: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three RL terms of Eq. 7, each averaged over all decisions.

    `logits` (N, A, ...) over A actions at every position; `actions` (N, ...) the taken
    ones; `values` (N, ...) V(s_t) with gradient; `returns` (N, ...) R_t. The advantage
    R_t - V(s_t) is detached in the policy term (it weights the score function only) and
    R_t is detached in the value term (a fixed regression target).
    """
    logp = F.log_softmax(logits, 1)
    taken = logp.gather(1, actions.long().unsqueeze(1)).squeeze(1)
    returns = returns.detach()
    advantage = (returns - values).detach()
    return {
        "policy": -(taken * advantage).mean(),
        "value": (returns - values).pow(2).mean(),
        "entropy": (logp.exp() * logp).sum(1).mean(),
        "advantage": advantage.mean(),
    }
