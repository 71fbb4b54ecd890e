"""The grid as independent jobs in dependency waves (`rlcv.fanout`, issue 18)."""

from __future__ import annotations

import shlex

import methods
from rlcv import fanout, twins
from rlcv import params as P
from rlcv.cli import build_parser
from tests.conftest import REPO


def _jobs(profile: str):
    params = P.load(REPO / "params.yaml")
    params.raw["profile"] = profile
    return params, fanout.waves(params, methods.METHODS)


def test_every_row_and_seed_once_after_what_it_requires():
    params, waves = _jobs("ci")
    wave_of: dict[tuple[str, int], int] = {}
    for k, jobs in enumerate(waves[1:-1], 1):
        for job in jobs:
            words = job.split(" && ")[0].split()
            key = (words[2], int(words[4]))
            assert key not in wave_of, key
            wave_of[key] = k
    assert set(wave_of) == {(r, s) for r in methods.METHODS for s in params.seeds}
    copies = 0
    for (name, seed), k in wave_of.items():
        for req in twins.waits_for(params, methods.METHODS[name]):   # the twin's runs too
            assert wave_of[(req, seed)] < k, (name, req)
        copies += twins.twin_of(params, methods.METHODS[name]) is not None
    assert copies   # the ci profile has rows that copy a twin's runs
    staged = {j.split()[-1] for j in waves[0]}
    assert staged == {row.dataset for row in methods.METHODS.values()}
    assert waves[-1] == ["rlcv report && dvc commit -f"]


def test_jobs_are_valid_rlcv_commands_and_paper_stages_real_data():
    _, waves = _jobs("ci")
    parser = build_parser()
    for jobs in waves[:-1]:
        for job in jobs:
            for part in job.split(" && "):
                words = shlex.split(part)
                assert words[0] == "rlcv"
                parser.parse_args(words[1:])   # exits (SystemExit) on a bad command
    _, paper = _jobs("paper")
    assert all(j.startswith("rlcv stage ") for j in paper[0])
