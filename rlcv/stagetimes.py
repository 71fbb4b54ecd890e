"""Time a `dvc repro` stage by stage: DVC's own overhead, process start-up, train, evaluate.

    python -m rlcv.stagetimes run   [--log results/stage-times.csv] [-- DVC_REPRO_ARGS...]
    python -m rlcv.stagetimes table [--log results/stage-times.csv]

`run` runs `dvc repro` through `rlcv.dvcrun`, as `make repro` does, with RLCV_STAGE_LOG
set: every `rlcv` command DVC starts then records when its process started and ended and
how long it took to be ready to work (importing rlcv's command line, torch included: the
start-up every stage pays; with `rlcv.forkserver`, the client's start and the fork).
What lies between one command's end and the next one's start is DVC's bookkeeping
(hashing deps and outs, writing dvc.lock, checking the next stage). Each command also
records the CPU seconds of its work, its seed workers' included, so that the table can
say how many of the cores a stage kept busy. `table` prints the per-stage markdown table
README.md carries and the totals by kind.
Nothing here changes what a stage computes.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ("stage", "start", "startup_s", "end", "rc", "cpu_s")
"""cpu_s: CPU seconds (user + system) of the command's work, its seed workers included;
divided by the work's wall seconds it says how many cores the stage kept busy. Logs
written before 2026-12-07 lack it."""

def _exec(argv: list[str], start: float | None = None) -> int:
    """Run one rlcv command in this process, appending its times to $RLCV_STAGE_LOG
    (`start`: when the command's process started; this process's start by default)."""
    start = _process_start() if start is None else start
    import torch  # noqa: F401  the import every stage pays, whichever module does it first

    from rlcv import cli

    ready, cpu = time.time(), _cpu_seconds()
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    end, cpu = time.time(), _cpu_seconds() - cpu
    with open(os.environ["RLCV_STAGE_LOG"], "a", newline="") as fh:
        csv.writer(fh).writerow([" ".join(argv), f"{start:.3f}", f"{ready - start:.3f}",
                                 f"{end:.3f}", rc, f"{cpu:.3f}"])
    return rc


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been
    waited for (the seed workers, which `rlcv.workers` joins)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _process_start() -> float:
    """This process's start time (Linux /proc); now where /proc is absent.

    The start is counted in clock ticks since boot; it is placed on the wall clock by the
    time since boot now (CLOCK_BOOTTIME), not by /proc/stat's boot time, which is given
    in whole seconds and put every start up to 1 s early (before 2026-12-07 the
    start-up column carried that constant offset, and the DVC column lacked it)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, IndexError, ValueError, AttributeError):
        return time.time()


def run(log: Path, dvc_args: list[str]) -> int:
    """`dvc repro DVC_ARGS` with every rlcv command timed into `log` (started afresh)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", newline="") as fh:
        csv.writer(fh).writerow(FIELDS)
    env = {**os.environ, "RLCV_STAGE_LOG": str(log.resolve())}
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "rlcv.dvcrun", "repro", *dvc_args], env=env)
    total = time.time() - t0
    with open(log, "a", newline="") as fh:
        csv.writer(fh).writerow(["(dvc repro total)", f"{t0:.3f}", "0", f"{t0 + total:.3f}", rc,
                                 ""])
    return rc


def table(log: Path) -> str:
    """The per-stage markdown table and totals from a log that `run` wrote."""
    with open(log, newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = next((r for r in rows if r["stage"] == "(dvc repro total)"), None)
    rows = [r for r in rows if r["stage"] != "(dvc repro total)"]
    rows.sort(key=lambda r: float(r["start"]))
    timed = bool(rows) and all(r.get("cpu_s") for r in rows)   # logs since 2026-12-07
    busy_head = " cores busy |" if timed else ""
    lines = ["| stage command | DVC before it (s) | start-up (s) | work (s) |" + busy_head,
             "|---|---:|---:|---:|" + ("---:|" if timed else "")]
    kinds: dict[str, float] = {"dvc": 0.0, "startup": 0.0}
    cpu: dict[str, float] = {}
    prev_end = float(total["start"]) if total else float(rows[0]["start"]) if rows else 0.0
    for r in rows:
        start, end, startup = float(r["start"]), float(r["end"]), float(r["startup_s"])
        dvc = max(0.0, start - prev_end)
        work = end - start - startup
        kind = r["stage"].split()[0]
        kinds["dvc"] += dvc
        kinds["startup"] += startup
        kinds[kind] = kinds.get(kind, 0.0) + work
        busy = ""
        if timed:
            cpu[kind] = cpu.get(kind, 0.0) + float(r["cpu_s"])
            busy = f" {float(r['cpu_s']) / work:.2f} |" if work > 0 else " |"
        lines.append(f"| `rlcv {r['stage']}` | {dvc:.1f} | {startup:.1f} | {work:.1f} |{busy}")
        prev_end = end
    if total:
        kinds["dvc"] += max(0.0, float(total["end"]) - prev_end)
    lines += ["", "| where the time went | minutes |" + busy_head,
              "|---|---:|" + ("---:|" if timed else "")]
    for kind, secs in sorted(kinds.items(), key=lambda kv: -kv[1]):
        label = {"dvc": "DVC bookkeeping", "startup": "process start-up (imports)"}.get(
            kind, f"`rlcv {kind}` work")
        busy = (f" {cpu[kind] / secs:.2f} |" if kind in cpu and secs > 0 else " |") if timed else ""
        lines.append(f"| {label} | {secs / 60:.1f} |{busy}")
    if total:
        wall = float(total["end"]) - float(total["start"])
        lines.append(f"| **`dvc repro` wall clock** (exit {total['rc']}) | **{wall / 60:.1f}** |"
                     + (" |" if timed else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_exec"]:
        return _exec(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m rlcv.stagetimes",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=("run", "table"))
    ap.add_argument("--log", type=Path, default=Path("results/stage-times.csv"))
    ap.add_argument("dvc_args", nargs="*", help="passed to `dvc repro` (after --)")
    extra = argv[argv.index("--") + 1:] if "--" in argv else []   # options for DVC too
    args = ap.parse_args(argv[:len(argv) - len(extra) - bool(extra or "--" in argv)])
    if args.action == "run":
        return run(args.log, [*args.dvc_args, *extra])
    if not args.log.is_file():
        print(f"error: {args.log}: no stage log; `python -m rlcv.stagetimes run` writes it",
              file=sys.stderr)
        return 2
    print(table(args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
