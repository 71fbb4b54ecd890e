"""ACIS actor training (Araslanov et al., CVPR 2019, Sec. 5.3, Algorithm 1, Eqs. 5-7).

`fit_actor` trains the actor on episodes drawn by `methods.acis.train` (`sample_batch`,
`rollout`), each unrolled to its end (its remaining instances and the step that should
stop, at most `max_steps`), with the cVAE decoder frozen, in one of three modes:

- `bl`: the baseline — BCE of each prediction with the ground truth assigned by Dice
  max-matching (Kuhn-Munkres), backpropagated through every step of the episode (full
  BPTT through the LSTM state and the soft accumulated mask M_t).
- `bl-trunc`: the same loss with one-step BPTT: the recorded states are replayed at once
  with the recurrent inputs detached.
- `ac`: Algorithm 1. Episode execution with exploration noise; the critic regressed on
  Eq. 7's discounted returns of the potential-difference rewards (Eq. 5) to the end of
  each episode (closed by the critic's estimate only where `max_steps` cuts an episode
  short); then the actor,
  re-sampling its actions on the recorded states, ascends Q(s_t, D(a_t)) through the
  frozen decoder, with the KL term to N(0, I) (`kl_weight`, 0 = NoKL), after a critic
  warm-up. The termination unit is trained with BCE on the ground-truth count in every
  mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from methods.acis.train import (
    Batch,
    Episode,
    Prepared,
    flatten_steps,
    repeat_steps,
    rollout,
    sample_batch,
)
from rlcv import engine, optim
from rlcv.models.acis import Actor, Critic, MaskDecoder, kl_normal
from rlcv.rl.potential import assignment, discounted_returns, rewards, score_matrix


def step_masks(remaining: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) masks of the steps that predict an instance (t < remaining) and of the steps
    whose termination is supervised (t <= remaining: the continue steps and the stop)."""
    t = torch.arange(steps, device=remaining.device)[None, :]
    return t < remaining[:, None], t <= remaining[:, None]


def termination_loss(stop: torch.Tensor, remaining: torch.Tensor) -> torch.Tensor:
    """BCE of the termination unit (B, T) on the ground-truth count: continue (1) while
    instances remain, stop (0) once all are predicted. The two classes are weighted
    equally: a window holds at most one stop but up to T continues."""
    pred_steps, term_steps = step_masks(remaining, stop.shape[1])
    target = pred_steps.float()
    bce = F.binary_cross_entropy_with_logits(stop, target, reduction="none")
    cont, halt = pred_steps & term_steps, ~pred_steps & term_steps
    loss = (bce * cont).sum() / cont.sum().clamp(min=1)
    if halt.any():
        loss = 0.5 * (loss + (bce * halt).sum() / halt.sum())
    return loss


def matched_bce(logits: torch.Tensor, batch: Batch, pos_weight: float) -> torch.Tensor:
    """The baselines' loss: BCE (object pixels weighted by `pos_weight`) of each prediction
    (B, T, h, w logits) with the ground truth assigned by Dice max-matching (Kuhn-Munkres
    over the window)."""
    pred_steps, _ = step_masks(batch.remaining, logits.shape[1])
    scores = score_matrix(torch.sigmoid(logits.detach()), batch.targets, "dice")
    scores = scores * pred_steps[..., None]
    assign = assignment(scores).clamp(min=0)
    target = torch.gather(batch.targets, 1,
                          assign[:, :, None, None].expand(-1, -1, *logits.shape[-2:]))
    bce = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none",
                                             pos_weight=logits.new_tensor(pos_weight))
    return (bce.mean((2, 3)) * pred_steps).sum() / pred_steps.sum().clamp(min=1)


def set_exploration(actor: Actor, std: float) -> None:
    """Reset the action noise of the actor to `std` (the bias of its log-variance head):
    the exploration that actor-critic training starts from."""
    with torch.no_grad():
        actor.logvar.weight.zero_()
        actor.logvar.bias.fill_(2 * math.log(std))


def active_steps(mask: torch.Tensor) -> torch.Tensor:
    """Flat indices, step-major as `flatten_steps`, of the (t, b) set in a (B, T) mask."""
    return torch.nonzero(mask.T.reshape(-1))[:, 0]


def replay_actor(actor: Actor, batch: Batch, ep: Episode, steps: int,
                 idx: torch.Tensor | None = None):
    """One-step (truncated) BPTT: the actor re-run on the recorded states of the first
    `steps` steps (only the flat indices `idx` of them when given), all at once. The
    recorded M_t and (h, c) are detached: no gradient reaches earlier steps. Returns
    mean, log-variance, termination logits (T*B or len(idx), ...)."""
    def pick(x):
        return x if idx is None else x[idx]

    mu, logvar, stop, _ = actor(pick(repeat_steps(batch.image, steps)),
                                pick(repeat_steps(batch.aux, steps)),
                                pick(flatten_steps(ep.masks[:steps])),
                                (pick(flatten_steps(ep.h[:steps])),
                                 pick(flatten_steps(ep.c[:steps]))))
    return mu, logvar, stop


def episode_steps(remaining: torch.Tensor, cap: int) -> int:
    """Steps to unroll so that every episode of the batch runs to its end: its
    `remaining` predictions and the step that should say stop, at most `cap` (the
    paper's maximum number of steps)."""
    return max(1, min(int(remaining.max()) + 1, cap))


def fit_actor(run, phase: str, data: Prepared, actor: Actor, decoder: MaskDecoder, cfg,
              mode: str, steps: int, width: int, critic: Critic | None = None,
              window: int | None = None) -> Critic | None:
    """Train the actor for `steps` iterations in `mode` ("bl", "bl-trunc" or "ac"); the
    decoder stays frozen. Every episode runs to its end (up to `cfg.max_steps` steps),
    or for `window` steps when given (the one-step actor initialisation). In "ac" the
    critic (new, with `width` channels, unless a warmed-up one is given) is trained
    alongside and returned; during the first `cfg.warmup` iterations only the critic
    learns."""
    decoder.requires_grad_(False)   # fixed decoder (Sec. 5.3): only the encoder learns
    decoder.eval()
    opt = optim.adam(actor.parameters(), cfg.lr)
    objects = {"actor": actor, "opt": opt}
    if mode == "ac":
        critic = critic if critic is not None else engine.place(Critic(data.hw, width), run.device)
        copt = optim.adam(critic.parameters(), cfg.critic_lr)
        objects.update(critic=critic, critic_opt=copt)
    elif mode not in ("bl", "bl-trunc"):
        raise ValueError(f"unknown training mode {mode!r}")

    def unroll(batch: Batch) -> int:
        return window if window is not None else episode_steps(batch.remaining, cfg.max_steps)

    def supervised(batch: Batch) -> dict:
        b, t = batch.image.shape[0], unroll(batch)
        if mode == "bl":   # full BPTT: gradients through h_t and the soft M_t of every step
            ep = rollout(actor, decoder, batch.image, batch.aux, batch.pyramid, batch.mask0, t)
            logits, stop = ep.logits[:, :, 0].transpose(0, 1), ep.stop.T
        else:              # one-step BPTT: replay the recorded (detached) states
            with torch.no_grad():
                ep = rollout(actor, decoder, batch.image, batch.aux, batch.pyramid,
                             batch.mask0, t)
            mu, _, stop = replay_actor(actor, batch, ep, t)
            logits = decoder(mu, repeat_steps(batch.pyramid, t)).view(t, b, *data.hw)
            logits = logits.transpose(0, 1)
            stop = stop.view(t, b).T
        mask_loss = matched_bce(logits, batch, cfg.pos_weight)
        stop_loss = termination_loss(stop, batch.remaining)
        loss = mask_loss + stop_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"mask_bce": mask_loss.item(), "stop_bce": stop_loss.item(), "unroll": t}

    def actor_critic(batch: Batch, step: int, g: torch.Generator) -> dict:
        b, t = batch.image.shape[0], unroll(batch)
        pred_steps, term_steps = step_masks(batch.remaining, t)
        sel = active_steps(pred_steps)   # the (t, b) that predict an instance, step-major
        n = max(sel.numel(), 1)
        cut = batch.remaining > t   # episodes longer than the unroll (only past the cap)
        with torch.no_grad():
            # episode execution with exploration noise, to the end of every episode (one
            # more step only where the cap cuts an episode, for the critic to close it)
            ep = rollout(actor, decoder, batch.image, batch.aux, batch.pyramid, batch.mask0,
                         t + int(cut.any()), g=g)
            probs = torch.sigmoid(ep.logits)
            r = rewards(probs[:t, :, 0].transpose(0, 1), batch.targets, cfg.reward)
            boot = None
            if cut.any():
                boot = critic(batch.image, batch.aux, ep.masks[t], probs[t]).double() * cut
            target = discounted_returns(r, pred_steps, cfg.gamma, boot).float().T.reshape(-1)
            target = target[sel]
        image, aux = repeat_steps(batch.image, t)[sel], repeat_steps(batch.aux, t)[sel]
        masks = flatten_steps(ep.masks[:t])[sel]
        # policy evaluation, Eq. 7
        q = critic(image, aux, masks, flatten_steps(probs[:t])[sel])
        critic_loss = ((q - target) ** 2).sum() / n
        copt.zero_grad(set_to_none=True)
        critic_loss.backward()
        copt.step()
        mean_g = target.sum() / n
        var_g = ((target - mean_g) ** 2).sum() / n
        out = {"critic_loss": critic_loss.item(), "return": mean_g.item(), "unroll": t,
               "critic_ev": 1 - critic_loss.item() / max(var_g.item(), 1e-8),
               "reward": (r * pred_steps).sum().item() / max(pred_steps.sum().item(), 1)}
        if step < cfg.warmup or (step - cfg.warmup) % cfg.actor_every:
            return out   # critic warm-up, or a critic-only iteration: the actor waits
        # policy iteration: ascend Q(s_t, D(a_t)) with a_t re-sampled from the current
        # actor on the recorded states, plus the KL term that keeps exploring
        # (replayed on the steps that predict or should stop; Q on the predicting ones)
        critic.requires_grad_(False)
        seen = torch.nonzero(term_steps.T.reshape(-1))[:, 0]
        mu, logvar, stop = replay_actor(actor, batch, ep, t, seen)
        pred = pred_steps.T.reshape(-1)[seen]
        mu, logvar = mu[pred], logvar[pred]
        a = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g).to(mu.device)
        m = torch.sigmoid(decoder(a, [p[sel] for p in repeat_steps(batch.pyramid, t)]))
        q_pi = critic(image, aux, masks, m).sum() / n
        kl = kl_normal(mu, logvar).sum() / n
        stop = stop.new_zeros(t * b).index_copy(0, seen, stop.reshape(-1))
        stop_loss = termination_loss(stop.view(t, b).T, batch.remaining)
        loss = -q_pi + cfg.kl_weight * kl + stop_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        critic.requires_grad_(True)
        out.update(q=q_pi.item(), kl=kl.item(), stop_bce=stop_loss.item())
        return out

    def step_fn(step: int) -> dict:
        actor.train()
        g = engine.generator(run.seed, phase, step)
        batch = sample_batch(data, cfg.batch_size, cfg.prefill, g)
        return actor_critic(batch, step, g) if mode == "ac" else supervised(batch)

    engine.fit(run, phase, objects, steps, step_fn)
    return critic
