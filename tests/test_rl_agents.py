"""The TD actor-critic (EU-RL Algorithm 1) and the DQN (Caicedo & Lazebnik) each learn
the optimal policy of a tiny box environment whose optimum is known, and the policy
gradient never reaches the recognition network unless asked to (ablation (c))."""

import torch
from torch import nn

from rlcv.models.agent_nets import PolicyValueNet, QNet
from rlcv.rl import actor_critic, dqn
from rlcv.rl.boxenv import (
    DOWN,
    LEFT,
    RIGHT,
    TERMINATE,
    UP,
    BoxEnv,
    BoxIoULoss,
    CaicedoReward,
    EURLReward,
    Recognizer,
)

GT = torch.tensor([8.0, 8.0, 24.0, 24.0])
MOVE = 0.25   # moves of a quarter of the box, so the tiny 8 x 8 crops show them clearly
# start boxes one move (4 px) off the object, or on it. Terminating pays only on the
# object (IoU > 0.9), so the optimal policy moves back and terminates; on the object it
# terminates at once. With k improving steps before terminating, the discounted return
# is a/(1-γ)·(1-γ^k) + T·γ^k (a the step reward, T the terminal one): it decreases with k
# when a/(1-γ) < T, so γ < 0.9 for Eq. 1 (a = 0.1, T = 1) and γ < 2/3 for Caicedo &
# Lazebnik's (a = 1, T = 3) make the shortest path the unique optimum.
OFFSETS = {RIGHT: (-4.0, 0.0), LEFT: (4.0, 0.0), DOWN: (0.0, -4.0), UP: (0.0, 4.0),
           TERMINATE: (0.0, 0.0)}



def _image(n: int) -> torch.Tensor:
    """The object (a square in the blue channel) on red/green ramps along x/y: every box
    has its own crop, so the state is fully observed (no two boxes look alike)."""
    ramp = (torch.arange(32.0) + 0.5) / 32
    img = torch.stack([ramp.expand(32, 32), ramp[:, None].expand(32, 32), torch.zeros(32, 32)])
    img[2, 8:24, 8:24] = 1.0
    return img.expand(n, 3, 32, 32).clone()


def _scene(n: int, g: torch.Generator):
    """n images; start boxes drawn from OFFSETS."""
    img = _image(n)
    first = torch.tensor(list(OFFSETS))[torch.randint(len(OFFSETS), (n,), generator=g)]
    shift = torch.tensor([OFFSETS[int(a)] for a in first])
    starts = GT + torch.cat([shift, shift], 1)
    return img, starts, {"box": GT.expand(n, 4).clone(), "mask": img[:, 2] > 0.5}, first


def _check_optimal(result, first):
    moved = first != TERMINATE
    assert (result["loss"] < 1e-3).all(), "every episode should end on the object"
    assert torch.equal(result["steps"], 1 + moved.long()), "the shortest path"


def test_actor_critic_learns_the_optimal_policy_of_a_tiny_env():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    env = BoxEnv(None, BoxIoULoss(), EURLReward(0.1, 0.1), t_max=4, crop_size=8, move=MOVE)
    net = PolicyValueNet(3, 9, width=8, hidden=32)
    agent = actor_critic.TDActorCritic(net, lr=2e-3, gamma=0.8, entropy=0.1, value_coef=0.25)
    for _ in range(250):
        img, starts, targets, _ = _scene(40, g)
        actor_critic.train_episodes(env, agent, img, starts, targets, g)
    img, starts, targets, first = _scene(60, g)
    res = actor_critic.greedy(env, net, img, starts, targets)
    _check_optimal(res, first)
    optimal = torch.where(first == TERMINATE, 1.0, 0.1 + 1.0)   # undiscounted returns
    torch.testing.assert_close(res["returns"], optimal)


def test_dqn_learns_the_optimal_policy_of_a_tiny_env():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    env = BoxEnv(None, BoxIoULoss(), CaicedoReward(eta=3.0, tau=0.9), t_max=4, crop_size=8,
                 move=MOVE, history_len=2)
    qnet = QNet(3, 2 * 9, width=8, hidden=32)
    agent = dqn.DQNAgent(qnet, lr=3e-3, gamma=0.5, batch_size=64, target_every=25)
    memory = dqn.ReplayMemory(2000, 2)
    img, starts, targets, _ = _scene(64, g)
    # 150 updates, ε decaying over the first 60: 69 of seeds 0-69 learn the optimum (60
    # updates with ε over 40 passed only 68-78% of 40 seeds, the seed in use by luck)
    for step in range(150):
        idx = torch.randint(64, (32,), generator=g)
        eps = max(0.1, 1.0 - step / 60)
        dqn.train_episodes(env, agent, memory, img, idx, starts[idx],
                           {k: v[idx] for k, v in targets.items()}, g, eps, guided=0.5,
                           warmup=64)
    img, starts, targets, first = _scene(60, g)
    res = dqn.greedy(env, qnet, img, starts, targets)
    _check_optimal(res, first)
    torch.testing.assert_close(res["returns"], torch.where(first == TERMINATE, 3.0, 4.0))


class _Expert:
    """A stand-in environment whose expert preview is a given (B, 9) reward table."""
    n_actions = 9

    def __init__(self, rewards):
        self.rewards, self.active = rewards, torch.ones(rewards.shape[0], dtype=torch.bool)

    def action_rewards(self, rows):
        return torch.where(rows[:, None], self.rewards, torch.nan)


def test_guided_exploration_picks_a_paying_action_by_each_episode_alone():
    # issue 22: the expert previews only the exploring episodes, so an episode's pick must
    # not move with the other episodes' rewards (torch.multinomial's picks did)
    g = torch.Generator().manual_seed(0)
    rewards = torch.where(torch.rand(200, 9, generator=g) < 0.3, 1.0, -1.0)
    rewards[0] = -1.0                                  # nothing pays: any action
    greedy = torch.zeros(200, dtype=torch.long)
    picks = dqn.explore(_Expert(rewards), greedy, 1.0, 1.0, torch.Generator().manual_seed(1))
    paying = rewards.gather(1, picks[:, None])[:, 0] > 0
    assert paying[1:][rewards[1:].gt(0).any(1)].all()
    others = rewards.clone()
    others[100:] = -others[100:]
    again = dqn.explore(_Expert(others), greedy, 1.0, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(again[:100], picks[:100])
    assert not torch.equal(again[100:], picks[100:])


class TinyRecognizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def _recognizer_setup(seen: list):
    torch.manual_seed(0)
    net = TinyRecognizer()

    def train_loss(outputs, boxes, targets):
        seen.append(outputs.shape[0])
        return outputs.pow(2).mean()

    rec = Recognizer(net, 8, torch.sigmoid, train_loss)
    env = BoxEnv(rec, BoxIoULoss(), EURLReward(0.1, 0.1), t_max=3, move=MOVE)
    agent = actor_critic.TDActorCritic(PolicyValueNet(env.obs_channels, 9, 4, 16), lr=1e-2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    img, starts, targets, _ = _scene(8, torch.Generator().manual_seed(1))
    return net, env, agent, opt, (img, starts, targets)


def test_policy_gradient_never_reaches_the_recognition_network():
    seen = []
    net, env, agent, opt, (img, starts, targets) = _recognizer_setup(seen)
    before = [p.detach().clone() for p in net.parameters()]
    stats = actor_critic.train_episodes(env, agent, img, starts, targets,
                                        torch.Generator().manual_seed(2),
                                        recognizer_opt=opt, upgrade=False)
    assert stats["length"] >= 1 and seen == []
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_upgrade_trains_on_last_inputs_only_and_backprop_switch_reaches_it():
    seen = []
    net, env, agent, opt, (img, starts, targets) = _recognizer_setup(seen)
    before = [p.detach().clone() for p in net.parameters()]
    actor_critic.train_episodes(env, agent, img, starts, targets,
                                torch.Generator().manual_seed(2), recognizer_opt=opt)
    assert seen == [8]          # one upgrade step, on the 8 episodes' last inputs
    assert not all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert seen == [8]


def _count_steps(opt) -> list:
    calls = []
    step = opt.step
    opt.step = lambda *a, **k: (calls.append(1), step(*a, **k))[1]
    return calls


def test_ablation_c_sends_only_the_policy_term_into_the_recognition_network(monkeypatch):
    # with the TD errors zeroed in the policy term, a value loss or entropy bonus reaching
    # θ_r would still move it: it must not move; with them, it moves, in one step per batch
    real = actor_critic.policy_grad_to_recognizer
    for zero_td in (True, False):
        seen = []
        net, env, agent, opt, (img, starts, targets) = _recognizer_setup(seen)
        agent.entropy, agent.value_coef = 1.0, 1.0
        monkeypatch.setattr(actor_critic, "policy_grad_to_recognizer",
                            lambda ag, e, i, a, td, z=zero_td: real(ag, e, i, a, td * (not z)))
        before = [p.detach().clone() for p in net.parameters()]
        steps = _count_steps(opt)
        stats = actor_critic.train_episodes(env, agent, img, starts, targets,
                                            torch.Generator().manual_seed(2), recognizer_opt=opt,
                                            upgrade=False, backprop_policy=True)
        moved = not all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
        assert seen == [] and steps == [1] and stats["length"] >= 1
        assert moved is not zero_td
        if not zero_td:   # clipped to the agent's norm
            step = torch.linalg.vector_norm(torch.cat(
                [(a - b).flatten() for a, b in zip(before, net.parameters(), strict=True)]))
            assert step <= 0.1 * agent.grad_clip + 1e-6   # SGD lr 0.1
