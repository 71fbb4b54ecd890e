"""CiSS-Net's paper profile (issue 17): PSPNet-50/101 (rlcv.models.pspnet) as the baseline
and domain network, SGD with the poly schedule, Section 3.2's augmentation with image and
labels aligned, domain features per batch on the paper path and precomputed once on the
small one (methods.cissnet.paper)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.cissnet import paper
from methods.cissnet import rows as C
from methods.cissnet.data import IGNORE, Task
from rlcv import engine, optim
from rlcv.models.cissnet import BaseNet, DomainNet
from rlcv.models.pspnet import PSPNet, parameter_count


def test_pspnet_parameter_counts_and_output_stride():
    torch.manual_seed(0)
    net = PSPNet(150, depth=50).eval()
    # torchvision's ResNet-50 is 25.557 M with its 2.049 M fc: the trunk is the rest
    assert parameter_count(net.trunk) == 25_557_032 - 2_049_000
    # PSPNet-50 with ADE20K's 150-class head: 46.7 M at inference, 49.1 M with the aux branch
    inference = parameter_count(net) - parameter_count(net.head.aux)
    assert 46.0e6 < inference < 47.5e6 and 48.5e6 < parameter_count(net) < 50.0e6
    with torch.no_grad():
        c4, c5 = net.trunk(torch.zeros(1, 3, 64, 48), mid=True)
        logits = net(torch.zeros(1, 3, 64, 48))
    assert c5.shape == (1, 2048, 8, 6) and c4.shape == (1, 1024, 8, 6)   # dilated: stride 8
    assert logits.shape == (1, 150, 8, 6)
    assert 65e6 < parameter_count(PSPNet(19, depth=101, aux=False)) < 67e6   # PSPNet-101


def test_poly_schedule_follows_the_closed_form_and_resumes():
    steps, w = 10, nn.Parameter(torch.zeros(1))
    b = nn.Parameter(torch.zeros(1))
    opt = optim.build("sgd", [{"params": [w], "lr": 2e-3}, {"params": [b], "lr": 2e-4}], 2e-3)
    sched = optim.schedule("poly", opt, steps)
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for t, (lr_base, lr_bias) in enumerate(seen):
        assert lr_base == pytest.approx(2e-3 * (1 - t / steps) ** 0.9, rel=1e-12)
        assert lr_bias == pytest.approx(2e-4 * (1 - t / steps) ** 0.9, rel=1e-12)
    assert seen[0] == [2e-3, 2e-4] and opt.param_groups[0]["lr"] == 0.0
    assert type(opt).__name__ == "SGD" and opt.defaults["momentum"] == 0.9
    assert optim.schedule("constant", opt, steps) is None
    again = optim.build("sgd", [{"params": [w], "lr": 2e-3}, {"params": [b], "lr": 2e-4}], 2e-3)
    resumed = optim.schedule("poly", again, steps)
    resumed.load_state_dict({**sched.state_dict(), "last_epoch": 4})
    resumed.step()   # step 5, as an uninterrupted run
    assert again.param_groups[0]["lr"] == pytest.approx(seen[5][0], rel=1e-12)


def _pattern(n=2, h=48, w=64, classes=7, block=8):
    """Labels in 8x8 blocks of random classes; channel 0 of the image encodes them, channel
    1 is a left-to-right ramp."""
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(classes, (n, h // block, w // block), generator=g)
    labels = blocks.repeat_interleave(block, 1).repeat_interleave(block, 2)
    image = torch.zeros(n, 3, h, w, dtype=torch.uint8)
    image[:, 0] = (labels * 30 + 30).to(torch.uint8)
    image[:, 1] = (torch.arange(w) * 4).to(torch.uint8)
    return image, labels


def _decode(x):
    """The label each augmented pixel's colour encodes (-1 where it is padding)."""
    return (((x[:, 0] + 0.5) * 255 - 30) / 30).round().long()


def _interior(t, k=5):
    """Labelled pixels whose k x k neighbourhood has one label, away from the crop's border
    (where bilinear resizing of the image cannot mix two classes)."""
    f = t[:, None].float()
    one = (nn.functional.max_pool2d(f, k, 1, k // 2) == -nn.functional.max_pool2d(-f, k, 1,
                                                                                   k // 2))[:, 0]
    one[:, :k // 2] = one[:, -(k // 2):] = False
    one[..., :k // 2] = one[..., -(k // 2):] = False
    return one & (t != IGNORE)


def test_augmentation_keeps_image_and_label_aligned():
    image, labels = _pattern()
    flips = set()
    for seed in range(8):   # crop and mirror only: exact
        x, t = paper.scale_crop_mirror(image, labels, 32, (1.0, 1.0),
                                       torch.Generator().manual_seed(seed))
        assert x.shape == (2, 3, 32, 32) and t.shape == (2, 32, 32)
        assert torch.equal(_decode(x), t)
        flips.add(bool(x[0, 1, 0, 0] > x[0, 1, 0, -1]))   # the ramp runs backwards
    assert flips == {True, False}
    sizes = set()
    for seed in range(12):   # resized by 0.5-2.0 (bilinear image, nearest labels), padded
        x, t = paper.scale_crop_mirror(image, labels, 40, (0.5, 2.0),
                                       torch.Generator().manual_seed(seed))
        pad = t == IGNORE
        sizes.add(int(pad.sum()))
        assert (x.permute(1, 0, 2, 3)[:, pad] == 0).all()     # padding: image 0, label ignored
        inner = _interior(t)
        assert inner.sum() > 50 and torch.equal(_decode(x)[inner], t[inner]), seed
    assert len(sizes) > 1 and 0 in sizes   # scales above and below the crop


def test_cell_targets_sample_the_feature_grid_corner_to_corner():
    t = torch.arange(473 * 473).view(1, 473, 473)
    cells = paper.cell_targets(t, (60, 60))   # a 473 crop at stride 8 (PSPNet's 60 x 60)
    assert torch.equal(cells, t[..., ::8, ::8])
    assert paper.cell_targets(t[..., :64, :64], (8, 8))[0, -1, -1] == t[0, 63, 63]


class _Counting(nn.Module):
    """A stride-8 stand-in domain network that records the batches it sees."""

    channels, stride = 6, 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, self.channels, 1)
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x, mid=False):
        self.seen.append(tuple(x.shape))
        return self.conv(nn.functional.avg_pool2d(x, 8, ceil_mode=True))


class _Data:
    """A staged set held in memory, as `datasets._common.Staged` serves it."""

    manifest = {"dataset": "pascal_context", "num_classes": 4}
    device = torch.device("cpu")

    def __init__(self, n_train=10, n_val=3, size=32):
        g = torch.Generator().manual_seed(0)
        self.splits = {s: {"image": torch.randint(256, (n, 3, size, size), generator=g,
                                                  dtype=torch.uint8),
                           "label": torch.randint(4, (n, size, size), generator=g,
                                                  dtype=torch.uint8)}
                       for s, n in (("train", n_train), ("val", n_val))}

    def load(self, split):
        return self.splits[split]

    def feed(self, split):
        from datasets._feed import Feed

        return Feed(self, split)


def _fit(tmp_path, **cfg):
    data, domain = _Data(), _Counting()
    task = Task.of(data.manifest)
    cfg = C.CissConfig(width=8, embed=2, steps=2, batch_size=3, eval_every=2, **cfg)
    source = paper.feature_source(domain, data, task, data.load("val"), cfg)
    before = list(domain.seen)
    run = engine.Run(row="t", seed=0, dir=tmp_path, device=torch.device("cpu"))
    nets = C._fit_ciss(cfg, run, "learned", task, None, source)
    return source, before, domain.seen[len(before):], nets


def test_paper_path_computes_domain_features_per_augmented_batch(tmp_path):
    source, before, during, nets = _fit(tmp_path, crop_size=24, eval_batch=2, optimizer="sgd",
                                        schedule="poly", base_width=16, dropout=0.1)
    assert type(source) is paper.PerBatch and before == []       # nothing precomputed
    # two training batches of 3 augmented 24 px crops, then the val set in chunks of 2
    assert during == [(3, 3, 24, 24), (3, 3, 24, 24), (2, 3, 32, 32), (1, 3, 32, 32)]
    assert nets["snet"]["base.net.0.0.weight"].shape[0] == 16    # the Base Net's width
    assert any(isinstance(m, nn.Dropout2d) for m in BaseNet(6, 4, 16, 0.1).modules())


def test_small_path_precomputes_features_once_and_keeps_its_modules(tmp_path):
    source, before, during, _ = _fit(tmp_path)
    assert type(source) is paper.Precomputed
    assert before == [(10, 3, 32, 32), (3, 3, 32, 32)] and during == []   # once, whole sets
    cfg = C.BaselineConfig()
    assert (cfg.backbone, cfg.optimizer, cfg.schedule, cfg.crop_size) == ("small", "adam",
                                                                          "constant", 0)
    domain, head = paper.build_segmenter(C.BaselineConfig(width=4, channels=8), 5, "cpu")
    assert type(domain) is DomainNet and type(head) is BaseNet
    assert list(head.state_dict()) == ["net.0.0.weight", "net.0.1.weight", "net.0.1.bias",
                                       "net.1.weight", "net.1.bias"]   # no dropout module
    opt, sched = cfg.build_optimizer([{"params": list(head.parameters()), "lr": 1e-3}], 5)
    assert type(opt) is torch.optim.Adam and sched is None


def test_paper_profile_sets_the_papers_networks_rates_and_crops(repo):
    from rlcv import params as P

    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    expect = {"ade20k": ("resnet50", 473, 2e-3, 2e-4), "cityscapes": ("resnet101", 713, 5e-4,
                                                                          5e-5),
              "pascal-context": ("resnet50", 473, 5e-4, 5e-5)}
    for ds, (backbone, crop, base_lr, lr) in expect.items():
        base = P.build_config(C.BaselineConfig, params.method(f"ciss-baseline-{ds}"), ds)
        assert (base.backbone, base.crop_size, base.optimizer, base.schedule,
                base.batch_size) == (backbone, crop, "sgd", "poly", 16)
        rows = [f"ciss-net-{ds}"] + ([f"ciss-ablations-{ds}"] if ds != "pascal-context" else [])
        for row in rows:
            cls = C.AblationConfig if "ablations" in row else C.CissConfig
            cfg = P.build_config(cls, params.method(row), row)
            assert (cfg.base_lr, cfg.lr, cfg.crop_size, cfg.base_width) == (base_lr, lr, crop,
                                                                            512), row
            # "sixteen Nvidia M40 GPUs. The batch size on each gpu is 2": 32
            assert (cfg.optimizer, cfg.schedule, cfg.dropout, cfg.batch_size) == (
                "sgd", "poly", 0.1, 32), row
