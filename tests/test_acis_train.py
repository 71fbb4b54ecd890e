"""ACIS training mechanics on a tiny deterministic set: the decoder stays frozen while
the actor trains, the termination unit learns the count, the critic regresses Eq. 7's
discounted returns, the actor update climbs an exact critic, and the data preparation
keeps every instance."""

import itertools
from types import SimpleNamespace

import pytest
import torch

import methods.acis.actor as A
import methods.acis.train as T
from methods.acis.evaluate import infer, n_predicted
from rlcv import engine
from rlcv.models.acis import AUX, Actor, MaskDecoder

HW = (16, 16)


SLOTS = [(1, 1), (1, 9), (9, 5)]


def tiny_set(n: int = 24) -> T.Prepared:
    """Images with 1-3 squares in fixed slots (the count is visible in the image)."""
    count = torch.tensor([1 + i % 3 for i in range(n)])
    inst = torch.zeros(n, 3, *HW, dtype=torch.bool)
    for i, c in enumerate(count.tolist()):
        for k, (y, x) in enumerate(SLOTS[:c]):
            inst[i, k, y:y + 6, x:x + 6] = True
    fg = inst.any(1, keepdim=True).float()
    image = torch.cat([fg - 0.5, 0.2 * fg, torch.zeros_like(fg)], 1)
    aux = torch.cat([fg, torch.zeros(n, AUX - 1, *HW)], 1)
    return T.Prepared(image, inst, count, aux)


def cfg(**kw):
    base = dict(batch_size=8, prefill=0.0, lr=3e-3, critic_lr=1e-3, pos_weight=5.0,
                reward="dice", gamma=0.9, kl_weight=0.0, warmup=1, actor_every=1, max_steps=21)
    return SimpleNamespace(**{**base, **kw})


def models(seed: int = 0):
    torch.manual_seed(seed)
    return Actor(HW, 4, 4, 16), MaskDecoder(HW, 4, 4, True)


def run(tmp_path, name="r"):
    return engine.Run(row=name, seed=0, dir=tmp_path / name, checkpoint_every=10**6)


def test_decoder_is_frozen_and_the_actor_learns_through_it(tmp_path):
    data = tiny_set()
    for mode in ("ac", "bl", "bl-trunc"):
        actor, decoder = models()
        before = {k: v.clone() for k, v in decoder.state_dict().items()}
        mu_before = actor.mu.weight.detach().clone()
        A.fit_actor(run(tmp_path, mode), "train", data, actor, decoder, cfg(), mode, 4, 4)
        assert all(not p.requires_grad for p in decoder.parameters())
        for k, v in decoder.state_dict().items():
            assert torch.equal(v, before[k]), f"{mode}: decoder {k} changed"
        # the mean head only gets gradient through the decoder (KL weight 0): it moved
        assert not torch.equal(actor.mu.weight, mu_before), f"{mode}: actor did not learn"


def test_termination_unit_learns_the_count(tmp_path):
    data = tiny_set()
    actor, decoder = models(1)
    _, stop = infer(actor, decoder, data, 4)
    untrained = (n_predicted(stop) == data.count).float().mean().item()
    A.fit_actor(run(tmp_path), "train", data, actor, decoder, cfg(lr=1e-2), "bl", 120, 4)
    _, stop = infer(actor, decoder, data, 4)
    acc = (n_predicted(stop) == data.count).float().mean().item()
    assert acc >= 0.9 > untrained, (untrained, acc)


def _spy_episode(monkeypatch, prefill_all: bool = False):
    """Record the batch `fit_actor` draws, the rewards and the returns it computes."""
    seen = {}
    real_returns, real_rewards = A.discounted_returns, A.rewards

    def spy_rewards(pred, gt, kind):
        seen["r"] = real_rewards(pred, gt, kind)
        seen.update(kind=kind, pred=pred.clone())
        return seen["r"]

    def spy_returns(r, valid, g, bootstrap=None):
        seen.update(valid=valid, gamma=g, boot=bootstrap)
        seen["G"] = real_returns(r, valid, g, bootstrap)
        return seen["G"]

    monkeypatch.setattr(A, "rewards", spy_rewards)
    monkeypatch.setattr(A, "discounted_returns", spy_returns)
    real_sample = A.sample_batch
    monkeypatch.setattr(A, "sample_batch",
                        lambda *a: seen.setdefault("batch", real_sample(*a)) and seen["batch"])
    return seen


def test_critic_target_on_a_finished_episode_is_eq7(tmp_path, monkeypatch):
    """Every episode runs to its end and the critic regresses Eq. 7's discounted return,
    sum_{i>=t} gamma^(i-t) r_i over the rest of the episode, with r_i recomputed here from
    the recorded masks and the potential (no bootstrap by the critic's own estimate)."""
    data = tiny_set()
    actor, decoder = models(2)
    gamma = 0.8
    seen = _spy_episode(monkeypatch)
    critic = A.Critic(HW, 4)
    calls = []
    critic.register_forward_hook(lambda m, i, o: calls.append((i[3].detach().clone(),
                                                               o.detach().clone())))
    real_rollout = A.rollout
    monkeypatch.setattr(A, "rollout", lambda *a, **k: seen.setdefault("ep", real_rollout(*a, **k)))
    r = run(tmp_path)
    A.fit_actor(r, "train", data, actor, decoder, cfg(gamma=gamma, warmup=5, reward="iou",
                prefill=0.5), "ac", 1, 4, critic)
    batch = seen["batch"]
    n_max = int(batch.remaining.max())
    t = n_max + 1                                  # every prediction and the stop step
    assert seen["kind"] == "iou" and seen["gamma"] == gamma and seen["boot"] is None
    assert seen["G"].shape == (batch.image.shape[0], t)
    # the only critic call before the update is the regression on the predicting steps
    assert len(calls) == 1
    _, q = calls[0]
    # the episode's masks: the decoder's probabilities of every step it recorded
    masks = torch.sigmoid(seen["ep"].logits[:t, :, 0]).transpose(0, 1)   # (B, T, h, w)
    assert torch.equal(masks, seen["pred"])
    for i in range(batch.image.shape[0]):
        n = int(batch.remaining[i])
        tg = batch.targets[i][batch.targets[i].flatten(1).any(1)].float()   # its N targets
        # Eq. 4 by brute force over one-to-one assignments, Eq. 5, then Eq. 7
        phi = [0.0]
        for k in range(1, n + 1):
            m = masks[i, :k]
            inter = (m[:, None] * tg[None]).sum((2, 3))
            union = m.sum((1, 2))[:, None] + tg.sum((1, 2))[None] - inter
            sc = (inter / union).double()
            phi.append(max(sum(sc[a, p[a]] for a in range(k))
                           for p in itertools.permutations(range(tg.shape[0]), k)))
        rew = [phi[k + 1] - phi[k] for k in range(n)]
        want = [sum(gamma ** (k - s) * rew[k] for k in range(s, n)) for s in range(n)]
        got = seen["G"][i, :n]
        torch.testing.assert_close(got, torch.tensor(want, dtype=got.dtype), atol=1e-5,
                                   rtol=1e-5)
        assert torch.all(seen["G"][i, n:] == 0)
    # the logged critic loss is the squared error of Q against exactly these targets, on
    # the steps that predict an instance
    g = seen["G"].float().T.reshape(-1)[seen["valid"].T.reshape(-1)]
    assert q.shape == g.shape == (int(batch.remaining.sum()),)
    loss = ((q - g) ** 2).mean()
    assert abs(r.history[-1]["critic_loss"] - loss.item()) < 1e-5


def test_episodes_cut_at_the_cap_are_closed_by_the_critic(tmp_path, monkeypatch):
    """Past `max_steps` an episode is cut and its return closed by the critic's value of
    the next state; episodes that end within the cap are not."""
    data = tiny_set()
    actor, decoder = models(2)
    seen = _spy_episode(monkeypatch)
    critic = A.Critic(HW, 4)
    A.fit_actor(run(tmp_path), "train", data, actor, decoder, cfg(warmup=5, max_steps=2),
                "ac", 1, 4, critic)
    batch = seen["batch"]
    assert seen["G"].shape[1] == 2
    cut = batch.remaining > 2
    assert cut.any() and torch.all(seen["boot"][~cut] == 0)
    assert torch.all(seen["boot"][cut] != 0)


@pytest.mark.parametrize("mode", ["bl", "bl-trunc", "ac"])
def test_training_unrolls_as_many_steps_as_the_episode_has(tmp_path, monkeypatch, mode):
    """BL backpropagates through every step of the episode (and BL-Trunc and AC see the
    same episodes): the rollout runs N predictions plus the stop step, N = the most
    instances left in the batch, up to `max_steps`."""
    data = tiny_set()
    seen = _spy_episode(monkeypatch)
    steps = []
    real_rollout = A.rollout

    def spy_rollout(*a, **k):
        ep = real_rollout(*a, **k)
        steps.append((ep.logits.shape[0], ep.logits.requires_grad))
        return ep

    monkeypatch.setattr(A, "rollout", spy_rollout)
    actor, decoder = models(4)
    A.fit_actor(run(tmp_path, mode), "train", data, actor, decoder, cfg(prefill=0.0), mode, 1,
                4, A.Critic(HW, 4) if mode == "ac" else None)
    n = int(seen["batch"].remaining.max())
    assert n == 3   # the batch holds an image with three instances (no prefill)
    assert steps == [(n + 1, mode == "bl")]
    steps.clear()
    A.fit_actor(run(tmp_path, mode + "-cap"), "train", data, actor, decoder,
                cfg(prefill=0.0, max_steps=2), mode, 1, 4,
                A.Critic(HW, 4) if mode == "ac" else None)
    assert steps[0][0] == 2 + (mode == "ac")   # AC: one more step to close cut episodes


def test_prepare_keeps_instances_and_counts():
    label = torch.zeros(2, 12, 12, dtype=torch.int16)
    label[0, :6, :6], label[0, 6:, 6:], label[0, :2, 10:] = 1, 3, 2
    label[1, 2:8, 2:8] = 1
    split = {"image": torch.zeros(2, 3, 12, 12, dtype=torch.uint8), "label": label}
    data = T.prepare(split, 2)
    assert data.hw == (6, 6)
    assert data.count.tolist() == [3, 1]
    assert data.inst.shape == (2, 3, 6, 6)
    assert data.inst[1, 1:].sum() == 0 and data.inst[1, 0].sum() == 9
    # each working pixel takes its majority label, so instances never overlap
    assert data.inst.sum(1).max() <= 1


class ExactCritic(torch.nn.Module):
    """Q(s, m) computed from the ground truth: the soft Dice of m with its best target not
    yet covered by M_t (the immediate reward's shape). Reads the targets of the batch
    `fit_actor` drew last (`batch`, set by a spy on sample_batch)."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))   # the critic optimizer needs one
        self.batch = None
        self.rows = None   # flat step-major indices of the steps Q is asked about

    def forward(self, image, aux, mask, m):
        tg = self.batch.targets.float()
        # Q is asked about the predicting steps (flat step-major rows); no episode here
        # is long enough to be cut, so there is no bootstrap call on B states
        tg = tg[self.rows % tg.shape[0]]
        area = tg.sum((2, 3))
        dice = 2 * (m * tg).sum((2, 3)) / (m.sum((2, 3)) + area).clamp(min=1e-6)
        covered = (mask * tg).sum((2, 3)) > 0.5 * area
        dice = torch.where(covered | (area == 0), torch.zeros_like(dice), dice)
        return dice.max(1).values + 0 * self.unused


def _first_step_dice(actor, decoder, data) -> float:
    """Mean soft Dice of the greedy first prediction with its best ground truth."""
    with torch.no_grad():
        ep = T.rollout(actor, decoder, data.image, data.aux,
                       T.state_pyramid(data.image, data.aux), torch.zeros_like(data.image[:, :1]),
                       1)
        m = torch.sigmoid(ep.logits[0])
        tg = data.inst.float()
        dice = 2 * (m * tg).sum((2, 3)) / (m.sum((2, 3)) + tg.sum((2, 3))).clamp(min=1e-6)
    return dice.max(1).values.mean().item()


def test_policy_iteration_follows_the_critic_to_better_masks(tmp_path, monkeypatch):
    """Algorithm 1's actor update, given an exact critic, raises the Dice of the masks it
    predicts: the update itself is right, so where actor-critic training does not help
    (results/), the learned critic's gradient is what limits it."""
    data = tiny_set()
    critic = ExactCritic()
    real_sample = A.sample_batch

    def spy(*a):
        critic.batch = real_sample(*a)
        return critic.batch

    real_active = A.active_steps

    def spy_rows(mask):
        critic.rows = real_active(mask)
        return critic.rows

    monkeypatch.setattr(A, "sample_batch", spy)
    monkeypatch.setattr(A, "active_steps", spy_rows)
    actor, _ = models(3)
    decoder = T.fit_cvae(run(tmp_path, "cvae"), "cvae", data, 4, 4, True, 150, 8, 5e-3, 1e-3,
                         5.0)   # a decoder that can draw the squares, as pre-training gives
    before = _first_step_dice(actor, decoder, data)
    A.fit_actor(run(tmp_path), "train", data, actor, decoder, cfg(warmup=0, lr=3e-3), "ac",
                60, 4, critic)
    after = _first_step_dice(actor, decoder, data)
    assert after > before + 0.03, (before, after)


def test_critic_takes_an_empty_batch():
    """A batch whose episodes have all finished (every leaf prefilled) has no step to
    score: the critic returns no Q-values (and a zero loss), not an IndexError."""
    critic = A.Critic(HW, 4)
    q = critic(torch.zeros(0, 3, *HW), torch.zeros(0, AUX, *HW), torch.zeros(0, 1, *HW),
               torch.zeros(0, 1, *HW))
    assert q.shape == (0,)
    one = critic(torch.rand(1, 3, *HW), torch.rand(1, AUX, *HW), torch.zeros(1, 1, *HW),
                 torch.ones(1, 1, *HW))
    assert one.shape == (1,) and torch.isfinite(one).all()
