"""`make gpu-check`: the fast tests and the whole smoke pipeline on a GPU, on record.

Runs `pytest -m "not slow"`, then every row of params.yaml (profile and seeds as
configured, or `--profile` / `--seeds`) in a scratch copy of the repository with
`RLCV_DEVICE` set: synth and stage each dataset, then `rlcv train` and `rlcv evaluate`
each row with all its seeds, timing each command. Writes, under `--out`
(default `results/gpu/`):

    README.md   GPU name, torch version, date; the tests' summary; per row: device, train
                and evaluate seconds, the same row's seconds in the last CPU record
                (`results/cpu-check/times.csv`, written by `--device cpu --out
                results/cpu-check`), exit status
    times.csv   the same per-row figures, machine-readable
    tables/     the report's tables regenerated from these runs, to set beside
                results/tables/ and see whether the verdicts agree across devices

The committed results/ are never touched: the runs live in the scratch copy
(`--workdir`, default a temporary folder). On a machine without CUDA it refuses unless
`--device cpu` (or `lazy`) is asked for explicitly.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not rel.startswith("results/runs/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _timed(cmd: list[str], cwd: Path, env: dict, log) -> tuple[int, float]:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc.returncode, time.monotonic() - start


def _cpu_times(path: Path) -> dict[str, tuple[str, str]]:
    if not path.is_file():
        return {}
    with path.open() as fh:
        return {r["row"]: (r["train_s"], r["evaluate_s"]) for r in csv.DictReader(fh)}


def _edit_params(work: Path, profile: str | None, seeds: list[int] | None) -> None:
    import yaml

    path = work / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    if profile:
        raw["profile"] = profile
    if seeds:
        raw["seeds"] = seeds
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def run(args) -> int:
    import torch

    from rlcv import params as P

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("rlcv gpu-check: no CUDA device on this machine (use --device cpu to time "
              "the CPU)", file=sys.stderr)
        return 2
    out = Path(args.out)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rlcv-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    _copy_repo(work)
    _edit_params(work, args.profile, args.seeds)
    params = P.load(work / "params.yaml")
    env = {**os.environ, "RLCV_DEVICE": args.device, "PYTHONPATH": str(work)}
    rlcv = [sys.executable, "-m", "rlcv.cli"]
    log = (work / "gpu-check.log").open("w")
    tests = "skipped"
    if not args.skip_tests:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow",
                               "tests", "-p", "no:cacheprovider"], cwd=work, env=env,
                              capture_output=True, text=True)
        tail = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        tests = f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}"
    import datasets
    import methods

    for name in params.dataset_names:
        if name in datasets.available():
            for verb in ("synth", "stage"):
                _timed([*rlcv, verb, name], work, env, log)
    seeds = [str(s) for s in params.seeds]
    rows = [n for n in params.method_names if n in methods.METHODS]
    if args.rows:
        rows = [n for n in rows if n in args.rows]
    cpu = _cpu_times(ROOT / "results" / "cpu-check" / "times.csv")
    table = []
    for row in rows:
        rc_t, train_s = _timed([*rlcv, "train", row, "--seed", *seeds], work, env, log)
        rc_e, eval_s = (_timed([*rlcv, "evaluate", row, "--seed", *seeds], work, env, log)
                        if rc_t == 0 else (None, 0.0))
        table.append({"row": row, "device": args.device, "train_s": f"{train_s:.1f}",
                      "evaluate_s": f"{eval_s:.1f}" if rc_e is not None else "",
                      "cpu_train_s": cpu.get(row, ("", ""))[0],
                      "cpu_evaluate_s": cpu.get(row, ("", ""))[1],
                      "exit": rc_t if rc_t else rc_e})
        print(f"gpu-check {row}: train {train_s:.1f} s, exit {table[-1]['exit']}", flush=True)
    _timed([*rlcv, "report"], work, env, log)
    log.close()
    _write(out, work, table, tests, args, params)
    failed = [r["row"] for r in table if r["exit"] != 0]
    print(f"gpu-check: {len(table) - len(failed)}/{len(table)} rows ok -> {out}/README.md")
    return 1 if failed else 0


def _write(out: Path, work: Path, table: list[dict], tests: str, args, params) -> None:
    import torch

    from rlcv import engine

    out.mkdir(parents=True, exist_ok=True)
    if (work / "results" / "tables").is_dir():
        shutil.rmtree(out / "tables", ignore_errors=True)
        shutil.copytree(work / "results" / "tables", out / "tables")
    with (out / "times.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]) if table else ["row"])
        w.writeheader()
        w.writerows(table)
    dev = engine.device_record(torch.device(args.device)) if args.device != "lazy" else {
        "device": "lazy", "torch": torch.__version__, "gpu": None}
    lines = [
        f"# Smoke pipeline on {dev['gpu'] or dev['device']}",
        "",
        f"Generated by `make gpu-check` on {datetime.date.today().isoformat()}: torch "
        f"{dev['torch']}, device `{args.device}`, profile `{params.profile}`, seeds "
        f"{params.seeds}. Data: SYNTHETIC (the smoke profile's writers).",
        "",
        f"Fast tests (`pytest -m \"not slow\"`) on this device: {tests}.",
        "",
        "Per row, all seeds in one `rlcv train` / `rlcv evaluate` (seconds, process start "
        "included); CPU columns from `results/cpu-check/times.csv` when present. The "
        "tables regenerated from these runs are in `tables/`.",
        "",
        "| row | device | train s | evaluate s | CPU train s | CPU evaluate s | exit |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['row']} | {r['device']} | {r['train_s']} | {r['evaluate_s']} | "
          f"{r['cpu_train_s'] or '-'} | {r['cpu_evaluate_s'] or '-'} | {r['exit']} |"
          for r in table),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rlcv-gpu-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="RLCV_DEVICE for the runs (default cuda)")
    ap.add_argument("--out", default=str(ROOT / "results" / "gpu"), help="record folder")
    ap.add_argument("--workdir", help="scratch copy of the repository (default: a temp dir)")
    ap.add_argument("--profile", help="profile to run (default: params.yaml's)")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default: params.yaml's)")
    ap.add_argument("--rows", nargs="+", help="only these rows")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the fast tests")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
