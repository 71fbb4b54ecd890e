"""`make gpu-check`: the fast tests and the whole smoke pipeline on a GPU, on record.

Runs `pytest -m "not slow"` and every row of params.yaml (profile and seeds as
configured, or `--profile` / `--seeds`) in a scratch copy of the repository with
`RLCV_DEVICE` set: synth and stage each dataset, `rlcv train` and `rlcv evaluate` each
row with all its seeds, the report. The commands run as a grid (`rlcv.grid`): each as
soon as what it needs is done, as many at once as the cores allow (`--cores`), so one
GPU machine runs the 5-seed smoke pipeline in one command (its limit: 10 minutes); a
row's seeds share the GPU in their own processes (`rlcv.workers.jobs`), and the tests
run beside the rows. Writes, under `--out` (default `results/gpu/`):

    README.md   GPU name, torch version, date; the whole check's minutes; the tests'
                summary; per row: device, start, train and evaluate seconds, the same
                row's seconds on the CPU (`results/cpu-check/times.csv`, written by
                `--device cpu --out results/cpu-check`, else the last `make
                repro-timed`'s `results/stage-times.csv`), exit status
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
import sys
import tempfile
import time
from pathlib import Path

from rlcv import checkout, grid

ROOT = Path(__file__).resolve().parents[1]


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


def _stage_seconds(path: Path) -> dict[str, float]:
    """Seconds of every `rlcv` command of a `make repro-timed` log (results/stage-times.csv),
    process start included, by its arguments ("train <row> --seed 0 1 2 3 4")."""
    if not path.is_file():
        return {}
    with path.open() as fh:
        return {r["stage"]: float(r["end"]) - float(r["start"]) for r in csv.DictReader(fh)
                if r.get("end")}


def _expected(path: Path) -> dict[str, float]:
    """Seconds each command took in the last timed CPU run, by "train <row>" / "evaluate
    <row>" / "synth <dataset>" / "report", whatever its seeds: the grid starts the longest
    chains first."""
    return {" ".join(stage.split()[:2]): s for stage, s in _stage_seconds(path).items()}


def _repro_times(path: Path, rows: list[str], seeds: list[str]) -> dict[str, tuple[str, str]]:
    """Train and evaluate seconds per row from a `make repro-timed` log, where it ran
    these seeds (the committed params' profile); evaluate is blank where DVC skipped it
    (its checkpoints the bits dvc.lock records), not 0."""
    timed, tail = _stage_seconds(path), " --seed " + " ".join(seeds)
    evaluate = {r: timed.get(f"evaluate {r}{tail}") for r in rows}
    return {r: (f"{timed[f'train {r}{tail}']:.1f}",
                "" if evaluate[r] is None else f"{evaluate[r]:.1f}")
            for r in rows if f"train {r}{tail}" in timed}


def _with_requires(params, rows: list[str]) -> list[str]:
    """`rows` and, transitively, the rows whose runs they read (`twins.waits_for`), in
    params order."""
    import methods
    from rlcv import twins

    need, todo = set(rows), list(rows)
    while todo:
        for req in twins.waits_for(params, methods.get(todo.pop())):
            if req not in need:
                need.add(req)
                todo.append(req)
    return [n for n in params.method_names if n in need]


def grid_env(work: Path, device: str) -> dict[str, str]:
    """The environment every command of the grid runs in: the scratch copy's code first on
    PYTHONPATH, the packages PYTHONPATH already reached kept (`workers.python_path`), the
    device asked for."""
    from rlcv import workers

    return {**os.environ, "RLCV_DEVICE": device, "PYTHONPATH": workers.python_path(work)}


def tasks(params, rows: list[str], seeds: list[str], rlcv: list[str], cores: int,
          expected: dict[str, float], tests: list[str] | None) -> list[grid.Task]:
    """The smoke pipeline as a grid: synth -> stage each dataset the rows use; train a row
    after its data, the rows it starts from and the twin whose runs it copies; evaluate
    after train; the report after everything. `tests`: a pytest command run beside it."""
    import methods
    from rlcv import twins

    # the tests run in the checkout itself, not in the scratch copy whose params.yaml
    # --profile / --seeds edited (tests check the committed files); each test copies
    # what it runs
    out = [grid.Task("tests", tests, expect_s=300.0, cwd=ROOT)] if tests else []
    wide = min(len(seeds), cores)   # a row's seeds run side by side (rlcv.workers.jobs)
    for name in sorted({methods.get(r).dataset for r in rows}):
        out += [grid.Task(f"synth-{name}", [*rlcv, "synth", name],
                          expect_s=expected.get(f"synth {name}", 5.0)),
                grid.Task(f"stage-{name}", [*rlcv, "stage", name], (f"synth-{name}",),
                          expect_s=expected.get(f"stage {name}", 5.0))]
    for name in rows:
        row = methods.get(name)
        after = (f"stage-{row.dataset}",
                 *(f"train-{r}" for r in twins.waits_for(params, row) if r in rows))
        out += [grid.Task(f"train-{name}", [*rlcv, "train", name, "--seed", *seeds], after,
                          wide, expected.get(f"train {name}", 60.0)),
                grid.Task(f"evaluate-{name}", [*rlcv, "evaluate", name, "--seed", *seeds],
                          (f"train-{name}",), wide, expected.get(f"evaluate {name}", 5.0))]
    out.append(grid.Task("report", [*rlcv, "report"], tuple(f"evaluate-{n}" for n in rows),
                         expect_s=expected.get("report", 40.0), always=True))
    return out


def run(args) -> int:
    import torch

    from rlcv import params as P
    from rlcv import workers
    from rlcv.engine import usable_cores

    workers.fork_safe_cuda()   # this process forks nothing, but stays CUDA-free like rlcv
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("rlcv gpu-check: no CUDA device on this machine (use --device cpu to time "
              "the CPU)", file=sys.stderr)
        return 2
    unknown = sorted(set(args.rows or ()) - set(P.load(ROOT / "params.yaml").method_names))
    if unknown:
        print(f"rlcv gpu-check: --rows {' '.join(unknown)}: not a row of params.yaml",
              file=sys.stderr)
        return 2
    began = time.monotonic()
    out = Path(args.out)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rlcv-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    checkout.copy(ROOT, work, skip=("results/runs/",))
    _edit_params(work, args.profile, args.seeds)
    params = P.load(work / "params.yaml")
    env = grid_env(work, args.device)
    rlcv = [sys.executable, "-m", "rlcv.cli"]
    import methods

    rows = [n for n in params.method_names if n in methods.METHODS]
    if args.rows:
        rows = _with_requires(params, args.rows)
    seeds = [str(s) for s in params.seeds]
    cores = args.cores or usable_cores()
    pytest = None if args.skip_tests else [sys.executable, "-m", "pytest", "-q", "-m",
                                           "not slow", "tests", "-p", "no:cacheprovider"]
    grid_tasks = tasks(params, rows, seeds, rlcv, cores,
                       _expected(ROOT / "results" / "stage-times.csv"), pytest)

    def said(task: grid.Task, res: grid.Outcome) -> None:
        if task.name.startswith("train-"):
            rc = "skipped (a row it starts from failed)" if res.rc is None else res.rc
            print(f"gpu-check {task.name[6:]}: train {res.seconds:.1f} s, exit {rc}",
                  flush=True)

    done = grid.run(grid_tasks, cores, work, env, work / "gpu-check-logs", said,
                    deadline_s=args.deadline)
    cpu = _cpu_times(ROOT / "results" / "cpu-check" / "times.csv")
    cpu_from = "`results/cpu-check/times.csv`"
    if not cpu and params.profile == P.load(ROOT / "params.yaml").profile:
        cpu = _repro_times(ROOT / "results" / "stage-times.csv", rows, seeds)
        cpu_from = "`results/stage-times.csv` (the last `make repro-timed`, same seeds)"
    table = []
    for row in rows:
        t, e = done[f"train-{row}"], done[f"evaluate-{row}"]
        table.append({"row": row, "device": args.device, "start_s": f"{t.start:.1f}",
                      "train_s": f"{t.seconds:.1f}" if t.rc is not None else "",
                      "evaluate_s": f"{e.seconds:.1f}" if e.rc is not None else "",
                      "cpu_train_s": cpu.get(row, ("", ""))[0],
                      "cpu_evaluate_s": cpu.get(row, ("", ""))[1],
                      "exit": "skipped" if t.rc is None else (t.rc or e.rc)})
    tests = "skipped"
    if pytest:
        log = (work / "gpu-check-logs" / "tests.log").read_text().strip().splitlines()
        tests = f"exit {done['tests'].rc}: {log[-1] if log else 'no output'}"
    wall = time.monotonic() - began
    _write(out, work, table, tests, args, params,
           {"wall_s": wall, "cores": cores, "tasks": len(grid_tasks),
            "report": done["report"].rc, "cpu_from": cpu_from,
           "deadline": args.deadline if args.deadline and wall > args.deadline else None})
    failed = [r["row"] for r in table if r["exit"] != 0]
    print(f"gpu-check: {len(table) - len(failed)}/{len(table)} rows ok in {wall / 60:.1f} min "
          f"-> {out}/README.md")
    return 1 if failed or done["report"].rc != 0 else 0


LIMIT_S = 600
"""One command on the lent device machine may run at most this long (its README)."""


def _write(out: Path, work: Path, table: list[dict], tests: str, args, params,
           summary: dict) -> None:
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
    failed = [r["row"] for r in table if r["exit"] != 0]
    if failed or summary["report"] != 0:
        stopped = (f"stopped at its --deadline of {summary['deadline']:.0f} s, "
                   if summary.get("deadline") else "")
        verdict = (f"**it did not complete: {stopped}{len(failed)} of {len(table)} rows "
                   f"failed, were stopped or were skipped ({', '.join(failed) or 'none'}), "
                   f"report exit {summary['report']}**")
    else:
        verdict = (f"every row and the report completed, "
                   f"{'within' if summary['wall_s'] <= LIMIT_S else '**over**'} the "
                   f"{LIMIT_S // 60}-minute limit of one command on the lent machine")
    lines = [
        f"# Smoke pipeline on {dev['gpu'] or dev['device']}",
        "",
        f"Generated by `make gpu-check` on {datetime.date.today().isoformat()}: torch "
        f"{dev['torch']}, device `{args.device}`, profile `{params.profile}`, seeds "
        f"{params.seeds}. Data: SYNTHETIC (the smoke profile's writers).",
        "",
        f"**The whole check took {summary['wall_s'] / 60:.1f} minutes** in one command "
        f"(copy, tests, synth and stage, every row's train and evaluate, report): "
        f"{verdict}. {summary['tasks']} commands ran as a grid (`rlcv.grid`) on "
        f"{summary['cores']} cores, each row's seeds side by side in their own processes "
        "on the one device.",
        "",
        f"Fast tests (`pytest -m \"not slow\"`, beside the rows) on this device: {tests}.",
        "",
        "Per row, all seeds in one `rlcv train` / `rlcv evaluate` (seconds, process start "
        f"included; start: seconds after the grid began); CPU columns from "
        f"{summary['cpu_from']}. The tables regenerated from these runs are in `tables/`.",
        "",
        "| row | device | start s | train s | evaluate s | CPU train s | CPU evaluate s | exit |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['row']} | {r['device']} | {r['start_s']} | {r['train_s'] or '-'} | "
          f"{r['evaluate_s'] or '-'} | {r['cpu_train_s'] or '-'} | "
          f"{r['cpu_evaluate_s'] or '-'} | {r['exit']} |" for r in table),
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
    ap.add_argument("--rows", nargs="+", help="only these rows (and the rows they start from)")
    ap.add_argument("--cores", type=int, help="cores the grid keeps busy at once (default: "
                    "the usable cores; a row's seeds count one each)")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the fast tests")
    ap.add_argument("--deadline", type=float, help="seconds after which the commands still "
                    "running are stopped and the rest skipped, so the record is still written "
                    "inside a hard limit (.ci/device: 540 of the lent machine's 600)")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
