"""Training engine: seeding, device, the resumable step loop, history and checkpoints.

In the spirit of the torchvision references: a method supplies a `step_fn(step)` that
does one optimisation step and returns the values to log; `fit` runs it, writes
`history.csv`, checkpoints every N steps as a plain dict (including the config) and
resumes from the last checkpoint after an interruption. A progress bar is shown on a
terminal and periodic log lines elsewhere.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import math
import os
import random
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.hooks import RemovableHandle

from rlcv import io as rio


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) and make torch deterministic."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    deterministic_kernels()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def deterministic_kernels() -> None:
    """Make torch's eager kernels deterministic (warn where one has no such version),
    without filling new tensors with NaN (see below).

    `torch.use_deterministic_algorithms` also imports `torch._inductor.config`, only to
    flag code compiled by `torch.compile`, which rlcv does not use: that import costs
    ~1.7 s, paid by every `rlcv` process and every forked seed worker (~80 stages in the
    smoke pipeline). The eager flag alone is set here; if inductor is loaded already (some
    other code compiles), the public call is used so compiled code is flagged too.
    """
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    # In deterministic mode torch also fills every new tensor (torch.empty, and the
    # buffers kernels allocate) with NaN, so that a kernel reading memory it never wrote
    # reads the same NaN each time. No kernel rlcv runs does (the smoke pipeline's runs
    # are bit-identical without the fill, and tests/test_engine.py checks a training
    # step), while the fill costs 2-7% of a CPU training step (benchmarks/
    # test_bench_fill.py): every convolution's and batch norm's backward allocates.
    torch.utils.deterministic.fill_uninitialized_memory = False


def set_threads() -> int:
    """Set torch's intra-op threads from RLCV_THREADS (default 1) and return the count.

    Every model of the CPU profiles is small (32-128 px inputs, batches of 8-48): a second
    intra-op thread gains little, and when the cores are shared the thread pool spin-waits
    and stalls (measured: an hourglass step 0.05 s on one thread, 1.7-3 s on two; a 4 s
    ACIS test 300 s). `rlcv train|evaluate|report` call this; set RLCV_THREADS=N to use N
    threads, e.g. for the `paper` profile's CPU-side work.
    """
    from rlcv.errors import ParamsError

    raw = os.environ.get("RLCV_THREADS", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ParamsError(f"RLCV_THREADS must be a positive integer, got {raw!r}")
    cores = usable_cores()
    if int(raw) > cores:
        raise ParamsError(f"RLCV_THREADS={raw} exceeds the {cores} usable cores of this "
                          "machine; set it to at most that")
    torch.set_num_threads(int(raw))
    return int(raw)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block on `n` torch threads, restoring the count afterwards (the tests' and
    benchmarks' form of `set_threads`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


DEVICES = ("cpu", "cuda", "cuda:N", "lazy")
"""What RLCV_DEVICE accepts. `lazy` is torch's TorchScript lazy-tensor backend: a second
device that computes on the CPU and, like CUDA, refuses to mix its tensors with CPU
tensors; the test suite runs rows on it to prove data reaches the run's device without
a GPU (slow: use it on the ci profile only)."""


def device() -> torch.device:
    """The device every row trains and evaluates on: RLCV_DEVICE when set (`cpu`, `cuda`,
    `cuda:N`, `lazy`), else CUDA when present, else the CPU."""
    from rlcv.errors import ParamsError

    raw = os.environ.get("RLCV_DEVICE", "").strip()
    if not raw:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = raw.partition(":")
    if kind not in ("cpu", "cuda", "lazy") or (index and not (kind == "cuda" and index.isdigit())):
        raise ParamsError(f"RLCV_DEVICE must be one of {', '.join(DEVICES)}, got {raw!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError(f"RLCV_DEVICE={raw} but torch {torch.__version__} sees no CUDA "
                              "device on this machine")
        if index and int(index) >= torch.cuda.device_count():
            raise ParamsError(f"RLCV_DEVICE={raw} but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    if kind == "lazy":
        _init_lazy()
    return torch.device(raw)


class _NoGradInference(torch.no_grad):
    """`torch.inference_mode` as the lazy device can run it: the lazy backend cannot view
    its tensors in inference mode ("Cannot set version_counter for inference tensor"),
    so there `inference_mode(...)` means `no_grad()` (same numbers, no autograd)."""

    def __init__(self, mode: bool = True):
        super().__init__()


def _init_lazy() -> None:
    """Start the lazy backend, working around two of its gaps (it is a test device)."""
    import torch._lazy.ts_backend

    if getattr(_init_lazy, "done", False):
        return
    torch._lazy.ts_backend.init()
    torch.inference_mode = _NoGradInference
    # the lazy backend's multi-output views (unbind, chunk, split) come back as tensors
    # that later ops read as CPU tensors: on lazy tensors they are built from select/narrow
    unbind, chunk = torch.Tensor.unbind, torch.Tensor.chunk

    def _unbind(self, dim=0):
        if self.device.type != "lazy":
            return unbind(self, dim)
        return tuple(self.select(dim, i) for i in range(self.shape[dim]))

    def _chunk(self, chunks, dim=0):
        if self.device.type != "lazy":
            return chunk(self, chunks, dim)
        step = -(-self.shape[dim] // chunks)
        return tuple(self.narrow(dim, i, min(step, self.shape[dim] - i))
                     for i in range(0, self.shape[dim], step))

    torch.Tensor.unbind, torch.Tensor.chunk = _unbind, _chunk
    import torch.nn.functional as F

    affine_grid = F.affine_grid

    def _affine_grid(theta, size, align_corners=None):
        # no lazy kernel for the grid generator's strided view: build it on the CPU
        if theta.device.type != "lazy":
            return affine_grid(theta, size, align_corners)
        return affine_grid(theta.cpu(), size, align_corners).to(theta.device)

    F.affine_grid = _affine_grid
    _init_lazy.done = True


def sync(dev: torch.device) -> None:
    """End of an optimisation step: a lazy device runs the step's pending graph here (as
    XLA's mark_step), so graphs stay one step long; a no-op on CPU and CUDA."""
    if dev.type == "lazy":
        import torch._lazy

        torch._lazy.mark_step()


def device_record(dev: torch.device) -> dict:
    """What metrics.json records of where a run was scored: device, torch, GPU name."""
    gpu = None
    if dev.type == "cuda":
        gpu = torch.cuda.get_device_name(dev)
    return {"device": str(dev), "torch": torch.__version__, "gpu": gpu}


def generator(*keys) -> torch.Generator:
    """A CPU generator seeded by `keys` (e.g. seed, phase, step): same keys, same stream.

    Deriving every random draw of a step from its keys makes a resumed run identical to
    an uninterrupted one without replaying the data stream.
    """
    digest = hashlib.sha256(repr(keys).encode()).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


@dataclass
class Run:
    """Where and how one (row, seed) run trains."""

    row: str
    seed: int
    dir: Path
    device: torch.device = field(default_factory=device)
    inputs: dict[str, Path] = field(default_factory=dict)
    """Checkpoints of the rows this row requires (same seed), by row name."""
    checkpoint_every: int = 50
    history: list[dict] = field(default_factory=list)
    signature: str = ""
    """Hash of what the run depends on (config, profile, inputs): a checkpoint written
    under another signature is stale and is not resumed."""

    def __post_init__(self):
        self.dir = Path(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoint(self) -> Path:
        """The final checkpoint that `train` returns."""
        return self.dir / "checkpoint.pt"

    def log(self, msg: str) -> None:
        from rlcv import dist

        if dist.is_main():   # one log per run, not one per process of a distributed run
            print(f"[{self.row} seed={self.seed}] {msg}", file=sys.stderr, flush=True)


class _Progress:
    """tqdm on a terminal; elsewhere a log line every ~10% or 30 s."""

    def __init__(self, run: Run, phase: str, start: int, total: int):
        self.run, self.phase, self.total = run, phase, total
        self.bar = None
        from rlcv import dist

        if sys.stderr.isatty() and dist.is_main():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=f"{run.row}/{phase}", leave=False)
        self.every = max(1, total // 10)
        self.last = time.monotonic()

    def update(self, step: int, values: dict) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
            return
        now = time.monotonic()
        if step + 1 == self.total or (step + 1) % self.every == 0 or now - self.last > 30:
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
            self.run.log(f"{self.phase} step {step + 1}/{self.total} {shown}")
            self.last = now

    def close(self):
        if self.bar is not None:
            self.bar.close()


_FIT_HOOKS: OrderedDict = OrderedDict()   # weakly referenced by the handles


def register_fit_hook(hook: Callable[[Run, str, int, int], Callable[[int], None] | None]
                      ) -> RemovableHandle:
    """Call `hook(run, phase, start, steps)` as each `fit` loop starts its steps; a callable
    it returns is called with each step's index once that step has run and its device work
    is done (before the step's evaluation, history and checkpoint). For instruments: the
    forecast (`rlcv.forecast.LoopTimer`) times a phase by its loop. `handle.remove()`
    unregisters it, as torch's optimizer step hooks."""
    handle = RemovableHandle(_FIT_HOOKS)
    _FIT_HOOKS[handle.id] = hook
    return handle


def fit(
    run: Run,
    phase: str,
    objects: dict,
    steps: int,
    step_fn: Callable[[int], dict],
    eval_fn: Callable[[], dict] | None = None,
    eval_every: int = 0,
) -> None:
    """Run `step_fn(step)` for `step` in [0, steps) with checkpoint and resume.

    `objects` maps names to modules, optimizers or schedulers (anything with
    `state_dict`/`load_state_dict`); their state, the history and the global torch RNG
    are saved to `<run.dir>/<phase>.ckpt.pt` every `run.checkpoint_every` steps and at
    the end. A finished phase is skipped on rerun; an interrupted one resumes from its
    last checkpoint. `eval_fn` (no gradient) is logged every `eval_every` steps.

    Under torchrun (`rlcv.dist`) every process runs this loop on its shard of the
    batch: the modules start from rank 0's weights, every optimizer's gradients are
    averaged over the processes before its step, and rank 0 alone writes the
    checkpoint and history that all processes resume from.
    """
    from rlcv import dist

    path = run.dir / f"{phase}.ckpt.pt"
    start = 0
    state = rio.torch_load(path) if path.exists() else None
    if state is not None and state.get("signature") != run.signature:
        run.log(f"ignoring {path.name}: written for other settings or code; "
                f"starting {phase} afresh")
        state = None
    if state is not None:
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
        torch.set_rng_state(state["torch_rng"])
        run.history[:] = [r for r in run.history if r.get("phase") != phase] + state["history"]
        start = state["step"]
        if start < steps:
            run.log(f"resumed {phase} from step {start}")
    if start >= steps:
        return
    dist.broadcast_modules(objects.values())
    hooks = [dist.hook_optimizer(o) for o in objects.values()
             if isinstance(o, torch.optim.Optimizer)]
    progress = _Progress(run, phase, start, steps)
    phase_rows = [r for r in run.history if r.get("phase") == phase]
    after_step = [f for f in (h(run, phase, start, steps) for h in list(_FIT_HOOKS.values()))
                  if f is not None]

    def save(step_done: int) -> None:
        if not dist.is_main():
            return
        rio.torch_save(
            {
                "step": step_done,
                "objects": to_device({k: v.state_dict() for k, v in objects.items()}, "cpu"),
                "torch_rng": torch.get_rng_state(),
                "history": phase_rows,
                "signature": run.signature,
            },
            path,
        )
        write_history(run)

    for step in range(start, steps):
        values = {k: float(v) for k, v in (step_fn(step) or {}).items()}
        sync(run.device)
        for f in after_step:
            f(step)
        due = eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps)
        if eval_fn is not None and due:
            with torch.inference_mode():
                values.update({f"eval_{k}": float(v) for k, v in eval_fn().items()})
        row = {"phase": phase, "step": step + 1, **values}
        phase_rows.append(row)
        run.history.append(row)
        progress.update(step, values)
        if (step + 1) % run.checkpoint_every == 0 or step + 1 == steps:
            save(step + 1)
    progress.close()
    for hook in hooks:
        if hook is not None:
            hook.remove()
    dist.barrier()


def memory_format(dev: torch.device | str) -> torch.memory_format:
    """The layout networks take on `dev`: channels-last on the CPU, where oneDNN's
    convolutions run it faster than the contiguous NCHW layout (issue 22: a smoke ACIS
    or pose training step 0.77-0.91x, `benchmarks/test_bench_layout.py`); as built
    elsewhere (CUDA, where it has not been measured, and the lazy test device)."""
    if torch.device(dev).type == "cpu":
        return torch.channels_last
    return torch.preserve_format


def place(module: torch.nn.Module, dev: torch.device | str) -> torch.nn.Module:
    """`module` on `dev` in `memory_format(dev)`: the one place where every network of the
    suite moves to the run's device, for train and evaluate alike, so a checkpoint is
    scored in the layout it was trained in. Layout changes no value, only the order of the
    convolutions' sums (the floats move by rounding); a 4-D weight is stored channels-last
    in the checkpoint and loads into either layout."""
    return module.to(dev, memory_format=memory_format(dev))


def to_device(obj, dev: torch.device | str):
    """`obj` with every tensor in it (dicts, lists and tuples walked) on `dev`: the one
    place where staged data and checkpoints change device."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev)
    if isinstance(obj, dict):
        return {k: to_device(v, dev) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, dev) for v in obj)
    return obj


def write_history(run: Run) -> Path:
    """Write `run.history` as `history.csv` (one row per step, union of columns; rank 0
    of a distributed run only)."""
    cols: list[str] = ["phase", "step"]
    for r in run.history:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    for r in run.history:
        w.writerow({k: _fmt(v) for k, v in r.items()})
    out = run.dir / "history.csv"
    from rlcv import dist

    if dist.is_main():
        rio.write_text(out, buf.getvalue())
    return out


def _fmt(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return v


def save_checkpoint(run: Run, config, **state) -> Path:
    """Write the final checkpoint: a plain dict with the row, seed, config, the run's
    settings signature (checked by `rlcv evaluate`) and `state` (tensors on the CPU, so a
    checkpoint loads on any device)."""
    from rlcv import dist

    cfg = asdict(config) if hasattr(config, "__dataclass_fields__") else dict(config)
    if dist.is_main():   # rank 0 of a distributed run writes; the others wait for it
        rio.torch_save({"row": run.row, "seed": run.seed, "config": cfg,
                        "signature": run.signature, **to_device(state, "cpu")}, run.checkpoint)
    dist.barrier()
    return run.checkpoint


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by `save_checkpoint` (weights only, on the CPU)."""
    return rio.torch_load(path)
