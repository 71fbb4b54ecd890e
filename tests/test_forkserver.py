"""`rlcv.forkserver`: a command served by the warm process computes what it computes when
run directly, and the client runs it itself wherever the server cannot serve it exactly."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import set_params, staged_ci_copy

from rlcv import forkserver
from rlcv.workers import python_path

ROW = "gt-bbox-deepmask"


@pytest.fixture(scope="module")
def ci_repo(tmp_path_factory) -> Path:
    """A ci-profile copy with synthetic COCO staged (its own: runs are rewritten here)."""
    return staged_ci_copy(tmp_path_factory.mktemp("fork-repo"), "coco")


def _env(root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RLCV_FORKSERVER", "RLCV_PROFILE")}
    return {**env, "PYTHONPATH": python_path(root), **extra}


@pytest.fixture(scope="module")
def server(ci_repo, tmp_path_factory):
    """A server started in the copy as `serving` starts it; yields its socket path."""
    sock = tmp_path_factory.mktemp("sock") / "s"
    proc = subprocess.Popen([sys.executable, "-m", "rlcv.forkserver", "serve", str(sock)],
                            cwd=ci_repo, env=_env(ci_repo), stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline().strip() == b"ready"
    yield sock
    proc.terminate()
    proc.wait(10)


def _client(root: Path, sock, *argv, **extra) -> subprocess.CompletedProcess:
    env = _env(root, RLCV_FORKSERVER_TRACE="1", **extra)
    if sock is not None:
        env["RLCV_FORKSERVER"] = str(sock)
    return subprocess.run([sys.executable, "-m", "rlcv.forkserver", "client", *argv],
                          cwd=root, env=env, capture_output=True, text=True)


def _digests(root: Path) -> dict[str, str]:
    files = sorted((root / "runs").glob(f"{ROW}-*/*")) + sorted(
        (root / "results" / "runs").glob(f"{ROW}-*/metrics.json"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if p.is_file()}


def test_a_served_run_writes_the_bytes_of_a_direct_run(ci_repo, server):
    seeds = ("--seed", "0", "1")
    direct = {}
    for how in ("served", "direct"):
        sock = server if how == "served" else None
        for cmd in (("train", ROW, *seeds, "--fresh"), ("evaluate", ROW, *seeds)):
            proc = _client(ci_repo, sock, *cmd)
            assert proc.returncode == 0, proc.stderr
            assert ("served by" in proc.stderr) == (how == "served"), proc.stderr
        direct[how] = _digests(ci_repo)
    assert len(direct["served"]) >= 6          # two seeds' checkpoints, histories, metrics
    assert direct["served"] == direct["direct"]


def test_exit_status_and_error_reach_the_client(ci_repo, server):
    proc = _client(ci_repo, server, "train", "no-such-row")
    assert "served by" in proc.stderr
    assert proc.returncode == 2
    assert "unknown row 'no-such-row'" in proc.stderr
    ok = _client(ci_repo, server, "--help")
    assert ok.returncode == 0 and "usage: rlcv" in ok.stdout


def test_an_import_time_variable_that_differs_is_run_by_the_client(ci_repo, server):
    proc = _client(ci_repo, server, "train", "no-such-row", OMP_NUM_THREADS="3")
    assert "refused: another OMP_NUM_THREADS" in proc.stderr
    assert proc.returncode == 2 and "unknown row" in proc.stderr   # run all the same


def test_without_a_server_the_client_runs_the_command(ci_repo, tmp_path):
    proc = _client(ci_repo, tmp_path / "none", "train", "no-such-row")
    assert "no server at" in proc.stderr
    assert proc.returncode == 2 and "unknown row" in proc.stderr


def test_a_client_waits_for_a_starting_server(ci_repo, tmp_path):
    sock = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "rlcv.forkserver", "serve", str(sock)],
                            cwd=ci_repo, env=_env(ci_repo), stdout=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:      # started at once, as DVC's first stage is: the server is still importing
        out = _client(ci_repo, sock, "train", "no-such-row", RLCV_FORKSERVER_PID=str(proc.pid))
    finally:
        proc.terminate()
        proc.wait(10)
    assert "served by" in out.stderr and out.returncode == 2


def test_a_signal_to_the_client_stops_the_command(ci_repo, server):
    params = (ci_repo / "params.yaml").read_text()
    set_params(ci_repo, **{f"methods__{ROW}__ci__steps": 100000})   # minutes of training
    try:
        env = _env(ci_repo, RLCV_FORKSERVER=str(server), RLCV_FORKSERVER_TRACE="1")
        proc = subprocess.Popen([sys.executable, "-m", "rlcv.forkserver", "client", "train",
                                 ROW, "--seed", "7", "--fresh"], cwd=ci_repo, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        history = ci_repo / "runs" / f"{ROW}-7" / "history.csv"
        deadline = time.time() + 60
        while not history.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "the command ended before it could be stopped"
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        (ci_repo / "params.yaml").write_text(params)
    assert proc.returncode != 0, err
    assert "served by" in err, err
    pid = int(err.rsplit("served by ", 1)[1].split()[0])
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                      # the command's process is gone too


def test_serving_puts_the_client_first_on_path_and_cleans_up(monkeypatch):
    monkeypatch.setenv("RLCV_FORKSERVER", "off")
    before = os.environ["PATH"]
    with forkserver.serving() as proc:
        assert proc is None
        first = Path(os.environ["PATH"].split(os.pathsep)[0])
        assert "rlcv.forkserver client" in (first / "rlcv").read_text()
    assert os.environ["PATH"] == before and not first.exists()
    assert os.environ["RLCV_FORKSERVER"] == "off"
