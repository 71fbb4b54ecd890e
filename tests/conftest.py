"""Shared fixtures: the repository root, the genuine real-data samples, tmp params."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def realdata() -> Path:
    """`../shared/realdata`: a few genuine files of the real datasets."""
    if not REALDATA.is_dir():
        pytest.skip(f"genuine samples not found at {REALDATA}")
    return REALDATA


def copy_repo(dest: Path) -> Path:
    """Copy the checkout's tracked and untracked-but-not-ignored files to `dest` (from git,
    or from the tree and its .gitignore files where it has no .git: the GPU machine)."""
    from rlcv import checkout

    return checkout.copy(REPO, dest)


def set_params(root: Path, **changes) -> None:
    """Edit params.yaml in a copy: top-level keys, or dotted paths like methods.x.ci."""
    import yaml

    path = root / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        node = raw
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def staged_ci_copy(dest: Path, *datasets: str, **changes) -> Path:
    """A copy of the repo in `dest` on the ci profile (and the params `changes`, as
    `set_params` takes them), with each synthetic dataset written and staged."""
    import os

    from rlcv.cli import main

    root = copy_repo(dest)
    set_params(root, profile="ci", **changes)
    old = os.getcwd()
    os.chdir(root)
    try:
        for name in datasets:
            assert main(["synth", name]) == 0 and main(["stage", name]) == 0, name
    finally:
        os.chdir(old)
    return root


@pytest.fixture(scope="session")
def ci_coco(tmp_path_factory) -> Path:
    """A copy of the repo on the ci profile with synthetic COCO written and staged."""
    return staged_ci_copy(tmp_path_factory.mktemp("ci-repo"), "coco")


@pytest.fixture
def chdir():
    """Run a block inside a folder: `with chdir(path): ...`."""
    import contextlib
    import os

    @contextlib.contextmanager
    def _cd(path):
        old = os.getcwd()
        os.chdir(path)
        try:
            yield path
        finally:
            os.chdir(old)

    return _cd


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The suite's thread policy (rlcv.engine.set_threads) for in-process tests too."""
    from rlcv.engine import torch_threads

    with torch_threads(1):
        yield


def run_rows(root: Path, rows, seed: int = 0) -> None:
    """`rlcv train` then `rlcv evaluate` each row in `root` (a ci-profile copy), in-process."""
    import os

    from rlcv.cli import main

    old = os.getcwd()
    os.chdir(root)
    try:
        for row in rows:
            assert main(["train", row, "--seed", str(seed)]) == 0, row
            assert main(["evaluate", row, "--seed", str(seed)]) == 0, row
    finally:
        os.chdir(old)


def run_checkpoint(root: Path, row: str, seed: int = 0) -> dict:
    """The final checkpoint of `row` trained by `run_rows` in `root`."""
    import torch

    return torch.load(root / "runs" / f"{row}-{seed}" / "checkpoint.pt", weights_only=True)
