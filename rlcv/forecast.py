"""`python -m rlcv.forecast [--write [PATH]]`: a measured forecast of the GPU-hours the
`paper` profile needs, row by row (run it on the GPU that will train the rows).

Each row is built as `rlcv.dryrun` builds it (the paper settings, requirements first,
random weights where the torchvision file is absent, a temporary folder), but with the
paper's batch, crop and input sizes, on synthetic images at the paper profile's sizes
(`data_cfg`), and a short budget (`budget`): the k-th phase key in sorted order (`steps`,
`episodes`, `*_steps`, `critic_warmup`; not a count inside a loop, `_INNER`) runs W + N + k
steps, so the number of `.step()` calls of each optimizer names the settings key (phase) it
belongs to; an optimizer stepping an exact multiple m of exactly one key's count takes m
steps per paper step. An optimizer that matches no key but steps only inside one phase's
loop (an actor updated every other iteration, an agent updated per environment step) is
timed with that phase. A key that no optimizer's count names (a DQN's `episodes`: its
Q-network updates per environment step, so its count names no key, or the wrong one by
chance) is timed by the `engine.fit` loop that ran exactly its steps (`LoopTimer`), as is
every key whose loop is seen: a loop's step is the whole step, whatever its optimizers do.

A phase's seconds per step: the median time between the ends of consecutive (paper)
steps of its optimizer, the first W excluded (warm-up). The row's GPU-hours on one GPU:
seeds x sum over phases of (paper steps of the phase x s/step) / 3600. TF32 is on when
on CUDA; the training loops are fp32 (no bf16). Evaluation, data staging and checkpoints
of the real run are not in the figure.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from rlcv import params as P
from rlcv.dryrun import _INNER, _PHASES, _STEPS, DryRun, scratch, shrink

OUT = Path("results/paper-forecast.md")
_NOT_SIZE = ("root", "min_object")   # the real data's root; a selection threshold in px
_SOURCE = ("image_hw", "synth_size")  # the synthetic writers' source image sizes
_PRETRAIN_BATCH = ("preproc_steps", "cvae_steps")   # ACIS pre-training (methods/acis/rows.py)


def budget(values: dict, warmup: int, measure: int) -> tuple[dict, dict]:
    """The paper settings with a short, distinct budget per phase key; (settings, counts).
    Only the evaluation is shrunk further (`eval_images`, no periodic evaluation), and an
    `_INNER` count is capped at the W warm-up steps, so every measured step is a full one
    (the real run's cheaper first steps are counted at full cost: an upper bound)."""
    keys = sorted(k for k, v in values.items() if type(v) is int and not k.startswith("eval_")
                  and (_STEPS.match(k) or _PHASES.match(k)))
    counts = {k: warmup + measure + i for i, k in enumerate(keys)}
    small = shrink({k: values[k] for k in ("eval_images", "eval_every") if k in values})
    inner = {k: min(values[k], warmup) for k in _INNER if type(values.get(k)) is int}
    return {**values, **small, **inner, **counts}, counts


def staged_hw(cfg: dict) -> list[int]:
    """The largest staged image size [h, w] of a dataset cfg (coco: its subsets' frames)."""
    size = cfg.get("size_hw", cfg.get("size"))
    if size is None:   # coco: a frame per subset, the top-level keys as their default
        sizes = [b["image_size"] for b in cfg.values() if isinstance(b, dict) and "image_size" in b]
        size = max(sizes or [cfg["image_size"]])
    return [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]


def data_cfg(params: P.Params, name: str) -> dict:
    """The ci profile's synthetic dataset (tiny counts) with the paper profile's size keys
    laid over it, its source images scaled (aspect kept) to cover the staged size (times
    the stager's `downsize`, CVPPP's: it crops before downsizing)."""
    def profile(p):
        return P.Params(raw={**params.raw, "profile": p}, path=params.path).dataset(name)

    ci, paper = profile("ci"), profile("paper")
    cfg = {**ci, **{k: v for k, v in paper.items() if k not in _NOT_SIZE}}
    h, w = (int(cfg.get("downsize", 1)) * n for n in staged_hw(cfg))
    for key in _SOURCE:
        if key in ci:
            ch, cw = ci[key]
            scale = max(h / ch, w / cw)
            cfg[key] = [round(ch * scale), round(cw * scale)]
    if name == "coco":   # its writer's one `image_size`: square sources at the largest frame
        cfg["image_size"] = max(h, w)
    return cfg


class StepTimer:
    """The end time of every optimizer step inside the block (global post-step hook; the
    device synchronized first), per optimizer."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.times: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _hook(self, opt, args, kwargs) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.times.setdefault(opt, []).append(time.perf_counter())

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.handle = register_optimizer_step_post_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


class LoopTimer:
    """The start and the end time of every step of each `engine.fit` loop run inside the
    block while `active()` (the target row's own training, not its requirements'), as
    (steps, start, ends) (`engine.register_fit_hook`; the device synchronized by the
    loop): the clock of a phase whose optimizer steps do not count its steps, as when a
    DQN updates per environment step and an episode is the phase's step. Every training
    loop of the suite runs through `engine.fit`."""

    def __init__(self, active: Callable[[], bool]):
        self.active = active
        self.loops: list[tuple[int, float, list[float]]] = []

    def _loop(self, run, phase: str, start: int, steps: int):
        if not self.active():
            return None
        ends: list[float] = []
        self.loops.append((steps - start, time.perf_counter(), ends))
        return lambda step: ends.append(time.perf_counter())

    def __enter__(self):
        from rlcv import engine

        self.handle = engine.register_fit_hook(self._loop)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def per_step(times: list[float], every: int, warmup: int) -> float | None:
    """Median seconds between the ends of consecutive groups of `every` steps, the first
    `warmup` groups excluded; None when nothing is left to measure."""
    ends = times[every - 1::every]
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)][max(warmup - 1, 0):]
    return statistics.median(gaps) if gaps else None


def assign(steps: list[tuple[str, list[float]]], counts: dict, warmup: int,
           fit_loops: list[tuple[int, float, list[float]]] = ()) -> dict:
    """Map each optimizer's steps to a phase key (see the module docstring). A key whose
    `engine.fit` loop ran exactly its steps (`LoopTimer`) is timed by that loop, each
    step's whole time whatever its optimizers do (a count that is by chance a multiple of
    the key's names no loop); other keys by their optimizers' steps. Returns
    {"phases": {key: s/step}, "absorbed": [...], "unmapped": [...], "idle": [keys],
    "optimizers": [(name, steps, key or None)]}."""
    mapped, loose, each = {}, [], []
    for name, ts in steps:
        keys = [k for k, c in counts.items() if c == len(ts)]   # an exact count first
        keys = keys or [k for k, c in counts.items() if ts and len(ts) % c == 0]
        if len(keys) == 1:
            k = keys[0]
            mapped.setdefault(k, []).append((name, ts, len(ts) // counts[k]))
        elif ts:
            loose.append((name, ts))
        each.append((name, len(ts), keys[0] if len(keys) == 1 else None))
    spans = [(k, ts[0], ts[-1]) for k, group in mapped.items() for _, ts, _ in group]
    clocks = {}
    for key, c in counts.items():
        timed = [(start, ends) for n, start, ends in fit_loops if n == c and len(ends) == n]
        if len(timed) == 1:
            clocks[key] = timed[0]
            spans.append((key, timed[0][0], timed[0][1][-1]))
    phases = {key: per_step(ends, 1, warmup) for key, (_, ends) in clocks.items()}
    for key, group in mapped.items():
        if key in clocks:
            continue
        # optimizers of one key whose steps overlap in time share a loop (max); loops one
        # after another add up
        loops: list[list] = []
        for _, ts, m in sorted(group, key=lambda g: g[1][0]):
            s = per_step(ts, m, warmup)
            if loops and ts[0] <= loops[-1][1]:
                loops[-1] = [max(loops[-1][0], s or 0), max(loops[-1][1], ts[-1])]
            else:
                loops.append([s or 0, ts[-1]])
        phases[key] = sum(s for s, _ in loops) or None
    absorbed, unmapped = [], []
    for name, ts in loose:
        inside = {k for k, a, b in spans
                  if max([e for _, _, e in spans if e < a] or [-1e300]) < ts[0]
                  and ts[-1] < min([s for _, s, _ in spans if s > b] or [1e300])
                  and any(a <= t <= b for t in ts)}
        raw = f"{name} {len(ts)} steps, {_fmt(per_step(ts, 1, warmup))} s/step"
        if len(inside) == 1:
            absorbed.append(f"{raw} inside {inside.pop()}")
        else:
            unmapped.append(raw)
    return {"phases": phases, "absorbed": absorbed, "unmapped": unmapped,
            "idle": sorted(set(counts) - set(phases)), "optimizers": each}


def _fmt(x, spec=".3g") -> str:
    return "n/a" if x is None else format(x, spec)


@dataclass
class Forecast(DryRun):
    """A dry-run session that times its target row's optimizer steps (see the module
    docstring); datasets it cannot synthesize at paper size fall back to the ci sizes."""

    warmup: int = 3
    measure: int = 10
    target: str | None = None
    counts: dict = field(default_factory=dict)
    ci_size: dict = field(default_factory=dict)   # dataset -> why it has ci-size images

    def settings(self, name: str) -> dict:
        values, counts = budget(self.params.method(name), self.warmup, self.measure)
        if name == self.target:   # its requirements are done: its own training starts
            self.counts = counts
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
        return values

    def data_cfg(self, name: str) -> dict:
        if name in self.ci_size:
            return super().data_cfg(name)
        return data_cfg(self.params, name)

    def data(self, row):
        try:
            return super().data(row)
        except Exception as exc:   # noqa: BLE001 - any failure at paper size: ci size instead
            if row.dataset in self.ci_size:
                raise
            self.ci_size[row.dataset] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"{row.dataset}: paper-size synthetic images failed "
                  f"({self.ci_size[row.dataset]}); ci sizes instead", file=sys.stderr)
            for part in ("raw", "staged"):
                shutil.rmtree(self.root / part / row.dataset, ignore_errors=True)
            return super().data(row)

    def forecast(self, name: str) -> dict:
        """Train row `name` on the short budget; its phases, timings and GPU-hours."""
        import methods

        self.target, self.counts = name, {}
        with StepTimer(self.device) as timer, \
                LoopTimer(lambda: bool(self.counts)) as loops:
            _, opts = self.train(name)
        self.forget(name)
        steps = [(f"{type(o).__name__}#{i}", timer.times.get(o, [])) for i, o in enumerate(opts)]
        out = {"row": name, **assign(steps, self.counts, self.warmup, loops.loops),
               "ci_size": methods.get(name).dataset in self.ci_size,
               "peak": (torch.cuda.max_memory_allocated(self.device)
                        if self.device.type == "cuda" else None)}
        paper, seeds = self.params.method(name), len(self.params.seeds)
        out["batch"] = {k: batch_of(k, paper) for k in out["phases"]}
        out["paper_steps"] = {k: paper[k] for k in out["phases"]}
        done = not out["unmapped"] and all(s is not None for s in out["phases"].values())
        out["gpu_hours"] = (seeds * sum(paper[k] * s for k, s in out["phases"].items()) / 3600
                            if done else None)
        return out


def batch_of(key: str, values: dict) -> int | None:
    """The batch size a phase's steps take: `<prefix>_batch`, ACIS's pre-training batch,
    else `batch_size`; None when the settings name none."""
    prefix = key.removesuffix("_steps")
    if f"{prefix}_batch" in values:
        return values[f"{prefix}_batch"]
    if key in _PRETRAIN_BATCH and "pretrain_batch" in values:
        return values["pretrain_batch"]
    return values.get("batch_size")


def line(r: dict) -> str:
    """One markdown table line for a row's result (or its failure)."""
    if "error" in r:
        return f"| {r['row']} | FAILED: {r['error']} | | |"
    parts = []
    for k, s in r["phases"].items():
        b = r["batch"][k]
        ips = f"{b / s:.1f} img/s" if b and s else "img/s n/a"
        parts.append(f"{k} {_fmt(s)} s/step ({ips}, {r['paper_steps'][k]} steps)")
    parts += [f"+ {a}" for a in r["absorbed"]]
    if r["unmapped"]:
        parts.append("unmapped: " + "; ".join(r["unmapped"]))
    if not r["phases"] and not r["unmapped"]:
        parts.append("no optimizer step (trains nothing itself)")
    if r["idle"]:
        parts.append("no steps for " + ", ".join(r["idle"]))
    peak = "n/a" if r["peak"] is None else f"{r['peak'] / 2**30:.1f} GiB"
    hours = "unmapped" if r["gpu_hours"] is None else f"{r['gpu_hours']:.1f}"
    mark = " (ci-size images)" if r["ci_size"] else ""
    return f"| {r['row']}{mark} | {'; '.join(parts)} | {peak} | {hours} |"


def header(device: torch.device, warmup: int, measure: int, seeds: int) -> str:
    """The report's header: machine, torch, date, precision and the formula."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        import os

        where = f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    tf32 = "yes" if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32 else "no"
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "# Paper profile: measured GPU-hours forecast", "",
        f"- device: {where}; torch {torch.__version__}; date {date}",
        f"- TF32: {tf32}; fp32 training loops (no bf16)",
        f"- per phase W={warmup} warm-up + N={measure} measured steps (+k for the k-th phase "
        "key); s/step = median over the measured steps; paper batch and input sizes, "
        "synthetic images at the paper sizes, random weights where the file is absent",
        f"- GPU-hours (one GPU) = {seeds} seeds x sum over phases (paper steps x s/step) / "
        "3600; evaluation, staging and checkpoint writes not included",
        "", "| row | phases | peak memory | GPU-hours |", "|---|---|---|---|"])


def main(argv: list[str] | None = None) -> int:
    """The CLI (see the module docstring); 1 when any row failed."""
    import methods
    from rlcv import engine

    ap = argparse.ArgumentParser(prog="python -m rlcv.forecast", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", metavar="ROW", help="rows (default: all)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up steps per phase (>= 1)")
    ap.add_argument("--measure", type=int, default=10, help="measured steps per phase (>= 1)")
    ap.add_argument("--device", help="torch device (default: the engine's)")
    ap.add_argument("--params", default=None, help="params.yaml (default: ./params.yaml)")
    ap.add_argument("--write", nargs="?", const=str(OUT), metavar="PATH",
                    help=f"write the report to PATH (default {OUT}) instead of stdout")
    args = ap.parse_args(argv)
    if args.warmup < 1 or args.measure < 1:
        ap.error("--warmup and --measure must be >= 1")
    rows = args.rows or list(methods.METHODS)
    for r in rows:
        methods.get(r)   # an unknown name fails before anything runs
    device = torch.device(args.device) if args.device else engine.device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    engine.set_threads()
    params = P.load(args.params)
    params.raw["profile"] = "paper"
    lines, results = [header(device, args.warmup, args.measure, len(params.seeds))], []
    say = print if args.write is None else (lambda s: print(s, file=sys.stderr))
    say(lines[0])
    with scratch() as tmp:
        session = Forecast(params, tmp, device, warmup=args.warmup, measure=args.measure)
        for name in rows:
            try:
                r = session.forecast(name)
            except Exception as exc:   # noqa: BLE001 - one line, then the next row
                r = {"row": name, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            results.append(r)
            lines.append(line(r))
            say(lines[-1])
    done = [r for r in results if r.get("gpu_hours") is not None]
    total = sum(r["gpu_hours"] for r in done)
    left = len(results) - len(done)
    tail = ["", f"Total: {total:.1f} GPU-hours on one GPU ({len(done)} rows"
                f"{f'; {left} unmapped or failed rows not included' if left else ''}).",
            f"8 GPUs: {total / 8:.1f} hours (linear scaling, not measured)."]
    if session.ci_size:
        why = "; ".join(f"{k} ({v})" for k, v in session.ci_size.items())
        tail.append(f"ci-size images: {why}")
    for t in tail:
        say(t)
    if args.write is not None:
        from rlcv import io as rio

        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        rio.write_text(args.write, "\n".join(lines + tail) + "\n")
        print(f"wrote {args.write}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
