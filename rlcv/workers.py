"""Run a row's seeds side by side in worker processes (`rlcv train|evaluate --seed 0 1 2`).

Every CPU-profile model is small, and a second torch thread on one process gains little
(measured 1.0-1.5x) while two single-threaded processes on the two cores of this machine
give ~1.8x. So the seeds of a row run in `RLCV_JOBS` forked processes at once (default:
up to three times the usable cores divided by RLCV_THREADS on the CPU; see `jobs` for a
GPU). Single-threaded workers share a core without the
spin-waits of a thread pool: three seeds on two cores all at once took 17.8 s where two
then one took 22.9 s (regress-dqn-deepmask, smoke). Each seed is seeded afresh in its own
process, so its result does not depend on which seeds ran beside it or in what order.
The default allows three workers per core, so that five seeds on two cores all run at
once instead of four and then one (see OVERSUBSCRIBE). Workers that outnumber the cores ask
the kernel for 100 ms time slices instead of its ~3 ms default, so that they take turns
without emptying each other's caches 500 times a second (see SLICE_MS).

A worker that fails prints its own one-line error; the parent stops the others and exits
with the worker's code, without a second message. A worker dies with its parent (Linux's
PR_SET_PDEATHSIG sends it SIGTERM, handled like Ctrl-C: its temporary files are removed),
so a killed `rlcv train` never leaves an orphan that later writes an old model over a new
one.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import struct
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait

from rlcv.errors import ParamsError, RlcvError


class WorkerFailed(RlcvError):
    """A seed's worker process exited non-zero; it has already reported why."""

    def __init__(self, seed: int, code: int):
        why = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        super().__init__(f"the worker of seed {seed} failed ({why})")
        self.exit_code = code if code > 0 else 1
        self.reported = code > 0   # a worker that exited printed its own message


def jobs(n_seeds: int, share_gpu: bool = True) -> int:
    """How many seeds run at once: RLCV_JOBS, else on the CPU 3 x cores // RLCV_THREADS.

    On a GPU (RLCV_DEVICE=cuda[:N], or CUDA present and RLCV_DEVICE unset) every seed of
    a row gets its own process on the same device, up to one per usable core, when
    `share_gpu` (the small profiles: a smoke model leaves an H200 mostly idle, and one
    process launches its kernels one after another; dqn-localizer took 29.5 s for one
    seed). `share_gpu=False` (the paper profile, whose models fill the device) runs
    them one after another. The check does not initialise CUDA in this process
    (`fork_safe_cuda`), so the forked workers can."""
    raw = os.environ.get("RLCV_JOBS")
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise ParamsError(f"RLCV_JOBS must be a positive integer, got {raw!r}")
        return max(1, min(n_seeds, int(raw)))
    from rlcv.engine import usable_cores

    if on_gpu():
        return max(1, min(n_seeds, usable_cores())) if share_gpu else 1
    threads = os.environ.get("RLCV_THREADS", "1")
    per = int(threads) if threads.isdigit() and int(threads) > 0 else 1
    return max(1, min(n_seeds, OVERSUBSCRIBE * usable_cores() // per))


def fork_safe_cuda() -> None:
    """Make torch answer "is CUDA here?" from NVML, without initialising CUDA.

    torch's default `torch.cuda.is_available()` calls cudaGetDeviceCount, which
    initialises the CUDA driver in the calling process, and a process forked after that
    cannot use CUDA. With PYTORCH_NVML_BASED_CUDA_CHECK=1 (torch's documented switch)
    the check asks NVML instead, so the parent of the seed workers stays CUDA-free and
    each worker initialises its own context. `rlcv` sets it before any check; a value
    the user set is kept."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def python_path(root) -> str:
    """PYTHONPATH for a child `python -m rlcv ...` that must run the code at `root` (a
    scratch copy of the repository): `root` first, then whatever PYTHONPATH already held.
    On the lent GPU machine that is where `.ci/device` installs the wheels its image lacks
    (pycocotools): a child given `root` alone cannot import them, and every row of the
    gpu-check failed in its first second (found in a device-like environment here)."""
    held = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(root), *(p for p in held.split(os.pathsep) if p)])


def on_gpu() -> bool:
    """Whether the rows run on CUDA (`rlcv.engine.device`), checked without initialising
    CUDA."""
    from rlcv import engine

    fork_safe_cuda()
    return engine.device().type == "cuda"


OVERSUBSCRIBE = 3
"""Workers per core on the CPU. Single-threaded workers share a core without a thread
pool's spin-waits, so a row's seeds should all start at once: with the default five seeds
on two cores, 2 per core ran four and then one, and the fifth ran alone on one core while
the other idled (benchmarks/test_bench_workers.py measures the difference)."""


SLICE_MS: int | None = 100
"""The scheduler time slice (ms) a CPU worker asks for when the workers outnumber the
cores (None: the kernel's default). Five single-threaded seeds on two cores take turns on
them; Linux's default slice (~3 ms, `sched_base_slice`) switches them ~500 times a
second, and each switch refills the caches the other seed emptied: a smoke row's five
seeds used 1.16x the CPU time of the same seeds two at a time (eurl-pose-boxes: 323 s
against 278 s). With 100 ms slices they switch ~10x less often: the row took 0.91x the
wall time (166.4 -> 150.8 s; regress-dqn-deepmask-eurl 198.5 -> 191.4 s), with the same
bits (scheduling changes no computation). benchmarks/test_bench_workers.py measures it."""

_SCHED_ATTR = struct.Struct("IIQiIQQQII")     # struct sched_attr, SCHED_ATTR_SIZE_VER1
_SCHED_SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}   # sched_{set,get}attr
_FAIR_POLICIES = (0, 3)                       # SCHED_OTHER, SCHED_BATCH


def _sched_syscall(which: int, *args) -> bool:
    """sched_setattr (which=0) or sched_getattr (1) on this process; False where this OS
    or architecture has no such call, or it failed."""
    nrs = _SCHED_SYSCALLS.get(os.uname().machine) if sys.platform.startswith("linux") else None
    return nrs is not None and ctypes.CDLL(None).syscall(nrs[which], 0, *args) == 0


def sched_attr() -> list | None:
    """This process's struct sched_attr as a list (policy [1], nice [3], slice in ns
    [5]), or None where it cannot be read."""
    buf = ctypes.create_string_buffer(_SCHED_ATTR.size)
    return list(_SCHED_ATTR.unpack(buf.raw)) if _sched_syscall(1, buf, _SCHED_ATTR.size,
                                                               0) else None


def long_time_slice(ms: int) -> bool:
    """Ask the kernel for `ms`-long time slices for this process: sched_setattr's
    sched_runtime on a fair-class task, which Linux's EEVDF scheduler (6.12 and later)
    takes as the task's slice, clamped to 0.1-100 ms. Policy and nice value are kept.
    Returns whether the kernel now reports that slice; elsewhere (another OS or
    architecture, an older kernel, a real-time policy) it changes nothing."""
    attr = sched_attr()
    if attr is None or attr[1] not in _FAIR_POLICIES:
        return False
    attr[0], attr[2], attr[5] = _SCHED_ATTR.size, 0, ms * 1_000_000  # size, flags, runtime
    buf = ctypes.create_string_buffer(_SCHED_ATTR.pack(*attr), _SCHED_ATTR.size)
    now = sched_attr() if _sched_syscall(0, buf, 0) else None
    return now is not None and now[5] == ms * 1_000_000


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux), and exit at
    once if `parent` is already gone (it died between the fork and this call)."""
    if sys.platform.startswith("linux"):
        with_errno = ctypes.CDLL(None, use_errno=True)
        with_errno.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(130)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _worker(fn: Callable[[int], None], seed: int, parent: int, slice_ms: int | None) -> None:
    try:
        signal.signal(signal.SIGTERM, _interrupt)   # like Ctrl-C: temporary files removed
        die_with_parent(parent)
        if slice_ms:
            long_time_slice(slice_ms)
        fn(seed)
    except RlcvError as exc:
        print(f"rlcv: error: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)
    except KeyboardInterrupt:
        os._exit(130)
    except BaseException:   # noqa: BLE001 - a worker must never fall back into the parent
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()


def for_each_seed(seeds: Sequence[int], fn: Callable[[int], None],
                  share_gpu: bool = True) -> None:
    """fn(seed) for every seed: in this process when one job runs at a time, else in
    forked workers, at most `jobs()` at once. Raises WorkerFailed on the first failure."""
    n = jobs(len(seeds), share_gpu)
    if n == 1 or "fork" not in mp.get_all_start_methods():
        for seed in seeds:
            fn(seed)
        return
    from rlcv.engine import usable_cores

    ctx = mp.get_context("fork")
    slice_ms = SLICE_MS if n > usable_cores() and not on_gpu() else None
    pending, running = list(seeds), {}
    try:
        while pending or running:
            while pending and len(running) < n:
                seed = pending.pop(0)
                proc = ctx.Process(target=_worker, args=(fn, seed, os.getpid(), slice_ms))
                sys.stdout.flush()
                sys.stderr.flush()
                proc.start()
                running[seed] = proc
            wait([p.sentinel for p in running.values()])
            for seed, proc in list(running.items()):
                if proc.exitcode is None:
                    continue
                del running[seed]
                if proc.exitcode != 0:
                    raise WorkerFailed(seed, proc.exitcode)
    finally:
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            proc.join()
