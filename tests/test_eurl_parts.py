"""The pieces of EU-RL's COCO pipeline (issue 5): the regressor's box parameterisation, the
spatial-transformer crop against roi_align's, the mask loss of the rewards, box scores."""

import torch

from methods.eurl.regress import MaskIoULoss, box_scores, deepmask_recognizer
from rlcv.models.boxnets import BoxRegressor, decode, encode, stn_crop
from rlcv.models.crops import crop
from rlcv.models.segnet import MaskNet


def test_encode_decode_round_trip_and_regressor_boxes_lie_inside():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 96.0, 64.0]])
    torch.testing.assert_close(decode(encode(boxes, 64, 96), 64, 96), boxes)
    torch.manual_seed(0)
    out = BoxRegressor(4)(torch.rand(3, 3, 48, 80))
    assert out.shape == (3, 4)
    assert (out[:, :2] >= 0).all() and (out[:, 2] <= 80).all() and (out[:, 3] <= 48).all()
    assert (out[:, 2:] >= out[:, :2]).all()


def test_stn_crop_samples_where_crop_does_and_passes_gradients_to_the_box():
    # any image: both take one bilinear sample per output pixel at the bin centre
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 40, 60, generator=g)
    boxes = torch.tensor([[5.0, 4.0, 45.0, 30.0], [10.5, 2.0, 30.0, 37.5]], requires_grad=True)
    a = stn_crop(img, boxes, 16)
    torch.testing.assert_close(a, crop(img, boxes.detach(), 16), atol=1e-5, rtol=0)
    img[:, 0] = torch.arange(60.0) / 60
    a = stn_crop(img, boxes, 16)
    a[:, 0].sum().backward()   # red grows with x: moving the box right raises the sum
    assert boxes.grad[:, 0].gt(0).all() and boxes.grad[:, 2].gt(0).all()


def test_mask_loss_is_one_minus_the_pasted_mask_iou():
    # a "recognition output" that is +10 on the left half of the crop, -10 elsewhere
    out = torch.full((1, 1, 8, 8), -10.0)
    out[..., :4] = 10.0
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    gt = torch.zeros(1, 16, 16, dtype=torch.bool)
    gt[:, :, :4] = True                       # 64 px; the prediction covers 128 px
    loss = MaskIoULoss()(out, box, {"mask": gt})
    torch.testing.assert_close(loss, torch.tensor([0.5]))


def test_deepmask_upgrade_loss_is_bce_on_the_cropped_mask():
    torch.manual_seed(0)
    rec = deepmask_recognizer(MaskNet(4), 16)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 8:24] = True
    inside = torch.tensor([[10.0, 10.0, 22.0, 22.0]] * 2)   # the crop is all object
    logits = torch.full((2, 1, 16, 16), 20.0)
    assert rec.train_loss(logits, inside, {"mask": masks}).item() < 1e-3
    assert rec.train_loss(-logits, inside, {"mask": masks}).item() > 10
    outside = torch.tensor([[0.0, 0.0, 6.0, 6.0]] * 2)      # the crop is all background
    assert rec.train_loss(-logits, outside, {"mask": masks}).item() < 1e-3


def test_box_scores():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [20.0, 20, 30, 30]])
    s = box_scores(pred, gt)
    assert abs(s["mean_iou"] - 0.5) < 1e-9 and abs(s["recall_50"] - 2 / 3) < 1e-9


def test_dqn_row_differs_from_regress_agent_only_in_the_learner():
    """regress-dqn-deepmask-eurl shares Regress-Agent-Deepmask's start, reward, feedback,
    upgrade and budget in every profile (the suite question "actor-critic beats DQN")."""
    import pytest

    import methods
    from rlcv import params as P

    params = P.load()
    shared = ("start", "start_jitter", "terminal_iou", "upgrade", "recog_lr", "gamma",
              "episodes", "batch_size", "t_max", "width", "backbone")
    for profile in ("ci", "smoke", "paper"):
        params.raw["profile"] = profile
        cfg = {r: vars(P.build_config(methods.METHODS[r].config, params.method(r), r))
               for r in ("regress-agent-deepmask", "regress-dqn-deepmask-eurl")}
        ac, dqn = cfg["regress-agent-deepmask"], cfg["regress-dqn-deepmask-eurl"]
        for k in shared:
            assert ac[k] == pytest.approx(dqn[k]), (profile, k, ac[k], dqn[k])
        # the heads belong to the learner: on the paper profile the actor-critic's policy
        # and value layers sit on the ResNet-18's features (EU-RL), the Q-network keeps
        # its fully connected layers (Caicedo & Lazebnik) at the agent's feature width
        if ac["head_on_trunk"]:
            assert profile == "paper" and dqn["hidden"] == 512
        else:
            assert ac["hidden"] == dqn["hidden"], profile
        assert dqn["reward"] == "eurl" and dqn["feedback"] and dqn["upgrade"]
        assert dqn["history"] == 0   # no action history in the state, as the actor-critic
