"""The project's commands run as a user runs them: ``python -m MODULE key=value ...`` in a
process of their own (forked from a warm interpreter, :mod:`tests.helpers.warm`), output
captured, and what a failure must look like (one line, no traceback)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import warm

ROOT = Path(__file__).resolve().parents[2]


def run_module(
    module: str,
    *args: str,
    env: dict | None = None,
    timeout: float = 300,
    cwd: str | Path = ROOT,
) -> subprocess.CompletedProcess:
    """``python -m module *args`` in ``cwd`` with ``env`` added to this environment
    (forked from a warm interpreter: :mod:`tests.helpers.warm`)."""
    return warm.run(module, list(args), Path(cwd), {**os.environ, **(env or {})}, timeout, ROOT)


def succeeded(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``r``, asserting it exited 0 (the tail of its stderr otherwise)."""
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def one_line_error(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The command failed with ``code`` and one line on stderr holding every needle (and no
    traceback); returns that line."""
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(err) == 1 and err[0].startswith("error: "), r.stderr[-2000:]
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def ends_in_one_error_line(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """As :func:`one_line_error` for a command that ran a library which warns on stderr
    (Lightning): its last line is the one error line, the only one."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and errors == lines[-1:], r.stderr[-2000:]
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]
