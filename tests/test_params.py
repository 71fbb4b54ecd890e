"""params.yaml loading, profile resolution and typed configs."""

from dataclasses import dataclass

import pytest

from rlcv import params as P
from rlcv.errors import ParamsError


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_profile_block_overrides_config(tmp_path):
    p = write(tmp_path, "profile: ci\nseeds: [3]\nmethods:\n  r:\n    config: {lr: 1, steps: 9}\n"
                        "    ci: {steps: 2}\n    smoke: {steps: 5}\n")
    params = P.load(p)
    assert params.method("r") == {"lr": 1, "steps": 2}
    assert params.seeds == [3]
    assert params.synthetic


def test_env_overrides_profile(tmp_path, monkeypatch):
    p = write(tmp_path, "profile: smoke\n")
    monkeypatch.setenv("RLCV_PROFILE", "paper")
    assert P.load(p).profile == "paper"


@pytest.mark.parametrize("text, match", [
    ("profile: huge\n", "not one of"),
    ("seeds: []\n", "seeds must be"),
    ("seeds: [a]\n", "seeds must be"),
    ("methods:\n  r: {smok: {}}\n", "unknown keys"),
    ("profile: [unclosed\n", "not valid YAML"),
])
def test_bad_params_one_line(tmp_path, text, match):
    with pytest.raises(ParamsError, match=match) as exc:
        P.load(write(tmp_path, text))
    assert "\n" not in str(exc.value)


def test_missing_entry_and_paper_root(tmp_path, monkeypatch):
    params = P.load(write(tmp_path, "profile: paper\n"))
    with pytest.raises(ParamsError, match="no entry methods.x"):
        params.method("x")
    monkeypatch.delenv("RLCV_DATA", raising=False)
    with pytest.raises(ParamsError, match="RLCV_DATA"):
        params.real_root()
    monkeypatch.setenv("RLCV_DATA", str(tmp_path))
    assert params.real_root() == tmp_path


@dataclass
class Cfg:
    steps: int = 1
    lr: float = 0.1
    name: str = "a"


def test_build_config_types():
    cfg = P.build_config(Cfg, {"steps": 4, "lr": "1e-3"}, "m")
    assert cfg == Cfg(steps=4, lr=1e-3)
    with pytest.raises(ParamsError, match=r"unknown settings \['stepz'\]"):
        P.build_config(Cfg, {"stepz": 4}, "m")
    with pytest.raises(ParamsError, match="expected an integer"):
        P.build_config(Cfg, {"steps": 1.5}, "m")
    with pytest.raises(ParamsError, match="expected a number"):
        P.build_config(Cfg, {"lr": "fast"}, "m")
