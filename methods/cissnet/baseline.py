"""CiSS-Net's Baseline segmenter (Zhou et al., CVPR 2019, Table 4 "Baseline", Section 3.2)
and the optimisation settings every CiSS-Net row shares.

The baseline is trained with cross-entropy from `crop_size`-sized batches
(`methods.cissnet.paper.TrainImages`): on the paper profile PSPNet-50/101 (Zhao et al.
2017; `rlcv.models.pspnet`) from ImageNet weights, with SGD (momentum 0.9, weight decay
1e-4), the "poly" schedule, the head at 10x the trunk's rate and the res4 auxiliary loss
(weight 0.4), as PSPNet is trained; on the CPU profiles the small `DomainNet` + `BaseNet`
with Adam. The frozen domain network (PSPNet's first four blocks, or `DomainNet`) then
gives X_I to every context row (`methods.cissnet.rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.cissnet import paper
from methods.cissnet.data import Task, features
from methods.cissnet.rl import segmentation_loss
from rlcv import dist, engine, optim
from rlcv.errors import ParamsError


@dataclass
class Schedule:
    """Optimisation and batch settings shared by the baseline and context rows (the
    defaults are the CPU profiles': Adam at a constant rate, whole images, one flip)."""

    optimizer: str = "adam"
    """'adam' or 'sgd' (Section 3.2; with `momentum`), `rlcv.optim`."""
    momentum: float = 0.9
    """SGD momentum (PSPNet's 0.9)."""
    weight_decay: float = 0.0
    """L2 weight decay (PSPNet's 1e-4 with SGD)."""
    schedule: str = "constant"
    """'constant' or 'poly': lr * (1 - step / steps) ** 0.9 (PSPNet's)."""
    crop_size: int = 0
    """0: whole staged images, one mirror draw per batch, X_I precomputed once; > 0:
    per-image random resizing by `scale`, a random crop of this side and mirroring, X_I
    computed per batch (`methods.cissnet.paper`)."""
    scale: tuple[float, ...] = (0.5, 2.0)
    """Range of the random resizing factor (with `crop_size` > 0)."""
    dropout: float = 0.0
    """Dropout ratio before the last layer of the Base Net / PSPNet head (Section 3.2: 0.1)."""
    eval_batch: int = 0
    """Val images per evaluation chunk (0: the whole set at once)."""

    def check(self):
        if self.optimizer not in optim.OPTIMIZERS:
            raise ParamsError(f"optimizer: expected one of {', '.join(optim.OPTIMIZERS)}, "
                              f"got {self.optimizer!r}")
        if self.schedule not in optim.SCHEDULES:
            raise ParamsError(f"schedule: expected one of {', '.join(optim.SCHEDULES)}, "
                              f"got {self.schedule!r}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ParamsError(f"scale: expected [min, max] with 0 < min <= max, got {self.scale}")

    def build_optimizer(self, groups, steps: int):
        """(optimizer, scheduler or None) over param `groups` (dicts with their "lr")."""
        opt = optim.build(self.optimizer, groups, groups[0]["lr"], self.momentum,
                          self.weight_decay)
        return opt, optim.schedule(self.schedule, opt, steps)


@dataclass
class BaselineConfig(Schedule):
    """Settings of the baseline segmenter (domain CNN + Base Net, or PSPNet)."""

    width: int = 16
    """Channels of the domain CNN's first layer (doubled by its second)."""
    channels: int = 32
    """Channels C of the domain features X_I."""
    layers: int = 3
    """3x3 convolution layers of the domain CNN (the first two at stride 2)."""
    steps: int = 300
    """Optimisation steps."""
    batch_size: int = 16
    """Images per step."""
    lr: float = 3e-3
    """Learning rate (of the trunk, for PSPNet)."""
    eval_every: int = 100
    """Steps between evaluations on val (logged to history.csv); 0 = never."""
    backbone: str = "small"
    """'small' (width, channels, layers), or PSPNet's dilated 'resnet50' / 'resnet101'."""
    weights: str = "none"
    """ImageNet weights of the PSPNet trunk (a torchvision name, `rlcv.models.pretrained`)."""
    head_width: int = 512
    """Channels of PSPNet's 3x3 layer after the pyramid pooling."""
    head_lr_mult: float = 1.0
    """Learning rate of the PSPNet head (and aux branch) / lr (PSPNet's code: 10)."""
    aux_weight: float = 0.0
    """Weight of PSPNet's res4 deep-supervision loss (PSPNet: 0.4; 0 = no aux branch)."""

    def __post_init__(self):
        self.check()
        paper.check_backbone(self.backbone)


def fit_baseline(cfg: BaselineConfig, data, run, phase: str):
    """(domain network, head) trained from scratch (the trunk from ImageNet weights) for
    `cfg.steps` with cross-entropy."""
    task, val = Task.of(data.manifest), data.load("val")
    domain, head = paper.build_segmenter(cfg, task.num_classes, run.device)
    if cfg.head_lr_mult == 1.0:
        groups = [{"params": [*domain.parameters(), *head.parameters()], "lr": cfg.lr}]
    else:   # PSPNet's code trains its new layers at 10x the pretrained trunk's rate
        groups = [{"params": list(domain.parameters()), "lr": cfg.lr},
                  {"params": list(head.parameters()), "lr": cfg.lr * cfg.head_lr_mult}]
    opt, sched = cfg.build_optimizer(groups, cfg.steps)
    if dist.active() and run.device.type == "cuda":   # BN statistics over the global batch
        domain, head = (torch.nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in (domain, head))
    images = paper.TrainImages(cfg, data, task)
    objects = {"domain": domain, "base": head, "opt": opt, **({"sched": sched} if sched else {})}

    def step_fn(step: int) -> dict:
        domain.train()
        head.train()
        g = engine.generator(run.seed, phase, step)
        x, target = dist.shard(*images.draw(g, cfg.batch_size, (run.seed, phase), step,
                                            cfg.steps))   # this process's part
        stats = {}
        if getattr(head, "aux", None) is not None:   # PSPNet's deep supervision on res4
            c4, c5 = domain(x, mid=True)
            aux = segmentation_loss(head.aux(c4), target)
            loss = segmentation_loss(head(c5), target)
            stats["loss_aux"] = aux.item()
            total = loss + cfg.aux_weight * aux
        else:
            loss = total = segmentation_loss(head(domain(x)), target)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return {"loss_s": loss.item(), **stats}

    def eval_fn() -> dict:
        return task.score(predict(domain, head, val, cfg.eval_batch, task), val,
                          main_only=True)

    engine.fit(run, phase, objects, cfg.steps, step_fn, eval_fn, cfg.eval_every)
    return domain, head


def predict(domain, head, val: dict, eval_batch: int, task: Task):
    """Class indices of the baseline segmenter on `val`, at the scored ground truth's size,
    computed per chunk of `eval_batch` images (0: at once)."""
    head.eval()
    out = None
    for a, b in paper.chunks(val, eval_batch):
        split = val if (a, b) == (0, len(val["image"])) else paper.part(val, a, b)
        with torch.no_grad():
            pred = task.predict(head(features(domain, split["image"])), split)
        out = pred if out is None else paper.join(out, pred)
    return out


def load_segmenter(config: dict, state: dict, num_classes: int, device):
    """(domain network, head) of a baseline's checkpointed `config` and weights `state`
    ({"domain": ..., "base": ...})."""
    cfg = BaselineConfig(**{k: v for k, v in config.items()
                            if k in BaselineConfig.__dataclass_fields__})
    domain, head = paper.build_segmenter(cfg, num_classes, device, load=False)
    domain.load_state_dict(state["domain"])
    head.load_state_dict(state["base"])
    return domain, head
