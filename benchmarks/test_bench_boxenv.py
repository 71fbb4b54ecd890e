"""Environment steps per second of the batched box-refinement environment (issue 5).

One `BoxEnv` stepping a batch of 64 episodes (one roi_align crop call, one recognition
forward, tensor rewards) against the same environment run one image at a time (64
environments of batch 1, stepped in a Python loop). Both sides run 5 steps from a reset
on one thread (the ratio is then the algorithmic speed-up, stable on a shared machine);
rates and ratio go to `extra_info` and are printed. Two workloads:

- `full`: EU-RL's smoke-sized step: 96 px images, DeepMask (width 16) on 32 px crops,
  Eq. 1 rewards on the pasted mask's IoU. DeepMask's convolutions are compute-bound on
  the CPU: ~0.5 ms per crop at batch 64 (1.2 ms at batch 1), two thirds of a batched
  step, so they hold this ratio near 3x whatever the environment does (a GPU is where
  batching the network pays). Reported; asserted: batching still pays (>= 1.5x).
- `mechanics`: the environment alone (crop, actions, box-IoU reward, bookkeeping) with
  Caicedo & Lazebnik's box-IoU loss and no recognition network: what batching the
  environment itself buys, issue 5's 10x target. Asserted only >= 2x, as the ratio
  moves with the machine's load; the figure is printed and kept in `extra_info`.
"""

from __future__ import annotations

import pytest
import torch
from _timing import best_time

from methods.eurl.regress import MaskIoULoss, deepmask_recognizer
from rlcv.models.segnet import MaskNet
from rlcv.rl.boxenv import BoxEnv, BoxIoULoss, CaicedoReward, EURLReward

BATCH, STEPS, SIZE = 64, 5, 96



@pytest.fixture(scope="module")
def workload():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH, 3, SIZE, SIZE, generator=g)
    masks = torch.zeros(BATCH, SIZE, SIZE, dtype=torch.bool)
    masks[:, 30:70, 20:60] = True
    xy = torch.rand(BATCH, 2, generator=g) * 30
    boxes = torch.cat([xy, xy + 30 + torch.rand(BATCH, 2, generator=g) * 30], 1)
    actions = torch.randint(8, (STEPS, BATCH), generator=g)   # moves and scales only
    torch.manual_seed(0)
    net = MaskNet(16).eval()
    return images, masks, boxes, actions, net


def _env(net) -> BoxEnv:
    if net is None:
        return BoxEnv(None, BoxIoULoss(), CaicedoReward(), t_max=100, crop_size=32)
    return BoxEnv(deepmask_recognizer(net, 32), MaskIoULoss(), EURLReward(), t_max=100)


def _rollout(env: BoxEnv, images, masks, boxes, actions) -> None:
    with torch.inference_mode():
        env.reset(images, boxes, {"mask": masks, "box": boxes.flip(0)})
        for a in actions:
            env.step(a)


@pytest.mark.parametrize("kind,floor", [("full", 1.5), ("mechanics", 2.0)])
def test_bench_boxenv_batched_vs_one_at_a_time(benchmark, workload, kind, floor):
    images, masks, boxes, actions, net = workload
    net = net if kind == "full" else None
    env = _env(net)

    def batched():
        _rollout(env, images, masks, boxes, actions)

    singles = [_env(net) for _ in range(BATCH)]

    def one_at_a_time():
        for i, e in enumerate(singles):
            _rollout(e, images[i:i + 1], masks[i:i + 1], boxes[i:i + 1], actions[:, i:i + 1])

    benchmark.pedantic(batched, rounds=5, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_batched = stats.stats.min if stats is not None else best_time(batched, 5)
    t_single = best_time(one_at_a_time, 3)
    rate_b, rate_s = BATCH * STEPS / t_batched, BATCH * STEPS / t_single
    ratio = rate_b / rate_s
    info = dict(batched_steps_per_s=round(rate_b), single_steps_per_s=round(rate_s),
                ratio=round(ratio, 1), batch=BATCH, torch_threads=1)
    if kind == "mechanics":
        info["issue_target_10x_met"] = ratio >= 10
    benchmark.extra_info.update(info)
    target = {"mechanics": f"issue 5 target 10x: {'met' if ratio >= 10 else 'not met'}",
              "full": "DeepMask's convolutions bound it on the CPU"}[kind]
    print(f"\nBoxEnv ({kind}) at batch {BATCH}: {rate_b:.0f} env steps/s batched, {rate_s:.0f} "
          f"one image at a time: {ratio:.1f}x ({target}; asserted floor {floor}x)")
    assert ratio >= floor, f"batched env only {ratio:.1f}x faster than one image at a time"



EXPLORING = 0.4   # share of episodes that follow the expert: ε·guided early in a DQN run


def test_bench_expert_preview_of_the_exploring_rows_only(benchmark, workload):
    """The DQN's guided exploration (issue 22): previewing the 9 actions' rewards only for
    the episodes that follow the expert this step, against previewing every episode (the
    code before). With EU-RL's mask reward each previewed box costs a DeepMask forward,
    so the ratio approaches 1/EXPLORING; asserted >= 1.5x."""
    images, masks, boxes, _, net = workload
    env = _env(net)
    env.reset(images, boxes, {"mask": masks, "box": boxes.flip(0)})
    g = torch.Generator().manual_seed(1)
    rows = torch.rand(BATCH, generator=g) < EXPLORING

    def some_rows():
        env.action_rewards(rows)

    benchmark.pedantic(some_rows, rounds=5, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_rows = stats.stats.min if stats is not None else best_time(some_rows, 5)
    t_all = best_time(env.action_rewards, 5)
    ratio = t_all / t_rows
    benchmark.extra_info.update(rows_previewed=int(rows.sum()), batch=BATCH,
                                ratio=round(ratio, 2), torch_threads=1)
    print(f"\nexpert preview of {int(rows.sum())}/{BATCH} episodes: {t_rows * 1e3:.0f} ms, "
          f"of all: {t_all * 1e3:.0f} ms ({ratio:.1f}x; asserted floor 1.5x)")
    assert ratio >= 1.5, f"previewing the exploring rows only is just {ratio:.2f}x faster"


TERMINAL = 0.8   # share of replayed transitions that end their episode (smoke EU-RL DQN
                 # episodes last 1.06-2 steps, and every episode end is terminal)


def _learn_observing_every_next_state(agent, memory, observe, g):
    """DQNAgent.learn as it was before issue 22: the next state of every replayed
    transition observed, terminal ones masked out of the target afterwards."""
    import torch.nn.functional as F
    from torch import nn

    from rlcv.rl.dqn import onehot_history

    b = memory.sample(agent.batch_size, g)
    obs, nobs = observe(b["image"], b["box"]), observe(b["image"], b["next_box"])
    q = agent.q(obs, onehot_history(b["hist"])).gather(1, b["action"][:, None])[:, 0]
    with torch.no_grad():
        best = agent.target(nobs, onehot_history(b["next_hist"])).max(1).values
        target = b["reward"] + agent.gamma * best * (~b["terminated"]).float()
    loss = F.smooth_l1_loss(q, target)
    agent.opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(agent.q.parameters(), agent.grad_clip)
    agent.opt.step()
    agent.updates += 1
    return loss.item()


def test_bench_dqn_learn_observes_only_live_next_states(benchmark, workload):
    """A DQN replay update (issue 22) observes the next states of the non-terminal
    transitions only (a terminal one's target is its reward): against observing every
    next state (the code before), at EU-RL's smoke sizes with DeepMask feedback. Each
    observation is a DeepMask forward, so the ratio approaches 2 / (2 - TERMINAL);
    asserted >= 1.2x, and both give the same loss from the same state."""
    import copy

    from rlcv.models.agent_nets import QNet
    from rlcv.rl.dqn import DQNAgent, ReplayMemory

    images, masks, boxes, _, net = workload
    env = _env(net)
    torch.manual_seed(0)
    agent = DQNAgent(QNet(env.obs_channels, env.history_len * 9, 9, 16, 128), 1e-3,
                     batch_size=64)
    memory = ReplayMemory(512, env.history_len)
    g = torch.Generator().manual_seed(2)
    n, hist = 512, torch.full((512, env.history_len), -1)
    box = boxes[torch.arange(n) % BATCH]
    memory.push(image=torch.randint(BATCH, (n,), generator=g), box=box, hist=hist,
                action=torch.randint(9, (n,), generator=g), reward=torch.rand(n, generator=g),
                next_box=box.flip(0), next_hist=hist,
                terminated=torch.rand(n, generator=g) < TERMINAL)

    def observe(idx, b):
        return env.observe_at(images, b, idx)

    before = copy.deepcopy(agent)
    same = (agent.learn(memory, observe, torch.Generator().manual_seed(3)),
            _learn_observing_every_next_state(before, memory, observe,
                                              torch.Generator().manual_seed(3)))
    assert same[0] == same[1], same

    def live_only():
        agent.learn(memory, observe, g)

    def every_next_state():
        _learn_observing_every_next_state(before, memory, observe, g)

    benchmark.pedantic(live_only, rounds=5, iterations=1, warmup_rounds=1)
    stats = getattr(benchmark, "stats", None)
    t_new = stats.stats.min if stats is not None else best_time(live_only, 5)
    t_old = best_time(every_next_state, 5)
    ratio = t_old / t_new
    benchmark.extra_info.update(terminal_share=TERMINAL, replay_batch=64,
                                ratio=round(ratio, 2), torch_threads=1)
    print(f"\nDQN replay update, {TERMINAL:.0%} terminal: {t_new * 1e3:.0f} ms, observing "
          f"every next state: {t_old * 1e3:.0f} ms ({ratio:.2f}x; asserted floor 1.2x)")
    assert ratio >= 1.2, f"observing only live next states is just {ratio:.2f}x faster"
