"""The CiSS-Net decision process and its training step (Zhou et al., CVPR 2019, Section 2.3,
Eqs. 2 and 4, Section 2.4, Eqs. 5-7).

State s_t = the p-map Y^t, action a_t = the binary map B^t sampled from the C-Net's policy
map, transition Y^{t+1} = argmax F_s(X, (Y^t + 1) ∘ B^t) (Eq. 2), starting from the
Base Net's p-map Y^0 = argmax F_s(X, None) (context K all 'uncertain'). The reward of
the decision at (i, j) is Eq. 4:

    r_t(i, j) = mean over the C_h x C_w window around (i, j) of M(Y^t, Y^{t+1}, L)
                + beta1 [K^t(i, j) = L(i, j) + 1] + beta2 [K^t(i, j) = 0]

with M = 1 incorrect->correct, -1 correct->incorrect, 0.5 correct->correct, 0 otherwise.
The window mean is two average poolings (the window stops at the image border and skips
ignored ground truth); `context_reward_reference` is the same thing as plain loops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.cissnet.data import IGNORE
from rlcv.models.cissnet import ContextNet, SegmentNet, context_map
from rlcv.rl.advantage import actor_critic_terms, kstep_returns


def improvement(before: torch.Tensor, after: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """M of Eq. 4 per position: 1 / -1 / 0.5 / 0 for the four correctness transitions."""
    c0 = (before == target).float()
    c1 = (after == target).float()
    return c1 - c0 + 0.5 * c0 * c1


def context_reward(before: torch.Tensor, after: torch.Tensor, target: torch.Tensor,
                   context: torch.Tensor, beta1: float = 0.4, beta2: float = 0.2,
                   window: int | tuple[int, int] = 5) -> torch.Tensor:
    """Eq. 4 for every position of a batch of maps (N, H, W) at once.

    `before`/`after` are Y^t / Y^{t+1} (class indices), `target` the ground truth L
    (IGNORE excluded), `context` K^t (0 = uncertain, else class + 1), `window` (C_h, C_w),
    odd sizes.
    """
    ch, cw = (window, window) if isinstance(window, int) else window
    valid = (target != IGNORE).float()[:, None]
    m = improvement(before, after, target)[:, None] * valid
    pad = (ch // 2, cw // 2)
    # ratio of two window sums = mean over the in-image, labelled positions of the window
    total = F.avg_pool2d(m, (ch, cw), 1, pad, count_include_pad=True)
    count = F.avg_pool2d(valid, (ch, cw), 1, pad, count_include_pad=True)
    gain = torch.where(count > 0, total / count.clamp(min=1e-12), torch.zeros_like(total))[:, 0]
    correct = ((context == target + 1) & (target != IGNORE)).float()
    return gain + beta1 * correct + beta2 * (context == 0).float()


def context_reward_reference(before, after, target, context, beta1=0.4, beta2=0.2,
                             window=5) -> torch.Tensor:
    """Eq. 4 with plain Python loops over positions and windows (tests, benchmark)."""
    ch, cw = (window, window) if isinstance(window, int) else window
    n, h, w = target.shape
    out = torch.zeros(n, h, w)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                total, count = 0.0, 0
                for ii in range(i - ch // 2, i + ch // 2 + 1):
                    for jj in range(j - cw // 2, j + cw // 2 + 1):
                        if not (0 <= ii < h and 0 <= jj < w) or int(target[b, ii, jj]) == IGNORE:
                            continue
                        was = int(before[b, ii, jj]) == int(target[b, ii, jj])
                        now = int(after[b, ii, jj]) == int(target[b, ii, jj])
                        total += {(False, True): 1.0, (True, False): -1.0,
                                  (True, True): 0.5, (False, False): 0.0}[(was, now)]
                        count += 1
                r = total / count if count else 0.0
                k, lab = int(context[b, i, j]), int(target[b, i, j])
                if lab != IGNORE and k == lab + 1:
                    r += beta1
                if k == 0:
                    r += beta2
                out[b, i, j] = r
    return out


def choose(logits: torch.Tensor, mode: str, g: torch.Generator | None = None) -> torch.Tensor:
    """B from policy logits (N, 2, H, W): 'sample' B ~ Q, or 'greedy' argmax Q."""
    if mode == "greedy":
        return logits.argmax(1)
    p_adopt = torch.softmax(logits, 1)[:, 1]
    # drawn on the CPU generator, then moved: the same B on every device
    return (torch.rand(p_adopt.shape, generator=g).to(p_adopt.device) < p_adopt).long()


def rollout(snet: SegmentNet, cnet: ContextNet | None, x: torch.Tensor, steps: int,
            mode: str = "greedy", g: torch.Generator | None = None
            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Inference chain Y^0 -> K^0 -> Y^1 ... -> Y^steps (no gradient).

    Returns the logits of Y^0..Y^steps (feature resolution) and the context maps
    K^0..K^{steps-1}; B^t is drawn from the C-Net's policy by `mode` ('sample' with `g`,
    or 'greedy'). `cnet=None` (or mode 'adopt') feeds the complete p-map as context, mode
    'empty' an all-'uncertain' map (B = 0: the capacity control).
    """
    with torch.no_grad():
        logits = [snet(x)]
        contexts = []
        for _ in range(steps):
            y = logits[-1].argmax(1)
            if mode == "empty":
                b = torch.zeros_like(y)
            elif cnet is None or mode == "adopt":
                b = torch.ones_like(y)
            else:
                b = choose(cnet(x, y)[0], mode, g)
            k = context_map(y, b)
            contexts.append(k)
            logits.append(snet(x, k))
    return logits, contexts


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss_s: cross-entropy of logits, upsampled (bilinear) to the labels' size if needed."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                               align_corners=False)
    return F.cross_entropy(logits, target, ignore_index=IGNORE)


def train_step(snet: SegmentNet, cnet: ContextNet | None, x: torch.Tensor,
               target: torch.Tensor, cfg, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One rollout of `cfg.rollout` steps on a batch and the loss of Eq. 7.

    `target` holds the class indices at the p-map's (feature) resolution: the reward and
    Loss_s are computed there.

    With a C-Net: Loss_p + Loss_v + lambda1 Loss_s + lambda2 Loss_e, the S-Net and C-Net
    updated together. Without one: lambda1 Loss_s with the complete p-map as context at
    every step ('Baseline+p-map' / 'w/o RL'), or with an all-'uncertain' map when
    `cfg.context` is 'empty' (the capacity control: the Bias Net sees X_I only).
    """
    empty = getattr(cfg, "context", "learned") == "empty"
    with torch.no_grad():
        y = snet(x).argmax(1)        # Y^0 from the Base Net alone
    seg, pols, acts, vals, rews = [], [], [], [], []
    for _ in range(cfg.rollout):
        if cnet is not None:
            pol, v = cnet(x, y)
            a = choose(pol.detach(), "sample", g)
            pols.append(pol)
            vals.append(v)
            acts.append(a)
        else:
            a = torch.zeros_like(y) if empty else torch.ones_like(y)
        k = context_map(y, a)
        logits = snet(x, k)
        seg.append(segmentation_loss(logits, target))
        # the next state is a discrete argmax: no gradient flows through the transition
        y_next = logits.detach().argmax(1)
        rews.append(context_reward(y, y_next, target, k, cfg.beta1, cfg.beta2, cfg.window))
        y = y_next
    loss_s = torch.stack(seg).mean()
    stats = {"loss_s": loss_s.item(), "reward": torch.stack(rews).mean().item()}
    if cnet is None:
        return cfg.lambda1 * loss_s, stats
    with torch.no_grad():
        v_last = cnet(x, y)[1]        # V(s_T) bootstraps the unfinished episode
    values = torch.stack(vals)
    returns = kstep_returns(torch.stack(rews), torch.cat([values.detach(), v_last[None]]),
                            cfg.gamma, cfg.k_step)
    terms = actor_critic_terms(torch.stack(pols).flatten(0, 1), torch.stack(acts).flatten(0, 1),
                               values.flatten(0, 1), returns.flatten(0, 1))
    loss = (terms["policy"] + terms["value"] + cfg.lambda1 * loss_s
            + cfg.lambda2 * terms["entropy"])
    adopt = torch.stack(acts).float().mean().item()
    stats.update(loss_p=terms["policy"].item(), loss_v=terms["value"].item(),
                 entropy=-terms["entropy"].item(), adopt=adopt)
    return loss, stats
