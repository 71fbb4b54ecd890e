"""Input validation shared by the metrics: one-line `ValueError`s, never a bare traceback.

Every public metric converts its inputs with these helpers so that a wrong shape, dtype
or label range is reported as one clear line naming the argument.
"""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(x: object, name: str) -> torch.Tensor:
    """`x` as a CPU-or-device tensor (NumPy arrays and sequences accepted)."""
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name}: cannot be read as a tensor ({e})") from None


def is_integer(t: torch.Tensor) -> bool:
    """True for bool and the integer dtypes."""
    return t.dtype == torch.bool or not (t.is_floating_point() or t.is_complex())


def label_map(x: object, name: str, min_dim: int = 2) -> torch.Tensor:
    """An integer label map `(..., H, W)` as int64; bool is read as labels 0/1."""
    t = as_tensor(x, name)
    if not is_integer(t):
        raise ValueError(f"{name}: label maps must be integer tensors, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name}: needs at least {min_dim} dimensions, got shape {tuple(t.shape)}")
    return t.long()


def binary_mask(x: object, name: str, min_dim: int = 2) -> torch.Tensor:
    """A binary mask (bool, or integer holding only 0 and 1) as bool."""
    t = as_tensor(x, name)
    if t.dtype == torch.bool:
        out = t
    elif is_integer(t):
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise ValueError(f"{name}: integer masks must hold only 0 and 1, "
                             f"got values in [{int(t.min())}, {int(t.max())}]")
        out = t.bool()
    else:
        raise ValueError(f"{name}: masks must be bool or integer 0/1 tensors, got {t.dtype}")
    if out.dim() < min_dim:
        raise ValueError(f"{name}: needs at least {min_dim} dimensions, "
                         f"got shape {tuple(out.shape)}")
    return out


def same_shape(a: torch.Tensor, b: torch.Tensor, what: str = "pred and gt") -> None:
    """Raise unless `a` and `b` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{what} shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")


def real(x: object, name: str, shape_tail: tuple[int | None, ...] = (), finite: bool = True,
         ndim: int | None = None) -> torch.Tensor:
    """A real tensor as float64, checking its trailing shape (None = any size)."""
    t = as_tensor(x, name)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: must be a real-valued tensor, got {t.dtype}")
    t = t.double()
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if shape_tail:
        tail = tuple(t.shape[-len(shape_tail):]) if t.dim() >= len(shape_tail) else None
        ok = tail is not None and all(s is None or s == u
                                      for s, u in zip(shape_tail, tail, strict=True))
        if not ok:
            want = ", ".join("*" if s is None else str(s) for s in shape_tail)
            raise ValueError(f"{name}: expected shape (..., {want}), got {tuple(t.shape)}")
    if finite and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t
