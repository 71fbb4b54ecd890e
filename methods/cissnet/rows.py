"""CiSS-Net: context-reinforced semantic segmentation (Zhou et al., CVPR 2019), the rows of
Tables 1-8 on ADE20K, PASCAL-Context and Cityscapes.

- **Baseline** (Table 4; beside Tables 6-8): the segmenter whose first blocks give the
  domain features X_I, trained with cross-entropy; its domain network is then frozen and
  shared by every other row (Section 2.2 uses a pre-trained network for X_I). On the
  paper profile it is PSPNet-50/101 from ImageNet weights, whose dilated trunk is X_I
  (Section 3.2); on the CPU profiles a small CNN (`rlcv.models.cissnet.DomainNet`) and
  the Base Net (`methods.cissnet.paper` selects them by the `backbone` setting).
- **CiSS-Net** (Table 4; Table 1 at steps 0/2/4/6; Table 3 at λ2 = 0.05; Table 5 "Ours";
  Tables 6 and 8): S-Net = Base Net + Bias Net (Eq. 1) and C-Net trained together by
  advantage actor-critic with k-step returns (Eqs. 2-7, `methods.cissnet.rl`), reported
  at iteration t = 2 (Section 3.5).
- **Ablations** (one row per dataset, `ciss-ablations-<dataset>`): the complete-p-map
  model (B = 1 everywhere, no C-Net, no RL: Table 4 Baseline+p-map, Table 5 w/o RL), a
  CiSS-Net per λ2 ∈ {0.001, 0.005, 0.01, 0.02} at γ = 0.9 (Table 3; λ2 = 0.001 is also
  Table 4's Baseline+gated(p-map)) and per γ ∈ {0.1, 0.3} at λ2 = 0.02 (Table 2, run at
  λ2 = 0.02 as the paper's numbers show; γ = 0.9 is the λ2 = 0.02 model). Each model is
  reported under its table labels (`"miou@λ2=0.01"`); one process trains them all, as
  each row costs a few seconds of start-up.

Every context row starts its Base Net from the baseline's and trains it with the Bias Net
and C-Net (`train_base: true`, at its own learning rate `base_lr`, as Section 3.2 trains
Base Net, Bias Net and C-Net at two rates), so Step 0 is the retrained Base Net, not the
Baseline row (a PSPNet baseline has no Base Net: its context rows start the Base Net from
scratch). The capacity controls of Tables 1 and 4 are in `methods.cissnet.controls`.
Batches, augmentation and per-batch domain features (`crop_size` > 0) are in
`methods.cissnet.paper`; optimizers and the "poly" schedule come from `rlcv.optim`.
At evaluation B^t is sampled from the policy map as in Eq. 2 (`inference: sample`, one
fixed generator, so scores repeat exactly). Scores come from `rlcv.metrics` through
`methods.cissnet.data.Task`, at the ground truth's resolution. `figures` draws
`results/plots/ciss-net-context.png`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from methods.cissnet import paper
from methods.cissnet.baseline import BaselineConfig, Schedule, fit_baseline, load_segmenter, predict
from methods.cissnet.data import Task, features
from methods.cissnet.rl import rollout, train_step
from rlcv import engine
from rlcv.errors import ParamsError
from rlcv.models.cissnet import ContextNet, SegmentNet

CONTEXTS = ("learned", "pmap", "empty")
"""What a context row feeds the Bias Net: the C-Net's choice, the complete p-map, nothing."""


@dataclass
class CissConfig(Schedule):
    """Settings of a CiSS-Net row (and of the complete-p-map row, `context: pmap`)."""

    context: str = "learned"
    """'learned': context chosen by the C-Net, trained by RL; 'pmap': the complete p-map;
    'empty': an all-'uncertain' context map (the capacity control: Bias Net, no context)."""
    steps: int = 200
    """Optimisation steps (one rollout of `rollout` iterations on a batch each)."""
    batch_size: int = 8
    """Images per step."""
    lr: float = 2e-3
    """Learning rate of the Bias Net, the encoders and the C-Net."""
    base_lr: float = 2e-3
    """Learning rate of the Base Net when `train_base` (Section 3.2: its own rate)."""
    width: int = 32
    """Channels of the C-Net and Bias Net trunks (four 3x3 layers each)."""
    embed: int = 8
    """Embedding size of a class in the pyramid encoder F_e."""
    bins: tuple[int, ...] = (1, 2, 3, 6)
    """Grid sizes of the pyramid pooling levels."""
    rollout: int = 2
    """Iterations T of a training rollout (K^0..K^{T-1}, Y^1..Y^T); 2 = the t reported."""
    k_step: int = 2
    """k of the k-step returns and advantages (Eqs. 5-6)."""
    gamma: float = 0.9
    """Discount factor γ (Eq. 3)."""
    lambda1: float = 1.0
    """Weight λ1 of the segmentation loss Loss_s (Eq. 7)."""
    lambda2: float = 0.05
    """Weight λ2 of the entropy regularisation Loss_e (Eq. 7)."""
    beta1: float = 0.4
    """Reward β1 for correct context (Eq. 4)."""
    beta2: float = 0.2
    """Reward β2 for 'uncertain' (Eq. 4)."""
    window: int = 5
    """C_h = C_w: side of the reward window, in feature cells (odd)."""
    train_base: bool = True
    """Also train the Base Net, as Section 3.2 does (False: it stays the baseline's)."""
    eval_steps: int = 2
    """Iteration t whose p-map is the row's result (t = 2 in the paper, Section 3.5)."""
    inference: str = "sample"
    """B at evaluation: 'sample' B ~ Q as in Eq. 2 (a fixed generator), or 'greedy' argmax Q."""
    table_steps: tuple[int, ...] = (0, 2, 4, 6)
    """Iterations also reported as Table 1's 'Step t' rows (main row only)."""
    eval_every: int = 100
    """Steps between evaluations on val (logged to history.csv); 0 = never."""
    base_width: int = 0
    """Channels of the Base Net's first layer (0: C, as X_I; Section 3.2: 512)."""

    def __post_init__(self):
        self.check()
        if self.context not in CONTEXTS:
            raise ParamsError(f"context: expected one of {', '.join(CONTEXTS)}, "
                              f"got {self.context!r}")
        if self.inference not in ("sample", "greedy"):
            raise ParamsError(f"inference: expected 'sample' or 'greedy', got {self.inference!r}")
        if self.window < 1 or self.window % 2 == 0:
            raise ParamsError(f"window: expected an odd number of cells, got {self.window}")


@dataclass
class AblationConfig(CissConfig):
    """The ablations and sweeps of one dataset, each model trained with the CiSS-Net
    settings above except: one per listed λ2 (at `gamma`), one per listed γ (at `lambda2`),
    and the complete-p-map model."""

    lambda2_values: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02)
    """λ2 values of Table 3 trained here (the main row has λ2 = 0.05)."""
    gamma_values: tuple[float, ...] = (0.1, 0.3, 0.9)
    """γ values of Table 2 (run at `lambda2`, 0.02 as in the paper)."""
    gated_lambda2: float = 0.001
    """λ2 of the model also reported as Table 4's Baseline+gated(p-map)."""
    pmap: bool = True
    """Also train the complete-p-map model (Table 4 Baseline+p-map, Table 5 w/o RL)."""



def train_baseline(cfg: BaselineConfig, data, run) -> str:
    """Train the baseline segmenter with cross-entropy (the Baseline row;
    `methods.cissnet.baseline`)."""
    task = Task.of(data.manifest)
    domain, base = fit_baseline(cfg, data, run, "baseline")
    return engine.save_checkpoint(run, cfg, domain=domain.state_dict(), base=base.state_dict(),
                                  num_classes=task.num_classes)


def _build(cfg: CissConfig, channels: int, num_classes: int, device):
    snet = engine.place(SegmentNet(channels, num_classes, cfg.width, cfg.embed, tuple(cfg.bins),
                                   cfg.base_width, cfg.dropout), device)
    cnet = (engine.place(ContextNet(channels, num_classes, cfg.width, cfg.embed,
                                    tuple(cfg.bins)), device)
            if cfg.context == "learned" else None)
    return snet, cnet


def _fit_ciss(cfg: CissConfig, run, phase: str, task: Task, base_state: dict | None,
              source) -> dict:
    """Train one S-Net (+ C-Net) on the domain features of `source` (`methods.cissnet.
    paper`), the Base Net from the baseline's (`base_state`; None: from scratch); its state
    dicts."""
    snet, cnet = _build(cfg, source.channels, task.num_classes, source.device)
    if base_state is not None:
        snet.base.load_state_dict(base_state)
    snet.base.requires_grad_(cfg.train_base)
    params = [p for n, p in snet.named_parameters() if not n.startswith("base.")]
    objects = {"snet": snet}
    if cnet is not None:
        params += list(cnet.parameters())
        objects["cnet"] = cnet
    groups = [{"params": params, "lr": cfg.lr}]
    if cfg.train_base:
        groups.append({"params": list(snet.base.parameters()), "lr": cfg.base_lr})
    opt, sched = cfg.build_optimizer(groups, cfg.steps)
    objects.update(opt=opt, **({"sched": sched} if sched else {}))

    def step_fn(step: int) -> dict:
        snet.train()
        g = engine.generator(run.seed, phase, step)
        x, target = source.batch(g, cfg.batch_size, (run.seed, phase), step, cfg.steps)
        loss, stats = train_step(snet, cnet, x, target, cfg, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return stats

    def eval_fn() -> dict:
        snet.eval()   # dropout off (the next step turns it back on)
        pred = chunked_predictions(snet, cnet, cfg, source.eval_chunks(), cfg.eval_steps, task)
        return task.score(pred[-1], source.val, main_only=True)

    engine.fit(run, phase, objects, cfg.steps, step_fn, eval_fn, cfg.eval_every)
    return {"snet": snet.state_dict(), **({"cnet": cnet.state_dict()} if cnet else {})}


def _prepare(data, run, cfg: CissConfig):
    """(task, baseline checkpoint, feature source, domain network) of a context row."""
    task, val = Task.of(data.manifest), data.load("val")
    # the baseline row of the same dataset and seed
    path = next(p for n, p in run.inputs.items() if n.startswith("ciss-baseline-"))
    state = engine.load_checkpoint(path)
    domain = paper.load_domain(state["config"], state["domain"], run.device)
    if state["config"].get("backbone", "small") != "small" and not cfg.train_base:
        raise ParamsError("train_base: false needs a Base Net, and a PSPNet baseline has none "
                          "(its context rows train the Base Net from scratch)")
    return task, state, paper.feature_source(domain, data, task, val, cfg), domain


def base_state(baseline: dict) -> dict | None:
    """The Base Net a context row starts from: the small baseline's, none for PSPNet."""
    return baseline["base"] if baseline["config"].get("backbone", "small") == "small" else None


def train_ciss(cfg: CissConfig, data, run) -> str:
    """Train CiSS-Net (context: learned), the complete-p-map row (pmap) or the capacity
    control (empty)."""
    task, base, source, domain = _prepare(data, run, cfg)
    nets = _fit_ciss(cfg, run, cfg.context, task, base_state(base), source)
    return engine.save_checkpoint(run, cfg, domain=domain.state_dict(),
                                  domain_config=base["config"], num_classes=task.num_classes,
                                  **nets)


def ablation_variants(cfg: AblationConfig) -> list[tuple[CissConfig, list[str]]]:
    """The (config, table labels) of every model an ablation row trains, in order."""
    base = CissConfig(**{f: getattr(cfg, f) for f in CissConfig.__dataclass_fields__})
    out: dict[tuple[float, float], list[str]] = {}
    for l2 in cfg.lambda2_values:
        out.setdefault((l2, cfg.gamma), []).append(f"λ2={l2:g}")
        if l2 == cfg.gated_lambda2:
            out[(l2, cfg.gamma)].append("Baseline+gated(p-map)")
    for gamma in cfg.gamma_values:
        out.setdefault((cfg.lambda2, gamma), []).append(f"γ={gamma:g}")
    variants = [(replace(base, context="pmap"), ["Baseline+p-map", "w/o RL"])] if cfg.pmap else []
    return variants + [(replace(base, context="learned", lambda2=l2, gamma=gamma), labels)
                       for (l2, gamma), labels in out.items()]


def train_ablations(cfg: AblationConfig, data, run) -> str:
    """Train every ablation model (Tables 2 and 3, Table 4's p-map and gated rows, Table 5)."""
    task, base, source, domain = _prepare(data, run, cfg)
    variants = []
    for vcfg, labels in ablation_variants(cfg):
        phase = ("pmap" if vcfg.context == "pmap" else
                 f"lambda2-{vcfg.lambda2:g}-gamma-{vcfg.gamma:g}")
        nets = _fit_ciss(vcfg, run, phase, task, base_state(base), source)
        variants.append({"context": vcfg.context, "lambda2": vcfg.lambda2, "gamma": vcfg.gamma,
                         "labels": labels, **nets})
    return engine.save_checkpoint(run, cfg, domain=domain.state_dict(),
                                  domain_config=base["config"], num_classes=task.num_classes,
                                  variants=variants)


def load_models(state: dict, variant: dict | None = None, device="cpu"):
    """(domain, S-Net, C-Net or None, config) of a CiSS-Net checkpoint or ablation variant,
    the networks on `device`."""
    c = {**state["config"], **{k: variant[k] for k in ("context", "lambda2", "gamma")
                               if variant is not None}}
    cfg = CissConfig(**{k: v for k, v in c.items() if k in CissConfig.__dataclass_fields__})
    domain = paper.load_domain(state["domain_config"], state["domain"], device)
    nets = variant if variant is not None else state
    snet, cnet = _build(cfg, domain.channels, state["num_classes"], device)
    snet.load_state_dict(nets["snet"])
    if cnet is not None:
        cnet.load_state_dict(nets["cnet"])
    return domain, snet.eval(), cnet.eval() if cnet is not None else None, cfg


def inference_chain(snet, cnet, cfg: CissConfig, x, steps: int, g=None):
    """(logits of Y^0..Y^steps, context maps K^0..K^{steps-1}) as evaluated: B^t drawn
    by `cfg.inference`, sampling from one fixed generator so that scores are repeatable
    (the complete p-map without a C-Net, an empty map for the capacity control); `g`
    continues that generator over the chunks of one evaluation."""
    mode = "empty" if cfg.context == "empty" else cfg.inference
    g = engine.generator("ciss-net", "eval") if g is None else g
    return rollout(snet, cnet, x, steps, mode, g)


def chunked_predictions(snet, cnet, cfg: CissConfig, chunks, steps: int, task: Task) -> list:
    """Class indices of the evaluated chain's p-maps Y^0..Y^steps at the ground truth's
    resolution (`Task.predict`), over the (X_I, val samples) `chunks` in order."""
    g, out = engine.generator("ciss-net", "eval"), None
    for x, split in chunks:
        logits, _ = inference_chain(snet, cnet, cfg, x, steps, g)
        preds = [task.predict(lg, split) for lg in logits]
        out = preds if out is None else [paper.join(a, b) for a, b in zip(out, preds, strict=True)]
    return out


def chain_predictions(snet, cnet, cfg: CissConfig, x_val, steps: int, task: Task,
                      val: dict) -> list:
    """`chunked_predictions` of the whole val set's features `x_val` in one chunk."""
    return chunked_predictions(snet, cnet, cfg, [(x_val, val)], steps, task)


def evaluate_baseline(ckpt: str, data) -> dict:
    """Baseline scores on val: the Base Net alone (Eq. 1 without context), or PSPNet."""
    task, val = Task.of(data.manifest), data.load("val")
    state = engine.load_checkpoint(ckpt)
    domain, head = load_segmenter(state["config"], state, state["num_classes"], data.device)
    return task.score(predict(domain, head, val, state["config"].get("eval_batch", 0), task),
                      val)


def chain_key(metric: str, pmap: bool = False) -> str:
    """metrics.json key, with `{t}` left to fill, of the main metric of the evaluated
    chain's Y^t, every t up to the last Table 1 step (the context figure's curve; not a
    table row); `pmap`: the complete-p-map model's, recorded by an ablation row."""
    return f"{metric}_{'pmap_' if pmap else ''}chain_step_{{t}}"


def _chain(task: Task, preds: list, val: dict) -> list[float]:
    """The main metric of each p-map of a chain."""
    return [task.score(p, val, main_only=True)[task.main_metric] for p in preds]


def evaluate_ciss(ckpt: str, data) -> dict:
    """Scores at t = eval_steps, plus `metric@Step t` for Table 1 and the main metric at
    every step t up to the last of them (`chain_key`; learned context only)."""
    task, val = Task.of(data.manifest), data.load("val")
    state = engine.load_checkpoint(ckpt)
    domain, snet, cnet, cfg = load_models(state, device=data.device)
    table = [t for t in cfg.table_steps if t != cfg.eval_steps] if cnet is not None else []
    preds = chunked_predictions(snet, cnet, cfg, paper.val_chunks(domain, val, cfg.eval_batch),
                                max((cfg.eval_steps, *table)), task)
    out = task.score(preds[cfg.eval_steps], val)
    if cnet is not None:
        m, chain = task.main_metric, _chain(task, preds, val)
        out.update({f"{m}@Step {t}": chain[t] for t in table})
        out.update({chain_key(m).format(t=t): v for t, v in enumerate(chain)})
    return out


def evaluate_ablations(ckpt: str, data) -> dict:
    """Every ablation model's scores at t = eval_steps, as `metric@<its table labels>`, and
    the complete-p-map model's main metric at every step (`chain_key(..., pmap=True)`)."""
    task, val = Task.of(data.manifest), data.load("val")
    state = engine.load_checkpoint(ckpt)
    out, x_val = {}, None
    for variant in state["variants"]:
        domain, snet, cnet, cfg = load_models(state, variant, data.device)
        if cfg.eval_batch == 0:   # the whole set's features, once for every variant
            x_val = features(domain, val["image"]) if x_val is None else x_val
            chunks = [(x_val, val)]
        else:
            chunks = paper.val_chunks(domain, val, cfg.eval_batch)
        # the complete p-map's chain draws nothing at random, so running it on to the
        # last Table 1 step (for the context figure) leaves its Y^eval_steps as it was
        steps = max((cfg.eval_steps, *cfg.table_steps)) if cfg.context == "pmap" else \
            cfg.eval_steps
        pred = chunked_predictions(snet, cnet, cfg, chunks, steps, task)
        scores = task.score(pred[cfg.eval_steps], val)
        for label in variant["labels"]:
            out.update({f"{k}@{label}": v for k, v in scores.items()})
        if cfg.context == "pmap":
            key = chain_key(task.main_metric, pmap=True)
            out.update({key.format(t=t): v for t, v in enumerate(_chain(task, pred, val))})
    return out


def figures(params, results):
    """`results/plots/ciss-net-context.png` (see methods.cissnet.plots)."""
    from methods.cissnet.plots import context_figure

    return context_figure(params, results)
