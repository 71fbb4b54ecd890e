"""Seeds side by side in worker processes (rlcv.workers): every seed runs once, in its own
process when RLCV_JOBS > 1, a failure stops the run with the worker's own message."""

import os
import subprocess
import sys

import pytest

from rlcv.errors import ParamsError, RlcvError
from rlcv.workers import WorkerFailed, for_each_seed, jobs, python_path


def _record(folder):
    def fn(seed: int) -> None:
        (folder / f"seed{seed}").write_text(str(os.getpid()))
    return fn


@pytest.mark.parametrize("n_jobs", ["1", "2"])
def test_every_seed_runs_once_in_workers_when_jobs_allow(tmp_path, monkeypatch, n_jobs):
    monkeypatch.setenv("RLCV_JOBS", n_jobs)
    for_each_seed([3, 1, 2], _record(tmp_path))
    pids = {p.name: int(p.read_text()) for p in tmp_path.iterdir()}
    assert sorted(pids) == ["seed1", "seed2", "seed3"]
    if n_jobs == "1":
        assert set(pids.values()) == {os.getpid()}
    else:
        assert os.getpid() not in pids.values() and len(set(pids.values())) == 3


def test_a_failing_seed_stops_the_run_with_its_own_message(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RLCV_JOBS", "2")

    def fn(seed: int) -> None:
        if seed == 1:
            raise RlcvError("staged data for seed 1 is damaged")
        (tmp_path / f"seed{seed}").write_text("ok")

    with pytest.raises(WorkerFailed) as info:
        for_each_seed([0, 1], fn)
    assert info.value.exit_code == 2 and info.value.reported
    err = capfd.readouterr().err
    assert err.count("rlcv: error: staged data for seed 1 is damaged") == 1


def test_a_crash_in_a_worker_is_a_failure_not_a_silent_success(monkeypatch):
    monkeypatch.setenv("RLCV_JOBS", "2")

    def fn(seed: int) -> None:
        if seed == 0:
            raise ZeroDivisionError("bug")

    with pytest.raises(WorkerFailed) as info:
        for_each_seed([0, 1], fn)
    assert info.value.exit_code == 1


def test_jobs_follow_rlcv_jobs_and_the_thread_count(monkeypatch):
    monkeypatch.setenv("RLCV_JOBS", "8")
    assert jobs(3) == 3 and jobs(1) == 1
    monkeypatch.delenv("RLCV_JOBS")
    monkeypatch.setenv("RLCV_THREADS", "256")   # more threads than cores: one seed at a time
    assert jobs(3) == 1
    monkeypatch.setenv("RLCV_THREADS", "1")
    monkeypatch.setattr("rlcv.engine.usable_cores", lambda: 2)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert jobs(5) == 5   # the default five seeds on two cores start at once, not 4 then 1
    assert jobs(9) == 6
    for bad in ("0", "two"):
        monkeypatch.setenv("RLCV_JOBS", bad)
        with pytest.raises(ParamsError, match="RLCV_JOBS"):
            jobs(3)


@pytest.fixture
def gpu_machine(monkeypatch):
    """A machine where NVML sees one GPU and asking the CUDA runtime would initialise it
    in this process (after which forked workers cannot use CUDA): that call fails here."""
    import torch

    def initialises_cuda():
        raise AssertionError("cudaGetDeviceCount called: CUDA initialised before the fork")

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "unset below")
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK")
    monkeypatch.delenv("RLCV_JOBS", raising=False)
    monkeypatch.delenv("RLCV_DEVICE", raising=False)
    monkeypatch.setenv("RLCV_THREADS", "1")
    monkeypatch.setattr(torch.cuda, "_is_compiled", lambda: True)
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: 1)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", initialises_cuda)
    monkeypatch.setattr("rlcv.engine.usable_cores", lambda: 16)


def test_seeds_share_one_gpu_without_initialising_cuda_before_the_fork(gpu_machine):
    assert jobs(5) == 5   # every seed in its own process on the one device
    assert jobs(5, share_gpu=False) == 1   # the paper profile: one seed at a time
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


def test_the_device_check_of_rlcv_leaves_cuda_to_the_workers(gpu_machine):
    from rlcv import cli, engine

    assert cli.main(["train", "no-such-row"]) == 2   # the command set the switch first
    assert engine.device().type == "cuda"


def test_the_device_setting_decides_between_the_cpu_and_the_gpu_rule(gpu_machine, monkeypatch):
    monkeypatch.setenv("RLCV_DEVICE", "cpu")   # a GPU machine told to use its CPU
    assert jobs(5) == 5 and jobs(99) == 48
    monkeypatch.setenv("RLCV_DEVICE", "cuda:0")
    assert jobs(99) == 16 and jobs(99, share_gpu=False) == 1


def _in_child(fn):
    """fn() in a forked child (its scheduler settings die with it); its return value."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(1) as pool:
        return pool.apply(fn)


def _slice_taken() -> bool:
    from rlcv.workers import long_time_slice

    return long_time_slice(50)


def _slice_keeps_nice_and_policy():
    from rlcv import workers

    os.nice(3)
    before = workers.sched_attr()
    taken = workers.long_time_slice(40)
    return taken, before, workers.sched_attr()


def test_a_long_time_slice_keeps_the_policy_and_the_nice_value():
    if not _in_child(_slice_taken):
        pytest.skip("this kernel takes no per-task time slice (Linux 6.12+ EEVDF)")
    taken, before, after = _in_child(_slice_keeps_nice_and_policy)
    assert taken and after[5] == 40_000_000
    assert (after[1], after[3]) == (before[1], before[3]) and before[3] >= 3   # policy, nice


def _record_slice(folder):
    def fn(seed: int) -> None:
        from rlcv import workers

        (folder / f"seed{seed}").write_text(str(workers.sched_attr()[5]))
    return fn


def test_workers_ask_for_long_slices_only_when_they_outnumber_the_cores(tmp_path, monkeypatch):
    from rlcv import workers
    from rlcv.engine import usable_cores

    if not _in_child(_slice_taken):
        pytest.skip("this kernel takes no per-task time slice (Linux 6.12+ EEVDF)")
    monkeypatch.setenv("RLCV_DEVICE", "cpu")
    cores = usable_cores()
    for n, sub in ((cores + 1, "over"), (cores, "fit")):
        if n < 2:
            continue
        (tmp_path / sub).mkdir()
        monkeypatch.setenv("RLCV_JOBS", str(n))
        for_each_seed(list(range(n)), _record_slice(tmp_path / sub))
    slices = {sub: {int(p.read_text()) for p in (tmp_path / sub).iterdir()}
              for sub in ("over", "fit") if (tmp_path / sub).is_dir()}
    assert slices["over"] == {workers.SLICE_MS * 1_000_000}
    if "fit" in slices:
        assert workers.SLICE_MS * 1_000_000 not in slices["fit"]


def test_a_child_runs_the_copy_and_still_reaches_the_packages_pythonpath_held(tmp_path,
                                                                             monkeypatch):
    """On the lent GPU machine pycocotools is reachable only through PYTHONPATH (`.ci/device`
    installs it into a folder there): a child pointed at a scratch copy must keep it."""
    copy, site = tmp_path / "copy", tmp_path / "site"
    for folder, module in ((copy, "in_copy"), (site, "in_site")):
        folder.mkdir()
        (folder / f"{module}.py").write_text(f"WHERE = {str(folder)!r}\n")
    (site / "in_copy.py").write_text("WHERE = 'the copy must come first'\n")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}")
    assert python_path(copy).split(os.pathsep) == [str(copy), str(site)]
    out = subprocess.run([sys.executable, "-c", "import in_copy, in_site; "
                          "print(in_copy.WHERE, in_site.WHERE)"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": python_path(copy)}, check=True)
    assert out.stdout.split() == [str(copy), str(site)]
    monkeypatch.delenv("PYTHONPATH")
    assert python_path(copy) == str(copy)
