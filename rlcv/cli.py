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
import signal
import sys
from pathlib import Path

from rlcv import io as rio
from rlcv import params as P
from rlcv import seedrun, workers
from rlcv.errors import DataError, RlcvError
from rlcv.seedrun import DATA, RESULTS


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
    cfg = {**cfg, "profile": params.profile, "data": seedrun.data_kind(params.profile)}
    with rio.atomic_dir(out) as tmp:   # the dataset's folder appears only when complete
        manifests = module.stage(root, tmp, cfg)
    for subset, m in manifests.items():
        counts = ", ".join(f"{k} {v}" for k, v in m["counts"].items()) or "no images"
        print(f"staged {args.dataset}/{subset}: {counts} -> {out / subset}/manifest.json")


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
    seedrun.check_seeds(args.seed)
    for seed in args.seed:   # checked before any training, so a missing input fails at once
        for req in row.requires:
            ckpt = seedrun.run_dir(req, seed) / "checkpoint.pt"
            if not ckpt.is_file():
                raise RlcvError(f"{row.name} starts from {req}: {ckpt} is missing "
                                f"(run: rlcv train {req} --seed {seed})")
    from rlcv import twins

    twin = None if args.no_twin else twins.twin_of(params, row)
    if twin:   # the same experiment as `twin` on this profile: its runs, not a rerun
        for seed in args.seed:
            seedrun.copy_seed(params, row, values, twin, seed)
        return
    engine.set_threads()
    seedrun.staged_data(row, params)   # a bad manifest fails here, once, before any worker starts
    assert callable(row.train)   # import the family here, once, not in every worker
    from rlcv import dist

    def train(seed: int) -> None:
        seedrun.train_seed(params, row, values, cfg, seed, args.fresh, args.checkpoint_every)

    if dist.launched():   # torchrun's processes share each seed: no forked seed workers
        for seed in args.seed:
            train(seed)
    else:
        workers.for_each_seed(args.seed, train, share_gpu=seedrun.share_gpu(params))


def cmd_evaluate(args) -> None:
    import methods
    from rlcv import engine

    engine.device()
    params = P.load(args.params)
    row = methods.get(args.row)
    seedrun.check_seeds(args.seed)
    for seed in args.seed:
        ckpt = seedrun.run_dir(row.name, seed) / "checkpoint.pt"
        if not ckpt.is_file():
            raise RlcvError(f"{ckpt} is missing (run: rlcv train {row.name} --seed {seed})")
    engine.set_threads()
    seedrun.staged_data(row, params)
    assert callable(row.evaluate)
    workers.for_each_seed(args.seed, lambda seed: seedrun.evaluate_seed(params, row, seed),
                          share_gpu=seedrun.share_gpu(params))


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
