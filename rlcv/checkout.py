"""The files of a checkout, with or without git: what `make gpu-check` and the tests copy.

A scratch copy of the repository holds its tracked files and the untracked ones git does
not ignore (`git ls-files --cached --others --exclude-standard`). The lent GPU machine
gets the working tree without `.git` (the tree travels, its 90 MB history would not fit
the 64 MiB a call may send), so there the same list comes from a walk of the tree that
applies the checkout's `.gitignore` files: blank and `#` lines skipped, `dir/` matching
folders only, a pattern with a `/` before its end anchored to its file's folder, others
matching a name at any depth, `*` `?` `[...]` within a name, `**` across folders.
Negation (`!`) is refused by name, not guessed: no `.gitignore` here uses it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class _Rule:
    base: str          # folder of the .gitignore, relative to the root ("" at the top)
    regex: re.Pattern
    anchored: bool
    dir_only: bool


def _rules(gitignore: Path, base: str) -> list[_Rule]:
    out = []
    for line in gitignore.read_text().splitlines():
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise ValueError(f"{gitignore}: negated pattern {line!r} is not supported "
                             "without git")
        dir_only = line.endswith("/")
        pat = line.rstrip("/")
        anchored = "/" in pat
        pat = pat.lstrip("/")
        out.append(_Rule(base, re.compile(_translate(pat)), anchored, dir_only))
    return out


def _translate(pat: str) -> str:
    """A .gitignore glob as a regex over a '/'-separated path."""
    out, i = [], 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        elif pat[i] == "[" and "]" in pat[i + 2:]:
            end = pat.index("]", i + 2)
            body = pat[i + 1:end]
            out.append("[" + ("^" + body[1:] if body[:1] == "!" else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    return "".join(out) + r"\Z"


def _ignored(rel: str, is_dir: bool, rules: list[_Rule]) -> bool:
    for r in rules:
        if r.dir_only and not is_dir:
            continue
        if r.base and not rel.startswith(r.base + "/"):
            continue
        sub = rel[len(r.base) + 1:] if r.base else rel
        target = sub if r.anchored else sub.rsplit("/", 1)[-1]
        if r.regex.match(target):
            return True
    return False


def walk(root: Path) -> list[str]:
    """The files `git ls-files --cached --others --exclude-standard` lists in a checkout
    with no history: every file under `root` but `.git` and what its `.gitignore` files
    ignore (an ignored folder is not entered), relative, in git's order."""
    root = Path(root)
    found: list[str] = []
    rules: list[_Rule] = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder).relative_to(root).as_posix()
        prefix = "" if here == "." else here + "/"
        if ".gitignore" in names:
            rules = rules + _rules(Path(folder) / ".gitignore", prefix.rstrip("/"))
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        dirs[:] = sorted(d for d in dirs if d != ".git" and d not in links
                         and not _ignored(prefix + d, True, rules))
        found += [prefix + n for n in [*names, *links]
                  if not _ignored(prefix + n, False, rules)]
    return sorted(found)


def files(root: Path) -> list[str]:
    """The checkout's files: from git where `root` is a git work tree, else `walk`."""
    root = Path(root)
    if (root / ".git").exists() and shutil.which("git"):
        proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], cwd=root, capture_output=True)
        if proc.returncode == 0:
            return [f for f in proc.stdout.decode().split("\0") if f]
    return walk(root)


def copy(root: Path, dest: Path, skip: tuple[str, ...] = ()) -> Path:
    """Copy the checkout's files (`files`) to `dest`, but those under a `skip` prefix."""
    root, dest = Path(root), Path(dest)
    for rel in files(root):
        src = root / rel
        if src.is_file() and not rel.startswith(skip):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest
