"""ACIS: Actor-Critic Instance Segmentation (Araslanov, Rothkopf & Roth, CVPR 2019).

Rows of Tables 1-4 and Fig. 3 (Sections 3-6, Eqs. 1-7, Algorithm 1):

- `acis-pretrain-cvppp` / `acis-pretrain-kitti` (no table): the shared pre-trained parts —
  the pre-processing network (foreground + 8 angle bins, Sec. 5.2), the cVAE whose
  decoder, conditioned on the State Pyramid, becomes the fixed action decoder, a
  first-step initialisation of the actor (the authors' "init" run that both their
  BL-Trunc and AC runs continue from) and the critic's warm-up on that init (identical
  for every AC row that starts from it, so run once).
- BL (max-matching BCE, full BPTT through every step of the episode), BL-Trunc (one-step
  BPTT), AC-Dice (Algorithm 1 with the Dice potential of Eqs. 4-5, critic on Eq. 7's
  returns of whole episodes, gamma 0.9, KL term), AC-Dice-NoKL (no KL term in the actor's
  loss), AC-Dice-NoSP (decoder without the State Pyramid: its own cVAE, init and critic
  warm-up) — Table 1, and Table 2 /
  Fig. 3 from the same checkpoints.
- AC-Dice trained on all CVPPP training plants and scored on the test plants (Table 3).
  It starts from `acis-pretrain-cvppp`, whose parts were trained on the ablation split's
  training plants (a subset of all of them): a shortcut to the paper's separate run.
- KITTI BL-Trunc and AC-IoU (IoU potential, 64-d actions), val and test (Table 4).

Data, pre-training and episodes: `methods.acis.train`; actor / critic training:
`methods.acis.actor`; inference and scores: `methods.acis.evaluate`; figures:
`methods.acis.plots`; networks: `rlcv.models.acis`; potential, rewards and returns:
`rlcv.rl.potential`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from methods.acis.actor import fit_actor, set_exploration
from methods.acis.evaluate import evaluate_split
from methods.acis.plots import figures  # noqa: F401  (report hook of this family)
from methods.acis.train import compute_aux, fit_cvae, fit_preproc, prepare
from rlcv import engine
from rlcv.models.acis import Actor, Critic


@dataclass
class AcisConfig:
    """Settings of the ACIS rows. Each row reads the fields of the phases it runs; the
    architecture fields (downsample, latent, width, hidden, preproc_width) are read by the
    pretrain rows, and the rows that start from one take them from its checkpoint."""

    downsample: int = 2
    """Working resolution = staged size / downsample (masks are upsampled for scoring)."""
    latent: int = 16
    """Dimension l of the latent action space (16 on CVPPP, 64 on KITTI)."""
    width: int = 16
    """Channels of the first stage of the cVAE, actor encoder and critic."""
    hidden: int = 128
    """Size of the actor's LSTM state."""
    preproc_width: int = 8
    """Channels of the first stage of the pre-processing network."""
    preproc_steps: int = 200
    """Optimisation steps of the pre-processing network."""
    cvae_steps: int = 400
    """Optimisation steps of the cVAE pre-training."""
    cvae_kl: float = 1.0
    """Weight of the KL term in the cVAE loss (BCE summed over pixels)."""
    pos_weight: float = 5.0
    """Weight of object pixels in the BCE mask losses (cVAE, BL, BL-Trunc)."""
    init_steps: int = 100
    """Steps of the first-step (one-step window, BCE) actor initialisation."""
    init_lr: float = 1e-3
    """Adam learning rate of the actor initialisation."""
    pretrain_batch: int = 32
    """Images per pre-training step."""
    pretrain_lr: float = 2e-3
    """Adam learning rate of the pre-training phases."""
    mode: str = "ac"
    """Actor training: "bl" (full BPTT), "bl-trunc" (one-step BPTT) or "ac" (Algorithm 1)."""
    steps: int = 200
    """Iterations of the row's actor training phase."""
    batch_size: int = 8
    """Episodes per iteration."""
    prefill: float = 0.75
    """Probability that an episode starts with a random subset of instances in M_0."""
    lr: float = 5e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic."""
    warmup: int = 0
    """Further critic-only iterations at the start of the row's AC training."""
    actor_every: int = 1
    """After the warm-up, the actor is updated on every actor_every-th iteration."""
    critic_warmup: int = 300
    """Critic warm-up iterations on the init actor (pretrain rows and NoSP)."""
    explore_std: float = 0.5
    """Std of the actor's action noise from the critic warm-up on (then learned)."""
    gamma: float = 0.9
    """Discount factor of Eq. 7."""
    kl_weight: float = 1e-4
    """Weight beta_act of the KL term in the actor's loss (0 = AC-Dice-NoKL). The paper
    gives no value; 1e-4 is the authors' code's."""
    reward: str = "dice"
    """F of the potential Eq. 4: "dice" (CVPPP) or "iou" (KITTI)."""
    state_pyramid: bool = True
    """Condition the decoder on the State Pyramid (False = AC-Dice-NoSP)."""
    max_steps: int = 21
    """The most steps of an episode: training episodes are unrolled to their end but
    at most this far, and inference stops here without termination (21 on CVPPP)."""



def _arch(cfg: AcisConfig, hw, pyramid: bool) -> dict:
    """The architecture a checkpoint's networks are rebuilt from."""
    return {"hw": list(hw), "downsample": cfg.downsample, "latent": cfg.latent,
            "width": cfg.width, "hidden": cfg.hidden, "preproc_width": cfg.preproc_width,
            "pyramid": pyramid}


def _pretrain(cfg: AcisConfig, run, train, arch: dict, preproc=None, suffix: str = ""):
    """Pre-processing net (unless given), cVAE decoder, first-step actor init and the
    critic's warm-up on the init actor (Sec. 5.3: episode execution and critic updates
    without actor updates). Every AC row starting from this init would run exactly this
    warm-up, so it is run once here and shared."""
    if preproc is None:
        preproc = fit_preproc(run, "preproc", train, arch["preproc_width"], cfg.preproc_steps,
                              cfg.pretrain_batch, cfg.pretrain_lr)
    train.aux = compute_aux(preproc, train)
    decoder = fit_cvae(run, "cvae" + suffix, train, arch["latent"], arch["width"],
                       arch["pyramid"], cfg.cvae_steps, cfg.pretrain_batch, cfg.pretrain_lr,
                       cfg.cvae_kl, cfg.pos_weight)
    actor = engine.place(Actor(train.hw, arch["latent"], arch["width"], arch["hidden"]), run.device)
    fit_actor(run, "init" + suffix, train, actor, decoder, replace(cfg, lr=cfg.init_lr),
              "bl-trunc", cfg.init_steps, arch["width"], window=1)
    set_exploration(actor, cfg.explore_std)
    warm = replace(cfg, warmup=cfg.critic_warmup)
    critic = fit_actor(run, "warmup" + suffix, train, actor, decoder, warm, "ac",
                       cfg.critic_warmup, arch["width"])
    return preproc, decoder, actor, critic


def _save(run, cfg, arch: dict, preproc, decoder, actor, critic) -> Path:
    return engine.save_checkpoint(run, cfg, arch=arch, preproc=preproc.state_dict(),
                                  decoder=decoder.state_dict(), actor=actor.state_dict(),
                                  critic=critic.state_dict())


def train_pretrain(cfg: AcisConfig, data, run) -> Path:
    """The shared pre-trained parts: pre-processing net, cVAE decoder, actor init, and the
    critic warmed up on that init."""
    train = prepare(data.load("train"), cfg.downsample)
    arch = _arch(cfg, train.hw, cfg.state_pyramid)
    return _save(run, cfg, arch, *_pretrain(cfg, run, train, arch))


def _load_pretrained(run, cfg: AcisConfig, data):
    """The required pretrain row's parts, architecture and the prepared train split;
    NoSP (`state_pyramid: false`) re-trains its own decoder, init and critic warm-up."""
    from methods.acis.evaluate import load_models

    state = engine.load_checkpoint(next(iter(run.inputs.values())))
    arch = dict(state["arch"])
    train = prepare(data.load("train"), arch["downsample"])
    preproc, decoder, actor = load_models(state, run.device)
    if not cfg.state_pyramid:
        arch["pyramid"] = False
        return (*_pretrain(cfg, run, train, arch, preproc, "-nosp"), arch, train)
    critic = engine.place(Critic(train.hw, arch["width"]), run.device)
    critic.load_state_dict(state["critic"])
    train.aux = compute_aux(preproc, train)
    return preproc, decoder, actor, critic, arch, train


def train_actor(cfg: AcisConfig, data, run) -> Path:
    """BL / BL-Trunc / AC rows: continue from the pre-trained row's parts (same seed)."""
    preproc, decoder, actor, critic, arch, train = _load_pretrained(run, cfg, data)
    critic = fit_actor(run, "train", train, actor, decoder, cfg, cfg.mode, cfg.steps,
                       arch["width"], critic) or critic
    return _save(run, cfg, arch, preproc, decoder, actor, critic)


def _evaluate(ckpt: str, data, split: str, tables: tuple[str, ...]) -> dict:
    state = engine.load_checkpoint(ckpt)
    return evaluate_split(state, data.load(split), tables)


def evaluate_pretrain(ckpt: str, data) -> dict:
    """Diagnostics of the pre-trained parts on val (reported in no table): the initialised
    actor's SBD and |DiC| (CVPPP) or coverage and FP/FN rates (KITTI)."""
    kitti = "num_instances" in data.load("val")
    return _evaluate(ckpt, data, "val", ("t4",) if kitti else ("t1",))


def evaluate_table1(ckpt: str, data) -> dict:
    """Table 1 on CVPPP val: sbd, abs_dic."""
    return _evaluate(ckpt, data, "val", ("t1",))


def evaluate_table12(ckpt: str, data) -> dict:
    """Tables 1 and 2 on CVPPP val."""
    return _evaluate(ckpt, data, "val", ("t1", "t2"))


def evaluate_table12_fig3(ckpt: str, data) -> dict:
    """Tables 1 and 2 and Fig. 3 (dice_early, dice_late) on CVPPP val."""
    return _evaluate(ckpt, data, "val", ("t1", "t2", "fig3"))


def evaluate_test(ckpt: str, data) -> dict:
    """Table 3 on the CVPPP test plants: sbd, abs_dic."""
    return _evaluate(ckpt, data, "test", ("t1",))


def evaluate_kitti(ckpt: str, data) -> dict:
    """Table 4 on KITTI val and test: mwcov, mucov, avgfp, avgfn with _val/_test."""
    out = {}
    for split in ("val", "test"):
        scores = _evaluate(ckpt, data, split, ("t4",))
        out.update({f"{k}_{split}": v for k, v in scores.items()})
    return out
