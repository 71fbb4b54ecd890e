"""Benchmark-wide settings: one torch thread, as `rlcv` runs (rlcv.engine.set_threads).

One thread makes each ratio the algorithmic speed-up, stable on a shared machine.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
