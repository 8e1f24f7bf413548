"""Where the project's files are, in a checkout or an installed wheel.

* :data:`CONF`: the one Hydra config tree — the checkout's ``conf/`` beside the packages,
  or the copy a wheel installs as ``data_gen/conf`` (the build copies it there).
* :func:`preset_path`: a relative path is taken from the working directory, else from the
  project root, so the shipped presets that name ``../shared/data/...`` work from any
  directory of a checkout.
"""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _conf_dir() -> Path:
    checkout = PROJECT / "conf"
    if (checkout / "data_gen.yaml").is_file():
        return checkout
    return Path(__file__).resolve().parent / "conf"  # installed from a wheel


CONF = _conf_dir()
APPS = CONF / "apps"  # entry points whose `model=` names a trained model (not the group)


def require_new_dir(path: str | Path, key: str = "out_dir") -> Path:
    """``path`` as a directory a command may fill: absent or empty (nothing is overwritten);
    a file or a non-empty directory is an :class:`InputError` naming ``key``."""
    from data_gen.errors import require

    p = Path(path)
    require(not p.is_file(), f"{key} = {str(p)!r} is a file, not a directory")
    require(
        not (p.is_dir() and any(p.iterdir())),
        f"{key} = {str(p)!r} already holds files; nothing is overwritten",
    )
    return p


def preset_path(path: str | Path) -> Path:
    """``path`` from the working directory if it exists there, else from :data:`PROJECT`."""
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and (PROJECT / p).exists():
        return PROJECT / p
    return p
