"""`dvc` with its YAML reading memoized: what `make repro` and `rlcv.stagetimes` run.

    python -m rlcv.dvcrun repro [ARGS...]     # the same as `dvc repro [ARGS...]`

DVC re-reads the same files many times in one command, and YAML parsing is most of its
bookkeeping on this pipeline (issue 22, measured with cProfile on DVC 3.67):
- every stage's params dependency parses params.yaml again: 113 parses of a 30 KB file
  in one no-op `dvc status`, half of its CPU time;
- after every stage DVC re-reads dvc.lock (~490 KB) with the comment-preserving parser
  and rewrites it: ~2 s of each stage's bookkeeping, most of it the re-read of the text
  DVC itself wrote one stage before.
Here the plain parse is memoized by the file's text (each caller gets its own deep copy)
and the lock DVC just wrote is handed back instead of re-parsed, as long as the file
still holds exactly that text. What DVC reads, decides and writes is unchanged: only the
number of parses is. If DVC's internals move (another version), this runs DVC unchanged.
Plain `dvc repro` stays a valid way to run the pipeline, only slower. A `repro` here also
runs its stages' `rlcv` commands through one warm process (`rlcv.forkserver`).
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import sys
from contextlib import contextmanager

_SAFE: dict[tuple[str, str], object] = {}      # (typ, text) -> parsed, never handed out
_WRITTEN: dict[str, tuple[str, object]] = {}   # abs path -> (text, object dumped there)
_MAX_SAFE = 32
_PATCHED: list = []                            # (module, name, original) to undo
_CHUNKS: dict[bytes, str] = {}                 # pickled (stage, entry) -> its lock text
_MAX_CHUNKS = 4096
_PRODUCED: dict[str, tuple] = {}               # text dump_chunked wrote -> (head, chunks)
_SAFE_CHUNKS: dict[str, object] = {}           # "stages:" + one chunk -> its safe parse


def _key(path) -> str:
    return os.path.abspath(os.fspath(path))


def _shares_a_node(stages) -> bool:
    """Whether a mapping or list object occurs twice in `stages` (the dumper would write
    an anchor and an alias, which a stage dumped alone cannot)."""
    seen: set[int] = set()
    todo = list(stages.values())
    while todo:
        node = todo.pop()
        if isinstance(node, dict | list):
            if id(node) in seen:
                return True
            seen.add(id(node))
            todo.extend(node.values() if isinstance(node, dict) else node)
    return False


def chunked(dump):
    """`dump` of a lock ({"schema": ..., "stages": {...}}) written stage by stage, each
    stage's text reused while its entry pickles to the same bytes.

    DVC rewrites the whole lock after every stage; rendering ~110 unchanged entries with
    the round-trip dumper was ~1 s of each stage's bookkeeping. A block mapping's entries
    render independently of one another (same indentation, same line width), so the
    document is the header followed by every entry's text under "stages:"; the one DVC
    just changed is rendered, the others are reused. Anything else (another shape, an
    entry that cannot be pickled, a node shared between entries) is dumped whole.
    tests/test_dvcrun.py compares the text with the whole dump's."""

    def dump_chunked(data, stream):
        stages = data.get("stages") if isinstance(data, dict) else None
        if not isinstance(stages, dict) or not stages or list(data) != ["schema", "stages"] \
                or _shares_a_node(stages):
            return dump(data, stream)
        parts = []
        head = io.StringIO()
        dump({"schema": data["schema"]}, head)
        parts.append(head.getvalue())
        for name, entry in stages.items():
            try:
                key = pickle.dumps((name, entry), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:   # noqa: BLE001 - whatever pickling refuses: dump it whole
                return dump(data, stream)
            text = _CHUNKS.get(key)
            if text is None:
                buf = io.StringIO()
                dump({"stages": {name: entry}}, buf)
                text = buf.getvalue().split("\n", 1)[1]
                if len(_CHUNKS) >= _MAX_CHUNKS:
                    _CHUNKS.clear()
                _CHUNKS[key] = text
                # rendering a round-trip node sets attributes on it, so it pickles to
                # other bytes from now on: keep the text under those too
                _CHUNKS[pickle.dumps((name, entry), protocol=pickle.HIGHEST_PROTOCOL)] = text
            parts.append(text)
        whole = parts[0] + "stages:\n" + "".join(parts[1:])
        _PRODUCED.clear()      # the lock's latest text only: what DVC reads back next
        _PRODUCED[whole] = (parts[0], parts[1:])
        stream.write(whole)

    return dump_chunked


def install() -> bool:
    """Patch DVC's YAML helpers in this process; False (and nothing patched) when this
    DVC lacks the functions the patch wraps."""
    try:
        from dvc.utils.serialize import _common, _yaml
    except ImportError:
        return False
    names = ("parse_yaml", "parse_yaml_for_update", "modify_yaml", "_dump")
    if not all(hasattr(_yaml, n) for n in names) or not hasattr(_common, "_modify_data"):
        return False
    if getattr(_yaml.modify_yaml, "_rlcv", False):
        return True
    parse, parse_rt, dump = _yaml.parse_yaml, _yaml.parse_yaml_for_update, _yaml._dump

    def parse_yaml(text, path, typ="safe"):
        if typ != "safe":
            return parse(text, path, typ=typ)
        key = (typ, text)
        if key not in _SAFE:
            if len(_SAFE) >= _MAX_SAFE:
                _SAFE.clear()
            _SAFE[key] = _parse_chunked(text, path) if text in _PRODUCED else parse(
                text, path, typ=typ)
        return copy.deepcopy(_SAFE[key])

    def _parse_chunked(text, path):
        # a lock dump_chunked wrote: its stages parsed one by one, each chunk once (the
        # same mapping as parsing the whole: block entries, no anchors)
        head, chunks = _PRODUCED[text]
        out = dict(parse(head, path))
        stages = {}
        if len(_SAFE_CHUNKS) >= _MAX_CHUNKS:
            _SAFE_CHUNKS.clear()
        for chunk in chunks:
            if chunk not in _SAFE_CHUNKS:
                _SAFE_CHUNKS[chunk] = parse("stages:\n" + chunk, path)["stages"]
            stages.update(_SAFE_CHUNKS[chunk])
        out["stages"] = stages
        return out

    def parse_yaml_for_update(text, path):
        # the object DVC dumped to this path last, if the file still holds that text;
        # taken out of the memo, so an edit that fails before its dump cannot leak
        written = _WRITTEN.pop(_key(path), None)
        if written is not None and written[0] == text:
            return written[1]
        return parse_rt(text, path)

    @contextmanager
    def modify_yaml(path, fs=None):
        with _common._modify_data(path, _yaml.parse_yaml_for_update, chunked(dump),
                                  fs=fs) as data:
            yield data
        if fs is None or getattr(fs, "protocol", None) == "local":
            try:
                with open(path, encoding="utf-8") as fh:
                    _WRITTEN[_key(path)] = (fh.read(), data)
            except OSError:
                _WRITTEN.pop(_key(path), None)

    modify_yaml._rlcv = True
    import dvc.utils.serialize as ser

    # _yaml itself, and the modules that import the helpers by name
    mods = (_yaml, ser, *(sys.modules[m] for m in ("dvc.dvcfile", "dvc.stage.serialize",
                                                   "dvc.repo.artifacts") if m in sys.modules))
    for mod in mods:
        for name, fn in (("parse_yaml", parse_yaml), ("modify_yaml", modify_yaml),
                         ("parse_yaml_for_update", parse_yaml_for_update)):
            if hasattr(mod, name):
                _PATCHED.append((mod, name, getattr(mod, name)))
                setattr(mod, name, fn)
    return True


def uninstall() -> None:
    """Undo `install` and forget what it memoized."""
    while _PATCHED:
        mod, name, fn = _PATCHED.pop()
        setattr(mod, name, fn)
    _SAFE.clear()
    _WRITTEN.clear()
    _CHUNKS.clear()
    _PRODUCED.clear()
    _SAFE_CHUNKS.clear()
    _PRODUCED.clear()
    _SAFE_CHUNKS.clear()


def main(argv: list[str] | None = None) -> int:
    """`dvc ARGV`; a `repro` runs its stages' `rlcv` commands through `rlcv.forkserver`."""
    argv = sys.argv[1:] if argv is None else argv
    install()
    from dvc.cli import main as dvc_main

    if argv[:1] != ["repro"]:
        return dvc_main(argv)
    from rlcv.forkserver import serving

    with serving():
        return dvc_main(argv)


if __name__ == "__main__":
    sys.exit(main())
