"""One seed of a row: train it, copy it from a twin, evaluate it, and the checks around
them (`rlcv train` and `rlcv evaluate` run these per seed, in `rlcv.workers`' forked
processes or under torchrun).

Paths are relative to the repository root (the folder holding params.yaml):

    data/staged/<dataset>/<subset>/  what the rows read (`staged_data`)
    runs/<row>-<seed>/               checkpoints and history.csv (`run_dir`)
    results/runs/<row>-<seed>/       metrics.json and history.csv (`result_dir`)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

from rlcv import io as rio
from rlcv import params as P
from rlcv.errors import DataError, RlcvError

DATA = Path("data")
RUNS = Path("runs")
RESULTS = Path("results")


def run_dir(row: str, seed: int) -> Path:
    """A row's run folder for one seed: checkpoints and history.csv."""
    return RUNS / f"{row}-{seed}"


def result_dir(row: str, seed: int) -> Path:
    """A row's folder of results for one seed: metrics.json and history.csv."""
    return RESULTS / "runs" / f"{row}-{seed}"


def data_kind(profile: str) -> str:
    """What a profile runs on: the synthetic datasets, or the real ones (`paper`)."""
    return "real" if profile == "paper" else "synthetic"


def run_signature(params: P.Params, row, cfg, inputs: dict[str, Path]) -> str:
    """What a checkpoint is trained under: row, profile, settings, its inputs' bytes and
    the code its train stage runs (`pipeline.train_code`: a phase checkpoint written by
    other code is not resumed, as DVC reruns the stage for it)."""
    from rlcv import pipeline

    blob = {"row": row.name, "profile": params.profile, "config": cfg,
            "inputs": {k: _file_hash(v) for k, v in inputs.items()},
            "code": pipeline.code_hash(pipeline.train_code(row))}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def staged_data(row, params: P.Params, device=None):
    """The row's staged subset, its tensors on `device` (the run's device) when given;
    refused when it was staged for another profile."""
    from datasets._common import Staged

    data = Staged(DATA / "staged" / row.data, device or "cpu")
    staged = data.manifest.get("profile")
    if staged != params.profile:
        raise DataError(data.path / "manifest.json", f"staged for profile {staged!r}, but "
                        f"{params.path} runs profile {params.profile!r}",
                        f"data staged on the same profile (run: rlcv stage {row.dataset})")
    return data


def share_gpu(params: P.Params) -> bool:
    """Whether a row's seeds may share one GPU in parallel processes (rlcv.workers.jobs):
    on the small profiles; the paper profile's models fill the device."""
    return params.profile != "paper"


def check_seeds(seeds: list[int]) -> None:
    """Refuse a --seed list that names a seed twice."""
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise RlcvError(f"--seed lists {', '.join(map(str, dup))} more than once")


@contextlib.contextmanager
def run_lock(row: str, seed: int):
    """Hold `runs/.<row>-<seed>.lock` for the block; a second train of the same row and
    seed (another shell, another `dvc repro`) fails at once instead of racing."""
    import fcntl

    path = RUNS / f".{row}-{seed}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RlcvError(f"{run_dir(row, seed)} is being trained by another rlcv "
                            f"process (lock {path}); wait for it to finish") from None
        yield


def required_checkpoints(row, seed: int) -> dict[str, Path]:
    """The same-seed checkpoints of the rows `row` starts from, by row name."""
    return {req: run_dir(req, seed) / "checkpoint.pt" for req in row.requires}


def publish_history(row, seed: int, history: Path) -> None:
    """Copy a run's history.csv to results/runs/<row>-<seed>/ (what DVC tracks in git)."""
    rio.write_bytes(result_dir(row.name, seed) / "history.csv", history.read_bytes())


def train_seed(params: P.Params, row, values: dict, cfg, seed: int, fresh: bool = False,
               checkpoint_every: int = 50) -> None:
    """One seed of `rlcv train`: the same result whether it runs alone, after other seeds
    in the same process or beside them in workers (seed_everything resets every
    generator the engine uses)."""
    from rlcv import dist, engine

    inputs = required_checkpoints(row, seed)
    out = run_dir(row.name, seed)
    dev = dist.init(engine.device())   # under torchrun: join the group (rlcv.dist)
    lock = run_lock(row.name, seed) if dist.is_main() else contextlib.nullcontext()
    with lock:
        if fresh and out.exists() and dist.is_main():
            shutil.rmtree(out)
        dist.barrier()
        data = staged_data(row, params, dev)   # a fresh handle per seed: no split cache shared
        engine.seed_everything(seed)
        run = engine.Run(row=row.name, seed=seed, dir=out, inputs=inputs, device=dev,
                         checkpoint_every=checkpoint_every,
                         signature=run_signature(params, row, values, inputs))
        ckpt = row.train(cfg, data, run)
    history = engine.write_history(run)
    if not dist.is_main():
        return
    publish_history(row, seed, history)
    print(f"trained {row.name} seed {seed}: {ckpt}")


def copy_seed(params: P.Params, row, values: dict, twin: str, seed: int) -> None:
    """One seed of `rlcv train` for a row whose twin has the same settings: the twin's
    run, written as this row's (rlcv.twins)."""
    from rlcv import twins

    inputs = required_checkpoints(row, seed)
    out = run_dir(row.name, seed)
    with run_lock(row.name, seed):
        ckpt = twins.copy_run(run_dir(twin, seed), out, row.name, twin,
                              run_signature(params, row, values, inputs))
    if (out / "history.csv").is_file():
        publish_history(row, seed, out / "history.csv")
    print(f"trained {row.name} seed {seed}: {ckpt} (the runs of {twin}: same settings on "
          f"profile {params.profile})")


def evaluate_seed(params: P.Params, row, seed: int) -> None:
    from rlcv import engine

    dev = engine.device()
    data = staged_data(row, params, dev)   # the same device choice as train
    ckpt = run_dir(row.name, seed) / "checkpoint.pt"
    check_checkpoint(params, row, seed, ckpt)
    engine.seed_everything(seed)
    values = {k: float(v) for k, v in row.evaluate(str(ckpt), data).items()}
    profile = data.manifest["profile"]   # the labels say what the data is, not the params
    record = {
        "row": row.name, "seed": seed, "profile": profile,
        "data": data.manifest.get("data") or data_kind(profile), "dataset": row.data,
        "tables": dict(row.tables), "metrics": values, "weights": weights_used(params, row),
        **engine.device_record(dev),
    }
    from rlcv import twins

    twin = twins.twin_of(params, row)
    if twin:   # its checkpoints are the twin's (rlcv.twins): the report says so
        record["same_runs_as"] = twin
    out = result_dir(row.name, seed) / "metrics.json"
    rio.write_json(out, record)
    shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
    print(f"RLCV_METRICS {json.dumps(record, sort_keys=True)}")
    print(f"evaluated {row.name} seed {seed}: {shown} -> {out}")


def weights_used(params: P.Params, row) -> str:
    """The pretrained weights a row's run starts from (`weights_list`), joined by "+";
    "none": random initialisation."""
    return "+".join(weights_list(params, row)) or "none"


def weights_list(params: P.Params, row) -> list[str]:
    """The pretrained weights a row's run starts from, its own and its requirements'
    (settings `weights`, `*_weights`), each once; empty: random initialisation."""
    import methods
    from rlcv.dryrun import weight_keys

    names, todo, done = [], [row.name], set()
    while todo:
        name = todo.pop(0)
        if name in done:
            continue
        done.add(name)
        values = params.method(name)
        names += [str(values[k]) for k in weight_keys(values)
                  if str(values[k]).lower() != "none" and str(values[k]) not in names]
        todo += list(methods.get(name).requires)
    return names


def check_checkpoint(params: P.Params, row, seed: int, ckpt: Path) -> None:
    """Refuse a checkpoint trained under other settings, profile, inputs or code than
    the params and code in use (its signature differs): it would be scored as if it were
    current."""
    from rlcv import engine

    inputs = required_checkpoints(row, seed)
    want = run_signature(params, row, params.method(row.name), inputs)
    state = engine.load_checkpoint(ckpt)
    if not isinstance(state, dict) or state.get("signature") != want:
        raise DataError(ckpt, f"trained under other settings than {params.path} gives "
                        f"(profile {params.profile}, methods.{row.name}, its inputs) or "
                        f"by other code than its train stage's now",
                        f"a checkpoint of these settings (run: rlcv train {row.name} "
                        f"--seed {seed})")
