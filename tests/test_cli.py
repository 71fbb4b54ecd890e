"""The `rlcv` command: help, unknown names, the pipeline file in sync."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

import methods
from rlcv import params as P
from rlcv.cli import main
from rlcv.pipeline import prune_lock, render, stages


@pytest.mark.parametrize("sub", ["synth", "stage", "train", "evaluate", "report", "pipeline"])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert f"usage: rlcv {sub}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, kind", [
    (["synth", "imagenet"], "dataset"), (["stage", "voc"], "dataset"),
    (["train", "nope"], "row"), (["evaluate", "nope"], "row"),
])
def test_unknown_name_lists_known_names(argv, kind, repo):
    proc = subprocess.run([sys.executable, "-m", "rlcv.cli", *argv], cwd=repo,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert f"unknown {kind}" in proc.stderr
    known = "coco" if kind == "dataset" else "gt-bbox-deepmask"
    assert known in proc.stderr


def test_committed_dvc_yaml_is_current(repo, chdir):
    with chdir(repo):
        assert (repo / "dvc.yaml").read_text() == render(P.load())


def test_every_params_row_is_registered(repo):
    params = P.load(repo / "params.yaml")
    assert set(params.method_names) <= set(methods.METHODS)
    for name in params.method_names:
        row = methods.METHODS[name]
        for profile in P.PROFILES:   # every profile's settings build the row's config
            raw = {**params.raw, "profile": profile}
            cfg = P.Params(raw, params.path).method(name)
            P.build_config(row.config, cfg, name)


def _repo_imports(path: str, seen: set[str]) -> None:
    """`path` and the repository modules it imports, transitively (not through the
    registry package `methods/__init__.py`, which imports every family, nor into the
    report's figure code `methods/*/plots.py`)."""
    import ast

    if path in seen or (path.startswith("methods/") and path.endswith("/plots.py")):
        return
    seen.add(path)
    for node in ast.walk(ast.parse((REPO / path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] not in ("rlcv", "methods", "datasets") or name in ("methods", "datasets"):
                continue
            for cand in (Path(*parts).with_suffix(".py"), Path(*parts) / "__init__.py"):
                if (REPO / cand).is_file():
                    _repo_imports(cand.as_posix(), seen)


# modules that cannot change a number: error classes, atomic file writes, package markers
_INERT = {"rlcv/__init__.py", "rlcv/errors.py", "rlcv/io.py", "rlcv/registry.py"}


def _family_marker(path: str) -> bool:
    """A family package's `methods/<family>/__init__.py`: a docstring, no code."""
    return path.startswith("methods/") and path.count("/") == 2 and path.endswith("__init__.py")


def test_train_and_evaluate_stages_depend_on_all_the_code_they_run(repo, chdir):
    with chdir(repo):
        stages = yaml.safe_load(render(P.load()))["stages"]
    for name, row in methods.METHODS.items():
        seen: set[str] = set()
        for fn in (row.train, row.evaluate):
            _repo_imports(Path(inspect.getfile(fn)).resolve().relative_to(REPO).as_posix(),
                          seen)
        for kind in ("train", "evaluate"):
            deps = [d.rstrip("/") for d in stages[f"{kind}-{name}"]["deps"]]
            missing = sorted(f for f in seen - _INERT if not _family_marker(f)
                             and not any(f == d or f.startswith(d + "/") for d in deps))
            assert not missing, f"{kind}-{name} does not depend on {missing}"


def test_the_registry_imports_no_family_until_a_row_is_used(repo):
    code = ("import sys, methods\n"
            "fams = lambda: {m for m in sys.modules if m.startswith('methods.')}\n"
            "assert 'torchvision' not in sys.modules and not fams(), fams()\n"
            "row = methods.get('gt-bbox-deepmask')\n"
            "row.train, row.evaluate, row.config\n"
            "assert fams() == {'methods.eurl', 'methods.eurl.deepmask'}, fams()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_pipeline_drops_lock_entries_of_removed_stages():
    lock = {"schema": "2.0", "stages": {"train-a": {"cmd": "rlcv train a --seed 0 1 2"},
                                        "train-a@0": {"cmd": "rlcv train a --seed 0"},
                                        "report": {"cmd": "rlcv report"}}}
    text = yaml.safe_dump(lock, sort_keys=False)
    pruned = yaml.safe_load(prune_lock(text, ["train-a", "report"]))
    assert pruned == {"schema": "2.0", "stages": {k: lock["stages"][k]
                                                  for k in ("train-a", "report")}}
    assert prune_lock(text, ["train-a", "train-a@0", "report"]) is None


def test_committed_dvc_lock_has_only_current_stages(repo, chdir):
    with chdir(repo):
        current = set(stages(P.load()))
    locked = set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])
    assert locked <= current, sorted(locked - current)


def test_stages_read_only_the_active_profiles_params(repo):
    """A stage's params are its entry's `config` and active-profile blocks: editing another
    profile's settings (say `paper`) does not make the smoke results stale."""
    from rlcv import params as P
    from rlcv.pipeline import stages

    params = P.load(repo / "params.yaml")
    for profile in ("smoke", "paper"):
        params.raw["profile"] = profile
        out = stages(params)
        assert out["train-gt-bbox-deepmask"]["params"] == [
            "profile", "methods.gt-bbox-deepmask.config", f"methods.gt-bbox-deepmask.{profile}"]
        assert out["stage-coco"]["params"] == [
            "profile", "datasets.coco.config", f"datasets.coco.{profile}"]
        for name, stage in out.items():   # only blocks that exist (DVC fails on missing keys)
            for key in stage.get("params", []):
                node = params.raw
                for part in key.split(".", 2):
                    assert part in node, (name, key)
                    node = node[part]
