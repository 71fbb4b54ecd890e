"""Training batches by keyed draws (`datasets._feed`): the same batches from an index
decoded ahead in workers as from the cached split, restarts on resume, and a detector
that trains on an indexed split without ever holding that split in memory."""

from __future__ import annotations

import pytest
import torch

from datasets import _common, coco
from datasets._common import Staged
from datasets._feed import loader_workers, take
from rlcv import engine
from rlcv.errors import ParamsError

CI = {**coco.PARAMS["config"], **coco.PARAMS["ci"]}


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("feed")
    coco.synth(root / "raw", CI, 0)
    coco.stage(root / "raw", root / "cached", CI)
    coco.stage(root / "raw", root / "indexed", {**CI, "cache": False})
    return root


def _equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k, v in a.items():
        w = b[k]
        if isinstance(v, torch.Tensor):
            if not (isinstance(w, torch.Tensor) and torch.equal(v, w)):
                return False
        elif len(v) != len(w) or not all(torch.equal(x, y) for x, y in zip(v, w, strict=True)):
            return False
    return True


def test_a_cached_split_gives_the_rows_the_loops_drew_by_hand(staged):
    data = Staged(staged / "cached" / "single")
    train = data.load("train")
    feed = data.feed("train")
    assert len(feed) == train["image"].shape[0]
    keys = (3, "phase")
    for step in range(3):
        g, by_hand = engine.generator(*keys, step), engine.generator(*keys, step)
        batch = feed.draw(g, 5, keys, step, 3)
        idx = torch.randint(len(feed), (5,), generator=by_hand)   # the loops' old first draw
        assert _equal(batch, take(train, idx))
        assert torch.equal(batch["image"], train["image"][idx])
        assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=by_hand))


@pytest.mark.parametrize("subset", coco.SUBSETS)
def test_an_index_decoded_ahead_in_workers_gives_the_cached_batches(staged, subset):
    cached = Staged(staged / "cached" / subset).feed("train")
    indexed = Staged(staged / "indexed" / subset).feed("train", workers=1)
    assert indexed.indexed and not cached.indexed and len(indexed) == len(cached)
    keys, steps = (0, "base"), 4

    def both(step, k=keys):
        return [f.draw(engine.generator(*k, step), 3, k, step, steps) for f in (cached, indexed)]

    for step in (0, 1, 2):
        a, b = both(step)
        assert _equal(a, b), step
    for step in (1, 3):   # out of sequence (a resumed phase): the workers restart there
        a, b = both(step)
        assert _equal(a, b), step
    a, b = both(0, (0, "finetune"))   # another phase through the same feed
    assert _equal(a, b)
    indexed.close()


def test_the_index_path_refuses_a_generator_already_drawn_from(staged):
    feed = Staged(staged / "indexed" / "single").feed("train", workers=0)
    g = engine.generator(0, "p", 0)
    torch.rand(1, generator=g)
    with pytest.raises(RuntimeError, match="keyed generator"):
        feed.draw(g, 2, (0, "p"), 0, 1)
    with pytest.raises(RuntimeError, match="keyed generator"):
        feed.draw(engine.generator(0, "p", 1), 2, (0, "p"), 0, 1)


def test_loader_workers_setting(monkeypatch):
    monkeypatch.setenv("RLCV_LOADER_WORKERS", "3")
    assert loader_workers() == 3
    monkeypatch.setenv("RLCV_LOADER_WORKERS", "many")
    with pytest.raises(ParamsError, match="RLCV_LOADER_WORKERS"):
        loader_workers()
    monkeypatch.delenv("RLCV_LOADER_WORKERS")
    assert 1 <= loader_workers() <= 8


def test_the_detector_trains_on_an_index_without_loading_its_train_split(staged, tmp_path,
                                                                          monkeypatch):
    from methods.pgdetector import detector as P

    loaded = []
    real = _common.load_split
    monkeypatch.setattr(_common, "load_split",
                        lambda path, split: loaded.append(split) or real(path, split))
    monkeypatch.setenv("RLCV_LOADER_WORKERS", "1")
    data = Staged(staged / "indexed" / "detection")
    cfg = P.PGDetectorConfig(width=4, head_dim=16, roi_size=3, proposals=16, rois_per_image=8,
                             batch_size=2, base_steps=2, steps=1, k=2)
    run = engine.Run(row="pgdet-standard", seed=0, dir=tmp_path / "run",
                     device=torch.device("cpu"), checkpoint_every=10**6)
    ckpt = P.train_standard(cfg, data, run)
    steps = [r for r in run.history if "loss" in r]
    assert len(steps) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    assert [r["eval_ap"] for r in run.history if "eval_ap" in r]   # probe AP, first val images
    scores = P.evaluate(str(ckpt), data)
    assert scores and all(0 <= v <= 1 for v in scores.values())
    # the report's figure (Fig. 3) counts objects from the index records, decodes 4 images
    from types import SimpleNamespace

    from methods.pgdetector import plots

    work = tmp_path / "report"
    (work / "data/staged/coco").mkdir(parents=True)
    (work / "data/staged/coco/detection").symlink_to(staged / "indexed" / "detection")
    for row, _ in plots.FIGURE_ROWS:
        (work / "runs" / f"{row}-0").mkdir(parents=True)
        for f in (ckpt, ckpt.with_name(ckpt.name + ".sha256")):
            (work / "runs" / f"{row}-0" / f.name).write_bytes(f.read_bytes())
    decoded = []
    real_load = coco.load_sample
    monkeypatch.setattr(coco, "load_sample", lambda *a: decoded.append(1) or real_load(*a))
    monkeypatch.chdir(work)
    params = SimpleNamespace(seeds=[0], synthetic=True, profile="ci")
    ((png, _),) = plots.detection_figure(params, work / "results")
    assert png.read_bytes()[:4] == b"\x89PNG" and len(decoded) == min(4, len(data.dataset("val")))
    assert loaded == []   # neither split was ever held whole: batches, chunks, 4 samples


def test_chunks_are_the_split_in_order_both_ways(staged):
    cached, indexed = (Staged(staged / k / "detection") for k in ("cached", "indexed"))
    whole = cached.load("val")
    n = len(whole["image"])
    for stop in (None, 3):
        want = n if stop is None else 3
        for data in (cached, indexed):
            parts = list(data.chunks("val", 2, stop=stop, workers=1))
            assert [len(p["image"]) for p in parts] == [2] * (want // 2) + [1] * (want % 2)
            ids = [int(i) for p in parts for i in p["image_id"]]
            assert ids == whole["image_id"][:want].tolist()
            images = [x for p in parts for x in p["image"]]
            assert all(torch.equal(a, b) for a, b in zip(images, whole["image"][:want],
                                                         strict=True))


@pytest.mark.parametrize("kind", ["cached", "indexed"])
def test_sharded_draws_are_slices_of_the_global_batch(staged, kind, monkeypatch):
    from rlcv import dist

    keys, n = (1, "base"), 4
    feed = Staged(staged / kind / "detection").feed("train", workers=0)
    whole = feed.draw(engine.generator(*keys, 0), n, keys, 0, 2)
    parts = []
    for rank in (0, 1):   # two processes of a torchrun, one after the other
        monkeypatch.setattr(dist, "world_size", lambda: 2)
        monkeypatch.setattr(dist, "rank", lambda r=rank: r)
        g = engine.generator(*keys, 0)
        parts.append(feed.draw(g, n, keys, 0, 2, shard=True))
        assert torch.equal(torch.rand(3, generator=g),   # g left after the global draw
                           torch.rand(3, generator=_after_draw(keys, len(feed), n)))
    ids = [int(i) for p in parts for i in p["image_id"]]
    assert [len(p["image"]) for p in parts] == [2, 2]
    assert ids == [int(i) for i in whole["image_id"]]


def _after_draw(keys, size, n):
    g = engine.generator(*keys, 0)
    torch.randint(size, (n,), generator=g)
    return g
