"""`python -m rlcv.forecast` (rlcv.forecast): each optimizer's step count names its phase,
the GPU-hours follow the documented formula from the measured seconds per step, the
report's header says what measured it, a failing row is one line and a non-zero exit."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import yaml

W, N = 1, 2
ROWS = ("box-regressor", "acis-ac-dice-nosp")
"""A one-phase row, and one with a requirement (acis-pretrain-cvppp) and four phases
(steps, cvae_steps, init_steps, critic_warmup) with an actor inside `steps`."""


@pytest.fixture
def small_paper(tmp_path, repo):
    """params.yaml whose paper blocks of the test rows (and their datasets) are shrunk to
    CPU sizes: the mechanics under test do not depend on the sizes."""
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    m, d = raw["methods"], raw["datasets"]
    m["box-regressor"]["paper"].update(batch_size=8, input_size=32, width=4)
    small = {"downsample": 2, "width": 4, "hidden": 16, "preproc_width": 4,
             "pretrain_batch": 4, "batch_size": 2, "max_steps": 4}
    for row in ("acis-pretrain-cvppp", "acis-ac-dice-nosp"):
        m[row]["paper"].update({k: v for k, v in small.items() if k in m[row]["ci"]})
    d["coco"]["paper"].update(single={"image_size": 48},
                              detection={"image_size": 64, "resize": "shorter"})
    d["cvppp"]["paper"]["size"] = 32
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_forecast_maps_phases_and_writes_the_report(small_paper, tmp_path, monkeypatch):
    import torch

    from rlcv import forecast
    from rlcv import params as P

    seen = {}
    original = forecast.Forecast.forecast

    def spy(self, name):
        seen[name] = original(self, name)
        return seen[name]

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))   # random weights
    monkeypatch.setattr(forecast.Forecast, "forecast", spy)
    out = tmp_path / "report" / "forecast.md"
    argv = ["--rows", *ROWS, "--warmup", str(W), "--measure", str(N), "--device", "cpu",
            "--params", str(small_paper), "--write", str(out)]
    assert forecast.main(argv) == 0
    params = P.load(small_paper)
    params.raw["profile"] = "paper"
    seeds = len(params.seeds)
    for row in ROWS:
        r, paper = seen[row], params.method(row)
        _, counts = forecast.budget(paper, W, N)
        assert counts == {k: W + N + i for i, k in enumerate(sorted(counts))}
        assert not r["unmapped"] and not r["idle"], r
        assert set(r["phases"]) == set(counts), r   # every phase key took steps
        for name, n, key in r["optimizers"]:
            if key is not None:   # its count is the phase's (or an exact multiple of it)
                assert n % counts[key] == 0, (name, n, key)
        assert all(s > 0 for s in r["phases"].values()), r
        assert r["paper_steps"] == {k: paper[k] for k in counts}
        hours = seeds * sum(paper[k] * s for k, s in r["phases"].items()) / 3600
        assert r["gpu_hours"] == pytest.approx(hours)
        assert r["peak"] is None
    nosp = seen["acis-ac-dice-nosp"]
    assert set(nosp["phases"]) == {"steps", "cvae_steps", "init_steps", "critic_warmup"}
    text = out.read_text()
    assert f"torch {torch.__version__}" in text
    assert datetime.now(UTC).strftime("%Y-%m-%d") in text and "TF32: no" in text
    assert f"W={W}" in text and f"N={N}" in text
    for row in ROWS:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {row} |"))
        assert f"{seen[row]['gpu_hours']:.1f} |" in line, line
    total = sum(seen[r]["gpu_hours"] for r in ROWS)
    assert f"Total: {total:.1f} GPU-hours" in text
    assert f"8 GPUs: {total / 8:.1f} hours (linear scaling, not measured)" in text


def test_a_failing_row_is_one_line_and_the_run_goes_on(monkeypatch, capsys):
    from rlcv import forecast

    def fake(self, name):
        if name == "dqn-localizer":
            raise RuntimeError("CUDA out of memory\nsecond line")
        return {"row": name, "phases": {"steps": 0.5}, "absorbed": [], "unmapped": [],
                "idle": [], "optimizers": [("SGD#0", 13, "steps")], "ci_size": False,
                "peak": None, "batch": {"steps": 64}, "paper_steps": {"steps": 20000},
                "gpu_hours": 13.9}

    monkeypatch.setattr(forecast.Forecast, "forecast", fake)
    rc = forecast.main(["--rows", "dqn-localizer", "box-regressor", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 1
    failed = [ln for ln in out.splitlines() if "dqn-localizer" in ln]
    assert failed == ["| dqn-localizer | FAILED: RuntimeError: CUDA out of memory | | |"]
    assert "| box-regressor | steps 0.5 s/step (128.0 img/s, 20000 steps) | n/a | 13.9 |" in out
    assert "Total: 13.9 GPU-hours on one GPU (1 rows; 1 unmapped or failed" in out


def test_step_counts_name_the_phases():
    from rlcv.forecast import assign

    counts = {"critic_warmup": 3, "cvae_steps": 4, "init_steps": 5, "preproc_steps": 6}

    def ticks(start, n, dt=1.0):
        return [start + i * dt for i in range(n)]

    steps = [("pre", ticks(0, 6)),          # 6: exactly preproc_steps, though 2 x 3 too
             ("cvae", ticks(10, 8, 0.5)),   # 8 = 2 x 4: two updates per cvae step
             ("critic", ticks(20, 3, 2.0)),
             ("actor", [20.5, 22.5]),       # every other critic step: inside critic_warmup
             ("stray", [50.0, 51.0, 52.0, 53.0, 54.0, 55.0, 56.0])]
    r = assign(steps, counts, warmup=1)
    assert [k for _, _, k in r["optimizers"]] == ["preproc_steps", "cvae_steps",
                                                  "critic_warmup", None, None]
    assert r["phases"] == {"preproc_steps": 1.0, "cvae_steps": 1.0, "critic_warmup": 2.0}
    assert r["absorbed"] == ["actor 2 steps, 2 s/step inside critic_warmup"]
    assert r["unmapped"] == ["stray 7 steps, 1 s/step"] and r["idle"] == ["init_steps"]


def test_a_phase_no_optimizer_count_names_is_timed_by_its_fit_loop():
    """A DQN updates per environment step: 35 updates in 3 episodes name no key. The
    episodes' own loop times the phase and the updates are absorbed into it."""
    from rlcv.forecast import assign

    counts = {"episodes": 3}
    dqn = [1.0 + 0.1 * i for i in range(35)]          # 0.9..4.4 s: inside the loop
    loop = (3, 0.5, [1.5, 3.0, 4.5])                  # (steps, start, step ends)
    r = assign([("Adam#0", dqn)], counts, warmup=1, fit_loops=[loop])
    assert r["phases"] == {"episodes": pytest.approx(1.5)} and not r["unmapped"]
    assert r["absorbed"] == ["Adam#0 35 steps, 0.1 s/step inside episodes"] and not r["idle"]
    # without the loop (or with one of another length) the updates stay unmapped
    for loops in ([], [(4, 0.5, [1.0, 2.0, 3.0, 4.0])]):
        r = assign([("Adam#0", dqn)], counts, warmup=1, fit_loops=loops)
        assert r["unmapped"] and r["idle"] == ["episodes"] and not r["phases"]
    # 36 updates, by chance 12 per episode by count: the loop still times the episodes
    r = assign([("Adam#0", [*dqn, 4.45])], counts, warmup=1, fit_loops=[loop])
    assert r["phases"] == {"episodes": pytest.approx(1.5)}
    assert r["optimizers"] == [("Adam#0", 36, "episodes")]


def test_forecast_times_a_dqn_row_by_its_episodes(small_paper, tmp_path, monkeypatch):
    """dqn-localizer end to end (paper settings shrunk to CPU sizes): a GPU-hours figure,
    not "unmapped" as the rehearsal of the device forecast printed before the loop clock."""
    from rlcv import forecast

    raw = yaml.safe_load(small_paper.read_text())
    raw["methods"]["dqn-localizer"]["paper"].update(
        batch_size=32, t_max=8, history=2, crop_size=32, hidden=16, replay=1024,
        replay_batch=8)   # 3 episodes x 32 x 8 transitions pass the DQN's 256 of warm-up
    small_paper.write_text(yaml.safe_dump(raw, sort_keys=False))
    seen = {}
    original = forecast.Forecast.forecast
    monkeypatch.setattr(forecast.Forecast, "forecast",
                        lambda self, name: seen.setdefault(name, original(self, name)))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))   # random weights
    assert forecast.main(["--rows", "dqn-localizer", "--warmup", str(W), "--measure", str(N),
                          "--device", "cpu", "--params", str(small_paper)]) == 0
    r = seen["dqn-localizer"]
    assert not r["unmapped"] and not r["idle"] and set(r["phases"]) == {"episodes"}, r
    assert r["phases"]["episodes"] > 0 and r["gpu_hours"] is not None
    # its updates (a count that may be a multiple of the episodes' by chance) are timed
    # inside the episodes' loop, not as a phase of their own
    assert all(key in (None, "episodes") for _, _, key in r["optimizers"]), r


def test_paper_sizes_over_ci_counts(repo):
    from rlcv import params as P
    from rlcv.forecast import budget, data_cfg, staged_hw

    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    coco = data_cfg(params, "coco")
    assert coco["detection"] == {"image_size": 800, "resize": "shorter", "max_size": 1333}
    assert coco["image_size"] == 800 and coco["n_train"] == 24 and "root" not in coco
    city = data_cfg(params, "cityscapes")
    assert city["size"] == city["synth_size"] == [1024, 2048] and city["synth_train"] == 4
    kitti = data_cfg(params, "kitti")
    assert staged_hw(kitti) == [128, 448] and kitti["image_hw"] == [140, 448]
    values, counts = budget(params.method("pgdet-standard"), 3, 10)
    assert counts == {"base_steps": 13, "steps": 14}
    assert values["batch_size"] == 16 and values["proposals"] == 1000
    assert values["rois_per_image"] == 512 and values["eval_every"] == 0
    values, counts = budget(params.method("ciss-net-ade20k"), 3, 10)
    assert counts == {"steps": 13} and values["eval_steps"] == 2 and values["crop_size"] == 473
    assert re.fullmatch(r"\d+", str(values["batch_size"]))


def test_a_count_inside_a_loop_is_no_phase(repo):
    """`warmup` counts transitions before a DQN's first update, or an AC row's critic-only
    first iterations of `steps`: no loop of its own, so no phase key; it is capped at the W
    warm-up steps so the measured steps are full ones."""
    from rlcv import params as P
    from rlcv.forecast import budget

    params = P.load(repo / "params.yaml")
    params.raw["profile"] = "paper"
    dqn = {**params.method("dqn-localizer"), "warmup": 5000}
    values, counts = budget(dqn, 3, 10)
    assert counts == {"episodes": 13} and values["warmup"] == 3
    assert budget({**dqn, "warmup": 2}, 3, 10)[0]["warmup"] == 2
    ac = {**params.method("acis-ac-dice-nosp"), "warmup": 1000}
    values, counts = budget(ac, 3, 10)
    assert "warmup" not in counts and "critic_warmup" in counts and values["warmup"] == 3
