"""Where the project's files are, in a checkout or an installed wheel.

* :data:`CONF`: the one Hydra config tree — the checkout's ``conf/`` beside the packages,
  or the copy a wheel installs as ``data_gen/conf`` (the build copies it there).
* :func:`preset_path`: a relative path is taken from the working directory, else from the
  project root, so the shipped presets that name ``../shared/data/...`` work from any
  directory of a checkout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from data_gen.core.environment import environment

PROJECT = Path(__file__).resolve().parents[2]


def _conf_dir() -> Path:
    checkout = PROJECT / "conf"
    if (checkout / "data_gen.yaml").is_file():
        return checkout
    return Path(__file__).resolve().parents[1] / "conf"  # installed from a wheel: data_gen/conf


CONF = _conf_dir()
APPS = CONF / "apps"  # entry points whose `model=` names a trained model (not the group)


def require_new_dir(path: str | Path, key: str = "out_dir") -> Path:
    """``path`` as a directory a command may fill: absent or empty (nothing is overwritten);
    a file or a non-empty directory is an :class:`InputError` naming ``key``."""
    from data_gen.core.errors import require

    p = Path(path)
    require(not p.is_file(), f"{key} = {str(p)!r} is a file, not a directory")
    require(
        not (p.is_dir() and any(p.iterdir())),
        f"{key} = {str(p)!r} already holds files; nothing is overwritten",
    )
    return p


@contextlib.contextmanager
def filled_atomically(out_dir: str | Path) -> Iterator[Path]:
    """``with filled_atomically(out_dir) as tmp:`` fill ``tmp`` (a hidden sibling); on
    success it becomes ``out_dir`` in one rename, on any error it is removed and
    ``out_dir`` is left as it was (absent or empty: see :func:`require_new_dir`)."""
    out_dir = require_new_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        with write_errors_at(out_dir):
            try:
                yield tmp
            except OSError as e:  # name the file as it would have been called
                name = str(e.filename or "")
                if not name.startswith(str(tmp)):
                    raise
                raise OSError(e.errno, e.strerror, str(out_dir) + name[len(str(tmp)) :]) from None
            open_to_umask(tmp)
            if out_dir.exists():
                out_dir.rmdir()  # empty (checked above)
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def os_error_at(e: OSError, path: str | Path) -> OSError:
    """``e`` naming ``path`` when it names no file (``ndarray.tofile``'s "12288 requested and
    3000 written", a flush): with ``ENOSPC`` when the error has no code and ``path``'s file
    system has no space left (the usual cause of a short write)."""
    if e.filename is not None:
        return e
    code, text = e.errno, e.strerror or " ".join(str(e).split())
    if code is None and disk_full(path):
        code = errno.ENOSPC
    if code is not None:
        text = os.strerror(code) + ("" if text == os.strerror(code) else f" ({text})")
    return OSError(code, text, str(path))


# how libraries that are not Python's io (safetensors, onnx, sqlite) say ENOSPC
DISK_FULL_TEXTS = ("No space left on device", "os error 28", "database or disk is full")


@contextlib.contextmanager
def write_errors_at(path: str | Path) -> Iterator[None]:
    """Failures while writing ``path`` as :class:`OSError` naming it: an ``OSError`` that
    names no file (:func:`os_error_at`), and another library's error that says the disk is
    full (safetensors, the ONNX exporter and SQLite raise their own types)."""
    try:
        yield
    except OSError as e:
        raise os_error_at(e, path) from None
    except Exception as e:
        if any(t in str(e) for t in DISK_FULL_TEXTS) or disk_full(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise


def disk_full(path: str | Path) -> bool:
    """Whether the file system ``path`` is written to has (almost) no space left: what a
    short write with no error code, or a writer's own error type (torch's "unexpected
    pos"), means there."""
    for d in (Path(path).parent, *Path(path).parents):
        if d.exists():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(d).free < 1 << 20
            return False
    return False


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` for writing it (same file system: the rename is
    atomic), unique per process and thread, keeping the suffix (writers pick the format by
    it); ``.tmp-`` marks it as a temporary file for the cleaners."""
    tag = f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
    return path.with_name(f".{path.stem}.tmp-{tag}{path.suffix}")


@contextlib.contextmanager
def written_atomically(path: str | Path) -> Iterator[Path]:
    """``with written_atomically(path) as tmp:`` write ``tmp`` (:func:`temporary_sibling`);
    on success it is renamed to ``path`` (which therefore appears only complete), on any
    error it is removed and ``path`` is left as it was. An :class:`OSError` names ``path``
    (:func:`os_error_at`)."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        with write_errors_at(path):
            yield tmp
            open_to_umask(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_to_umask(root: Path) -> None:
    """Give ``root`` (a file or a directory) and everything below it the permissions a plain ``mkdir`` / ``open``
    would have: ``mkdtemp`` (and some writers, e.g. safetensors) create them private."""
    mask = os.umask(0)
    os.umask(mask)
    for p in [root, *(root.rglob("*") if root.is_dir() else ())]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def preset_path(path: str | Path) -> Path:
    """``path`` from the working directory if it exists there, else from :data:`PROJECT`."""
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and (PROJECT / p).exists():
        return PROJECT / p
    return p


def bank_cache_dir() -> Path:
    """Where computed PSF banks are kept: ``conf/data_gen.yaml``'s ``bank_cache`` default
    (``$RESIDUAL_TRAIN_CACHE`` or ``~/.cache/residual-train``, then ``banks``), for callers
    that build a generator pipeline from a stored config rather than through Hydra."""
    return environment().cache_root / "banks"
