"""What every dataset module shares: safe file reading, shard writing, the manifest.

Staged layout of one subset (`data/staged/<dataset>/<subset>/`)::

    manifest.json         dataset, subset, profile, source root, and every selected
                          image: {"file": ..., "split": ...}, in shard order
    <split>-000.pt ...    shards: a dict of field -> stacked tensor (or list when the
                          samples' shapes differ), at most `shard_size` samples each

Shards are written while the source is read, so staging never holds the whole dataset
in memory; the folder appears only when complete (`rlcv.io.atomic_dir`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from rlcv import io as rio
from rlcv.errors import DataError


def read_image(path: str | Path, expected: str, mode: str = "RGB") -> np.ndarray:
    """Decode an image fully; a missing or damaged file raises one `DataError` line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing", expected)
    try:
        with Image.open(path) as im:
            im.load()
            if mode == "raw":
                return np.array(im)
            return np.array(im.convert(mode))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"damaged or not an image ({exc.__class__.__name__})",
                        expected) from None


def read_json(path: str | Path, expected: str):
    """Parse a JSON file; missing or malformed raises one `DataError` line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing", expected)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"malformed JSON ({exc})", expected) from None


def under(root: str | Path, name: str, expected: str) -> Path:
    """`root / name`, refused (one `DataError` line) when `name` is absolute or leads
    outside `root` (`..`, a link pointing elsewhere): an annotation file or manifest
    never makes rlcv read outside the folder it describes."""
    root = Path(root)
    if not isinstance(name, str) or not name:
        raise DataError(root, f"malformed file name {name!r}", expected)
    path = root / name
    base = root.resolve()
    if Path(name).is_absolute() or not path.resolve().is_relative_to(base):
        raise DataError(path, f"file name {name!r} leads outside {root}", expected)
    return path


def require_dir(path: str | Path, expected: str) -> Path:
    """Check a folder of the official layout exists."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "folder missing", expected)
    return path


def present_splits(candidates: dict[str, bool], root: str | Path, expected: str) -> list[str]:
    """The splits whose folders/files are present (`candidates`: split -> present?), in
    order. A missing split is not an error (an evaluation-only user may hold only
    validation): one stderr line names what is skipped; a root with none is refused."""
    found = [s for s, ok in candidates.items() if ok]
    if not found:
        raise DataError(root, f"none of the splits {', '.join(candidates)} is present",
                        expected)
    missing = [s for s in candidates if s not in found]
    if missing:
        print(f"{root}: staging {', '.join(found)} only ({', '.join(missing)} not present)",
              file=sys.stderr)
    return found


def save_png(path: Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a PNG: uint8/uint16 grey or RGB, or palette-indexed when `palette` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette is not None:
        h, w = array.shape
        im = Image.frombytes("P", (w, h), np.ascontiguousarray(array, dtype=np.uint8).tobytes())
        im.putpalette(palette)
    else:
        im = Image.fromarray(np.ascontiguousarray(array))
    im.save(path)


def _collate(samples: list[dict]) -> dict:
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values) and len(
            {tuple(v.shape) for v in values}
        ) == 1:
            # numpy's stack: torch.stack of many small tensors is slow on a busy 2-core box
            out[key] = torch.from_numpy(np.stack([v.numpy() for v in values]))
        else:
            out[key] = values
    return out


class ShardWriter:
    """Accumulate samples of one split and write them as shards of `shard_size`."""

    def __init__(self, folder: Path, split: str, shard_size: int = 256):
        self.folder, self.split, self.shard_size = Path(folder), split, shard_size
        self.pending: list[dict] = []
        self.shards: list[str] = []
        self.count = 0

    def add(self, sample: dict) -> None:
        """Queue one sample; a full shard is written at once."""
        self.pending.append(sample)
        self.count += 1
        if len(self.pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the queued samples as the next shard (nothing when none are queued)."""
        if not self.pending:
            return
        name = f"{self.split}-{len(self.shards):03d}.pt"
        rio.torch_save(_collate(self.pending), self.folder / name)
        self.shards.append(name)
        self.pending = []


class SubsetWriter:
    """One staged subset being written into `folder`: shards per split and the manifest.

    With `decode` given, the rows are records (`datasets._index`): `cache=True` decodes
    each with `decode(record)` into shards; `cache=False` writes `<split>-index.jsonl`
    and no pixel. Without `decode` the rows are samples, written as shards."""

    def __init__(self, folder: Path, meta: dict, shard_size: int = 256, cache: bool = True,
                 decode: Callable[[dict], dict] | None = None):
        self.folder, self.meta, self.shard_size = Path(folder), meta, shard_size
        self.cache, self.decode = cache or decode is None, decode
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writers: dict = {}
        self.images: list[dict] = []

    def add(self, split: str, file: str, sample: dict) -> None:
        """Append one sample (or record) of `split`, read from `file` (in the manifest)."""
        from datasets._index import IndexWriter

        if split not in self.writers:
            self.writers[split] = (ShardWriter(self.folder, split, self.shard_size)
                                   if self.cache else IndexWriter(self.folder, split))
        if self.cache and self.decode is not None:
            sample = self.decode(sample)
        self.writers[split].add(sample)
        if self.cache:   # an index lists its files itself
            self.images.append({"file": file, "split": split})

    def close(self) -> dict:
        """Flush the last shards, write `manifest.json`; returns the manifest."""
        for w in self.writers.values():
            w.flush() if self.cache else w.close()
        manifest = {
            **self.meta,
            # an index is read from the source later, maybe from another folder
            **({} if self.cache else {"source": str(Path(self.meta["source"]).resolve())}),
            "cache": self.cache,
            "counts": {s: w.count for s, w in self.writers.items()},
            "shards": {s: w.shards for s, w in self.writers.items()} if self.cache else {},
            "index": {} if self.cache else {s: w.name for s, w in self.writers.items()},
            "images": self.images,
        }
        rio.write_json(self.folder / "manifest.json", manifest)
        return manifest


def manifest_header(dataset: str, root: str | Path, cfg: dict) -> dict:
    """The fields every manifest starts with: dataset, profile and data kind (synthetic
    or real; None outside `rlcv stage`) and the source root it was staged from."""
    return {"dataset": dataset, "profile": cfg.get("profile"), "data": cfg.get("data"),
            "source": str(root)}


def stage_subset(
    out: Path,
    meta: dict,
    samples: Iterable[tuple[str, str, dict]],
    shard_size: int = 256,
) -> dict:
    """Write one staged subset: `samples` yields (split, file name, sample dict).

    Returns the manifest (also written as `out/manifest.json`). The folder is created
    atomically: on any error nothing is left at `out`.
    """
    with rio.atomic_dir(out) as tmp:
        writer = SubsetWriter(tmp, meta, shard_size)
        for split, file, sample in samples:
            writer.add(split, file, sample)
        return writer.close()


def stage_subsets(
    out: Path,
    metas: dict[str, dict],
    rows: Iterable[tuple[str, str, str, dict]],
    shard_size: int = 256,
    finish: Callable[[Path], None] | None = None,
    cache: bool = True,
    decode: Callable[[dict], dict] | None = None,
) -> dict[str, dict]:
    """Write several subsets `out/<subset>/` (as `stage_subset`) in one pass over the source.

    `rows` yields (subset, split, file name, sample); one source image may feed several
    subsets (one row each). `finish(folder)`, when given, runs after the last row with
    the (temporary) `out` folder, to add files next to the shards. `cache`/`decode`: as
    `SubsetWriter` (rows of records, decoded into shards or written as an index). Every subset of
    `metas` gets a folder and manifest, even an empty one. Returns {subset: manifest};
    `out` appears only when every subset is complete.
    """
    with rio.atomic_dir(out) as tmp:
        writers = {s: SubsetWriter(tmp / s, meta, shard_size, cache, decode)
                   for s, meta in metas.items()}
        for subset, split, file, sample in rows:
            writers[subset].add(split, file, sample)
        manifests = {s: w.close() for s, w in writers.items()}
        if finish is not None:
            finish(tmp)
    return manifests


def read_manifest(staged: str | Path) -> dict:
    """The manifest of a staged subset; a missing one names the command that makes it."""
    path = Path(staged) / "manifest.json"
    if not path.is_file():
        raise DataError(path, "missing: stage the dataset first (rlcv stage DATASET)")
    manifest = read_json(path, "a manifest written by rlcv stage (run it again)")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), dict) or not all(
            isinstance(v, list) for v in manifest["shards"].values()):
        raise DataError(path, "malformed manifest: no mapping 'shards' of split -> files",
                        "a manifest written by rlcv stage (run it again)")
    return manifest


def splits_of(manifest: dict) -> list[str]:
    """The staged splits of a manifest (sharded or indexed)."""
    return list(manifest["shards"]) + list(manifest.get("index", {}))


def load_split(staged: str | Path, split: str) -> dict:
    """Load every shard of `split` and concatenate them field by field."""
    staged = Path(staged)
    manifest = read_manifest(staged)
    if split in manifest.get("index", {}):   # no pixels staged: decode every sample now
        from datasets._index import IndexDataset, collate

        ds = IndexDataset(manifest, staged, split)
        return collate([ds[i] for i in range(len(ds))])
    if split not in manifest["shards"]:
        raise DataError(staged, f"no split {split!r}: the source {manifest.get('source')} "
                        f"held none when staged (it has {sorted(splits_of(manifest))})",
                        f"a source root holding the {split!r} split (rlcv stage "
                        f"{manifest.get('dataset', 'DATASET')} --root ROOT)")
    expected = "a shard written by rlcv stage"
    parts = [rio.torch_load(under(staged, name, expected)) for name in manifest["shards"][split]]
    if not parts:
        raise DataError(staged, f"split {split!r} has no shards", expected)
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if all(isinstance(v, torch.Tensor) for v in values) and len(
            {tuple(v.shape[1:]) for v in values}
        ) == 1:
            out[key] = torch.cat(values)
        else:
            out[key] = [x for v in values for x in (list(v) if isinstance(v, torch.Tensor) else v)]
    return out


class Staged:
    """Handle on one staged subset (`data/staged/<dataset>/<subset>`), loaded lazily.

    `device` is the run's device (`rlcv.engine.device()`): every tensor `load` returns is
    on it, for train and evaluate alike, so no method moves data itself.
    """

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        self.path = Path(path)
        self.device = torch.device(device)
        self.manifest = read_manifest(self.path)
        self._cache: dict[str, dict] = {}

    def load(self, split: str) -> dict:
        """All samples of `split`, field by field, on `self.device` (cached)."""
        if split not in self._cache:
            from rlcv.engine import to_device

            self._cache[split] = to_device(load_split(self.path, split), self.device)
        return self._cache[split]

    @property
    def splits(self) -> list[str]:
        return splits_of(self.manifest)

    def dataset(self, split: str):
        """`split` as a torch Dataset: decoded per sample from the index (`cache: false`),
        or the cached samples (`cache: true`), on the CPU for DataLoader workers."""
        from datasets._index import CachedDataset, IndexDataset

        if split in self.manifest.get("index", {}):
            return IndexDataset(self.manifest, self.path, split)
        return CachedDataset(load_split(self.path, split))

    def loader(self, split: str, batch_size: int, seed: int, shuffle: bool = True,
               workers: int = 0, drop_last: bool = False):
        """A DataLoader of `split` (`datasets._index.make_loader`): decoded per batch in
        `workers` processes, order drawn from `seed`, sharded over a distributed run.
        Batches are on the CPU; `batches` puts them on the run's device."""
        from datasets._index import make_loader

        return make_loader(self.dataset(split), batch_size, seed, shuffle, workers, drop_last)

    def feed(self, split: str, workers: int | None = None):
        """The training batches of `split`, drawn by the loop's keyed generators
        (`datasets._feed.Feed`): rows of the cached split, or decoded ahead in DataLoader
        workers from the index."""
        from datasets._feed import Feed

        return Feed(self, split, workers)

    def chunks(self, split: str, size: int, stop: int | None = None,
               workers: int | None = None):
        """The first `stop` (default all) samples of `split` in order, `size` at a time, on
        `self.device`, for evaluation: slices of the cached split, or decoded from the
        index in DataLoader workers (`datasets._feed.loader_workers`), so an indexed
        split is never held whole."""
        if split not in self.manifest.get("index", {}):
            fields = self.load(split)
            n = len(next(iter(fields.values())))
            end = n if stop is None else min(n, stop)
            for a in range(0, end, size):
                yield {k: v[a:min(a + size, end)] for k, v in fields.items()}
            return
        from torch.utils.data import DataLoader, Subset

        from datasets._feed import loader_workers
        from datasets._index import IndexDataset, collate

        ds = IndexDataset(self.manifest, self.path, split)
        if stop is not None:
            ds = Subset(ds, range(min(stop, len(ds))))
        yield from self.batches(DataLoader(
            ds, batch_size=size, num_workers=loader_workers() if workers is None else workers,
            collate_fn=collate, pin_memory=torch.cuda.is_available()))

    def batches(self, loader):
        """The batches of `loader` on `self.device` (the one place data changes device)."""
        from rlcv.engine import to_device

        for batch in loader:
            yield to_device(batch, self.device)


GT_FIELDS = {
    "gt": "int16 [H0,W0] the original-size instance labels, 0 = background (evaluation "
          "splits only: predictions are scored at the ground truth's resolution)",
    "box": "int64 [4] top, left, height, width of the region of gt the staged image shows",
}


def keep_ground_truth(sample: dict, label: np.ndarray, box=None) -> dict:
    """`sample` plus its original-size ground truth `label` (H0 x W0 instance ids) and the
    region `box` = (top, left, height, width) it was staged from (default: all of it), for
    scoring at the ground truth's resolution (`rlcv.metrics.to_ground_truth`). Only the
    evaluation splits keep it, so staged training data stays small."""
    h, w = label.shape[:2]
    box = (0, 0, h, w) if box is None else box
    return {**sample, "gt": torch.from_numpy(np.ascontiguousarray(label).astype(np.int16)),
            "box": torch.tensor([int(v) for v in box], dtype=torch.int64)}
