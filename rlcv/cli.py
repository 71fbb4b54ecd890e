"""The `rlcv` command: synth, stage, train, evaluate, report, pipeline.

Usable without DVC; `dvc repro` runs the same commands (see dvc.yaml). Paths are
relative to the repository root (the folder holding params.yaml):

    data/raw/<dataset>/          synthetic data in the official layout (rlcv synth)
    data/staged/<dataset>/<subset>/  shards + manifest.json (rlcv stage)
    runs/<row>-<seed>/           checkpoints and history.csv (rlcv train)
    results/runs/<row>-<seed>/   metrics.json and history.csv (rlcv evaluate / train)
    results/tables, results/plots, results/README.md (rlcv report)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import signal
import sys
from pathlib import Path

from rlcv import io as rio
from rlcv import params as P
from rlcv import workers
from rlcv.errors import DataError, RlcvError

DATA = Path("data")
RUNS = Path("runs")
RESULTS = Path("results")


def run_dir(row: str, seed: int) -> Path:
    return RUNS / f"{row}-{seed}"


def result_dir(row: str, seed: int) -> Path:
    return RESULTS / "runs" / f"{row}-{seed}"


def source_root(params: P.Params, name: str, cfg: dict) -> Path:
    """Where the official layout of dataset `name` lives for the active profile."""
    if params.synthetic:
        return DATA / "raw" / name
    return params.real_root() / cfg.get("root", name)


def cmd_synth(args) -> None:
    import datasets

    params = P.load(args.params)
    module = datasets.get(args.dataset)
    cfg = params.dataset(args.dataset)
    out = Path(args.out) if args.out else rio.adopt(DATA / "raw" / args.dataset)
    if not params.synthetic:
        root = source_root(params, args.dataset, cfg)
        rio.write_text(out / "REAL_DATA.md",
                       f"profile {params.profile}: {args.dataset} is read from {root}\n")
        print(f"profile {params.profile}: no synthetic data; {args.dataset} is read from {root}")
        return
    module.synth(out, cfg, int(cfg.get("seed", 0)))
    print(f"wrote synthetic {args.dataset} ({params.profile} profile) to {out}")


def cmd_stage(args) -> None:
    import datasets

    params = P.load(args.params)
    module = datasets.get(args.dataset)
    cfg = params.dataset(args.dataset)
    root = Path(args.root) if args.root else source_root(params, args.dataset, cfg)
    out = Path(args.out) if args.out else rio.adopt(DATA / "staged" / args.dataset)
    cfg = {**cfg, "profile": params.profile, "data": _data_kind(params.profile)}
    with rio.atomic_dir(out) as tmp:   # the dataset's folder appears only when complete
        manifests = module.stage(root, tmp, cfg)
    for subset, m in manifests.items():
        counts = ", ".join(f"{k} {v}" for k, v in m["counts"].items()) or "no images"
        print(f"staged {args.dataset}/{subset}: {counts} -> {out / subset}/manifest.json")


def _data_kind(profile: str) -> str:
    """What a profile runs on: the synthetic datasets, or the real ones (`paper`)."""
    return "real" if profile == "paper" else "synthetic"


def _signature(params: P.Params, row, cfg, inputs: dict[str, Path]) -> str:
    blob = {"row": row.name, "profile": params.profile, "config": cfg,
            "inputs": {k: _file_hash(v) for k, v in inputs.items()}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _staged(row, params: P.Params, device=None):
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


def _share_gpu(params: P.Params) -> bool:
    """Whether a row's seeds may share one GPU in parallel processes (rlcv.workers.jobs):
    on the small profiles; the paper profile's models fill the device."""
    return params.profile != "paper"


def _check_seeds(seeds: list[int]) -> None:
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise RlcvError(f"--seed lists {', '.join(map(str, dup))} more than once")


@contextlib.contextmanager
def _run_lock(row: str, seed: int):
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


def cmd_train(args) -> None:
    import methods
    from rlcv import engine

    engine.device()   # a bad RLCV_DEVICE fails here, once, before any import or worker
    params = P.load(args.params)
    if args.profile:
        params.raw["profile"] = args.profile
    row = methods.get(args.row)
    if args.dry_run:
        from rlcv.dryrun import dry_run

        engine.set_threads()
        print(dry_run(params, [row.name])[0]["line"])
        return
    values = params.method(row.name)
    cfg = P.build_config(row.config, values, f"{params.path} methods.{row.name}")
    _check_seeds(args.seed)
    for seed in args.seed:   # checked before any training, so a missing input fails at once
        for req in row.requires:
            ckpt = run_dir(req, seed) / "checkpoint.pt"
            if not ckpt.is_file():
                raise RlcvError(f"{row.name} starts from {req}: {ckpt} is missing "
                                f"(run: rlcv train {req} --seed {seed})")
    from rlcv import twins

    twin = None if args.no_twin else twins.twin_of(params, row)
    if twin:   # the same experiment as `twin` on this profile: its runs, not a rerun
        for seed in args.seed:
            _copy_seed(params, row, values, twin, seed)
        return
    engine.set_threads()
    _staged(row, params)   # a bad manifest fails here, once, before any worker starts
    assert callable(row.train)   # import the family here, once, not in every worker
    from rlcv import dist

    train = lambda seed: _train_seed(params, row, values, cfg, seed, args)  # noqa: E731
    if dist.launched():   # torchrun's processes share each seed: no forked seed workers
        for seed in args.seed:
            train(seed)
    else:
        workers.for_each_seed(args.seed, train, share_gpu=_share_gpu(params))


def _inputs(row, seed: int) -> dict[str, Path]:
    """The same-seed checkpoints of the rows `row` starts from, by row name."""
    return {req: run_dir(req, seed) / "checkpoint.pt" for req in row.requires}


def _publish_history(row, seed: int, history: Path) -> None:
    """Copy a run's history.csv to results/runs/<row>-<seed>/ (what DVC tracks in git)."""
    rio.write_bytes(result_dir(row.name, seed) / "history.csv", history.read_bytes())


def _train_seed(params: P.Params, row, values: dict, cfg, seed: int, args) -> None:
    """One seed of `rlcv train`: the same result whether it runs alone, after other seeds
    in the same process or beside them in workers (seed_everything resets every
    generator the engine uses)."""
    from rlcv import dist, engine

    inputs = _inputs(row, seed)
    out = run_dir(row.name, seed)
    dev = dist.init(engine.device())   # under torchrun: join the group (rlcv.dist)
    lock = _run_lock(row.name, seed) if dist.is_main() else contextlib.nullcontext()
    with lock:
        if args.fresh and out.exists() and dist.is_main():
            shutil.rmtree(out)
        dist.barrier()
        data = _staged(row, params, dev)   # a fresh handle per seed: no split cache shared
        engine.seed_everything(seed)
        run = engine.Run(row=row.name, seed=seed, dir=out, inputs=inputs, device=dev,
                         checkpoint_every=args.checkpoint_every,
                         signature=_signature(params, row, values, inputs))
        ckpt = row.train(cfg, data, run)
    history = engine.write_history(run)
    if not dist.is_main():
        return
    _publish_history(row, seed, history)
    print(f"trained {row.name} seed {seed}: {ckpt}")


def _copy_seed(params: P.Params, row, values: dict, twin: str, seed: int) -> None:
    """One seed of `rlcv train` for a row whose twin has the same settings: the twin's
    run, written as this row's (rlcv.twins)."""
    from rlcv import twins

    inputs = _inputs(row, seed)
    out = run_dir(row.name, seed)
    with _run_lock(row.name, seed):
        ckpt = twins.copy_run(run_dir(twin, seed), out, row.name, twin,
                              _signature(params, row, values, inputs))
    if (out / "history.csv").is_file():
        _publish_history(row, seed, out / "history.csv")
    print(f"trained {row.name} seed {seed}: {ckpt} (the runs of {twin}: same settings on "
          f"profile {params.profile})")


def cmd_evaluate(args) -> None:
    import methods
    from rlcv import engine

    engine.device()
    params = P.load(args.params)
    row = methods.get(args.row)
    _check_seeds(args.seed)
    for seed in args.seed:
        ckpt = run_dir(row.name, seed) / "checkpoint.pt"
        if not ckpt.is_file():
            raise RlcvError(f"{ckpt} is missing (run: rlcv train {row.name} --seed {seed})")
    engine.set_threads()
    _staged(row, params)
    assert callable(row.evaluate)
    workers.for_each_seed(args.seed, lambda seed: _evaluate_seed(params, row, seed),
                          share_gpu=_share_gpu(params))


def _evaluate_seed(params: P.Params, row, seed: int) -> None:
    from rlcv import engine

    dev = engine.device()
    data = _staged(row, params, dev)   # the same device choice as train
    ckpt = run_dir(row.name, seed) / "checkpoint.pt"
    _check_checkpoint(params, row, seed, ckpt)
    engine.seed_everything(seed)
    values = {k: float(v) for k, v in row.evaluate(str(ckpt), data).items()}
    profile = data.manifest["profile"]   # the labels say what the data is, not the params
    record = {
        "row": row.name, "seed": seed, "profile": profile,
        "data": data.manifest.get("data") or _data_kind(profile), "dataset": row.data,
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


def _check_checkpoint(params: P.Params, row, seed: int, ckpt: Path) -> None:
    """Refuse a checkpoint trained under other settings, profile or inputs than the
    params in use (its signature differs): it would be scored as if it were current."""
    from rlcv import engine

    inputs = _inputs(row, seed)
    want = _signature(params, row, params.method(row.name), inputs)
    state = engine.load_checkpoint(ckpt)
    if not isinstance(state, dict) or state.get("signature") != want:
        raise DataError(ckpt, f"trained under other settings than {params.path} gives "
                        f"(profile {params.profile}, methods.{row.name}, its inputs)",
                        f"a checkpoint of these settings (run: rlcv train {row.name} "
                        f"--seed {seed})")


def cmd_report(args) -> None:
    from rlcv.engine import set_threads
    from rlcv.report import build

    params = P.load(args.params)
    set_threads()
    written = build(params, RESULTS)
    print(f"report: {len(written)} files under {RESULTS}/ (index: {RESULTS}/README.md)")


def cmd_pipeline(args) -> None:
    import yaml

    from rlcv.pipeline import prune_lock, render, stages

    params = P.load(args.params)
    text = render(params)
    path = Path("dvc.yaml")
    current = path.read_text() if path.exists() else ""
    if args.check:
        if current != text:
            raise RlcvError("dvc.yaml is out of date with methods/ and params.yaml "
                            "(run: rlcv pipeline)")
        print("dvc.yaml is up to date")
        return
    if current != text:
        rio.write_text(path, text)
        print("wrote dvc.yaml")
    lock = Path("dvc.lock")
    if lock.exists():
        try:
            pruned = prune_lock(lock.read_text(), stages(params))
        except (yaml.YAMLError, AttributeError, TypeError) as exc:
            raise DataError(lock, f"malformed ({exc.__class__.__name__})",
                            "DVC's lock file; delete it and rerun dvc repro") from None
        if pruned is not None:
            rio.write_text(lock, pruned)
            print("dropped dvc.lock entries of stages no longer in dvc.yaml")


def _seed(text: str) -> int:
    """argparse type of --seed: an integer >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    """argparse type of --checkpoint-every: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rlcv", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=None, help="params file (default: ./params.yaml)")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a synthetic dataset in its official layout")
    s.add_argument("dataset")
    s.add_argument("--out", help="output root (default: data/raw/DATASET)")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("stage", help="read a dataset's official layout and stage its subsets")
    s.add_argument("dataset")
    s.add_argument("--root", help="official-layout root (default: data/raw/DATASET, or "
                   "$RLCV_DATA/<root> on the paper profile)")
    s.add_argument("--out", help="output folder (default: data/staged/DATASET)")
    s.set_defaults(func=cmd_stage)

    s = sub.add_parser("train", help="train one method row for one or more seeds (resumes)")
    s.add_argument("row")
    s.add_argument("--seed", type=_seed, nargs="+", default=[0],
                   help="seeds (default: 0); several run side by side in RLCV_JOBS worker "
                   "processes (default: one per core)")
    s.add_argument("--checkpoint-every", type=_positive, default=50,
                   help="steps between checkpoints")
    s.add_argument("--fresh", action="store_true", help="discard earlier checkpoints")
    s.add_argument("--no-twin", action="store_true", help="train even where the row's twin "
                   "has the same settings on this profile (default: copy its runs)")
    s.add_argument("--profile", choices=P.PROFILES, help="the profile whose settings to use "
                   "(default: params.yaml's, or $RLCV_PROFILE)")
    s.add_argument("--dry-run", action="store_true", help="build the row's models and "
                   "optimizers as the profile configures them, run two steps and one "
                   "evaluation on tiny synthetic data in a temporary folder; writes nothing")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="score a trained row with rlcv.metrics")
    s.add_argument("row")
    s.add_argument("--seed", type=_seed, nargs="+", default=[0], help="seeds (default: 0)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("report", help="write results/tables, results/plots, results/README.md")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("pipeline", help="write dvc.yaml from methods/ and params.yaml")
    s.add_argument("--check", action="store_true", help="fail if dvc.yaml is out of date")
    s.set_defaults(func=cmd_pipeline)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one `rlcv` command; every user-facing failure is one line on stderr.

    SIGTERM (what schedulers and CI runners send) is handled like Ctrl-C: temporary
    files are removed and seed workers stopped, exit code 130."""
    args = build_parser().parse_args(argv)
    workers.fork_safe_cuda()   # no CUDA in this process before the seed workers fork
    try:
        before = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:   # not the main thread: leave signals alone
        before = None
    try:
        args.func(args)
    except RlcvError as exc:
        if not getattr(exc, "reported", False):
            print(f"rlcv: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:   # read-only, disk full, a file where a folder goes, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"rlcv: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlcv: interrupted", file=sys.stderr)
        return 130
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
