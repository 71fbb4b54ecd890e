"""Start-up once per pipeline run, not once per stage: a warm process forks each `rlcv`.

Every stage of `make repro` is one `rlcv` process. Before its work, each one spent about
1.8 s importing torch and about 1 s more importing torchvision (issue 22: 114 stages,
about 4 minutes of a run on two cores). `serving()` wraps `dvc repro` in `rlcv.dvcrun`:
- It starts `serve`, one process that imports the third-party libraries (`PRELOAD`) and
  waits on a Unix socket. It never imports rlcv's own code.
- It puts an `rlcv` first on PATH. That `rlcv` runs `client`, which hands the server its
  arguments, working directory, environment and stdin/stdout/stderr.
- The server forks. The child runs the command as `rlcv` would: `rlcv.cli` is imported
  fresh in the child, so an edit to the code is always seen. The child sends back its
  exit status, and the client exits with it.
- A signal to the client goes to the child's process group (the seed workers included).

The client runs the command itself, as before, whenever the server cannot serve it
exactly:
- there is no server;
- the client has another interpreter or another import path;
- an environment variable that libraries read at import time (`IMPORT_ENV`: OMP_*, MKL_*,
  PYTHON*, ...) has another value in the client.
What a command computes is the same either way (tests/test_forkserver.py compares a served
run's checkpoint and metrics with a direct run's bytes). Only the start-up differs.
`RLCV_FORKSERVER=off` turns the server off.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

PRELOAD = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "PIL.Image", "yaml",
           "scipy", "pycocotools.mask")
"""Imported once by the server: third-party code only, the same for every command."""
IMPORT_ENV = ("OMP_", "MKL_", "KMP_", "GOMP_", "DNNL_", "ONEDNN_", "OPENBLAS_", "TORCH",
              "PYTORCH_", "CUDA_", "NVIDIA_", "LD_", "PYTHON", "MALLOC_", "MPL")
"""Prefixes of the environment variables that must match the server's for a command to be
served: libraries may read them when they are imported, and the server imported them."""
_HEAD = struct.Struct("!Q")


def _key(env: dict[str, str]) -> dict:
    """What a served command must share with the server."""
    return {"python": sys.executable, "path": sys.path,
            "env": {k: v for k, v in sorted(env.items()) if k.startswith(IMPORT_ENV)}}


def _send(conn: socket.socket, msg: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(msg).encode()
    if fds:
        socket.send_fds(conn, [_HEAD.pack(len(data))], fds)
    else:
        conn.sendall(_HEAD.pack(len(data)))
    conn.sendall(data)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv(conn: socket.socket, maxfds: int = 0) -> tuple[dict, list[int]]:
    if maxfds:
        head, fds, _, _ = socket.recv_fds(conn, _HEAD.size, maxfds)
        head += _recv_exact(conn, _HEAD.size - len(head)) if len(head) < _HEAD.size else b""
    else:
        head, fds = _recv_exact(conn, _HEAD.size), []
    if not head:
        raise EOFError
    return json.loads(_recv_exact(conn, _HEAD.unpack(head)[0])), list(fds)


def run_command(argv: list[str], start: float | None = None) -> int:
    """The command in this process: `rlcv.cli`, or `rlcv.stagetimes` timing it when
    RLCV_STAGE_LOG names a stage log (`start`: when the command's process started)."""
    if os.environ.get("RLCV_STAGE_LOG"):
        from rlcv import stagetimes

        return stagetimes._exec(argv, start)
    from rlcv import cli

    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


# ------------------------------------------------------------------------------ server


def _child(conn: socket.socket, req: dict, fds: list[int], added: dict[str, str]) -> None:
    """In the forked child: become the command's process, run it, report, exit."""
    os.setpgid(0, 0)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    for i, stream in ((1, sys.stdout), (2, sys.stderr)):
        stream.reconfigure(line_buffering=i == 2 or os.isatty(i))
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for k, v in added.items():
        os.environ.setdefault(k, v)
    sys.argv = [req["argv0"], *req["argv"]]
    rc = 1
    try:
        _send(conn, {"pid": os.getpid()})
        rc = run_command(req["argv"], req["start"])
    except KeyboardInterrupt:
        rc = 130
    except BaseException:   # noqa: BLE001 - printed as an uncaught exception would be
        import traceback

        traceback.print_exc()
    finally:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        try:
            _send(conn, {"rc": rc})
        except OSError:
            pass
        os._exit(rc)


def _difference(theirs: dict, ours: dict) -> str:
    """What differs between a client's `_key` and the server's, in words."""
    what = [k for k in ("python", "path") if theirs.get(k) != ours[k]]
    env, mine = theirs.get("env") or {}, ours["env"]
    what += sorted(k for k in set(env) | set(mine) if env.get(k) != mine.get(k))
    return "another " + ", ".join(what) if what else "a malformed request"


def serve(path: str) -> None:
    """Import `PRELOAD`, then fork a child for every command a client sends on `path`."""
    import importlib

    before = dict(os.environ)
    key = _key(before)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # what the imports put in the environment (torch: TORCHINDUCTOR_CACHE_DIR), as a
    # process that imports them itself would have it
    added = {k: v for k, v in os.environ.items() if before.get(k) != v}
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children reaped by the kernel
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = sock.accept()
        fds: list[int] = []
        try:
            req, fds = _recv(conn, 3)
            if req.get("key") != key or len(fds) != 3:
                _send(conn, {"refuse": _difference(req.get("key") or {}, key)})
            elif os.fork() == 0:
                sock.close()
                _child(conn, req, fds, added)
        except (OSError, EOFError, ValueError):
            pass
        for fd in fds:
            os.close(fd)
        conn.close()


# ------------------------------------------------------------------------------ client


def _starting(pid: str) -> bool:
    """Whether server process `pid` (RLCV_FORKSERVER_PID) is alive, so still starting."""
    try:
        state = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return False


def _connect(path: str, wait: float = 60.0) -> socket.socket:
    """A connection to the server; while it is still importing (the first stages of a
    run start at once), wait for it rather than pay the start-up it is there to save."""
    deadline = time.monotonic() + wait
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
            if time.monotonic() > deadline or not _starting(
                    os.environ.get("RLCV_FORKSERVER_PID", "")):
                raise
            time.sleep(0.05)


def _served(argv: list[str], start: float) -> tuple[int | None, str]:
    """Run the command in the server: (its exit status, "served by PID"), or (None, why
    not) where the server cannot serve it exactly."""
    path = os.environ.get("RLCV_FORKSERVER", "")
    if not path or path == "off" or not hasattr(socket, "send_fds"):
        return None, "no server (RLCV_FORKSERVER unset or off)"
    conn = None
    try:
        conn = _connect(path)
        _send(conn, {"key": _key(dict(os.environ)), "argv": argv, "argv0": "rlcv",
                     "cwd": os.getcwd(), "env": dict(os.environ), "start": start}, [0, 1, 2])
        first, _ = _recv(conn)
    except (OSError, EOFError, ValueError) as exc:
        if conn is not None:
            conn.close()
        return None, f"no server at {path} ({exc.__class__.__name__})"
    if "pid" not in first:
        conn.close()
        return None, f"refused: {first.get('refuse')}"
    pid = first["pid"]

    def forward(signum, frame):
        try:
            os.killpg(pid, signum)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        return int(_recv(conn)[0]["rc"]), f"served by {pid}"
    except (OSError, EOFError, ValueError, KeyError):
        print(f"rlcv: error: the command's process ({pid}) ended without an exit status "
              "(killed?)", file=sys.stderr)
        return 1, f"served by {pid}, lost"
    finally:
        conn.close()


def client(argv: list[str]) -> int:
    """`rlcv ARGS` through the server when it can serve them, else in this process.
    RLCV_FORKSERVER_TRACE=1 prints which, and why, to stderr."""
    from rlcv.stagetimes import _process_start

    start = _process_start()
    rc, how = _served(argv, start)
    if os.environ.get("RLCV_FORKSERVER_TRACE"):
        print(f"rlcv.forkserver: {how}", file=sys.stderr, flush=True)
    return run_command(argv, start) if rc is None else rc


_SHIM = """#!/bin/sh
# written by rlcv.forkserver: `rlcv` through the warm server while `dvc repro` runs
exec {python} -m rlcv.forkserver client "$@"
"""


@contextmanager
def serving():
    """Within: the client as the `rlcv` first on PATH, and (unless RLCV_FORKSERVER=off) a
    server started, RLCV_FORKSERVER naming its socket; both in os.environ, which DVC hands
    to the stages. The server is stopped on leaving. Yields the server's process or None."""
    off = os.environ.get("RLCV_FORKSERVER") == "off" or not hasattr(socket, "send_fds")
    saved = {k: os.environ.get(k) for k in ("PATH", "RLCV_FORKSERVER", "RLCV_FORKSERVER_PID")}
    with tempfile.TemporaryDirectory(prefix="rlcv-fork-") as tmp:
        sock, shim = Path(tmp) / "socket", Path(tmp) / "rlcv"
        shim.write_text(_SHIM.format(python=shlex.quote(sys.executable)))
        shim.chmod(0o755)
        proc = None if off else subprocess.Popen(
            [sys.executable, "-m", "rlcv.forkserver", "serve", str(sock)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.environ["PATH"] = f"{tmp}{os.pathsep}{os.environ.get('PATH', '')}"
        if proc is not None:
            os.environ["RLCV_FORKSERVER"] = str(sock)
            os.environ["RLCV_FORKSERVER_PID"] = str(proc.pid)
        try:
            yield proc
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(argv[1])
        return 0
    if argv[:1] == ["client"]:
        return client(argv[1:])
    print("usage: python -m rlcv.forkserver serve SOCKET | client ARGS...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
