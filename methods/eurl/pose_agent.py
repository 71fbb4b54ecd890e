"""EU-RL on MPII pose, the agent rows (Xie et al. 2018, Sections 3, 4.2.3 and 5).

An actor-critic agent sits between RMPE's person detector and the pose network: starting
from each detected box it moves / rescales the box (the 9 actions) until it terminates,
and the pose network's prediction on the last box is the pose (Algorithm 2). The state is
the crop and the pose network's 16 heatmaps; the loss L of Eq. 1 is the heatmap MSE
against the ground-truth Gaussians; rewards ±0.1 at intermediate steps and ±1 on
terminate against the threshold ε (`epsilon`, see params.yaml). Training is Algorithm 1
(`rlcv.rl.actor_critic.train_episodes`): TD actor-critic, then the environment upgrade,
one supervised step of the pose network on the episodes' last inputs.

Rows: all insert the agent into RMPE's pipeline ("we maintain the same object detection,
pose estimation, and pose level NMS algorithms. Additionally, we insert an agent among the
object detection and pose estimation algorithms"): the detector and the pose network
(loose-pretrained, tight-finetuned) of the RMPE checkpoint are where they start.

- `eurl-pose-t2` (**ours**, Table 2) on `eurl-pose-t2-rmpe` and `eurl-pose` (**Ours,
  full** / **Upgrade at last step**, Table 3 and Fig. 4) on `eurl-pose-rmpe`: the full
  framework, run twice because the paper's tables come from different runs (issue 19:
  8-stack hourglass for Table 2 on the paper profile, two-stack for Table 3 and Fig. 4;
  the small profiles give both chains the same small hourglass);
- `eurl-pose-ablations`, Table 3's ablations, each the full settings with one switch
  flipped, one engine phase each (`ABLATIONS`): **(a) w/o feedback**, the agent sees only
  the crop; **(b) w/o upgrading recognition**, the pose network stays as RMPE's; **(c)
  back-propagate policy gradient**, the policy loss also trains the pose network through
  the heatmaps it feeds the agent (the only variant whose pose network receives policy
  gradients);
- `eurl-pose-every-step` (**Upgrade at every step**, Fig. 4c, d): the upgrade trains on
  inputs drawn uniformly from every step of the episodes instead of the last one
  (`upgrade: every`), with the same number and size of upgrade steps.

Scores: multi-person AP of detector -> agent -> pose NMS on the val images (Tables 2, 3)
and PCKh of the val people, each from the detection overlapping it most (Fig. 4c, d).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.eurl.deepmask import jitter_boxes
from methods.eurl.matched import MatchedConfig, agent_config, fit_matched, upgrade_budget
from methods.eurl.pose_data import (
    as_float,
    detections,
    load_detector,
    load_pose_net,
    match_people,
    multi_person_ap,
    pckh_total,
    people,
    person_boxes,
    predict_from_heatmaps,
    split_holdout,
)
from methods.eurl.pose_env import agent_step, make_env, pose_recognizer
from rlcv import engine, optim
from rlcv.models.agent_nets import PolicyValueNet
from rlcv.models.hourglass import last
from rlcv.models.pose_nms import PoseNMS
from rlcv.rl.actor_critic import TDActorCritic, greedy

UPGRADES = ("last", "every", "none")


@dataclass
class PoseAgentConfig:
    """Settings of the EU-RL pose rows (agent, environment and upgrade)."""

    feedback: bool = True
    """The agent sees the pose heatmaps besides the crop; false: ablation (a)."""
    upgrade: str = "last"
    """Upgrade the pose network on the episodes' "last" inputs, on "every" step's, or "none" (b)."""
    backprop_policy: bool = False
    """Back-propagate the policy gradient into the pose network: ablation (c)."""
    episodes: int = 40
    """Batches of training episodes (one engine step each)."""
    batch_size: int = 32
    """Episodes (people) run side by side in one batch."""
    t_max: int = 5
    """Step limit of an episode."""
    lr: float = 1e-3
    """Agent learning rate α (Adam)."""
    recog_lr: float = 2.5e-4
    """Pose-network learning rate β of the upgrade (Adam; the paper's 2.5e-4)."""
    gamma: float = 0.9
    """Discount factor γ."""
    entropy: float = 0.01
    """Weight of the policy-entropy bonus."""
    epsilon: float = 0.5
    """Terminal threshold ε of Eq. 1 on the *relative* heatmap loss (`HeatmapLoss`: MSE
    over the empty heatmap's MSE); terminating earns +1 when L < ε."""
    start_jitter: float = 0.1
    """Relative jitter of training start boxes (detections on training images are tighter
    than on held-out ones)."""
    width: int = 16
    """Channels of the policy/value trunk's first convolution."""
    hidden: int = 128
    """Width of the shared fully connected layer (unless `head_on_trunk`)."""
    head_on_trunk: bool = False
    """No shared layer: the policy and value heads on the trunk's pooled features (EU-RL's
    ResNet-18, "the last layer is replaced with a fully connected layer with 9 output units")."""
    backbone: str = "small"
    """Policy/value trunk: "small" (three convolutions) or "resnet18" (the paper's)."""
    weights: str = "none"
    """Pretrained weights of the resnet18 trunk (torchvision name, e.g.
    ResNet18_Weights.IMAGENET1K_V1; extra channels start at zero) or "none" (random)."""
    eval_every: int = 10
    """Engine steps between greedy evaluations (train / val PCKh, Fig. 4c, d)."""
    plateau_patience: int = 0
    """Evaluations without improvement of the held-out train people's PCKh before the agent
    lr is divided by 5 (0: never)."""


def _starts(dets: dict, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Each person's start box: the detection overlapping it most; (boxes, matched)."""
    who = match_people(dets, p)
    tight = person_boxes("tight", p)
    boxes = torch.where((who >= 0)[:, None], dets["boxes"][who.clamp(min=0)], tight)
    return boxes, who >= 0


def _person_pckh(env, net, images, p: dict, starts: torch.Tensor, ok: torch.Tensor,
                 arch: dict) -> float:
    """PCKh of people `p` posed after greedy refinement from `starts`; people without a
    detection (`ok` false) count as missed."""
    targets = {"joints": p["joints"], "vis": p["vis"]}
    res = greedy(env, net, images[p["image"]], starts, targets)
    joints, _ = predict_from_heatmaps(last(res["outputs"]), res["boxes"], arch)
    joints = torch.where(ok[:, None, None], joints, torch.nan)
    return pckh_total(joints, p)


ABLATIONS = {"(a) w/o feedback": {"feedback": False},
             "(b) w/o upgrading recognition": {"upgrade": "none"},
             "(c) back-propagate policy gradient": {"backprop_policy": True}}
"""Table 3's ablations: the full settings with one switch flipped each."""


def ablation_settings(cfg: PoseAgentConfig | dict) -> dict[str, dict]:
    """Settings of each Table 3 ablation, from the full model's `cfg`."""
    base = dict(vars(cfg)) if hasattr(cfg, "__dataclass_fields__") else dict(cfg)
    return {label: {**base, **flip} for label, flip in ABLATIONS.items()}


def pipeline(run, data) -> dict:
    """What every agent variant shares: RMPE's checkpoint (the row's first requirement:
    eurl-pose-rmpe or eurl-pose-t2-rmpe), the people and their start boxes (the detection
    overlapping each person most) on train and val."""
    rmpe = engine.load_checkpoint(next(iter(run.inputs.values())))
    rc = rmpe["config"]
    train, val = data.load("train"), data.load("val")
    images, val_images = as_float(train["image"]), as_float(val["image"])
    detector = load_detector(rmpe, images.shape[-1], run.device)
    tp, vp = people(train), people(val)
    starts, _ = _starts(detections(detector, images, rc["det_score"], rc["max_dets"]), tp)
    val_starts, val_ok = _starts(detections(detector, val_images, rc["det_score"],
                                            rc["max_dets"]), vp)
    return {"rmpe": rmpe, "images": images, "val_images": val_images, "tp": tp, "vp": vp,
            "starts": starts, "val_starts": val_starts, "val_ok": val_ok}


def draw_people(pool: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """`n` people drawn uniformly from the person indices `pool` with generator `g` (the
    draw of the agent's episodes, and of its compute-matched control's steps)."""
    return pool[torch.randint(pool.shape[0], (n,), generator=g).to(pool.device)]


def _fit_variant(c: dict, run, sh: dict, phase: str) -> dict:
    """Algorithm 1 with settings `c` as engine phase `phase`; returns the trained policy
    and pose network. Every variant (and row) of a seed draws the same episodes and the
    same initial policy, so they differ only by their settings."""
    if c["upgrade"] not in UPGRADES:
        raise ValueError(f"upgrade must be one of {UPGRADES}, got {c['upgrade']!r}")
    arch = sh["rmpe"]["pose_arch"]
    images, tp, starts = sh["images"], sh["tp"], sh["starts"]
    net = load_pose_net(sh["rmpe"]["pose"], arch, run.device)
    env = make_env(net, arch, c)
    with torch.random.fork_rng():
        torch.manual_seed(run.seed)
        policy = PolicyValueNet(env.obs_channels, env.n_actions, c["width"], c["hidden"],
                                c["backbone"], c["weights"], c["head_on_trunk"])
        policy = engine.place(policy, run.device)
    agent = TDActorCritic(policy, c["lr"], c["gamma"], c["entropy"])
    recog_opt = optim.adam(net.parameters(), c["recog_lr"])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        agent.opt, mode="max", factor=0.2, patience=max(c["plateau_patience"], 1))
    trained, held = split_holdout(tp)   # the plateau is measured on `held`, never trained on
    probe = trained[:64]
    tprobe = {k: v[probe] for k, v in tp.items()}
    hprobe = {k: v[held] for k, v in tp.items()}

    def step_fn(step: int) -> dict:
        policy.train()
        g = engine.generator(run.seed, "agent", step)
        idx = draw_people(trained, c["batch_size"], g)
        boxes = jitter_boxes(starts[idx], c["start_jitter"], g)
        targets = {"joints": tp["joints"][idx], "vis": tp["vis"][idx]}
        return agent_step(env, agent, recog_opt, c, images[tp["image"][idx]], boxes,
                          targets, g)

    def eval_fn() -> dict:
        out = {"train_pckh": _person_pckh(env, policy, images, tprobe, starts[probe],
                                          starts.new_ones(len(probe), dtype=torch.bool), arch),
               "val_pckh": _person_pckh(env, policy, sh["val_images"], sh["vp"],
                                        sh["val_starts"], sh["val_ok"], arch)}
        if c["plateau_patience"] and held.numel():
            out["holdout_pckh"] = _person_pckh(env, policy, images, hprobe, starts[held],
                                               starts.new_ones(len(held), dtype=torch.bool),
                                               arch)
            sched.step(out["holdout_pckh"])
        return out

    objects = {"agent": policy, "opt": agent.opt, "pose": net, "pose_opt": recog_opt,
               "sched": sched}
    engine.fit(run, phase, objects, c["episodes"], step_fn, eval_fn, c["eval_every"])
    return {"config": c, "policy": policy.state_dict(), "obs_channels": env.obs_channels,
            "pose": net.state_dict()}


def _shared_state(sh: dict) -> dict:
    rmpe = sh["rmpe"]
    return {"pose_arch": rmpe["pose_arch"], "detector": rmpe["detector"],
            "detector_arch": rmpe["detector_arch"], "rmpe_config": rmpe["config"]}


def train_agent(cfg: PoseAgentConfig, data, run) -> str:
    """Algorithm 1 on the MPII pipeline: agent + pose-network upgrade (one variant)."""
    sh = pipeline(run, data)
    variant = _fit_variant(dict(vars(cfg)), run, sh, "agent")
    return engine.save_checkpoint(run, cfg, variants={"": variant}, **_shared_state(sh))


def train_ablations(cfg: PoseAgentConfig, data, run) -> str:
    """Table 3's ablations (a), (b), (c), one engine phase each, from the full settings."""
    sh = pipeline(run, data)
    variants = {label: _fit_variant(c, run, sh, f"agent_{label[1]}")
                for label, c in ablation_settings(cfg).items()}
    return engine.save_checkpoint(run, cfg, variants=variants, **_shared_state(sh))


def evaluate_agent(ckpt: str, data) -> dict:
    """Algorithm 2 on val: multi-person AP of detector -> agent -> pose NMS (Tables 2, 3)
    and PCKh of the val people from their best detection (Fig. 4c, d); for the
    ablations row, the first variant's metrics plain and the others' as "metric@label"."""
    state = engine.load_checkpoint(ckpt)
    val = data.load("val")
    out = {}
    for k, (label, variant) in enumerate(state["variants"].items()):
        res = _evaluate_variant(state, variant, val, with_pckh=not label)
        out.update({(f"{m}@{label}" if k else m): v for m, v in res.items()})
    return out


def _evaluate_variant(state: dict, variant: dict, val: dict, with_pckh: bool) -> dict:
    cfg, rc, arch = variant["config"], state["rmpe_config"], state["pose_arch"]
    images, dev = as_float(val["image"]), val["image"].device
    dets = detections(load_detector(state, images.shape[-1], dev), images, rc["det_score"],
                      rc["max_dets"])
    net = load_pose_net(variant["pose"], arch, dev)
    policy = PolicyValueNet(variant["obs_channels"], 9, cfg["width"], cfg["hidden"],
                            cfg["backbone"], head_on_trunk=cfg.get("head_on_trunk", False))
    policy = engine.place(policy, dev)
    policy.load_state_dict(variant["policy"])
    env = make_env(net, arch, cfg)
    # no ground truth at test time: the loss (hence the rewards) is computed against
    # empty targets and ignored; the greedy policy only reads the observations
    d = dets["boxes"].shape[0]
    blank = {"joints": images.new_zeros(d, 16, 2),
             "vis": torch.zeros(d, 16, dtype=torch.bool, device=dev)}
    stop0 = float("nan")
    if d:
        res = greedy(env, policy, images[dets["image"]], dets["boxes"], blank)
        joints, peaks = predict_from_heatmaps(last(res["outputs"]), res["boxes"], arch)
        stop0 = (res["steps"] == 0).float().mean().item()
        dets = {**dets, "boxes": res["boxes"]}   # pose NMS on the refined boxes
    else:
        joints, peaks = images.new_zeros(0, 16, 2), images.new_zeros(0, 16)
    out = multi_person_ap(val, dets, joints, peaks, PoseNMS(eta=rc["nms_eta"]))
    # the share of evaluation episodes that terminate before moving the box (issue 19)
    out["stop_at_step0"] = stop0
    if with_pckh:
        vp = people(val)
        starts, ok = _starts(dets, vp)
        out["pckh_total"] = _person_pckh(env, policy, images, vp, starts, ok, arch)
    return out


def train_rmpe_matched(cfg: MatchedConfig, data, run) -> str:
    """RMPE whose hourglass gets the `eurl-pose` agent's upgrade steps (on the people's
    start boxes: the detection overlapping each most, as the agent starts)."""
    agent = agent_config(cfg, run)
    budget = upgrade_budget(agent)
    sh = pipeline(run, data)
    rmpe, tp = sh["rmpe"], sh["tp"]
    net = load_pose_net(rmpe["pose"], rmpe["pose_arch"], run.device).eval()
    fit_matched(run, pose_recognizer(net, rmpe["pose_arch"]), budget, sh["starts"],
                agent.get("start_jitter", 0.0),
                lambda idx: (sh["images"][tp["image"][idx]],
                             {"joints": tp["joints"][idx], "vis": tp["vis"][idx]}),
                pool=split_holdout(tp)[0])
    state = {k: rmpe[k] for k in ("pose_arch", "detector", "detector_arch")}
    return engine.save_checkpoint(run, cfg, matched_budget=budget, rmpe_config=rmpe["config"],
                                  pose=net.state_dict(), **state)
