"""File systems a test needs: a small or read-only tmpfs (a full disk, a read-only
directory), mounted where root may, skipped with the reason elsewhere."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False):
    path.mkdir()
    opts = f"size={size}" + (",ro" if readonly else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)
