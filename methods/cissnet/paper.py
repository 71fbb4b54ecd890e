"""The segmenters and batches of CiSS-Net's rows, at both scales (Zhou et al., CVPR 2019,
Section 3.2), chosen by settings, never by profile name:

- `backbone`: 'small' = the CPU profiles' stride-4 `DomainNet` + `BaseNet` baseline;
  'resnet50' / 'resnet101' = PSPNet-50 / PSPNet-101 (`rlcv.models.pspnet`), whose first four
  blocks (the dilated trunk) are the domain network X_I of every context row.
- `crop_size`: 0 = the CPU profiles' batches: whole staged images, one mirror draw per
  batch, and the context rows' domain features computed once for the whole set (the
  network is frozen); > 0 = Section 3.2's augmentation per image (random resizing by a
  factor in `scale`, a random `crop_size` crop, padded with 'ignore' where the image is
  smaller, random mirroring), the images decoded per batch and, for the context rows, X_I
  computed per batch on the augmented crops (precomputed features of ADE20K at PSPNet
  scale would take hundreds of GB, and could not be augmented).
- `eval_batch`: 0 = evaluate the val set in one piece; > 0 = in chunks of that many
  images, features, logits and predictions computed per chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.cissnet.data import IGNORE, Task, feature_targets, features, to_input
from rlcv import dist, engine
from rlcv.errors import ParamsError
from rlcv.models.cissnet import BaseNet, DomainNet
from rlcv.models.pspnet import DEPTHS, DilatedResNet, PSPHead

BACKBONES = ("small", *DEPTHS)


def check_backbone(name: str) -> None:
    """ParamsError unless `name` is one of BACKBONES."""
    if name not in BACKBONES:
        raise ParamsError(f"backbone: expected one of {', '.join(BACKBONES)}, got {name!r}")


def build_segmenter(cfg, num_classes: int, device, load: bool = True):
    """(domain network, head) of a baseline config: DomainNet + BaseNet ('small') or the
    PSPNet trunk + PSPHead (ImageNet `cfg.weights` loaded when `load`)."""
    if cfg.backbone == "small":
        domain = engine.place(DomainNet(cfg.width, cfg.channels, cfg.layers), device)
        return domain, engine.place(BaseNet(cfg.channels, num_classes, dropout=cfg.dropout), device)
    domain = engine.place(DilatedResNet(DEPTHS[cfg.backbone], cfg.weights, load), device)
    head = engine.place(PSPHead(num_classes, domain.channels, cfg.head_width, cfg.dropout,
                                aux=cfg.aux_weight > 0), device)
    return domain, head


def load_domain(config: dict, state: dict, device) -> torch.nn.Module:
    """The domain network of a baseline checkpoint's `config` with weights `state`."""
    backbone = config.get("backbone", "small")
    if backbone == "small":
        domain = DomainNet(config["width"], config["channels"], config["layers"])
    else:
        domain = DilatedResNet(DEPTHS[backbone], load=False)
    domain.load_state_dict(state)
    return engine.place(domain, device)


def scale_crop_mirror(images: torch.Tensor, targets: torch.Tensor, crop: int,
                      scale: tuple[float, float], g: torch.Generator):
    """Section 3.2's augmentation, drawn per image from `g`: resize by a factor in `scale`
    (bilinear image, nearest labels), pad to at least `crop` (image 0 = mid-grey after
    `to_input`, labels IGNORE), a random `crop` x `crop` window, mirror with probability
    1/2. uint8 images (N, 3, H, W) and class indices (N, H, W) -> float (N, 3, crop, crop)
    in [-0.5, 0.5] and class indices (N, crop, crop)."""
    out_x, out_t = [], []
    lo, hi = scale
    for img, tgt in zip(images, targets, strict=True):
        s = lo + (hi - lo) * float(torch.rand((), generator=g))
        size = (max(1, round(img.shape[-2] * s)), max(1, round(img.shape[-1] * s)))
        x = F.interpolate(to_input(img[None]), size=size, mode="bilinear", align_corners=False)
        t = F.interpolate(tgt[None, None].float(), size=size, mode="nearest")[0].long()
        ph, pw = max(0, crop - size[0]), max(0, crop - size[1])
        x = F.pad(x, (0, pw, 0, ph), value=0.0)[0]
        t = F.pad(t, (0, pw, 0, ph), value=IGNORE)[0]
        top = int(torch.randint(x.shape[-2] - crop + 1, (), generator=g))
        left = int(torch.randint(x.shape[-1] - crop + 1, (), generator=g))
        x, t = x[:, top:top + crop, left:left + crop], t[top:top + crop, left:left + crop]
        if torch.rand((), generator=g) < 0.5:
            x, t = x.flip(-1), t.flip(-1)
        out_x.append(x)
        out_t.append(t)
    return torch.stack(out_x), torch.stack(out_t)


def cell_targets(targets: torch.Tensor, size) -> torch.Tensor:
    """Class indices (N, H, W) -> the label under each of the (h, w) feature cells, the
    cells' centres spread over the image corner to corner (a 473 crop at stride 8: 60 x 60
    cells, rows 0, 8, ..., 472)."""
    h, w = targets.shape[-2:]
    rows = torch.linspace(0, h - 1, size[0], device=targets.device).round().long()
    cols = torch.linspace(0, w - 1, size[1], device=targets.device).round().long()
    return targets[..., rows[:, None], cols[None, :]]


def part(split: dict, start: int, stop: int) -> dict:
    """Samples start..stop-1 of a loaded split (every field sliced)."""
    return {k: v[start:stop] for k, v in split.items()}


def chunks(split: dict, batch: int):
    """(start, stop) of the evaluation chunks of `split` (one chunk when `batch` is 0)."""
    n = len(split["image"])
    step = batch if batch > 0 else max(n, 1)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def val_chunks(domain, val: dict, batch: int):
    """(X_I, val samples) per evaluation chunk of `batch` images (0: one chunk), the
    features computed chunk by chunk."""
    for a, b in chunks(val, batch):
        split = val if (a, b) == (0, len(val["image"])) else part(val, a, b)
        yield features(domain, split["image"]), split


def join(a, b):
    """Predictions of two chunks, concatenated (tensors, or lists when sizes differ)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape[1:] == b.shape[1:]:
        return torch.cat([a, b])
    return [*a, *b]


class TrainImages:
    """Training batches of a config (`crop_size`, `scale`) from a staged set:
    `draw(g, n, keys, step, steps)` -> (images in [-0.5, 0.5], class indices) of n images
    (the global batch) of step `step` of the phase keyed `keys` (`datasets._feed.Feed`)."""

    def __init__(self, cfg, data, task: Task):
        self.cfg, self.data, self.task = cfg, data, task
        if cfg.crop_size > 0:   # decoded per batch (the index, or the cached samples)
            self.feed = data.feed("train")
            self.n = len(self.feed)
        else:                   # the CPU profiles: the whole split in memory
            self.train = data.load("train")
            self.targets = task.targets(self.train["label"])
            self.n = self.targets.shape[0]

    def draw(self, g: torch.Generator, batch_size: int, keys: tuple, step: int, steps: int):
        if self.cfg.crop_size == 0:
            idx = torch.randint(self.n, (batch_size,), generator=g)
            images, target = to_input(self.train["image"][idx]), self.targets[idx]
            if torch.rand((), generator=g) < 0.5:   # horizontal flip
                images, target = images.flip(-1), target.flip(-1)
            return images, target
        batch = self.feed.draw(g, batch_size, keys, step, steps)
        return scale_crop_mirror(batch["image"], self.task.targets(batch["label"]),
                                 self.cfg.crop_size, tuple(self.cfg.scale), g)


class Precomputed:
    """Domain features of the whole train and val sets, computed once (`crop_size` 0)."""

    def __init__(self, domain, data, task: Task, val: dict, cfg):
        train = data.load("train")
        self.x = features(domain, train["image"])
        targets = task.targets(train["label"])
        self.x_val, self.val = features(domain, val["image"]), val
        self.targets = feature_targets(targets, targets.shape[-1] // self.x.shape[-1])
        self.channels, self.device = self.x.shape[1], self.x.device
        self.eval_batch = cfg.eval_batch

    def batch(self, g: torch.Generator, batch_size: int, *_step):
        """(X_I, class index per feature cell) of `batch_size` images drawn from `g`."""
        idx = torch.randint(self.x.shape[0], (batch_size,), generator=g)
        return self.x[idx], self.targets[idx]

    def eval_chunks(self):
        """(X_I, val samples) per evaluation chunk."""
        for a, b in chunks(self.val, self.eval_batch):
            whole = (a, b) == (0, len(self.x_val))
            yield (self.x_val, self.val) if whole else (self.x_val[a:b], part(self.val, a, b))


class PerBatch:
    """Domain features of each augmented training batch and of each val chunk, computed
    when needed by the frozen domain network (`crop_size` > 0)."""

    def __init__(self, domain, data, task: Task, val: dict, cfg):
        self.domain, self.val, self.eval_batch = domain, val, cfg.eval_batch
        self.images = TrainImages(cfg, data, task)
        self.channels = domain.channels
        self.device = next(domain.parameters()).device

    def batch(self, g: torch.Generator, batch_size: int, keys: tuple, step: int, steps: int):
        """(X_I, class index per feature cell) of a freshly augmented batch (step `step` of
        the phase keyed `keys`); this process's slice of it under torchrun."""
        images, target = self.images.draw(g, batch_size, keys, step, steps)
        images, target = dist.shard(images, target)
        self.domain.eval()
        with torch.no_grad():
            x = self.domain(images)
        return x, cell_targets(target, x.shape[-2:])

    def eval_chunks(self):
        return val_chunks(self.domain, self.val, self.eval_batch)


def feature_source(domain, data, task: Task, val: dict, cfg):
    """Precomputed features (`cfg.crop_size` 0) or per-batch features (> 0)."""
    return (PerBatch if cfg.crop_size > 0 else Precomputed)(domain, data, task, val, cfg)
