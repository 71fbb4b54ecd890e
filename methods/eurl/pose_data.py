"""EU-RL's MPII pose pipeline, the pieces its rows share (Xie et al. 2018, Section 4.2).

RMPE (Fang et al. [11]) as EU-RL recaps it: a person detector, a single-person stacked
hourglass on each detected box, and a pose-level NMS. Here:

- people and their crops (Section 4.2.2): the *loose* box is "a square region centered
  in the location 'center' with length 200 x scale"; the *tight* box is the joints'
  bounding box "scaled up by a factor of 0.3" (x 1.3 about its centre);
- the pose network (`rlcv.models.hourglass`): training on jittered, randomly flipped
  crops with the heatmap MSE, prediction of the joints in image pixels;
- the person detector: torchvision's Faster R-CNN from `rlcv.models.detector` (two
  classes, person and background), trained on tight boxes ("SSD is trained to generate
  tight bounding boxes");
- the multi-person evaluation: every detected box -> pose -> RMPE's pose NMS
  (`rlcv.models.pose_nms`) -> `rlcv.metrics.mpii_multi_person_ap`; single-person
  accuracy through `rlcv.metrics.pckh`. No score is computed here.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from methods.eurl.deepmask import jitter_boxes
from methods.eurl.holdout import HOLDOUT, split_holdout  # noqa: F401 (re-exported)
from rlcv import engine, optim
from rlcv.metrics import mpii_multi_person_ap, pckh
from rlcv.models.crops import crop
from rlcv.models.detector import build_detector, detect
from rlcv.models.hourglass import (
    StackedHourglass,
    decode,
    from_heatmap,
    heatmap_mse,
    heatmap_targets,
    last,
)
from rlcv.models.pose_nms import PoseNMS

# MPII joint order: the left/right partner of every joint (a horizontal flip swaps them)
FLIP = (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)
AP_KEYS = {"Head": "head", "Shoulder": "shoulder", "Elbow": "elbow", "Wrist": "wrist",
           "Hip": "hip", "Knee": "knee", "Ankle": "ankle", "Total": "total"}
POSE_ARCH = ("crop_size", "channels", "stacks", "depth", "downsample", "sigma")


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]."""
    return images.float() / 255.0


# ------------------------------------------------------------------------ people, boxes


def people(split: dict) -> dict:
    """The annotated people of a staged split as flat tensors: `image` (P,) index of the
    image, `joints` (P, 16, 2), `vis` bool (P, 16), `head` (P, 4), `center`, `scale`."""
    n = split["num_people"]
    valid = torch.arange(split["joints"].shape[1], device=n.device)[None] < n[:, None]
    valid &= split["joints_vis"].bool().any(-1)
    image = torch.arange(n.shape[0], device=n.device)[:, None].expand_as(valid)[valid]
    return {"image": image, "joints": split["joints"][valid].float(),
            "vis": split["joints_vis"][valid].bool(), "head": split["head_boxes"][valid].float(),
            "center": split["center"][valid].float(), "scale": split["scale"][valid].float()}


def loose_boxes(center: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Loose boxes: squares of side 200 x scale centred on `center` (MPII's objpos)."""
    half = 100.0 * scale
    return torch.stack([center[:, 0] - half, center[:, 1] - half,
                        center[:, 0] + half, center[:, 1] + half], 1)


def tight_boxes(joints: torch.Tensor, vis: torch.Tensor, enlarge: float = 0.3) -> torch.Tensor:
    """Tight boxes: the annotated joints' extent scaled by (1 + `enlarge`) about its centre."""
    lo = torch.where(vis[..., None], joints, torch.inf).amin(1)
    hi = torch.where(vis[..., None], joints, -torch.inf).amax(1)
    c, half = (lo + hi) / 2, (hi - lo).clamp(min=1.0) * (1 + enlarge) / 2
    return torch.cat([c - half, c + half], 1)


def person_boxes(kind: str, p: dict) -> torch.Tensor:
    """The `kind` ("loose" or "tight") box of every person of `people(...)`."""
    if kind == "loose":
        return loose_boxes(p["center"], p["scale"])
    if kind == "tight":
        return tight_boxes(p["joints"], p["vis"])
    raise ValueError(f"box must be 'loose' or 'tight', got {kind!r}")


def flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """xyxy boxes mirrored in an image of `width` pixels."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)


# ------------------------------------------------------------------------ pose network


def build_pose_net(arch: dict) -> StackedHourglass:
    """A stacked hourglass from the architecture fields of a pose config."""
    return StackedHourglass(arch["stacks"], arch["channels"], arch["depth"], arch["downsample"])


def pose_arch(cfg) -> dict:
    """The architecture fields (`POSE_ARCH`) of a config dataclass or dict."""
    src = asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else cfg
    return {k: src[k] for k in POSE_ARCH}


def heat_size(arch: dict) -> int:
    """Side of the heatmaps for the crop size and stem stride of `arch`."""
    return arch["crop_size"] // arch["downsample"]


def pose_targets(arch: dict, joints: torch.Tensor, vis: torch.Tensor, boxes: torch.Tensor):
    """Gaussian heatmap targets, their weights and the mass outside the crop
    (`rlcv.models.hourglass.heatmap_targets`) for people seen through `boxes`."""
    return heatmap_targets(joints, vis, boxes, heat_size(arch), arch["sigma"])


def training_batch(arch: dict, images: torch.Tensor, p: dict, boxes: torch.Tensor,
                   idx: torch.Tensor, jitter: float, g: torch.Generator):
    """Crops, targets, weights and outside mass of people `idx`: boxes jittered, half of
    them mirrored (image flipped, left/right joints swapped)."""
    b = jitter_boxes(boxes[idx], jitter, g) if jitter else boxes[idx]
    x = crop(images, b, arch["crop_size"], p["image"][idx])
    tg, w, out = pose_targets(arch, p["joints"][idx], p["vis"][idx], b)
    flip = (torch.rand(idx.shape[0], generator=g) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    tg = torch.where(flip[:, None, None, None], tg.flip(-1)[:, list(FLIP)], tg)
    w = torch.where(flip[:, None], w[:, list(FLIP)], w)
    out = torch.where(flip[:, None], out[:, list(FLIP)], out)
    return x, tg, w, out


@torch.inference_mode()
def predict(net: StackedHourglass, arch: dict, images: torch.Tensor, image_idx: torch.Tensor,
            boxes: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Joints (N, 16, 2) in image pixels and peak heatmap values (N, 16) of the people in
    `boxes` (N, 4) of float `images`[`image_idx`]."""
    net.eval()
    joints, peaks = [], []
    for i in range(0, boxes.shape[0], batch):
        b = boxes[i:i + batch].float()
        hm = last(net(crop(images, b, arch["crop_size"], image_idx[i:i + batch])))
        j, pk = predict_from_heatmaps(hm, b, arch)
        joints.append(j)
        peaks.append(pk)
    if not joints:
        return images.new_zeros(0, 16, 2), images.new_zeros(0, 16)
    return torch.cat(joints), torch.cat(peaks)


def predict_from_heatmaps(hm: torch.Tensor, boxes: torch.Tensor, arch: dict):
    """(joints in image pixels, peaks) decoded from last-stack heatmaps on `boxes`."""
    coords, peak = decode(hm)
    return from_heatmap(coords, boxes, heat_size(arch)), peak


def pckh_total(joints: torch.Tensor, p: dict) -> float:
    """MPII PCKh@0.5 Total of predicted joints for people `p` (rlcv.metrics.pckh)."""
    return float(pckh(joints, p["joints"], p["vis"], p["head"])["Total"])


def fit_pose(run, phase: str, net: StackedHourglass, arch: dict, data, kind: str, steps: int,
             batch_size: int, lr: float, jitter: float, eval_every: int, patience: int,
             probe: int = 128) -> None:
    """Train the pose network on `kind` crops with the heatmap MSE over all stacks.

    Logs PCKh on a fixed slice of train people (`train_pckh`) and on all val people
    (`val_pckh`), both on their own `kind` boxes (the curves of the paper's Fig. 4a, b);
    the learning rate is divided by 5 when the PCKh of the held-out part of train
    (`holdout_pckh`, `split_holdout`; never trained on) plateaus (the paper's schedule,
    measured off the reported split).
    """
    train, val = data.load("train"), data.load("val")
    tp, vp = people(train), people(val)
    images, val_images = as_float(train["image"]), as_float(val["image"])
    boxes, val_boxes = person_boxes(kind, tp), person_boxes(kind, vp)
    trained, held = split_holdout(tp)
    sl = trained[:probe]
    tprobe = {k: v[sl] for k, v in tp.items()}
    hprobe = {k: v[held] for k, v in tp.items()}
    opt = optim.adam(net.parameters(), lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.2,
                                                       patience=max(patience, 1))
    n = trained.shape[0]

    def step_fn(step: int) -> dict:
        net.train()
        g = engine.generator(run.seed, phase, step)
        idx = trained[torch.randint(n, (batch_size,), generator=g).to(trained.device)]
        x, tg, w, out = training_batch(arch, images, tp, boxes, idx, jitter, g)
        loss = heatmap_mse(net(x), tg, w, out).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "lr": opt.param_groups[0]["lr"]}

    def eval_fn() -> dict:
        tj, _ = predict(net, arch, images, tprobe["image"], boxes[sl])
        vj, _ = predict(net, arch, val_images, vp["image"], val_boxes)
        out = {"train_pckh": pckh_total(tj, tprobe), "val_pckh": pckh_total(vj, vp)}
        if patience and held.numel():
            hj, _ = predict(net, arch, images, hprobe["image"], boxes[held])
            out["holdout_pckh"] = pckh_total(hj, hprobe)
            sched.step(out["holdout_pckh"])
        return out

    engine.fit(run, phase, {"net": net, "opt": opt, "sched": sched}, steps, step_fn, eval_fn,
               eval_every)


# ------------------------------------------------------------------------ detector

DET_ARCH = ("det_backbone", "det_width", "det_proposals", "det_weights", "max_dets")


def build_person_detector(arch: dict, image_size: int, load: bool = False):
    """torchvision Faster R-CNN (`rlcv.models.detector`) for one class, person; anchors
    spread over 1/8 .. 3/4 of the image side, since people fill a large part of it. Or,
    `det_backbone: ssd300_vgg16`, RMPE's SSD (`rlcv.models.paper_backbones`). Pretrained
    weights are loaded only when `load` (a checkpoint's replace them otherwise). SSD keeps
    the row's `max_dets` detections per image (20 for architectures saved without it)."""
    weights = arch.get("det_weights", "none")
    if arch["det_backbone"] == "ssd300_vgg16":
        from rlcv.models.paper_backbones import ssd300_person

        return ssd300_person(weights, detections=arch.get("max_dets", 20), load=load)
    anchors = tuple(max(4, int(image_size * f)) for f in (0.125, 0.25, 0.5, 0.75))
    return build_detector(arch["det_backbone"], False, 2, image_size, arch["det_width"],
                          head_dim=64, roi_size=5, anchor_sizes=anchors,
                          proposals=arch["det_proposals"], rois_per_image=32, detections=20,
                          weights=weights, load=load)


def detector_targets(split: dict, idx: torch.Tensor, flip: torch.Tensor) -> list[dict]:
    """Tight person boxes of images `idx` as torchvision detection targets."""
    width = split["image"].shape[-1]
    out = []
    for i, f in zip(idx.tolist(), flip.tolist(), strict=True):
        n = int(split["num_people"][i])
        vis = split["joints_vis"][i, :n].bool()
        b = tight_boxes(split["joints"][i, :n][vis.any(1)].float(), vis[vis.any(1)])
        b = b.clamp(0, width)
        b = b[((b[:, 2:] - b[:, :2]) > 1).all(1)]
        if f:
            b = flip_boxes(b, width)
        out.append({"boxes": b, "labels": torch.ones(b.shape[0], dtype=torch.long,
                                                     device=b.device)})
    return out


def fit_detector(run, phase: str, model, data, steps: int, batch_size: int, lr: float) -> None:
    """Train the person detector with torchvision's Faster R-CNN losses (flip augmented)."""
    train = data.load("train")
    images = as_float(train["image"])
    opt = optim.adam(model.parameters(), lr)
    n = images.shape[0]

    def step_fn(step: int) -> dict:
        model.train()
        g = engine.generator(run.seed, phase, step)
        idx = torch.randint(n, (batch_size,), generator=g)
        flip = torch.rand(batch_size, generator=g) < 0.5
        ims = [images[i].flip(-1) if f else images[i] for i, f in zip(idx, flip, strict=True)]
        losses = model(ims, detector_targets(train, idx, flip))
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"det_loss": loss.item()}

    engine.fit(run, phase, {"detector": model, "opt": opt}, steps, step_fn)


def detections(model, images: torch.Tensor, min_score: float, max_dets: int) -> dict:
    """Person boxes of float `images` above `min_score`, at most `max_dets` per image,
    flattened: `image` (D,) index, `boxes` (D, 4), `scores` (D,)."""
    if hasattr(model, "rpn"):
        dets = detect(model, list(images))
    else:   # SSD: torchvision's own post-processing (its NMS, top detections_per_img)
        model.eval()
        with torch.inference_mode():
            dets = model(list(images))
    idx, boxes, scores = [], [], []
    for i, d in enumerate(dets):
        keep = (d["scores"] >= min_score).nonzero()[:, 0][:max_dets]
        idx.append(torch.full((keep.numel(),), i, dtype=torch.long, device=keep.device))
        boxes.append(d["boxes"][keep])
        scores.append(d["scores"][keep])
    return {"image": torch.cat(idx), "boxes": torch.cat(boxes).float(),
            "scores": torch.cat(scores).float()}


def match_people(dets: dict, p: dict, min_iou: float = 0.0) -> torch.Tensor:
    """For every person, the detection of its image overlapping its tight box most
    (-1 when none reaches `min_iou` or the image has no detection)."""
    tight = person_boxes("tight", p)
    iou = (box_iou(tight, dets["boxes"]) if dets["boxes"].numel()
           else tight.new_zeros(len(tight), 0))
    iou = torch.where(p["image"][:, None] == dets["image"][None], iou, -1.0)
    if iou.shape[1] == 0:
        return torch.full((len(tight),), -1, dtype=torch.long, device=tight.device)
    best, who = iou.max(1)
    return torch.where(best > min_iou, who, -1)


# ------------------------------------------------------------------------ multi-person AP


def multi_person_ap(split: dict, dets: dict, joints: torch.Tensor, peaks: torch.Tensor,
                    nms: PoseNMS) -> dict:
    """Per-joint AP and Total (`rlcv.metrics.mpii_multi_person_ap`) of the poses `joints`
    (D, 16, 2) estimated on the boxes `dets["boxes"]` (the boxes the poses were estimated
    on: refined by the agent where there is one), after pose NMS on those boxes. A joint's
    score is its heatmap peak times the box score; a pose's score is the mean of its
    joints'.

    Scored as the MPII multi-person benchmark does, on the multi-person *groups* only: the
    separated single people (`single` = 1) are no ground truth, and a pose whose box
    centre falls outside the group's region (here the union of the group members' tight
    boxes) is ignored rather than counted a false positive."""
    conf = peaks.clamp(min=0) * dets["scores"][:, None]
    preds, scores, gts, vis, heads = [], [], [], [], []
    for i in range(split["image"].shape[0]):
        sel = (dets["image"] == i).nonzero()[:, 0]
        keep = sel[nms(joints[sel], conf[sel], dets["boxes"][sel], conf[sel].mean(1))]
        n = int(split["num_people"][i])
        v = split["joints_vis"][i, :n].bool()
        ok = v.any(1)
        if "single" in split:
            ok &= split["single"][i, :n] == 0
        gj = split["joints"][i, :n][ok].float()
        if ok.any():
            region = tight_boxes(gj, v[ok])
            lo, hi = region[:, :2].amin(0), region[:, 2:].amax(0)
            b = dets["boxes"][keep]
            centre = (b[:, :2] + b[:, 2:]) / 2
            keep = keep[((centre >= lo) & (centre <= hi)).all(1)]
        else:
            keep = keep[:0]
        preds.append(joints[keep])
        scores.append(conf[keep])
        gts.append(gj)
        vis.append(v[ok])
        heads.append(split["head_boxes"][i, :n][ok].float())
    res = mpii_multi_person_ap(preds, scores, gts, vis, heads)
    return {AP_KEYS[k]: float(res[k]) for k in AP_KEYS}


def detector_state(model, arch: dict) -> dict:
    """What a checkpoint keeps of the detector: its weights and architecture."""
    return {"detector": model.state_dict(), "detector_arch": dict(arch)}


def load_detector(state: dict, image_size: int, device):
    """The person detector of a checkpoint written with `detector_state`, on `device`."""
    model = engine.place(build_person_detector(state["detector_arch"], image_size), device)
    model.load_state_dict(state["detector"])
    return model.eval()


def load_pose_net(weights: dict, arch: dict, device) -> StackedHourglass:
    """A stacked hourglass with `arch` and `weights`, on `device`, in eval mode."""
    net = engine.place(build_pose_net(arch), device)
    net.load_state_dict(weights)
    return net.eval()


def upsample_heatmaps(hm: torch.Tensor, size: int) -> torch.Tensor:
    """Heatmaps resized to the crop's side (the agent sees them stacked on the crop)."""
    return F.interpolate(hm, size=(size, size), mode="bilinear", align_corners=False)
