"""Training batches drawn by index, one code path at every scale (DESIGN.md, "Stage once,
load lazily"; issue 18).

A training loop draws its batch from the step's keyed generator
(`engine.generator(seed, phase, step)`), so a resumed run, and a run on another device,
draws the same batches as an uninterrupted one. `Feed.draw(g, ...)` makes that draw (the
first draw from `g`: `torch.randint(n, (batch_size,), generator=g)`, as the loops always
did) and returns the samples, a dict of field -> stacked tensor (or a list where the
samples' shapes differ) on the run's device:

- a cached split (the small profiles' shards, held in memory): the drawn rows of it, the
  same tensors indexing the split by hand gives, bit for bit;
- an indexed split (the paper profile: `<split>-index.jsonl`, no pixel staged): the
  samples decoded by the dataset's `load_sample` in DataLoader worker processes, which
  decode the next steps' batches ahead. The workers' batch sampler replays the loop's
  keyed draws, so the batch prefetched for step s is the one the loop draws at step s
  (checked on every step); a step out of sequence (a resumed or second phase) restarts
  the workers at that step. Only the batches in flight are in memory, never the split.

Under torchrun every process makes the same draw of the global batch; with `shard=True`
it gets (and its workers decode) only its own contiguous slice, as `rlcv.dist.shard`
cuts it; without, the whole batch (the loop shards what it computes from it).
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

WORKERS_ENV = "RLCV_LOADER_WORKERS"


def loader_workers() -> int:
    """DataLoader worker processes for indexed splits: `RLCV_LOADER_WORKERS`, else one
    per core but one, at most 8."""
    raw = os.environ.get(WORKERS_ENV)
    if raw is not None:
        from rlcv.errors import ParamsError

        if not raw.isdigit():
            raise ParamsError(f"{WORKERS_ENV}={raw!r}: expected a whole number of processes (0 = "
                              "decode in the training process)")
        return int(raw)
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def keyed_indices(n: int, batch_size: int, g: torch.Generator) -> torch.Tensor:
    """The batch drawn from `g` (with replacement): the loops' first draw of a step."""
    return torch.randint(n, (batch_size,), generator=g)


class KeyedBatches(Sampler):
    """Batch sampler replaying the keyed draws of steps [start, stop) of one phase (this
    process's slice of each when `shard`)."""

    def __init__(self, n: int, batch_size: int, keys: tuple, start: int, stop: int,
                 shard: bool = False):
        self.n, self.batch_size, self.keys = n, batch_size, keys
        self.start, self.stop, self.shard = start, stop, shard

    def __iter__(self):
        from rlcv import dist, engine

        for step in range(self.start, self.stop):
            idx = keyed_indices(self.n, self.batch_size, engine.generator(*self.keys, step))
            yield (dist.shard(idx) if self.shard else idx).tolist()

    def __len__(self) -> int:
        return self.stop - self.start


class _WithIndex(Dataset):
    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return i, self.ds[i]


def _collate_with_index(items: list) -> tuple[list[int], dict]:
    from datasets._index import collate

    return [i for i, _ in items], collate([s for _, s in items])


def take(fields: dict, idx: torch.Tensor) -> dict:
    """Rows `idx` of an in-memory split (tensor fields indexed, list fields picked)."""
    rows = idx.tolist()
    return {k: v[idx] if isinstance(v, torch.Tensor) else [v[i] for i in rows]
            for k, v in fields.items()}


class Feed:
    """The training batches of one split (module docstring). A loop's step calls
    `draw(engine.generator(*keys, step), batch_size, keys, step, steps)`, `keys` being its
    phase's generator keys without the step (`(seed, phase)`) and `steps` its length; one
    feed serves several phases (a new `keys` restarts the workers)."""

    def __init__(self, staged, split: str, workers: int | None = None):
        self.staged, self.split = staged, split
        self.indexed = split in staged.manifest.get("index", {})
        if self.indexed:
            from datasets._index import IndexDataset

            self.dataset = IndexDataset(staged.manifest, staged.path, split)
            self.n = len(self.dataset)
            self.workers = loader_workers() if workers is None else workers
        else:
            self.fields = staged.load(split)
            first = next(iter(self.fields.values()))
            self.n = first.shape[0] if isinstance(first, torch.Tensor) else len(first)
        self._it, self._next = None, None

    def __len__(self) -> int:
        return self.n

    def draw(self, g: torch.Generator, batch_size: int, keys: tuple, step: int,
             steps: int, shard: bool = False) -> dict:
        """Step `step`'s batch of `batch_size` samples (under torchrun with `shard`: only
        this process's contiguous slice of it, `rlcv.dist.shard`); `g` is that step's keyed
        generator (`engine.generator(*keys, step)`), not drawn from yet, and is left just
        after the index draw, so the loop's later draws are what they were."""
        from rlcv import dist

        keys = tuple(keys)
        if self.indexed:
            from rlcv import engine

            if not torch.equal(g.get_state(), engine.generator(*keys, step).get_state()):
                raise RuntimeError(f"Feed.draw(step={step}): the generator is not the keyed "
                                   f"generator of {keys} at step {step} before any draw")
        idx = keyed_indices(self.n, batch_size, g)
        if shard:
            idx = dist.shard(idx)
        if not self.indexed:
            return take(self.fields, idx)
        if self._next != (keys, batch_size, step, steps, shard):
            self._restart(keys, batch_size, step, steps, shard)
        got, batch = next(self._it)
        self._next = (keys, batch_size, step + 1, steps, shard)
        if got != idx.tolist():   # cannot happen unless the sampler and the loop disagree
            raise RuntimeError(f"Feed out of step at {step}: prefetched {got}, drew {idx.tolist()}")
        return next(iter(self.staged.batches([batch])))

    def _restart(self, keys: tuple, batch_size: int, step: int, steps: int,
                 shard: bool) -> None:
        self.close()
        sampler = KeyedBatches(self.n, batch_size, keys, step, max(steps, step + 1), shard)
        loader = DataLoader(_WithIndex(self.dataset), batch_sampler=sampler,
                            num_workers=self.workers, collate_fn=_collate_with_index,
                            pin_memory=torch.cuda.is_available())
        self._it = iter(loader)

    def close(self) -> None:
        """Stop the workers (also done when the feed is garbage collected)."""
        it, self._it, self._next = self._it, None, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
