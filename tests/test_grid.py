"""rlcv.grid: dependent commands run several at a time within a core budget, the longest
chain first; a failure skips what needs it and nothing else."""

import sys

import pytest

from rlcv import grid

_STAMP = ("import sys, time; p, n, s = sys.argv[1], sys.argv[2], float(sys.argv[3]); "
          "open(p, 'a').write(f'{n} start {time.time()}\\n'); time.sleep(s); "
          "open(p, 'a').write(f'{n} end {time.time()}\\n'); sys.exit(int(sys.argv[4]))")


def _task(tmp_path, name, seconds=0.0, after=(), rc=0, **kw):
    cmd = [sys.executable, "-c", _STAMP, str(tmp_path / "stamps"), name, str(seconds), str(rc)]
    return grid.Task(name, cmd, tuple(after), **kw)


def _stamps(tmp_path):
    out = {}
    for line in (tmp_path / "stamps").read_text().splitlines():
        name, what, when = line.split()
        out.setdefault(name, {})[what] = float(when)
    return out


def _run(tmp_path, tasks, cores):
    return grid.run(tasks, cores, tmp_path, {}, tmp_path / "logs")


def test_a_task_starts_after_what_it_needs_and_independent_ones_overlap(tmp_path):
    tasks = [_task(tmp_path, "a", 0.6), _task(tmp_path, "b", 0.6),
             _task(tmp_path, "c", 0.0, after=("a", "b"))]
    done = _run(tmp_path, tasks, cores=2)
    assert {n: o.rc for n, o in done.items()} == {"a": 0, "b": 0, "c": 0}
    t = _stamps(tmp_path)
    assert t["c"]["start"] >= max(t["a"]["end"], t["b"]["end"])
    assert t["b"]["start"] < t["a"]["end"] and t["a"]["start"] < t["b"]["end"]   # at once
    assert (tmp_path / "logs" / "c.log").is_file()


def test_the_core_budget_holds_a_wide_task_back(tmp_path):
    tasks = [_task(tmp_path, "wide", 0.4, cores=2), _task(tmp_path, "narrow", 0.4)]
    _run(tmp_path, tasks, cores=2)
    t = _stamps(tmp_path)
    first, second = sorted(t, key=lambda n: t[n]["start"])
    assert t[second]["start"] >= t[first]["end"]


def test_a_task_wider_than_the_budget_still_runs_alone(tmp_path):
    done = _run(tmp_path, [_task(tmp_path, "huge", 0.0, cores=16)], cores=2)
    assert done["huge"].rc == 0


def test_a_failure_skips_only_what_needs_it_and_the_report_still_runs(tmp_path):
    tasks = [_task(tmp_path, "bad", rc=3), _task(tmp_path, "after-bad", after=("bad",)),
             _task(tmp_path, "after-after", after=("after-bad",)), _task(tmp_path, "other"),
             _task(tmp_path, "report", after=("after-after", "other"), always=True)]
    done = _run(tmp_path, tasks, cores=1)
    assert done["bad"].rc == 3 and done["other"].rc == 0 and done["report"].rc == 0
    assert done["after-bad"].rc is None and done["after-after"].rc is None
    assert set(_stamps(tmp_path)) == {"bad", "other", "report"}


def test_the_longest_chain_starts_first(tmp_path):
    tasks = [_task(tmp_path, "short", expect_s=5.0),
             _task(tmp_path, "head", expect_s=1.0),
             _task(tmp_path, "tail", after=("head",), expect_s=10.0)]
    assert grid.urgency(tasks) == {"short": 5.0, "head": 11.0, "tail": 10.0}
    _run(tmp_path, tasks, cores=1)
    t = _stamps(tmp_path)
    assert [n for n in sorted(t, key=lambda n: t[n]["start"])] == ["head", "tail", "short"]


@pytest.mark.parametrize("tasks, message", [
    ([grid.Task("a", ["true"], ("nope",))], "a runs after unknown task(s) nope"),
    ([grid.Task("a", ["true"]), grid.Task("a", ["true"])], "tasks named twice: a"),
    ([grid.Task("a", ["true"], ("b",)), grid.Task("b", ["true"], ("a",))], "a cycle: a -> b -> a"),
])
def test_a_bad_grid_is_refused_before_anything_runs(tmp_path, tasks, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(tmp_path, tasks, cores=2)
    assert not (tmp_path / "logs").exists()


def test_a_task_runs_in_its_own_folder_when_it_names_one(tmp_path):
    """gpu-check's tests run in the checkout, its rows in the scratch copy."""
    own = tmp_path / "own"
    own.mkdir()
    where = [sys.executable, "-c", "import os; open('here', 'w').write(os.getcwd())"]
    done = _run(tmp_path, [grid.Task("rows", where), grid.Task("tests", where, cwd=own)], 2)
    assert done["rows"].rc == done["tests"].rc == 0
    assert (tmp_path / "here").read_text() == str(tmp_path)
    assert (own / "here").read_text() == str(own)


def test_at_the_deadline_running_tasks_stop_and_the_rest_are_skipped(tmp_path):
    """gpu-check must write its record inside the device's hard limit of one command."""
    import time

    tasks = [_task(tmp_path, "long", 30.0), _task(tmp_path, "next", 0.0, after=("long",)),
             _task(tmp_path, "report", 0.0, after=("long",), always=True)]
    began = time.monotonic()
    done = grid.run(tasks, 2, tmp_path, {}, tmp_path / "logs", deadline_s=0.5)
    assert time.monotonic() - began < 10
    assert done["long"].rc == -15 and done["long"].seconds < 10      # SIGTERM
    assert done["next"].rc is None and done["report"].rc is None       # never started
    assert "end" not in _stamps(tmp_path)["long"]
