"""Optics: PSFs (``psf``), lens descriptions (``lens``), measured grids (``grid``),
PSF banks and their storage (``bank``), the atlas plot (``atlas``).

``python -m data_gen.optics bank|atlas lens=NAME out=FILE`` precomputes a bank or
draws one (see ``__main__``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from data_gen.errors import InputError, require
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
from data_gen.optics.grid import grid_bank, interpolate_grid, load_psf_grid
from data_gen.optics.lens import LensModel, model_bank, parse_lens, zernike_at
from data_gen.optics.psf import (
    ZERNIKE_NAMES,
    apply_sensor_mtf,
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

KINDS = ("zernike", "file", "model", "grid", "bank")

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


def build_bank(
    lens: Mapping, channels: int, cache_dir: str | Path | None = None, progress: bool = False
) -> PSFBank:
    """The PSF bank a ``lens`` config describes (``kind`` one of :data:`KINDS`).

    ``model`` and ``grid`` banks are cached in ``cache_dir`` keyed by the description.
    """
    kind = lens.get("kind")
    if kind == "zernike":
        for key in ("f_number", "pixel_pitch_um", "wavelengths_nm", "size"):
            require(lens.get(key) is not None, f"lens.{key} is missing from the lens config")
        wl = list(lens["wavelengths_nm"])
        require(
            len(wl) == channels,
            f"lens.wavelengths_nm has {len(wl)} values but channels = {channels}",
        )
        return zernike_bank(
            wl,
            float(lens["f_number"]),
            float(lens["pixel_pitch_um"]),
            int(lens["size"]),
            lens.get("zernike_um"),
            lens.get("oversample"),
            lens.get("focal_length_mm"),
            lens.get("focus_m"),
        )
    if kind == "file":
        require(
            lens.get("path") not in (None, "???"),
            "lens.path is missing: give the PSF file as lens.path=FILE (.npy, .npz or image)",
        )
        return PSFBank(load_psf_file(lens["path"], channels), name=Path(lens["path"]).name)
    if kind == "model":
        model = parse_lens(lens, channels)  # validate before touching the cache
        return cached_bank(
            dict(lens), channels, cache_dir, lambda: model_bank(model, dict(lens), progress)
        )
    if kind == "grid":
        return cached_bank(dict(lens), channels, cache_dir, lambda: grid_bank(lens, channels))
    if kind == "bank":
        require(
            lens.get("path") not in (None, "???"),
            "lens.path is missing: give the bank file as lens.path=FILE.h5",
        )
        bank = load_bank(lens["path"])
        require(
            bank.channels == channels,
            f"lens.path = {lens['path']}: the bank has {bank.channels} channels, "
            f"channels = {channels}",
        )
        return bank
    raise InputError(f"lens.kind = {kind!r}: use one of {', '.join(KINDS)}")
