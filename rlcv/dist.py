"""Data-parallel training under torchrun (DESIGN.md, "Devices"): one process per GPU
(NCCL) or per CPU slot (gloo), every process holding the whole model.

    torchrun --nproc_per_node=8 -m rlcv.cli train ROW --seed S

`rlcv train` calls `init()`: with torchrun's RANK/WORLD_SIZE/LOCAL_RANK variables set it
joins the process group (NCCL when the run's device is CUDA, else gloo) and, on CUDA,
takes the GPU `LOCAL_RANK`; without them it is a single process and every function here
is the identity. What is distributed:

- the data: `Staged.loader` shards the seeded permutation over the processes
  (`DistributedSampler`); a row that draws its own batch indices takes its slice of the
  global batch with `shard(...)`;
- the gradients: `engine.fit` averages every optimizer's gradients over the processes
  before each step (`average_gradients`, hooked on the optimizer), which is what
  `torch.nn.parallel.DistributedDataParallel` computes, without wrapping the model (its
  state_dict keeps its keys; no communication overlap with the backward pass);
- the files: checkpoints, history and metrics are written by rank 0 only; every process
  resumes from rank 0's checkpoint.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting RANK
    and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(dev: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns the device this process
    trains on (CUDA: its LOCAL_RANK's GPU)."""
    if not launched() or tdist.is_initialized():
        return dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return tdist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return tdist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the files (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if active():
        tdist.barrier()


def shard(*tensors: torch.Tensor):
    """This process's contiguous slice of each tensor's first axis (the global batch),
    equal slices on every process (the batch must divide by the world size)."""
    world = world_size()
    if world == 1:
        return tensors if len(tensors) > 1 else tensors[0]
    n = tensors[0].shape[0]
    if n % world:
        from rlcv.errors import ParamsError

        raise ParamsError(f"a global batch of {n} does not split over {world} processes")
    k = n // world
    out = tuple(t[rank() * k:(rank() + 1) * k] for t in tensors)
    return out if len(out) > 1 else out[0]


def broadcast_modules(objects) -> None:
    """Give every process rank 0's parameters and buffers of the modules in `objects`
    (they start equal from the shared seed; this makes it so after any resume too)."""
    if not active():
        return
    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            for t in [*obj.parameters(), *obj.buffers()]:
                tdist.broadcast(t.data, 0)


def average_gradients(params) -> None:
    """All-reduce the gradients of `params` to their mean over the processes (one
    flattened buffer per dtype and device; parameters without a gradient are skipped,
    identically on every process since they share the model)."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    buckets: dict = {}
    for g in grads:
        buckets.setdefault((g.dtype, g.device), []).append(g)
    world = world_size()
    for bucket in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in bucket])
        tdist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def hook_optimizer(opt: torch.optim.Optimizer):
    """Average `opt`'s gradients over the processes before each of its steps; returns
    the hook handle (None in a single process)."""
    if not active():
        return None
    params = [p for group in opt.param_groups for p in group["params"]]
    return opt.register_step_pre_hook(lambda *_: average_gradients(params))
