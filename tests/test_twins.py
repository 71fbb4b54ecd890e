"""Twin rows (rlcv.twins): which rows copy another's runs on which profile, the copy's
files, and the pipeline's dependency on the copied runs. The copy against real training
(same bytes) is checked on the ci pose runs in test_eurl_pose_rows.py."""

from __future__ import annotations

import pytest
import torch

T2 = {"eurl-pose-t2-boxes": "eurl-pose-boxes", "eurl-pose-t2-rmpe": "eurl-pose-rmpe",
      "eurl-pose-t2": "eurl-pose"}


@pytest.fixture
def params(repo):
    from rlcv import params as P

    return P.load(repo / "params.yaml")


@pytest.mark.parametrize("profile", ["smoke", "ci"])
def test_table2_chain_is_table3s_on_the_small_profiles(params, profile):
    import methods
    from rlcv.twins import twin_of

    params.raw["profile"] = profile
    assert {r: twin_of(params, methods.get(r)) for r in T2} == T2
    assert twin_of(params, methods.get("eurl-pose")) is None   # names no twin


def test_paper_profile_trains_table2_with_its_own_hourglass(params):
    """8 stacks for Table 2's boxes on the paper profile: no twin there, nor for the rows
    that start from it (their inputs differ), though their own params are equal."""
    import methods
    from rlcv.twins import twin_of

    params.raw["profile"] = "paper"
    assert params.method("eurl-pose-t2-rmpe") == params.method("eurl-pose-rmpe")
    assert {r: twin_of(params, methods.get(r)) for r in T2} == dict.fromkeys(T2)


def test_a_setting_edited_on_one_side_ends_the_twin(params):
    import methods
    from rlcv.twins import twin_of

    params.raw["methods"]["eurl-pose-t2"] = {
        **params.raw["methods"]["eurl-pose-t2"],
        "smoke": {**params.raw["methods"]["eurl-pose-t2"]["smoke"], "episodes": 91}}
    assert twin_of(params, methods.get("eurl-pose-t2")) is None
    assert twin_of(params, methods.get("eurl-pose-t2-rmpe")) == "eurl-pose-rmpe"


def test_a_twin_without_params_entry_is_not_copied(params):
    import methods
    from rlcv.twins import twin_of

    del params.raw["methods"]["eurl-pose-boxes"]
    assert twin_of(params, methods.get("eurl-pose-t2-boxes")) is None
    assert twin_of(params, methods.get("eurl-pose-t2-rmpe")) is None   # its input trains


def test_the_copying_stage_depends_on_the_twins_runs(params):
    from rlcv.pipeline import stages

    seeds = params.seeds
    deps = stages(params)["train-eurl-pose-t2"]["deps"]
    assert {f"runs/eurl-pose-{s}" for s in seeds} <= set(deps)
    assert {f"runs/eurl-pose-t2-rmpe-{s}" for s in seeds} <= set(deps)
    params.raw["profile"] = "paper"
    deps = stages(params)["train-eurl-pose-t2"]["deps"]
    assert not {f"runs/eurl-pose-{s}" for s in seeds} & set(deps)


def test_copy_run_rewrites_name_and_signature_only(tmp_path):
    from rlcv import io as rio
    from rlcv.twins import copy_run

    src, dest = tmp_path / "a-0", tmp_path / "b-0"
    w = torch.arange(6.0).reshape(2, 3)
    rio.torch_save({"row": "a", "seed": 0, "signature": "old", "model": {"w": w}},
                   src / "checkpoint.pt")
    rio.torch_save({"signature": "old", "step": 7}, src / "phase.ckpt.pt")
    rio.write_text(src / "history.csv", "phase,step\nx,1\n")
    (dest / "stale").mkdir(parents=True)   # an earlier run's leftovers go
    ckpt = copy_run(src, dest, "b", "a", "new")
    state = rio.torch_load(ckpt)
    assert state["row"] == "b" and state["signature"] == "new" and state["seed"] == 0
    assert torch.equal(state["model"]["w"], w)
    assert rio.torch_load(dest / "phase.ckpt.pt") == {"signature": "new", "step": 7}
    assert (dest / "history.csv").read_text() == "phase,step\nx,1\n"
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in src.iterdir())


def test_copy_run_without_the_twins_checkpoint_is_one_clear_error(tmp_path):
    from rlcv.errors import RlcvError
    from rlcv.twins import copy_run

    with pytest.raises(RlcvError, match=r"twin a .*checkpoint\.pt is missing \(run: rlcv "
                       r"train a\)"):
        copy_run(tmp_path / "a-0", tmp_path / "b-0", "b", "a", "new")
    assert not (tmp_path / "b-0").exists()
