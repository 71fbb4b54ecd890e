"""The controls of CiSS-Net's "beats Baseline" claims (Tables 1 and 4, issue 20).

CiSS-Net starts from the Baseline row's checkpoint and trains further with a Bias Net
(extra capacity) for `steps` more steps. Its gain over Baseline could come from either,
so one row per dataset (`ciss-controls-<dataset>`, requiring the Baseline and the
CiSS-Net rows of the same seed) trains two models whose budgets are read from those two
checkpoints, never copied by hand:

- **Baseline+Bias Net (empty context)**: CiSS-Net's S-Net (Base Net from the baseline,
  trained as CiSS-Net trains it, plus the zero-initialised Bias Net and its pyramid
  encoder) trained with Loss_s for CiSS-Net's steps, batch size, rollout length and
  learning rates, every context map all 'uncertain' (B = 0): the same parameters and
  optimisation steps, no context.
- **Baseline (same steps)**: the domain CNN and Base Net trained from scratch as the
  Baseline row, for the Baseline's steps plus CiSS-Net's.

Both are reported as `metric@<label>` (scored like every row, `methods.cissnet.data`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from methods.cissnet import paper
from methods.cissnet import rows as R
from rlcv import engine

CAPACITY = "Baseline+Bias Net (empty context)"
SAME_STEPS = "Baseline (same steps)"


@dataclass
class ControlsConfig:
    """Settings of the controls row; every budget comes from the rows it requires."""

    eval_every: int = 100
    """Steps between evaluations on val (logged to history.csv); 0 = never."""


def _inputs(run) -> tuple[dict, dict]:
    """(baseline checkpoint, CiSS-Net checkpoint) of the same seed."""
    base = next(p for n, p in run.inputs.items() if n.startswith("ciss-baseline-"))
    ciss = next(p for n, p in run.inputs.items() if n.startswith("ciss-net-"))
    return engine.load_checkpoint(base), engine.load_checkpoint(ciss)


def _of(cls, config: dict):
    return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


def budgets(baseline_config: dict, ciss_config: dict, eval_every: int
            ) -> tuple[R.CissConfig, R.BaselineConfig]:
    """(capacity control's config, same-steps baseline's config) from the checkpointed
    configs of the Baseline and CiSS-Net rows."""
    ciss = replace(_of(R.CissConfig, ciss_config), context="empty", eval_every=eval_every)
    base = _of(R.BaselineConfig, baseline_config)
    return ciss, replace(base, steps=base.steps + ciss.steps, eval_every=eval_every)


def train_controls(cfg: ControlsConfig, data, run) -> str:
    """Train the capacity control and the same-steps baseline of one dataset and seed."""
    base_state, ciss_state = _inputs(run)
    capacity, long_base = budgets(base_state["config"], ciss_state["config"], cfg.eval_every)
    task, base, source, domain = R._prepare(data, run, capacity)
    nets = R._fit_ciss(capacity, run, "capacity", task, R.base_state(base), source)
    long_domain, long_head = R.fit_baseline(long_base, data, run, "same-steps")
    return engine.save_checkpoint(
        run, cfg, domain=domain.state_dict(), domain_config=base["config"],
        num_classes=task.num_classes, capacity={"config": vars(capacity), **nets},
        same_steps={"config": vars(long_base), "domain": long_domain.state_dict(),
                    "base": long_head.state_dict()})


def evaluate_controls(ckpt: str, data) -> dict:
    """Both controls' scores as `metric@<label>`."""
    task, val = R.Task.of(data.manifest), data.load("val")
    state = engine.load_checkpoint(ckpt)
    cap = state["capacity"]
    domain, snet, _, ccfg = R.load_models({**state, **cap}, device=data.device)
    pred = R.chunked_predictions(snet, None, ccfg, paper.val_chunks(domain, val, ccfg.eval_batch),
                                 ccfg.eval_steps, task)[-1]
    out = {f"{k}@{CAPACITY}": v for k, v in task.score(pred, val).items()}
    long = state["same_steps"]
    long_domain, head = R.load_segmenter(long["config"], long, state["num_classes"], data.device)
    pred = R.predict(long_domain, head, val, long["config"].get("eval_batch", 0), task)
    out.update({f"{k}@{SAME_STEPS}": v for k, v in task.score(pred, val).items()})
    return out
