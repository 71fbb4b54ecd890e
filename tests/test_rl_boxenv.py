"""The batched box-refinement environment: actions, rewards (EU-RL Eq. 1, Caicedo &
Lazebnik), per-episode termination, the step limit, and batched == one at a time."""

import pytest
import torch
from torch import nn

from rlcv.rl.boxenv import (
    DOWN,
    LEFT,
    NARROWER,
    RIGHT,
    SHORTER,
    TALLER,
    TERMINATE,
    UP,
    WIDER,
    BoxEnv,
    BoxIoULoss,
    CaicedoReward,
    EURLReward,
    Recognizer,
    apply_actions,
)

BOX = [10.0, 20.0, 30.0, 60.0]   # w 20, h 40, centre (20, 40)
EXPECTED = {
    LEFT: [8, 20, 28, 60], RIGHT: [12, 20, 32, 60], UP: [10, 16, 30, 56],
    DOWN: [10, 24, 30, 64], WIDER: [8, 20, 32, 60], NARROWER: [12, 20, 28, 60],
    TALLER: [10, 16, 30, 64], SHORTER: [10, 24, 30, 56], TERMINATE: BOX,
}


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_each_action_moves_or_scales_the_box_as_specified(action):
    out = apply_actions(torch.tensor([BOX]), torch.tensor([action]), 100, 100)
    torch.testing.assert_close(out, torch.tensor([EXPECTED[action]], dtype=torch.float32))


def test_all_nine_actions_in_one_batch():
    acts = torch.tensor(sorted(EXPECTED))
    out = apply_actions(torch.tensor([BOX]).expand(9, 4), acts, 100, 100)
    want = torch.tensor([EXPECTED[int(a)] for a in acts], dtype=torch.float32)
    torch.testing.assert_close(out, want)


def test_boxes_stay_inside_the_image():
    # at the border, a move is blocked and a scale-up is capped by the image
    edge = torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 50.0, 40.0]])
    out = apply_actions(edge, torch.tensor([LEFT, WIDER]), 40, 50)
    torch.testing.assert_close(out, edge)
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(500, 2, generator=g) * 60
    boxes = torch.cat([boxes, boxes + 2 + torch.rand(500, 2, generator=g) * 60], 1)
    for _ in range(30):
        acts = torch.randint(9, (500,), generator=g)
        boxes = apply_actions(boxes, acts, 64, 80, min_size=2.0)
        assert (boxes[:, 0] >= -1e-4).all() and (boxes[:, 1] >= -1e-4).all()
        assert (boxes[:, 2] <= 80 + 1e-4).all() and (boxes[:, 3] <= 64 + 1e-4).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 2.0 - 1e-4).all()


def test_eurl_reward_matches_eq1_on_hand_made_cases():
    r = EURLReward(alpha=0.1, epsilon=0.5)   # L = 1 - IoU; terminal +1 iff IoU > 0.5
    before = torch.tensor([0.4, 0.4, 0.4, 0.3, 0.6, 0.5])
    after = torch.tensor([0.3, 0.5, 0.4, 0.3, 0.6, 0.5])
    term = torch.tensor([False, False, False, True, True, True])
    # improved -> +0.1; worse -> -0.1; unchanged is "otherwise" -> -0.1;
    # terminate with L 0.3 < ε -> +1, L 0.6 -> -1, L = ε (IoU not > 0.5) -> -1
    torch.testing.assert_close(r(before, after, term),
                               torch.tensor([0.1, -0.1, -0.1, 1.0, -1.0, -1.0]))


def test_caicedo_reward_sign_of_iou_change_and_trigger():
    r = CaicedoReward(eta=3.0, tau=0.6)
    before = torch.tensor([0.5, 0.5, 0.5, 0.4, 0.45])   # IoU 0.5, 0.5, 0.5, 0.6, 0.55
    after = torch.tensor([0.4, 0.6, 0.5, 0.4, 0.45])
    term = torch.tensor([False, False, False, True, True])
    torch.testing.assert_close(r(before, after, term),
                               torch.tensor([1.0, -1.0, 0.0, 3.0, -3.0]))


class Threshold(nn.Module):
    """A perfect "recognition network" for white objects: logits +-10 by brightness."""

    def forward(self, x):
        return (x[:, :1] > 0.5).float() * 20 - 10


def _mask_loss(outputs, boxes, targets):
    from rlcv.metrics import mask_iou
    from rlcv.models.crops import paste

    h, w = targets["mask"].shape[-2:]
    pred = paste(torch.sigmoid(outputs[:, 0]), boxes, h, w) > 0.5
    return 1 - mask_iou(pred, targets["mask"]).float()


def _square_scene(n=1):
    img = torch.zeros(n, 3, 32, 32)
    img[:, :, 8:24, 8:24] = 1.0
    mask = img[:, 0] > 0.5
    return img, mask


def test_env_rewards_follow_the_mask_iou_through_the_recognition_network():
    img, mask = _square_scene(3)
    rec = Recognizer(Threshold(), 16, torch.sigmoid, train_loss=lambda o, b, t: o.mean())
    env = BoxEnv(rec, _mask_loss, EURLReward(0.1, 0.5), t_max=5)
    start = torch.tensor([[8.0, 8.0, 16.0, 24.0]]).expand(3, 4)   # the square's left half
    env.reset(img, start, {"mask": mask})
    torch.testing.assert_close(env.loss, torch.full((3,), 0.5))   # IoU 128 / 256
    res = env.step(torch.tensor([WIDER, NARROWER, TERMINATE]))
    # wider: [7.2, 8, 16.8, 24] covers 8..16.8 of the square: IoU improves -> +0.1
    # narrower: IoU drops -> -0.1; terminate at IoU 0.5 (not > 0.5) -> -1
    torch.testing.assert_close(res.reward, torch.tensor([0.1, -0.1, -1.0]))
    assert res.terminated.tolist() == [False, False, True]
    assert env.loss[0] < 0.5 < env.loss[1]


def test_episodes_end_independently_and_at_the_step_limit():
    img, _ = _square_scene(3)
    env = BoxEnv(None, BoxIoULoss(), EURLReward(0.1, 0.3), t_max=3, crop_size=8)
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]]).expand(3, 4)
    env.reset(img, torch.tensor([[4.0, 8.0, 20.0, 24.0]] * 3), {"box": gt})
    plan = [[TERMINATE, RIGHT, LEFT], [LEFT, TERMINATE, LEFT], [LEFT, LEFT, LEFT]]
    log = []
    for acts in plan:
        before = env.boxes.clone()
        res = env.step(torch.tensor(acts))
        log.append((res, before))
    (r0, b0), (r1, b1), (r2, b2) = log
    assert r0.done.tolist() == [True, False, False] and r0.stepped.tolist() == [True] * 3
    assert r1.done.tolist() == [False, True, False] and r1.stepped.tolist() == [False, True, True]
    assert r2.done.tolist() == [False, False, True] == r2.truncated.tolist()
    assert r2.stepped.tolist() == [False, False, True]
    assert r1.reward[0] == 0 and r2.reward[:2].eq(0).all()      # finished: no reward
    torch.testing.assert_close(env.boxes[0], b0[0])             # ... and frozen boxes
    assert env.t.tolist() == [1, 2, 3] and not env.active.any()
    # terminal +1 needs IoU > 0.7: 0.6 at the start; 0.74 after one move right
    assert r0.reward[0] == -1.0 and r0.reward[1] == 0.1 and r1.reward[1] == 1.0


def _mask_scene(n: int, g: torch.Generator):
    """n random images, their masks, a thresholding recognizer and shifted start boxes."""
    imgs = torch.rand(n, 3, 40, 48, generator=g)
    masks = imgs[:, 0] > 0.6
    rec = Recognizer(Threshold(), 16, torch.sigmoid, train_loss=lambda o, b, t: o.mean())
    starts = torch.tensor([[5.0, 5.0, 30.0, 30.0]]).repeat(n, 1) + torch.arange(float(n))[:, None]
    return imgs, masks, rec, starts


def test_batched_env_equals_one_image_at_a_time():
    g = torch.Generator().manual_seed(1)
    imgs, masks, rec, starts = _mask_scene(6, g)
    acts = torch.randint(9, (6, 4), generator=g)
    env = BoxEnv(rec, _mask_loss, EURLReward(), t_max=4)
    env.reset(imgs, starts, {"mask": masks})
    batched = [env.step(acts[:, t]).reward for t in range(4)]
    boxes = env.boxes.clone()
    for i in range(6):
        one = BoxEnv(rec, _mask_loss, EURLReward(), t_max=4)
        one.reset(imgs[i:i + 1], starts[i:i + 1], {"mask": masks[i:i + 1]})
        for t in range(4):
            assert one.step(acts[i:i + 1, t]).reward.item() == pytest.approx(batched[t][i].item())
        torch.testing.assert_close(one.boxes[0], boxes[i])


def test_action_rewards_preview_what_a_step_would_pay():
    img, _ = _square_scene(1)
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    env = BoxEnv(None, BoxIoULoss(), CaicedoReward(), t_max=5, crop_size=8, history_len=2)
    start = torch.tensor([[4.0, 8.0, 20.0, 24.0]])
    env.reset(img, start, {"box": gt})
    preview = env.action_rewards()[0]
    for a in range(9):
        env.reset(img, start, {"box": gt})
        assert env.step(torch.tensor([a])).reward.item() == preview[a].item()
    env.reset(img, start, {"box": gt})
    env.step(torch.tensor([RIGHT]))
    hist = env.history_onehot()[0].view(2, 9)
    assert hist[0].sum() == 0 and hist[1, RIGHT] == 1   # newest action last


def test_action_rewards_of_some_rows_match_the_full_preview():
    # the DQN's expert previews only the episodes that follow it this step (issue 22)
    imgs, masks, rec, starts = _mask_scene(5, torch.Generator().manual_seed(3))
    env = BoxEnv(rec, _mask_loss, EURLReward(), t_max=4)
    env.reset(imgs, starts, {"mask": masks})
    env.step(torch.tensor([RIGHT, UP, TERMINATE, WIDER, LEFT]))
    full = env.action_rewards()
    assert not full.isnan().any()
    rows = torch.tensor([True, False, False, True, True])
    part = env.action_rewards(rows)
    torch.testing.assert_close(part[rows], full[rows])
    assert part[~rows].isnan().all()
    assert env.action_rewards(torch.zeros(5, dtype=torch.bool)).isnan().all()
