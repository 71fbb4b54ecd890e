"""The index of a staged subset and the DataLoader that decodes it (DESIGN.md, "Stage
once, load lazily").

A stager yields one JSON-able *record* per sample: the source file (relative to the
source root), what the paper's subset selected and the annotations in the stage's
coordinates. Two ways to store a subset, one code path:

- `cache: true` (the small profiles): every record is decoded once at staging by the
  dataset module's `load_sample(record, source, manifest)` and the samples are written
  as shards (`datasets._common`), held in memory by `Staged.load`.
- `cache: false` (the paper profile): the records are written as `<split>-index.jsonl`
  (one record a line) and no pixel is copied; `Staged.loader` decodes the samples per
  batch in DataLoader workers with the same `load_sample`.

Either way `Staged.loader(split, ...)` gives batches (a dict of field -> stacked tensor,
or a list where the samples' shapes differ), shuffled deterministically by seed and
epoch, and sharded over the processes of a distributed run (`rlcv.dist`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rlcv.errors import DataError

EXPECTED = "an index written by rlcv stage (run it again)"


def index_name(split: str) -> str:
    """The file name of `split`'s index in a staged subset folder."""
    return f"{split}-index.jsonl"


class IndexWriter:
    """Stream the records of one split to `<split>-index.jsonl` (one JSON object a line)."""

    def __init__(self, folder: Path, split: str):
        self.name = index_name(split)
        self.fh = open(Path(folder) / self.name, "w")  # noqa: SIM115 (closed by close())
        self.count = 0

    def add(self, record: dict) -> None:
        self.fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        self.fh.close()


def read_index(path: Path) -> list[dict]:
    """The records of one index file; a malformed line names its number."""
    if not path.is_file():
        raise DataError(path, "missing", EXPECTED)
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"line {n}: malformed JSON ({exc})", EXPECTED) from None
            if not isinstance(record, dict):
                raise DataError(path, f"line {n}: not a JSON object", EXPECTED)
            out.append(record)
    return out


class IndexDataset(Dataset):
    """The samples of one indexed split, decoded on access by the dataset's `load_sample`."""

    def __init__(self, manifest: dict, folder: Path, split: str):
        import datasets

        self.manifest, self.split = manifest, split
        self.records = read_index(Path(folder) / manifest["index"][split])
        self.source = Path(manifest["source"])
        self.module = datasets.get(manifest["dataset"])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        return self.module.load_sample(self.records[i], self.source, self.manifest)


class CachedDataset(Dataset):
    """The samples of one split held in memory (a dict of field -> tensor or list)."""

    def __init__(self, fields: dict):
        self.fields = fields
        first = next(iter(fields.values()))
        self.n = first.shape[0] if isinstance(first, torch.Tensor) else len(first)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.fields.items()}


def collate(samples: list[dict]) -> dict:
    """Stack each field when every sample's tensor has one shape; else keep a list."""
    from datasets._common import _collate

    return _collate(samples)


def make_loader(dataset: Dataset, batch_size: int, seed: int, shuffle: bool = True,
                workers: int = 0, drop_last: bool = False, rank: int | None = None,
                world: int | None = None) -> DataLoader:
    """A DataLoader over `dataset`: the order is a permutation drawn from `seed` (and the
    epoch: call `loader.sampler.set_epoch(e)`), split into `world` interleaved shards of
    which this process reads shard `rank` (defaults: `rlcv.dist`'s rank and world size;
    one process reads everything)."""
    from rlcv import dist

    rank = dist.rank() if rank is None else rank
    world = dist.world_size() if world is None else world
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                 seed=seed, drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, drop_last=drop_last,
                      persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
