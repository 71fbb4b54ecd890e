"""The per-stage timing tool behind README's per-stage table (issue 22)."""

from __future__ import annotations

import csv

from rlcv import stagetimes


def _log(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(stagetimes.FIELDS)
        w.writerows(rows)


def test_table_splits_dvc_startup_and_work(tmp_path):
    log = tmp_path / "t.csv"
    _log(log, [["(dvc repro total)", "100.0", "0", "160.0", "0"],
               ["evaluate a --seed 0", "130.0", "2.0", "150.0", "0"],
               ["train a --seed 0", "104.0", "3.0", "125.0", "0"]])
    out = stagetimes.table(log)
    # train: 4 s of DVC after the start, 3 s imports, 18 s work; evaluate: 5 s DVC, 2 + 18
    assert "| `rlcv train a --seed 0` | 4.0 | 3.0 | 18.0 |" in out
    assert "| `rlcv evaluate a --seed 0` | 5.0 | 2.0 | 18.0 |" in out
    # DVC total: 4 + 5 + the 10 s after the last command
    assert "| DVC bookkeeping | 0.3 |" in out
    assert "**1.0**" in out


def test_exec_logs_the_command_and_its_exit_code(tmp_path, monkeypatch, capsys):
    log = tmp_path / "t.csv"
    _log(log, [])
    monkeypatch.setenv("RLCV_STAGE_LOG", str(log))
    rc = stagetimes.main(["_exec", "train", "no-such-row"])
    assert rc != 0
    assert "no-such-row" in capsys.readouterr().err
    with open(log, newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["stage"] == "train no-such-row" and int(row["rc"]) == rc
    assert float(row["start"]) <= float(row["end"])
    assert float(row["startup_s"]) >= 0
    assert float(row["cpu_s"]) >= 0


def test_table_says_how_many_cores_each_stage_kept_busy(tmp_path):
    log = tmp_path / "t.csv"
    _log(log, [["(dvc repro total)", "100.0", "0", "160.0", "0", ""],
               ["train a --seed 0 1", "104.0", "3.0", "125.0", "0", "36.0"],
               ["train b --seed 0 1", "130.0", "2.0", "150.0", "0", "18.0"]])
    out = stagetimes.table(log)
    assert "| `rlcv train a --seed 0 1` | 4.0 | 3.0 | 18.0 | 2.00 |" in out
    assert "| `rlcv train b --seed 0 1` | 5.0 | 2.0 | 18.0 | 1.00 |" in out
    assert "| `rlcv train` work | 0.6 | 1.50 |" in out   # (36 + 18) CPU s over 36 s


def test_cpu_seconds_count_a_waited_for_worker():
    """A seed worker's CPU time reaches the stage's record once the worker is joined."""
    import os
    import time

    before = stagetimes._cpu_seconds()
    pid = os.fork()
    if pid == 0:   # burn ~0.4 s of CPU, then leave without running the parent's cleanup
        end = time.process_time() + 0.4
        while time.process_time() < end:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    assert stagetimes._cpu_seconds() - before >= 0.35


def test_table_without_a_log_is_one_error(tmp_path, capsys):
    assert stagetimes.main(["table", "--log", str(tmp_path / "none.csv")]) == 2
    assert "no stage log" in capsys.readouterr().err
