"""ACIS data, pre-training and episodes (Araslanov et al., CVPR 2019, Sec. 4, 5.2).

- `prepare`: a staged split at the working resolution (images, instance stacks, counts).
- `fit_preproc`: the standalone pre-processing network (foreground + 8 angle bins).
- `fit_cvae`: cVAE pre-training on one random ground-truth instance per image (BCE
  reconstruction + KL to N(0, I)); only the decoder is kept, frozen from then on.
- `sample_batch`, `rollout`: episodes of the environment of Sec. 4 — state (I, M_t),
  latent action a_t, transition Eq. 3 — for the actor training of `methods.acis.actor`.

Episodes start either from the empty mask or, with probability `prefill`, from a state
whose M_0 already holds a random subset of the ground-truth instances; the episode's
targets are the instances not yet in M_0, and training unrolls it to its end (all of
them, then the step that should stop; `methods.acis.actor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlcv import engine, optim
from rlcv.models.acis import (
    AUX,
    Actor,
    MaskDecoder,
    MaskEncoder,
    angle_targets,
    aux_channels,
    kl_normal,
    preproc_loss,
    state_pyramid,
    transition,
)
from rlcv.models.segnet import MaskNet


@dataclass
class Prepared:
    """A staged split at the working resolution."""

    image: torch.Tensor
    """(n, 3, h, w) float, centred on 0."""
    inst: torch.Tensor
    """(n, K, h, w) bool ground-truth instances, non-empty ones first."""
    count: torch.Tensor
    """(n,) instances per image (non-empty at the working resolution)."""
    aux: torch.Tensor | None = None
    """(n, 9, h, w) pre-processing channels, once computed."""

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])


def prepare(split: dict, downsample: int, chunk: int = 64) -> Prepared:
    """Images and instance stacks of a staged split at 1/`downsample` resolution (each
    working pixel takes the majority label of the pixels it covers)."""
    image = F.avg_pool2d(split["image"].float() / 255.0, downsample) - 0.5
    label = split["label"].long()
    k = int(label.max())
    parts = []
    for i in range(0, label.shape[0], chunk):
        onehot = F.one_hot(label[i:i + chunk], k + 1).permute(0, 3, 1, 2).float()
        work = F.avg_pool2d(onehot, downsample).argmax(1)
        ids = torch.arange(1, k + 1, device=work.device)
        parts.append(work[:, None] == ids[None, :, None, None])
    inst = torch.cat(parts)
    valid = inst.flatten(2).any(2)
    order = torch.argsort((~valid).int(), dim=1, stable=True)
    inst = torch.gather(inst, 1, order[:, :, None, None].expand_as(inst))
    count = valid.sum(1)
    kmax = max(int(count.max()), 1)
    return Prepared(image, inst[:, :kmax].contiguous(), count)


def compute_aux(preproc: MaskNet, data: Prepared, chunk: int = 128) -> torch.Tensor:
    """The pre-processing network's aux channels for every image (no gradient)."""
    preproc.eval()
    with torch.inference_mode():
        out = [aux_channels(preproc(data.image[i:i + chunk]))
               for i in range(0, data.image.shape[0], chunk)]
    return torch.cat(out).clone()


def fit_preproc(run, phase: str, data: Prepared, width: int, steps: int, batch: int,
                lr: float) -> MaskNet:
    """Train the standalone pre-processing network (Sec. 5.2) and return it."""
    net = engine.place(MaskNet(width, in_ch=3, out_ch=AUX), run.device)
    opt = optim.adam(net.parameters(), lr)
    fg_all, bins_all = angle_targets(data.inst)

    def step_fn(step: int) -> dict:
        net.train()
        g = engine.generator(run.seed, phase, step)
        idx = torch.randint(data.image.shape[0], (batch,), generator=g)
        loss = preproc_loss(net(data.image[idx]), fg_all[idx], bins_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"preproc_loss": loss.item()}

    engine.fit(run, phase, {"net": net, "opt": opt}, steps, step_fn)
    return net


def random_instance(data: Prepared, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One uniformly chosen non-empty instance mask (B, 1, h, w) per image of `idx`."""
    count = data.count[idx].clamp(min=1)
    pick = (torch.rand(idx.shape[0], generator=g).to(count.device) * count).long()
    return data.inst[idx, pick][:, None].float()


def fit_cvae(run, phase: str, data: Prepared, latent: int, width: int, pyramid: bool,
             steps: int, batch: int, lr: float, kl_weight: float,
             pos_weight: float) -> MaskDecoder:
    """cVAE pre-training (Sec. 5.2): BCE reconstruction (object pixels weighted by
    `pos_weight`) + KL to N(0, I); returns the decoder."""
    enc = engine.place(MaskEncoder(data.hw, latent, width), run.device)
    dec = engine.place(MaskDecoder(data.hw, latent, width, pyramid), run.device)
    opt = optim.adam([*enc.parameters(), *dec.parameters()], lr)
    has = data.count > 0
    pool = torch.nonzero(has)[:, 0]

    def step_fn(step: int) -> dict:
        g = engine.generator(run.seed, phase, step)
        idx = pool[torch.randint(pool.shape[0], (batch,), generator=g)]
        image, aux = data.image[idx], data.aux[idx]
        mask = random_instance(data, idx, g)
        mu, logvar = enc(image, mask)
        z = mu + torch.randn(mu.shape, generator=g).to(mu.device) * (0.5 * logvar).exp()
        logits = dec(z, state_pyramid(image, aux))
        # per-image sums, so the KL weighs against the whole mask, not one pixel
        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none",
                                                 pos_weight=mask.new_tensor(pos_weight))
        bce = bce.sum((1, 2, 3))
        kl = kl_normal(mu, logvar)
        loss = (bce + kl_weight * kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            hard = logits > 0
            inter = (hard & (mask > 0)).sum((1, 2, 3)).float()
            union = (hard | (mask > 0)).sum((1, 2, 3)).float().clamp(min=1)
        return {"cvae_bce": bce.mean().item(), "cvae_kl": kl.mean().item(),
                "cvae_iou": (inter / union).mean().item()}

    engine.fit(run, phase, {"enc": enc, "dec": dec, "opt": opt}, steps, step_fn)
    return dec


# ----------------------------------------------------------------------------- episodes


@dataclass
class Batch:
    """A batch of episodes: the image side of the state, M_0 and the targets."""

    image: torch.Tensor
    aux: torch.Tensor
    pyramid: list
    mask0: torch.Tensor
    """(B, 1, h, w) M_0: empty, or a random subset of the instances (prefill)."""
    targets: torch.Tensor
    """(B, K, h, w) bool: the instances not in M_0 (others are empty slots)."""
    remaining: torch.Tensor
    """(B,) number of target instances."""


def sample_batch(data: Prepared, batch: int, prefill: float, g: torch.Generator) -> Batch:
    """Draw episodes: images uniformly; with probability `prefill` k ~ U{0..N} random
    instances are placed in M_0 (they are neither targets nor predictions)."""
    idx = torch.randint(data.image.shape[0], (batch,), generator=g)
    inst, count = data.inst[idx], data.count[idx]
    kslots, dev = inst.shape[1], count.device
    use = (torch.rand(batch, generator=g) < prefill).to(dev)
    drawn = torch.rand(batch, generator=g).to(dev)
    k = torch.where(use, (drawn * (count + 1)).long().clamp(max=count), torch.zeros_like(count))
    valid = torch.arange(kslots, device=dev)[None, :] < count[:, None]
    keys = torch.rand(batch, kslots, generator=g).to(dev) + (~valid) * 2.0
    rank = torch.argsort(torch.argsort(keys, 1), 1)
    pre = rank < k[:, None]
    mask0 = (inst & pre[:, :, None, None]).any(1, keepdim=True).float()
    image, aux = data.image[idx], data.aux[idx]
    return Batch(image, aux, state_pyramid(image, aux), mask0,
                 inst & ~pre[:, :, None, None], count - k)


@dataclass
class Episode:
    """What a rollout records per step t (leading dim T, then the batch)."""

    masks: torch.Tensor
    """(T, B, 1, h, w) M_t, the accumulated mask the actor saw."""
    h: torch.Tensor
    """(T, B, H) LSTM hidden state entering step t."""
    c: torch.Tensor
    """(T, B, H) LSTM cell state entering step t."""
    logits: torch.Tensor
    """(T, B, 1, h, w) decoded mask logits D(a_t)."""
    stop: torch.Tensor
    """(T, B) termination logits ("continue" > 0)."""


def rollout(actor: Actor, decoder: MaskDecoder, image, aux, pyramid, mask0, steps: int,
            g: torch.Generator | None = None, block: str | None = None) -> Episode:
    """Run the actor for `steps` steps from M_0 (Eq. 3 transitions). Actions are sampled
    by reparametrisation when `g` is given, else the mean is taken (inference).
    `block` = "lstm" or "mask" feeds zeros for that state at every step (Table 2).
    Gradients flow through the whole unroll unless called under no_grad (BL's BPTT)."""
    b = image.shape[0]
    state = actor.initial_state(b)
    mask = mask0
    rec = {k: [] for k in ("masks", "h", "c", "logits", "stop")}
    for _ in range(steps):
        if block == "lstm":
            state = actor.initial_state(b)
        seen = torch.zeros_like(mask) if block == "mask" else mask
        rec["masks"].append(seen)
        rec["h"].append(state[0])
        rec["c"].append(state[1])
        mu, logvar, stop, state = actor(image, aux, seen, state)
        if g is not None:   # drawn on the CPU generator: the same actions on every device
            a = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g).to(mu.device)
        else:
            a = mu
        logits = decoder(a, pyramid)
        rec["logits"].append(logits)
        rec["stop"].append(stop)
        mask = transition(mask, torch.sigmoid(logits))
    return Episode(**{k: torch.stack(v) for k, v in rec.items()})


def flatten_steps(x: torch.Tensor) -> torch.Tensor:
    """(T, B, ...) per-step records -> (T*B, ...), step-major."""
    return x.reshape(-1, *x.shape[2:])


def repeat_steps(x, t: int):
    """A per-episode tensor (B, ...) or list of them, repeated for T steps -> (T*B, ...),
    in the order of `flatten_steps`."""
    if isinstance(x, list):
        return [repeat_steps(v, t) for v in x]
    return x[None].expand(t, *x.shape).reshape(-1, *x.shape[1:])
