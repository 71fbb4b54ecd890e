"""Atomic file and folder writes: nothing half-written is ever left behind.

Every output is written to a temporary sibling and renamed into place only once it is
complete, so an interrupted or failed command leaves the previous output (or nothing).
Files and folders get the permissions the user's umask gives (not mkstemp's 0600).
A folder written by `atomic_dir` carries a marker file, and `atomic_dir` replaces only
an empty folder or one carrying that marker: an `--out` naming a folder of the user's
own files is refused, never emptied. A torch file gets a `<name>.sha256` beside it,
checked by `torch_load`, so garbled bytes are refused rather than used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

from rlcv.errors import DataError, RlcvError

MARKER = ".rlcv-output"
"""The file `atomic_dir` leaves in every folder it writes: the folder may be replaced."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented, key-sorted JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def torch_save(obj, path: str | Path) -> None:
    """`torch.save` to `path` atomically, with its sha256 in `<path>.sha256`.

    Serialised in memory, so the bytes do not depend on the (random) temporary file name
    torch would otherwise record in the archive: the same object gives the same bytes.
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    write_text(_digest_path(path), hashlib.sha256(data).hexdigest() + "\n")
    write_bytes(path, data)


def torch_load(path: str | Path):
    """`torch.load` with `weights_only=True` onto the CPU, after checking the sha256
    written beside the file (a file without one, from before the check, is read as is).
    A damaged, truncated or garbled file raises one `DataError` line."""
    path = Path(path)
    expected = "a file written by rlcv (delete it, or rerun with --fresh / rlcv stage)"
    data = path.read_bytes()
    digest = _digest_path(path)
    if digest.is_file():
        want = digest.read_text().strip()
        if hashlib.sha256(data).hexdigest() != want:
            raise DataError(path, "damaged: its bytes do not match its sha256 in "
                            f"{digest.name}", expected)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:
        raise DataError(path, f"damaged or truncated ({exc.__class__.__name__})",
                        expected) from None


def _check_replaceable(final: Path) -> None:
    """Refuse to replace a folder that holds files rlcv did not write (or the working
    folder or one of its parents)."""
    resolved = final.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise RlcvError(f"{final}: refusing to replace the current folder or one of its "
                        "parents; name a new or empty folder")
    if final.exists() and not final.is_dir():
        raise RlcvError(f"{final}: exists and is not a folder; name a new or empty folder")
    if final.is_dir() and any(final.iterdir()) and not (final / MARKER).is_file():
        raise RlcvError(f"{final}: not empty and not an earlier rlcv output (no {MARKER}); "
                        "refusing to replace it: name a new or empty folder")


def adopt(folder: str | Path) -> Path:
    """Mark `folder` (one of rlcv's default output locations, written before the marker
    existed) as replaceable by `atomic_dir`."""
    folder = Path(folder)
    if folder.is_dir() and not (folder / MARKER).exists():
        (folder / MARKER).touch()
    return folder


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces `final` only if the block succeeds.

    `final` must be absent, empty or an earlier rlcv output (it holds `MARKER`); the new
    folder gets the marker. On any exception the temporary folder is removed and `final`
    is left untouched.
    """
    final = Path(final)
    _check_replaceable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        tmp.chmod(0o777 & ~_umask())
        yield tmp
        (tmp / MARKER).touch()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
