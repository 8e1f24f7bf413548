"""A warm interpreter for the tests' commands: ``python -m MODULE args`` forked from a
process that has already imported torch, Lightning, Hydra and the project.

A fresh interpreter spends 2–9 s of CPU importing before a command does anything (Lightning
alone pulls in ``torch._dynamo``); the suite runs a few hundred commands on two cores.
Each command still runs in its own process — its own pid, working directory, environment,
stdin from ``/dev/null``, stdout and stderr captured, ``__main__`` run by :mod:`runpy` as
``-m`` runs it, ``atexit`` handlers and exit code as a fresh interpreter's — only the
imports are shared. Nothing is run before the fork (no torch op, no thread pool, no
logging set-up), so the child starts in the state a fresh import leaves.

The server answers one command at a time per test process; :func:`run` falls back to a
fresh interpreter when it is busy (a test running commands side by side) or when
``RESIDUAL_TRAIN_TEST_FRESH=1``. Tests about the interpreter itself (installing the
package, import-time behaviour) use :mod:`subprocess` directly.

Protocol (a Unix socket, one JSON line each way): the request ``{module, args, cwd, env,
stdout, stderr}`` (the last two: files the child writes), the answers ``{"pid": …}`` when
forked, then ``{"code": …}`` when it has exited.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

FRESH_ENV = "RESIDUAL_TRAIN_TEST_FRESH"
READY_TIMEOUT = 300  # s: the preload, on a loaded machine
# what the commands import; a module missing here (an optional extra) is simply not preloaded
PRELOAD = (
    "numpy",
    "scipy.ndimage",
    "h5py",
    "torch",
    "pytorch_lightning",
    "hydra",
    "omegaconf",
    "pydantic",
    "data_gen.generate",
    "residual_train.training.train",
    "residual_train.release.export",
    "residual_train.deploy.model",
    "residual_train.evaluate.run",
)


# ---- the server (python -m tests.helpers.warm SOCKET) -----------------------------------
def _child(req: dict) -> None:
    """Run one command in this forked process; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own group: a timeout kills the command and its workers
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            f = os.open(path, flags, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.path[0] = os.getcwd()  # as `python -m` sets it
        sys.argv = [req["module"], *req["args"]]
        # a fresh `-m` has not imported the module it runs (a package runs its __main__)
        if not hasattr(sys.modules.get(req["module"]), "__path__"):
            sys.modules.pop(req["module"], None)
        try:
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(path: str) -> None:
    """Preload, then fork one child per request, serially (until the test process ends)."""
    for m in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(m)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)
    print("ready", flush=True)
    while True:
        conn, _ = sock.accept()
        # (a hung-up client also makes the closing flush fail: ignored, as the writes are)
        with contextlib.suppress(OSError), conn, conn.makefile("rwb") as f:
            line = f.readline()
            if not line:
                continue
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(req)
            # a client that timed out has killed the command and hung up: reap it, go on
            with contextlib.suppress(OSError):
                f.write(json.dumps({"pid": pid}).encode() + b"\n")
                f.flush()
            _, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                f.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                f.flush()


# ---- the client (one server per test process) --------------------------------------------
_server: tuple[subprocess.Popen, str] | None = None
_busy = threading.Lock()


def _start(root: Path) -> tuple[subprocess.Popen, str]:
    global _server
    if _server is None or _server[0].poll() is not None:
        home = tempfile.mkdtemp(prefix="rt-warm-")
        path = str(Path(home) / "s")
        p = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.warm", path],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = ""
        if select.select([p.stdout], [], [], READY_TIMEOUT)[0]:
            ready = p.stdout.readline().strip()
        if ready != "ready":
            p.kill()
            raise RuntimeError(f"the warm interpreter did not start: {ready!r}")
        atexit.register(shutil.rmtree, home, ignore_errors=True)  # runs after the kill
        atexit.register(p.kill)
        _server = (p, path)
    return _server


def run(
    module: str, args: list[str], cwd: Path, env: dict, timeout: float, root: Path
) -> subprocess.CompletedProcess:
    """``python -m module *args`` as :func:`subprocess.run` with ``capture_output=True,
    text=True`` would return it (``TimeoutExpired`` on a timeout, the command killed)."""
    argv = [sys.executable, "-m", module, *args]
    if os.environ.get(FRESH_ENV) == "1" or not _busy.acquire(blocking=False):
        return subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
        )
    try:
        _, path = _start(root)
        with tempfile.TemporaryDirectory(prefix="rt-cmd-") as d:
            out, err = Path(d, "stdout"), Path(d, "stderr")
            req = {
                "module": module,
                "args": list(args),
                "cwd": str(Path(cwd).resolve()),
                "env": dict(env),
                "stdout": str(out),
                "stderr": str(err),
            }
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                f = s.makefile("rwb")
                f.write(json.dumps(req).encode() + b"\n")
                f.flush()
                pid = json.loads(f.readline())["pid"]
                s.settimeout(timeout)
                try:
                    code = json.loads(f.readline())["code"]
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(
                        argv,
                        timeout,
                        out.read_text(errors="replace"),
                        err.read_text(errors="replace"),
                    ) from None
            return subprocess.CompletedProcess(
                argv, code, out.read_text(errors="replace"), err.read_text(errors="replace")
            )
    finally:
        _busy.release()


if __name__ == "__main__":
    from data_gen.core.cli import die_with_parent

    die_with_parent()  # no thread here: a fork copies only the forking one
    serve(sys.argv[1])
