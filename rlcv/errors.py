"""User-facing errors: one clear line, a non-zero exit, never a bare traceback."""

from __future__ import annotations

from pathlib import Path


class RlcvError(Exception):
    """An error whose message is shown to the user as one line (exit code 2)."""


class DataError(RlcvError):
    """A dataset file is missing, damaged or malformed.

    The message names the offending file and the layout that was expected there.
    """

    def __init__(self, path: str | Path, problem: str, expected: str | None = None):
        msg = f"{path}: {problem}"
        if expected:
            msg += f" (expected {expected})"
        super().__init__(msg)
        self.path = Path(path)


class ParamsError(RlcvError):
    """params.yaml (or a command-line override) is invalid."""


def unknown_name(kind: str, name: str, known) -> RlcvError:
    """The one-line error for an unknown dataset or row name, listing the known ones."""
    return RlcvError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
