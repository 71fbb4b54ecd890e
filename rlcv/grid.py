"""Run a grid of dependent commands several at a time, on a budget of cores.

`make gpu-check` runs the whole smoke pipeline (synth and stage every dataset, train and
evaluate every row with all its seeds, the report) in one command on a lent GPU machine
(16 cores, one GPU). One command at a time leaves most of that idle: a row's seeds fill
five cores and a sliver of the GPU. `run` starts every task whose prerequisites have
finished, as many at once as their `cores` fit in the budget, the most urgent first:
the one with the longest chain of expected seconds from its start to the end of the grid
(critical-path list scheduling), so the long chains of EU-RL rows start early and the
short rows fill the gaps.

A task whose prerequisite failed is skipped (`rc` None), the rest of the grid goes on;
a task with `always` runs once its prerequisites have finished, whatever their outcome
(the report: it marks what is missing). Each task's output goes to its own log file.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Task:
    name: str
    cmd: list[str]
    after: tuple[str, ...] = ()
    """Tasks that must finish (exit 0, unless `always`) before this one starts."""
    cores: int = 1
    """Cores it keeps busy (a row's seeds run side by side in that many processes)."""
    expect_s: float = 1.0
    """Expected seconds (from an earlier run), to order the ready tasks."""
    always: bool = False
    """Run once the prerequisites have finished, even if one failed."""
    cwd: Path | None = None
    """Folder it runs in (default: the grid's)."""


@dataclass
class Outcome:
    rc: int | None
    """Exit status; None when skipped because a prerequisite failed."""
    start: float = 0.0
    """Seconds after the grid started."""
    seconds: float = 0.0


def check(tasks: Sequence[Task]) -> None:
    """Refuse unknown prerequisites, duplicate names and cycles, naming them."""
    names = [t.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"grid: tasks named twice: {', '.join(dup)}")
    known = set(names)
    for t in tasks:
        missing = [a for a in t.after if a not in known]
        if missing:
            raise ValueError(f"grid: {t.name} runs after unknown task(s) {', '.join(missing)}")
    state: dict[str, int] = {}   # 1 visiting, 2 done
    by_name = {t.name: t for t in tasks}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError(f"grid: a cycle: {' -> '.join([*path, name])}")
        state[name] = 1
        for a in by_name[name].after:
            visit(a, [*path, name])
        state[name] = 2

    for n in names:
        visit(n, [])


def urgency(tasks: Sequence[Task]) -> dict[str, float]:
    """Each task's expected seconds plus the longest chain of tasks that wait on it."""
    waiting: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for a in t.after:
            waiting[a].append(t.name)
    by_name = {t.name: t for t in tasks}
    memo: dict[str, float] = {}

    def chain(name: str) -> float:
        if name not in memo:
            memo[name] = by_name[name].expect_s + max((chain(w) for w in waiting[name]),
                                                      default=0.0)
        return memo[name]

    return {t.name: chain(t.name) for t in tasks}


def run(tasks: Sequence[Task], cores: int, cwd: Path, env: dict, logs: Path,
        on_done: Callable[[Task, Outcome], None] | None = None,
        poll_s: float = 0.05, deadline_s: float | None = None) -> dict[str, Outcome]:
    """Run the grid (see the module docstring); returns every task's outcome. At
    `deadline_s` seconds the tasks still running are stopped (SIGTERM: their outcome is
    the signal's exit status) and those not started are skipped, so a caller with a hard
    time limit still gets the outcomes to write down."""
    check(tasks)
    logs.mkdir(parents=True, exist_ok=True)
    order = urgency(tasks)
    pending = sorted(tasks, key=lambda t: -order[t.name])
    done: dict[str, Outcome] = {}
    running: dict[str, tuple[Task, subprocess.Popen, float]] = {}
    t0 = time.monotonic()

    def finish(task: Task, out: Outcome) -> None:
        done[task.name] = out
        if on_done:
            on_done(task, out)

    try:
        while pending or running:
            if deadline_s is not None and time.monotonic() - t0 > deadline_s:
                for _, proc, _ in running.values():   # all at once: each cleans up
                    proc.terminate()
                for name, (task, proc, start) in list(running.items()):
                    proc.wait()
                    del running[name]
                    finish(task, Outcome(proc.returncode, start - t0, time.monotonic() - start))
                for task in pending:
                    finish(task, Outcome(None, time.monotonic() - t0))
                pending.clear()
                break
            for task in list(pending):
                if not all(a in done for a in task.after):
                    continue
                if not task.always and any(done[a].rc != 0 for a in task.after):
                    pending.remove(task)
                    finish(task, Outcome(None, time.monotonic() - t0))
                    continue
                busy = sum(t.cores for t, _, _ in running.values())
                width = min(task.cores, cores)   # a task wider than the budget runs alone
                if running and busy + width > cores:
                    continue
                pending.remove(task)
                with (logs / f"{task.name}.log").open("w") as log:
                    proc = subprocess.Popen(task.cmd, cwd=task.cwd or cwd, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
                running[task.name] = (task, proc, time.monotonic())
            for name, (task, proc, start) in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    finish(task, Outcome(proc.returncode, start - t0, time.monotonic() - start))
            if running:
                time.sleep(poll_s)
    finally:
        for _, proc, _ in running.values():
            proc.terminate()
        for _, proc, _ in running.values():
            proc.wait()
    return done
