"""Benchmark-wide settings: one torch thread, as `rlcv` runs (rlcv.engine.set_threads).

One thread makes each ratio the algorithmic speed-up, stable on a shared machine.
"""

import pytest

from rlcv.engine import torch_threads


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    with torch_threads(1):
        yield
