"""`rlcv.dvcrun`: DVC with its YAML parsing memoized writes what plain DVC writes."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlcv import dvcrun

# the lent GPU machine's image has no DVC (`make gpu-check` runs the rows without it)
pytest.importorskip("dvc.repo", reason="DVC is not installed")


@pytest.fixture
def patched():
    assert dvcrun.install()
    yield
    dvcrun.uninstall()


def test_memoized_parse_hands_out_independent_copies(patched, tmp_path):
    from dvc.utils.serialize import load_yaml

    path = tmp_path / "params.yaml"
    path.write_text("a:\n  b: [1, 2]\n")
    first = load_yaml(path)
    first["a"]["b"].append(3)
    assert load_yaml(path) == {"a": {"b": [1, 2]}}
    path.write_text("a:\n  b: [5]\n")                # new text: parsed afresh
    assert load_yaml(path) == {"a": {"b": [5]}}


def test_the_lock_dvc_wrote_is_reused_only_while_the_file_holds_it(patched, tmp_path):
    from dvc.utils.serialize import modify_yaml

    path = tmp_path / "dvc.lock"
    path.write_text("stages:\n  a:\n    cmd: x\n")
    with modify_yaml(path) as data:
        data["stages"]["b"] = {"cmd": "y"}
    assert dvcrun._WRITTEN                          # kept, not parsed again below
    with modify_yaml(path) as data:
        assert set(data["stages"]) == {"a", "b"}
        data["stages"]["c"] = {"cmd": "z"}
    assert set(yaml.safe_load(path.read_text())["stages"]) == {"a", "b", "c"}
    path.write_text("stages:\n  d:\n    cmd: w\n")   # edited behind DVC's back
    with modify_yaml(path) as data:
        assert set(data["stages"]) == {"d"}
    with pytest.raises(RuntimeError):                # an edit that fails before its dump
        with modify_yaml(path) as data:
            data["stages"]["e"] = {"cmd": "v"}
            raise RuntimeError
    with modify_yaml(path) as data:
        assert set(data["stages"]) == {"d"}


def _dumped(dump, data) -> str:
    import io

    buf = io.StringIO()
    dump(data, buf)
    return buf.getvalue()


def test_a_lock_dumped_stage_by_stage_is_the_whole_dump(patched):
    from dvc.utils.serialize import _yaml
    from ruamel.yaml import YAML

    lock = Path(__file__).resolve().parents[1] / "dvc.lock"
    data = _yaml.parse_yaml_for_update(lock.read_text(), str(lock))
    whole, chunked = _yaml._dump, dvcrun.chunked(_yaml._dump)
    assert _dumped(chunked, data) == _dumped(whole, data) == lock.read_text()
    names = list(data["stages"])
    # what DVC does after a stage: a fresh entry in place of the old one; and more
    data["stages"].update({names[5]: {"cmd": "rlcv train x", "deps": [{"path": "a.py",
                                                                       "md5": "0" * 32}]}})
    data["stages"]["new-stage"] = {"cmd": "echo 1", "outs": [{"path": "o", "size": 3}]}
    del data["stages"][names[0]]
    text = _dumped(chunked, data)
    assert text == _dumped(whole, data)
    # DVC reads the lock it wrote back: parsed stage by stage, the same mapping
    assert _yaml.parse_yaml(text, "dvc.lock") == YAML(typ="safe").load(text)
    shared = [{"path": "same.py"}]        # one node in two entries: anchors, dumped whole
    data["stages"][names[1]]["deps"] = data["stages"][names[2]]["deps"] = shared
    text = _dumped(chunked, data)
    assert "&id001" in text and text == _dumped(whole, data)


def test_without_the_functions_it_wraps_dvc_runs_unpatched(monkeypatch):
    from dvc.utils.serialize import _yaml

    monkeypatch.delattr(_yaml, "parse_yaml_for_update")
    before = _yaml.parse_yaml
    assert dvcrun.install() is False
    assert _yaml.parse_yaml is before and not dvcrun._PATCHED


def _pipeline(root: Path, n_stages: int = 4) -> None:
    (root / "src").mkdir(parents=True)
    for i in range(6):
        (root / "src" / f"f{i}.py").write_text(f"x = {i}\n")
    (root / "params.yaml").write_text("profile: ci\nrows:\n  a: {lr: 0.1}\n  b: {lr: 0.2}\n")
    stages = {}
    for s in range(n_stages):
        deps = [f"src/f{(s + k) % 6}.py" for k in range(3)] + ([f"out/s{s - 1}"] if s else [])
        stages[f"s{s}"] = {"cmd": f"{sys.executable} -c \"open('out/s{s}','w').write('{s}')\"",
                           "deps": deps, "params": ["profile", f"rows.{'ab'[s % 2]}"],
                           "outs": [f"out/s{s}"]}
    (root / "out").mkdir()
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True)


@pytest.mark.slow
def test_repro_writes_the_lock_plain_dvc_writes(tmp_path):
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    _pipeline(plain)
    shutil.copytree(plain, fast)
    dvc = [sys.executable, "-m", "dvc"]
    run = [sys.executable, "-m", "rlcv.dvcrun"]
    for root, cmd in ((plain, dvc), (fast, run)):
        subprocess.run([*cmd, "repro", "-q"], cwd=root, check=True)
    assert (fast / "dvc.lock").read_text() == (plain / "dvc.lock").read_text()
    # a params edit reruns the same stages either way, and plain DVC agrees it is done
    for root, cmd in ((plain, dvc), (fast, run)):
        (root / "params.yaml").write_text("profile: ci\nrows:\n  a: {lr: 0.1}\n  b: {lr: 0.3}\n")
        out = subprocess.run([*cmd, "repro"], cwd=root, check=True, capture_output=True,
                             text=True).stdout
        assert {ln.split("'")[1] for ln in out.splitlines() if ln.startswith("Running stage")
                } == {"s1", "s3"}, out     # the stages that read rows.b (s2's input is unchanged)
    assert (fast / "dvc.lock").read_text() == (plain / "dvc.lock").read_text()
    status = subprocess.run([*dvc, "status"], cwd=fast, check=True, capture_output=True,
                            text=True).stdout
    assert "up to date" in status
