"""Optics: PSFs (``psf``), lens descriptions (``lens``), measured grids (``grid``),
PSF banks and their storage (``bank``), the atlas plot (``atlas``).

``python -m data_gen.optics bank|atlas lens=NAME out=FILE`` precomputes a bank or
draws one (see ``__main__``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from data_gen.core.errors import require
from data_gen.core.registry import Registry
from data_gen.core.typed import Integer, KindSettings, Number, Positive, parse
from data_gen.optics.bank import (
    FieldBank,
    LensState,
    PSFBank,
    cached_bank,
    frame_position,
    load_bank,
    save_bank,
    zernike_bank,
)
from data_gen.optics.grid import GridLensSettings, grid_bank, interpolate_grid, load_psf_grid
from data_gen.optics.lens import LensModel, model_bank, parse_lens, zernike_at
from data_gen.optics.psf import (
    ZERNIKE_NAMES,
    apply_sensor_mtf,
    inverse_filter,
    load_psf_file,
    noll_to_nm,
    oversampling_for,
    parse_zernike,
    pixel_psf,
    pupil_psf,
    sensor_mtf,
    sensor_psf,
    validate_psf,
    zernike,
)

__all__ = [
    "KINDS",
    "ZERNIKE_NAMES",
    "FieldBank",
    "LensModel",
    "LensState",
    "PSFBank",
    "apply_sensor_mtf",
    "build_bank",
    "cached_bank",
    "frame_position",
    "grid_bank",
    "interpolate_grid",
    "inverse_filter",
    "load_bank",
    "load_psf_file",
    "load_psf_grid",
    "model_bank",
    "noll_to_nm",
    "oversampling_for",
    "parse_lens",
    "parse_zernike",
    "pixel_psf",
    "pupil_psf",
    "save_bank",
    "sensor_mtf",
    "sensor_psf",
    "validate_psf",
    "zernike",
    "zernike_at",
    "zernike_bank",
]


LENSES = Registry("lens")


class ZernikeLensSettings(KindSettings):
    """A ``kind: zernike`` lens: one PSF for the whole frame (``conf/lens/soft_prime.yaml``)."""

    kind: Literal["zernike"] = "zernike"
    f_number: Positive
    pixel_pitch_um: Positive
    wavelengths_nm: list[Number]
    size: Integer
    oversample: Any = None  # sub-samples per pixel; null: Nyquist for the bluest channel
    zernike_um: Any = None  # OPD in µm RMS by name or Noll index (checked by parse_zernike)
    focal_length_mm: Any = None  # recorded in the bank's state
    focus_m: Any = None


class PathLensSettings(KindSettings):
    """A lens given by one file: ``kind: file`` (PSFs) or ``kind: bank`` (a saved bank)."""

    kind: Literal["file", "bank"]
    path: Any = None


@LENSES.register("zernike")
def _zernike(lens: Mapping, channels: int, where: str, **_) -> PSFBank:
    s = parse(ZernikeLensSettings, lens, where)
    wl = s.wavelengths_nm
    require(
        len(wl) == channels,
        f"{where}.wavelengths_nm has {len(wl)} values but channels = {channels}",
    )
    return zernike_bank(
        wl, s.f_number, s.pixel_pitch_um, s.size, s.zernike_um, s.oversample,
        s.focal_length_mm, s.focus_m,
    )  # fmt: skip


def _path(lens: Mapping, where: str, what: str) -> str:
    path = parse(PathLensSettings, lens, where).path
    require(
        path not in (None, "???"),
        f"{where}.path is missing: give the {what} as {where}.path=FILE",
    )
    return str(path)


@LENSES.register("file")
def _file(lens: Mapping, channels: int, where: str, **_) -> PSFBank:
    path = _path(lens, where, "PSF file (.npy, .npz or image)")
    return PSFBank(load_psf_file(path, channels), name=Path(path).name)


@LENSES.register("model")
def _model(lens: Mapping, channels: int, where: str, cache_dir=None, progress=False) -> PSFBank:
    model = parse_lens(lens, channels, where)  # validate before touching the cache
    return cached_bank(
        dict(lens), channels, cache_dir, lambda: model_bank(model, dict(lens), progress)
    )


@LENSES.register("grid")
def _grid(lens: Mapping, channels: int, where: str, cache_dir=None, **_) -> PSFBank:
    parse(GridLensSettings, lens, where)  # validate before touching the cache
    return cached_bank(dict(lens), channels, cache_dir, lambda: grid_bank(lens, channels, where))


@LENSES.register("bank")
def _bank(lens: Mapping, channels: int, where: str, **_) -> PSFBank:
    path = _path(lens, where, "bank file (.h5)")
    bank = load_bank(path)
    require(
        bank.channels == channels,
        f"{where}.path = {path}: the bank has {bank.channels} channels, channels = {channels}",
    )
    return bank


KINDS = tuple(LENSES.names())


def build_bank(
    lens: Mapping, channels: int, cache_dir: str | Path | None = None, progress: bool = False
) -> PSFBank:
    """The PSF bank a ``lens`` config describes (``kind`` names the builder in :data:`LENSES`).

    ``model`` and ``grid`` banks are cached in ``cache_dir`` keyed by the description.
    """
    return LENSES.build(lens, channels, where="lens", cache_dir=cache_dir, progress=progress)
