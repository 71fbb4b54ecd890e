"""`rlcv train ROW --profile paper --dry-run`: the row's models and optimizers exactly as
the profile configures them, two optimisation steps and one evaluation, on a tiny
synthetic dataset in the official layout, in a temporary folder (nothing is written to
data/, runs/ or results/).

What the dry run shrinks, and nothing else: the dataset (the `ci` profile's synthetic
set: few, small images, staged at the profile's input size where that sizes a model's
layers, `INPUT_SIZE`); the budget (the row's own `steps`/`episodes` to 2, its other
phases' `*_steps` and warm-ups to 1, batch sizes to 2, replay sizes, episode length: `t_max`
and ACIS's cap `max_steps`, set or default, to 3; no periodic evaluation: the row's
`evaluate` is the one evaluation; `eval_steps`, the iteration a model is scored at, is
kept); the detectors' sample counts (proposals, RoIs per image: they size no layer); and
the crops the methods cut from the small images (`crop_size`, `input_size`: at most 64
px). Architectures, optimizers, schedules, learning rates and every other setting are
the profile's. The line's parameters: those of the modules the row's evaluation runs,
each network once. Pretrained weights whose file is not in the torch hub cache are
replaced by a random initialisation; the line's `weights` are those the row starts from,
its own and its requirements' (`rlcv.seedrun.weights_list`), less those replaced (`weights
none`: none left).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlcv import params as P

_STEPS = re.compile(r"^(steps|episodes)$")
_PHASES = re.compile(r"^(critic_warmup|(?!max_|table_|eval_)\w+_steps)$")
_INNER = ("warmup",)
"""Counts inside another phase's loop, not loops of their own: a DQN's transitions stored
before its first update (methods/activeloc), an AC row's critic-only first iterations of
its `steps` (methods/acis: `warmup`; `critic_warmup` is a loop of its own)."""
_BATCH = re.compile(r"^(batch_size|\w+_batch)$")
_SMALL = {"eval_images": 2, "replay": 16, "t_max": 3, "eval_every": 0, "proposals": 16,
          "det_proposals": 16, "rois_per_image": 8, "max_steps": 3}
_DEFAULTED = ("max_steps",)
"""Settings shrunk also where the row's config default gives them: ACIS's episode cap
(21 unless set; at the paper's input size a step costs about 50 ci-size ones)."""
_CROP = {"crop_size": 64, "input_size": 64}
INPUT_SIZE = {"cvppp": ("size",), "kitti": ("size_hw",)}
"""Dataset settings that size a model's layers, staged at the profile's value (ACIS's
actor, critic and mask decoder have fully connected layers sized by the staged image)."""


def shrink(values: dict) -> dict:
    """The dry run's settings: `values` with the budget and crop sizes made tiny."""
    out = dict(values)
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if _STEPS.match(key):
            out[key] = min(value, 2)
        elif _PHASES.match(key) or key in _INNER:
            out[key] = min(value, 1)
        elif _BATCH.match(key):
            out[key] = min(value, 2)
        elif key in _SMALL:
            out[key] = min(value, _SMALL[key]) if value else value
        elif key in _CROP:
            out[key] = min(value, _CROP[key])
    return out


def weight_keys(values: dict) -> list[str]:
    """The settings that name pretrained weights (`weights`, `*_weights`)."""
    return [k for k in values if k == "weights" or k.endswith("_weights")]


@contextlib.contextmanager
def record_optimizers():
    """Collect every torch optimizer built inside the block (its class and parameters)."""
    built: list[torch.optim.Optimizer] = []
    original = torch.optim.Optimizer.__init__

    def init(self, params, defaults):
        original(self, params, defaults)
        built.append(self)

    torch.optim.Optimizer.__init__ = init
    try:
        yield built
    finally:
        torch.optim.Optimizer.__init__ = original


@contextlib.contextmanager
def record_modules():
    """Collect every module whose forward runs inside the block."""
    seen: dict[int, torch.nn.Module] = {}

    def hook(module, args):
        seen[id(module)] = module

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen.values()
    finally:
        handle.remove()


def distinct(modules) -> list[torch.nn.Module]:
    """`modules` less the copies of a network already among them: the modules of an
    outermost one (a network) equal in class and state to an earlier network (the same
    checkpoint loaded again, e.g. once per evaluated split)."""
    mods = list(modules)
    inner = {id(c) for m in mods for c in m.modules() if c is not m}
    kept, copies = [], set()
    for net in (m for m in mods if id(m) not in inner):
        if any(_same(net, k) for k in kept):
            copies.update(id(c) for c in net.modules())
        else:
            kept.append(net)
    copies -= {id(c) for net in kept for c in net.modules()}   # a module they share
    return [m for m in mods if id(m) not in copies]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k])
        for k in sa)


@dataclass
class DryRun:
    """One temporary folder holding the tiny datasets and the rows' dry checkpoints, so
    that a row's requirements and datasets are made once for several rows."""

    params: P.Params
    root: Path
    device: torch.device
    checkpoints: dict[str, Path] = field(default_factory=dict)
    staged: set[str] = field(default_factory=set)

    def data(self, row):
        """The row's staged subset: the ci profile's synthetic dataset (written once)."""
        import datasets
        from datasets._common import Staged

        name = row.dataset
        if name not in self.staged:
            cfg = self.data_cfg(name)
            module = datasets.get(name)
            module.synth(self.root / "raw" / name, cfg, int(cfg.get("seed", 0)))
            module.stage(self.root / "raw" / name, self.root / "staged" / name,
                         {**cfg, "profile": "ci", "data": "synthetic"})
            self.staged.add(name)
        return Staged(self.root / "staged" / row.data, self.device)

    def data_cfg(self, name: str) -> dict:
        """The settings dataset `name` is synthesized and staged with: the ci profile's
        (few, small images), staged at the profile's input size (`INPUT_SIZE`)."""
        small = P.Params(raw={**self.params.raw, "profile": "ci"}, path=self.params.path)
        cfg = small.dataset(name)
        keys = INPUT_SIZE.get(name, ())
        if keys:
            full = self.params.dataset(name)
            cfg.update({k: full[k] for k in keys if k in full})
        return cfg

    def settings(self, name: str) -> dict:
        """Row `name`'s settings under the profile, shrunk (`shrink`; `_DEFAULTED` ones
        its config leaves to the default too)."""
        import dataclasses

        import methods

        values = self.params.method(name)
        for f in dataclasses.fields(methods.get(name).config):
            if f.name in _DEFAULTED and f.name not in values:
                values[f.name] = f.default
        return shrink(values)

    def config(self, row):
        """The row's dataclass config from `settings`, weights whose file is absent
        replaced by `none`."""
        from rlcv.models import pretrained

        values = self.settings(row.name)
        for key in weight_keys(values):
            if not pretrained.available(values[key]):
                values[key] = pretrained.NONE
        return P.build_config(row.config, values, f"{self.params.path} methods.{row.name}")

    def train(self, name: str) -> tuple[Path, list]:
        """Dry-train row `name` (its requirements first); its checkpoint and optimizers."""
        import methods
        from rlcv import engine

        row = methods.get(name)
        for req in row.requires:
            if req not in self.checkpoints:
                self.train(req)
        cfg = self.config(row)
        data = self.data(row)
        engine.seed_everything(0)
        # a fresh folder each time: a row trained before as a requirement takes its steps
        # again instead of resuming its finished phases
        out = self.root / "runs" / f"{name}.{len(list((self.root / 'runs').glob(name + '.*')))}"
        run = engine.Run(row=name, seed=0, dir=out, device=self.device,
                         inputs={r: self.checkpoints[r] for r in row.requires})
        with record_optimizers() as opts:
            ckpt = row.train(cfg, data, run)
        for f in out.rglob("*.ckpt.pt"):   # the phases' resume states: GBs at paper sizes
            f.unlink()
        self.checkpoints[name] = Path(ckpt)
        return Path(ckpt), opts

    def weights(self, row) -> str:
        """The pretrained weights row `row`'s dry run starts from, its own and its
        requirements' (`rlcv.seedrun.weights_list`), less those not in the hub cache (`config`
        replaced them); "+"-joined, "none" when none is left."""
        from rlcv.models import pretrained
        from rlcv.seedrun import weights_list

        names = weights_list(self.params, row)
        return "+".join(w for w in names if pretrained.available(w)) or "none"

    def forget(self, name: str) -> None:
        """Delete row `name`'s dry checkpoint unless another registry row requires it (a
        session over every row would otherwise hold tens of GB: /dev/shm is RAM)."""
        import shutil

        import methods

        if any(name in r.requires for r in methods.METHODS.values()):
            return
        path = self.checkpoints.pop(name, None)
        if path is not None:
            shutil.rmtree(path.parent, ignore_errors=True)

    def check(self, name: str) -> dict:
        """Dry-train and evaluate row `name`; what it built and the one-line summary."""
        import math

        import methods

        ckpt, opts = self.train(name)
        row = methods.get(name)
        with record_modules() as mods:
            metrics = row.evaluate(str(ckpt), self.data(row))
        self.forget(name)
        bad = [k for k, v in metrics.items() if math.isinf(float(v))]
        if bad:
            raise P.ParamsError(f"{name}: dry run gave infinite metrics {bad}")
        # the parameters of the modules its evaluation runs (frozen ones included), each
        # counted once, a network loaded again (once per split) too; else (no module)
        # those its optimizers train
        params = {id(p): p.numel() for m in distinct(mods) for p in m.parameters(recurse=False)}
        if not params:
            params = {id(p): p.numel() for o in opts for g in o.param_groups
                      for p in g["params"]}
        n = sum(params.values())
        weights = self.weights(row)
        line = (f"{name}: {self.params.profile} settings, {n / 1e6:.1f} M parameters, "
                f"weights {weights}, {self.device}, ok")
        each = [(type(o).__name__, sum(p.numel() for g in o.param_groups for p in g["params"]))
                for o in opts]
        return {"row": name, "parameters": n, "weights": weights, "metrics": metrics,
                "optimizers": each, "line": line}


def dry_run(params: P.Params, rows: list[str], device=None) -> list[dict]:
    """Dry-run `rows` in one temporary folder; one summary per row (see `DryRun.check`)."""
    from rlcv import engine

    dev = torch.device(device) if device is not None else engine.device()
    with scratch() as tmp:
        session = DryRun(params, tmp, dev)
        return [session.check(r) for r in rows]


@contextlib.contextmanager
def scratch():
    """A temporary folder for a dry run, removed afterwards; in RAM (/dev/shm) when there
    is one: paper-sized models write checkpoints of up to 1 GB."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="rlcv-dry-", dir=where) as tmp:
        yield Path(tmp)
