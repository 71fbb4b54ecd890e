"""rlcv.checkout: the files of a checkout are the same list with git and, where the tree
came without .git (the lent GPU machine), from its .gitignore files."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO

from rlcv import checkout

needs_git = pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")


def _git_files(root) -> list[str]:
    """git's own answer, from the .gitignore files alone (no .git/info/exclude, no global
    excludes file: a tree without .git has neither)."""
    out = subprocess.run(["git", "-c", "core.excludesFile=/dev/null", "ls-files", "-z",
                          "--cached", "--others", "--exclude-per-directory=.gitignore"],
                         cwd=root, check=True, capture_output=True).stdout.decode()
    return sorted(f for f in out.split("\0") if f)


TREE = {
    ".gitignore": "# build outputs\n.venv/\n__pycache__/\n*.egg-info/\n/data/\n/runs/\n"
                  "*.partial*\nlogs/**/*.txt\ncache?.bin\n[ab]tmp\n",
    "rlcv/a.py": "", "rlcv/__pycache__/a.cpython-311.pyc": "", "rlcv/x.egg-info/PKG": "",
    "data/big.bin": "", "sub/data/kept.txt": "", "runs/r/ckpt.pt": "",
    "results/m.json.partial-1": "", "results/m.json": "",
    "logs/deep/er/x.txt": "", "logs/x.txt": "", "logs/keep.md": "",
    "cache1.bin": "", "cache12.bin": "", "atmp": "", "ctmp": "",
    ".venv/bin/python": "", "venv_not_dir/.venv": "",
    "nested/.gitignore": "*.log\n/only-here/\n", "nested/a.log": "", "nested/b.txt": "",
    "nested/only-here/x": "", "nested/deeper/only-here/y": "", "other/a.log": "",
    ".dvc/.gitignore": "/cache\n/tmp\n", ".dvc/config": "", ".dvc/cache/ab/cd": "",
    ".dvc/tmp/lock": "",
}


@needs_git
def test_without_git_the_walk_lists_what_git_lists(tmp_path):
    for rel, text in TREE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "rlcv/a.py", ".gitignore"], cwd=tmp_path, check=True)
    expected = _git_files(tmp_path)
    assert "logs/keep.md" in expected and "nested/deeper/only-here/y" in expected
    assert "logs/x.txt" not in expected and "logs/deep/er/x.txt" not in expected
    assert "data/big.bin" not in expected and "ctmp" in expected
    shutil.rmtree(tmp_path / ".git")             # as the tree reaches the GPU machine
    assert checkout.walk(tmp_path) == expected
    assert sorted(checkout.files(tmp_path)) == expected


@needs_git
def test_the_repository_walks_to_the_files_git_lists():
    if not (REPO / ".git").exists():
        pytest.skip("this checkout has no .git")
    assert checkout.walk(REPO) == _git_files(REPO)


def test_a_negated_pattern_is_refused_by_name(tmp_path):
    (tmp_path / ".gitignore").write_text("*.log\n!keep.log\n")
    with pytest.raises(ValueError, match="negated pattern '!keep.log'"):
        checkout.walk(tmp_path)


def test_copy_leaves_out_what_it_is_told_to_skip(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    for rel in ("a.txt", "results/runs/r/m.json", "results/tables/t.md", "data/x"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    (src / ".gitignore").write_text("/data/\n")
    checkout.copy(src, dest, skip=("results/runs/",))
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == [".gitignore", "a.txt", "results/tables/t.md"]
    assert (dest / "a.txt").read_text() == "a.txt"
