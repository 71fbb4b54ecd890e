"""The reference side of a benchmark's ratio: best wall time of a few plain calls."""

import time


def best_time(fn, repeat: int, *args) -> float:
    """The fastest of `repeat` calls of `fn(*args)`, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best
