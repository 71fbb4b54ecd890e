"""Rows whose runs are another row's on the active profile (`Row.twin`).

EU-RL's Table 2 has a pose chain of its own (`eurl-pose-t2-*`: an 8-stack hourglass on
the paper profile, where Table 3 and Fig. 4 use a two-stack one). On the small profiles
both chains have the same settings, and training is byte-reproducible (same settings,
seed and inputs give the same bytes), so training the second chain recomputed the
first one's runs exactly: 5 of the smoke pipeline's 54 minutes.

A row that names a twin is its twin wherever the two are the same experiment on the
active profile: the same code (config class, train and evaluate functions, data), the
same effective params, and inputs that are the same rows or each other's twins. There
`rlcv train` copies the twin's run folders, writing each checkpoint as training would
(its own row name and settings signature: the bytes training gives, which a test
checks), `rlcv evaluate` scores the copies as usual and records the twin in
metrics.json, and the report says which runs are shared. Wherever the settings differ
(the paper profile), the row trains.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rlcv import io as rio
from rlcv.params import Params


def _raw(row, attr: str):
    """A row field as declared ("module:attribute" strings are compared unimported)."""
    return object.__getattribute__(row, attr)


def twin_of(params: Params, row) -> str | None:
    """The row whose runs `row`'s equal on `params`' active profile, or None."""
    import methods

    if not row.twin or row.twin not in params.method_names:   # a twin that is not run
        return None
    other = methods.get(row.twin)
    same_code = all(_raw(row, a) == _raw(other, a)
                    for a in ("config", "train", "evaluate", "data", "code"))
    if not same_code or params.method(row.name) != params.method(other.name):
        return None
    if len(row.requires) != len(other.requires):
        return None
    for mine, theirs in zip(row.requires, other.requires, strict=True):
        if mine != theirs and twin_of(params, methods.get(mine)) != theirs:
            return None
    return other.name


def waits_for(params: Params, row) -> tuple[str, ...]:
    """The rows whose runs `row`'s training reads: those it starts from, and its twin
    when it copies the twin's runs (DVC's deps, the fan-out's waves, gpu-check's grid)."""
    twin = twin_of(params, row)
    return (*row.requires, *((twin,) if twin else ()))


def copy_run(src: Path, dest: Path, row: str, twin: str, signature: str) -> Path:
    """Copy the twin's run folder `src` to `dest` as `row`'s: checkpoints rewritten with
    `row`'s name and `signature`, other files (history.csv) as they are. Returns the
    final checkpoint."""
    ckpt = src / "checkpoint.pt"
    if not ckpt.is_file():
        from rlcv.errors import RlcvError

        raise RlcvError(f"{row} copies the runs of its twin {twin} (same settings on this "
                        f"profile): {ckpt} is missing (run: rlcv train {twin})")
    if dest.exists():
        shutil.rmtree(dest)
    for path in sorted(src.iterdir()):
        if path.name.endswith(".sha256") or path.name.startswith(".") or not path.is_file():
            continue   # torch_save writes the digests; temporary files are not results
        if path.suffix == ".pt":
            state = rio.torch_load(path)
            if isinstance(state, dict):
                if state.get("row") == twin:
                    state["row"] = row
                if "signature" in state:
                    state["signature"] = signature
            rio.torch_save(state, dest / path.name)
        else:
            rio.write_bytes(dest / path.name, path.read_bytes())
    return dest / "checkpoint.pt"
