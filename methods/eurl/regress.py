"""EU-RL Table 1, the regression rows (Xie et al. 2018, Section 4.1), and what the
agent rows share.

- **Box regressor** (`box-regressor`): "a network to directly regress a bounding box"
  from the whole image; the first stage of every Regress-* row. Scored as a localiser
  (mean box IoU, recall at IoU 0.5) in `active-loc-table1`.
- **Regress-Deepmask**: the pretrained DeepMask (the `gt-bbox-deepmask` network, trained
  on tight ground-truth crops) applied on the regressed box; nothing is trained.
- **Regress-STN-Deepmask**: a spatial transformer between regressor and DeepMask: the
  crop is taken with `stn_crop`, differentiable in the box, so the pasted-back mask's
  loss against the full-image ground truth trains regressor and DeepMask end to end
  (the box is only weakly supervised, through the mask).

The mask loss for the agents' rewards (1 - mask IoU, Section 4.1), the DeepMask
`Recognizer` of the box environment and the loaders of the required checkpoints live
here too, for `methods.eurl.agent` and `methods.activeloc.dqn`. Every score goes through
`rlcv.metrics` (`mask_iou`; box IoU: the COCO formula of `rlcv.metrics.image_ap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.eurl.deepmask import predict_masks
from methods.eurl.matched import MatchedConfig, agent_config, fit_matched, upgrade_budget
from rlcv import engine, optim
from rlcv.metrics import mask_iou
from rlcv.models.boxnets import BoxRegressor, decode, encode, stn_crop
from rlcv.models.crops import crop, paste
from rlcv.models.deepmask import mask_net
from rlcv.rl.boxenv import Recognizer, paired_box_iou


@dataclass
class RegressorConfig:
    """Settings of the box regressor."""

    input_size: int = 64
    """Side the image is resized to before the regressor (pixels)."""
    width: int = 12
    """Channels of the regressor's first convolution (doubles twice)."""
    steps: int = 300
    """Optimisation steps."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 2e-3
    """Adam learning rate."""
    eval_every: int = 100
    """Steps between evaluations on a val slice (logged to history.csv)."""


@dataclass
class PipelineConfig:
    """Regress-Deepmask has nothing to train: the two pretrained stages, chained."""

    eval_batch: int = 64
    """Images per evaluation batch."""


@dataclass
class STNConfig:
    """Settings of Regress-STN-Deepmask's end-to-end training."""

    steps: int = 100
    """Optimisation steps."""
    batch_size: int = 32
    """Images per step."""
    lr: float = 3e-4
    """Adam learning rate, shared by regressor and DeepMask."""
    eval_every: int = 50
    """Steps between evaluations on a val slice (logged to history.csv)."""


# ----------------------------------------------------------------- shared by the rows


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]."""
    return images.float() / 255.0


def flip_batch(images: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor):
    """Horizontal flip of images, masks and xyxy boxes."""
    w = images.shape[-1]
    flipped = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
    return images.flip(-1), masks.flip(-1), flipped


def load_deepmask(path, device) -> tuple[nn.Module, int]:
    """The DeepMask network of a `gt-bbox-deepmask` checkpoint (on `device`) and its crop
    size."""
    state = engine.load_checkpoint(path)
    net = engine.place(mask_net(state["config"]), device)
    net.load_state_dict(state["model"])
    return net.eval(), state["config"]["crop_size"]


def load_regressor(path, device) -> tuple[BoxRegressor, int]:
    """The network of a `box-regressor` checkpoint (on `device`) and its input size."""
    state = engine.load_checkpoint(path)
    net = engine.place(BoxRegressor(state["config"]["width"]), device)
    net.load_state_dict(state["model"])
    return net.eval(), state["config"]["input_size"]


def load_chain(run) -> dict:
    """Weights and configs of the required box regressor and DeepMask checkpoints."""
    reg = engine.load_checkpoint(run.inputs["box-regressor"])
    dm = engine.load_checkpoint(run.inputs["gt-bbox-deepmask"])
    return {"regressor": reg["model"], "regressor_config": reg["config"],
            "deepmask": dm["model"], "deepmask_config": dm["config"]}


def chain_nets(state: dict, device) -> tuple[BoxRegressor, int, nn.Module, int]:
    """(regressor, its input size, DeepMask, its crop size) from a `load_chain` dict, the
    networks on `device`."""
    reg = engine.place(BoxRegressor(state["regressor_config"]["width"]), device)
    dm = engine.place(mask_net(state["deepmask_config"]), device)
    reg.load_state_dict(state["regressor"])
    dm.load_state_dict(state["deepmask"])
    return (reg.eval(), state["regressor_config"]["input_size"], dm.eval(),
            state["deepmask_config"]["crop_size"])

def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float images resized to size x size (the regressor's input)."""
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


def regress(net: BoxRegressor, input_size: int, images: torch.Tensor,
            batch: int = 128) -> torch.Tensor:
    """Regressed boxes (N, 4) in pixels of uint8 `images`, without gradient."""
    net.eval()
    h, w = images.shape[-2:]
    out = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch):
            x = resize(as_float(images[i:i + batch]), input_size)
            out.append(decode(net.normalised(x), h, w))
    return torch.cat(out)


def box_scores(boxes: torch.Tensor, gt: torch.Tensor) -> dict:
    """Mean box IoU with the ground truth and recall at IoU >= 0.5 (active-loc-table1)."""
    iou = paired_box_iou(boxes.float(), gt.float()).double()
    return {"mean_iou": iou.mean().item(), "recall_50": (iou >= 0.5).double().mean().item()}


class MaskIoULoss:
    """L(s^R, l) = 1 - IoU(DeepMask's mask pasted back, ground-truth mask) (Section 4.1)."""

    uses_output = True

    def __call__(self, outputs: torch.Tensor, boxes: torch.Tensor, targets: dict) -> torch.Tensor:
        h, w = targets["mask"].shape[-2:]
        pred = paste(torch.sigmoid(outputs[:, 0]), boxes, h, w) > 0.5
        return 1 - mask_iou(pred, targets["mask"]).float()


def deepmask_recognizer(net: nn.Module, crop_size: int) -> Recognizer:
    """DeepMask as the box environment's recognition network: s^R is its mask
    probability map; the upgrade is its own per-pixel BCE on the crop."""

    def train_loss(outputs, boxes, targets):
        target = crop(targets["mask"][:, None].float(), boxes, crop_size)
        return F.binary_cross_entropy_with_logits(outputs, target)

    return Recognizer(net, crop_size, observe=torch.sigmoid, train_loss=train_loss)


def mask_score(net: nn.Module, crop_size: int, images: torch.Tensor, boxes: torch.Tensor,
               masks: torch.Tensor) -> float:
    """Table 1's Average IoU: DeepMask on `boxes`, pasted back, against the masks."""
    return mask_iou(predict_masks(net, images, boxes, crop_size), masks).mean().item()


# --------------------------------------------------------------------- box regressor


def train_regressor(cfg: RegressorConfig, data, run) -> str:
    """Regress the object's box from the whole image (smooth L1 on centre and size)."""
    train, val = data.load("train"), data.load("val")
    net = engine.place(BoxRegressor(cfg.width), run.device)
    opt = optim.adam(net.parameters(), cfg.lr)
    n, (h, w) = train["image"].shape[0], train["image"].shape[-2:]
    probe = slice(0, min(64, val["image"].shape[0]))

    def step_fn(step: int) -> dict:
        net.train()
        g = engine.generator(run.seed, "regress", step)
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        images, boxes = as_float(train["image"][idx]), train["box"][idx]
        if torch.rand((), generator=g) < 0.5:
            images, _, boxes = flip_batch(images, train["mask"][idx], boxes)
        pred = net.normalised(resize(images, cfg.input_size))
        loss = F.smooth_l1_loss(pred, encode(boxes, h, w), beta=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def eval_fn() -> dict:
        boxes = regress(net, cfg.input_size, val["image"][probe])
        return {"iou": box_scores(boxes, val["box"][probe])["mean_iou"]}

    engine.fit(run, "regress", {"model": net, "opt": opt}, cfg.steps, step_fn, eval_fn,
               cfg.eval_every)
    return engine.save_checkpoint(run, cfg, model=net.state_dict())


def evaluate_regressor(ckpt: str, data) -> dict:
    """The regressor as a localiser: mean box IoU and recall at 0.5 on val."""
    net, size = load_regressor(ckpt, data.device)
    val = data.load("val")
    return box_scores(regress(net, size, val["image"]), val["box"])


# ------------------------------------------------------------------ Regress-Deepmask


def train_regress_deepmask(cfg: PipelineConfig, data, run) -> str:
    """Chain the trained regressor and the pretrained DeepMask into one checkpoint."""
    chain = load_chain(run)
    return engine.save_checkpoint(run, cfg, **chain)


def evaluate_regress_deepmask(ckpt: str, data) -> dict:
    """Average mask IoU of DeepMask on the regressed boxes (val)."""
    reg, size, dm, crop_size = chain_nets(engine.load_checkpoint(ckpt), data.device)
    val = data.load("val")
    boxes = regress(reg, size, val["image"])
    return {"avg_iou": mask_score(dm, crop_size, val["image"], boxes, val["mask"])}


# compute-matched control: Regress-Deepmask + the agent's upgrade steps (methods.eurl.matched)


def train_regress_deepmask_matched(cfg: MatchedConfig, data, run) -> str:
    """Regress-Deepmask whose DeepMask gets Regress-Agent-Deepmask's upgrade steps."""
    agent = agent_config(cfg, run)
    budget = upgrade_budget(agent)
    train = data.load("train")
    chain = load_chain(run)
    reg, size, dm, crop_size = chain_nets(chain, run.device)
    starts = regress(reg, size, train["image"])
    images = as_float(train["image"])
    fit_matched(run, deepmask_recognizer(dm, crop_size), budget, starts,
                agent.get("start_jitter", 0.0),
                lambda idx: (images[idx], {"mask": train["mask"][idx], "box": train["box"][idx]}))
    chain["deepmask"] = dm.state_dict()
    return engine.save_checkpoint(run, cfg, matched_budget=budget, **chain)


# -------------------------------------------------------------- Regress-STN-Deepmask


def _stn_forward(reg, size, dm, crop_size, images):
    """Full-image mask probabilities of the STN pipeline, differentiable throughout."""
    h, w = images.shape[-2:]
    boxes = decode(reg.normalised(resize(images, size)), h, w)
    logits = dm(stn_crop(images, boxes, crop_size))
    return paste(torch.sigmoid(logits[:, 0]), boxes, h, w)


def train_stn(cfg: STNConfig, data, run) -> str:
    """Train regressor -> spatial transformer -> DeepMask end to end on the mask loss."""
    train, val = data.load("train"), data.load("val")
    chain = load_chain(run)
    reg, size, dm, crop_size = chain_nets(chain, run.device)
    params = [*reg.parameters(), *dm.parameters()]
    opt = optim.adam(params, cfg.lr)
    n = train["image"].shape[0]
    probe = slice(0, min(64, val["image"].shape[0]))

    def step_fn(step: int) -> dict:
        reg.train()
        dm.train()
        g = engine.generator(run.seed, "stn", step)
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        images, masks, boxes = as_float(train["image"][idx]), train["mask"][idx], train["box"][idx]
        if torch.rand((), generator=g) < 0.5:
            images, masks, boxes = flip_batch(images, masks, boxes)
        prob = _stn_forward(reg, size, dm, crop_size, images).clamp(1e-4, 1 - 1e-4)
        gt = masks.float()
        inter = (prob * gt).sum((1, 2))
        soft_iou = inter / (prob.sum((1, 2)) + gt.sum((1, 2)) - inter).clamp(min=1)
        loss = F.binary_cross_entropy(prob, gt) + (1 - soft_iou).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "soft_iou": soft_iou.mean().item()}

    def eval_fn() -> dict:
        return {"iou": _stn_score(reg, size, dm, crop_size, val["image"][probe],
                                  val["mask"][probe])}

    engine.fit(run, "stn", {"regressor": reg, "deepmask": dm, "opt": opt}, cfg.steps, step_fn,
               eval_fn, cfg.eval_every)
    chain.update(regressor=reg.state_dict(), deepmask=dm.state_dict())
    return engine.save_checkpoint(run, cfg, **chain)


def _stn_score(reg, size, dm, crop_size, images, masks, batch: int = 64) -> float:
    reg.eval()
    dm.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch):
            x = as_float(images[i:i + batch])
            preds.append(_stn_forward(reg, size, dm, crop_size, x) > 0.5)
    return mask_iou(torch.cat(preds), masks).mean().item()


def evaluate_stn(ckpt: str, data) -> dict:
    """Average mask IoU of the end-to-end trained STN pipeline (val)."""
    reg, size, dm, crop_size = chain_nets(engine.load_checkpoint(ckpt), data.device)
    val = data.load("val")
    return {"avg_iou": _stn_score(reg, size, dm, crop_size, val["image"], val["mask"])}
