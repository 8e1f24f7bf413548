"""PSF banks: the PSFs a renderer may use and the rule that picks one per patch.

A patch's position is given as the fraction ``(fy, fx)`` in ``[0, 1]`` of its centre
across the frame (0 = top / left edge). Banks map it to an index into
``psfs`` ``(N, C, K, K)`` float32 (each channel sums to 1); the renderer convolves with
cached transforms of those PSFs and never computes a PSF per patch.

* :class:`PSFBank`: position-independent (one PSF, or a uniform draw from a file of
  kernels).
* :class:`FieldBank`: ``(states, G1, G2, C, K, K)`` with geometry ``polar`` (image
  height × azimuth, from a lens description) or ``grid`` (rows × columns over the
  frame, from a measured PSF grid); nearest grid point, lens state drawn per sample.

Banks are stored as HDF5 (:func:`save_bank` / :func:`load_bank`) with their axes,
lens states and the description they were built from (the attributes read as a
:class:`BankHeader`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml
from pydantic import field_validator

from data_gen.core.errors import InputError, require
from data_gen.core.typed import Record, parse
from data_gen.optics.psf import parse_zernike, pixel_psf, validate_psf

BANK_FORMAT = 1


@dataclass(frozen=True)
class LensState:
    """Lens state recorded with every sample (NaN where the lens model has none)."""

    zoom: float = float("nan")  # focal length, mm
    f_number: float = float("nan")
    focus: float = float("nan")  # focus distance, m; inf = infinity


def frame_position(fy, fx, hw) -> tuple:
    """Fractional position in a frame of ``hw`` = (height, width) -> (image height, azimuth).

    Image height: distance from the frame centre / half diagonal (0..1); azimuth:
    ``atan2(dy, dx)`` in radians with y pointing down. Scalars give floats; arrays (a
    batch of positions and frame sizes) give arrays.
    """
    h, w = hw
    dy, dx = (fy - 0.5) * h, (fx - 0.5) * w
    height, az = np.hypot(dy, dx) / np.hypot(h / 2, w / 2), np.arctan2(dy, dx)
    if np.ndim(height) == 0:
        return float(height), float(az)
    return height, az


@dataclass
class PSFBank:
    """Position-independent PSFs ``(N, C, K, K)``: one, or a uniform draw per sample."""

    psfs: np.ndarray
    states: list[LensState] = field(default_factory=lambda: [LensState()])
    name: str = "psf"
    sensor_hw: tuple[float, float] | None = None  # frame geometry; None = the source frame's

    def locate(self, fy: float, fx: float, frame_hw: tuple[int, int]) -> tuple[float, float]:
        """(image height, azimuth) of a patch centre, in the sensor's geometry when known."""
        return frame_position(fy, fx, self.sensor_hw or frame_hw)

    def index_for(self, fy: float, fx: float, rng: np.random.Generator) -> int:
        n = self.psfs.shape[0]
        return 0 if n == 1 else int(rng.integers(n))

    def state_of(self, index: int) -> LensState:
        return self.states[0]

    @property
    def size(self) -> int:
        return int(self.psfs.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.psfs.shape[1])


class _Polar:
    """``axis1`` image heights, ``axis2`` azimuths: the nearest height and azimuth bin."""

    axes = "state, image_height, azimuth, channel, y, x"

    @staticmethod
    def cell(bank: FieldBank, fy: float, fx: float) -> tuple[int, int]:
        h, az = bank.locate(fy, fx, (1, 1))
        i = int(np.abs(bank.axis1 - h).argmin())
        a = len(bank.axis2)
        return i, round((az % (2 * math.pi)) / (2 * math.pi) * a) % a


class _Grid:
    """``axis1`` / ``axis2`` fractional frame rows / columns: the nearest grid point."""

    axes = "state, row, column, channel, y, x"

    @staticmethod
    def cell(bank: FieldBank, fy: float, fx: float) -> tuple[int, int]:
        return int(np.abs(bank.axis1 - fy).argmin()), int(np.abs(bank.axis2 - fx).argmin())


GEOMETRIES = {"polar": _Polar, "grid": _Grid}
"""How a bank's two field axes are laid out (:attr:`FieldBank.geometry`)."""


@dataclass
class FieldBank(PSFBank):
    """PSFs over lens states and the frame: ``grid`` ``(S, G1, G2, C, K, K)``.

    ``geometry='polar'``: ``axis1`` image heights (0..1, increasing), ``axis2`` azimuths
    (radians, equally spaced from 0). ``geometry='grid'``: ``axis1`` / ``axis2`` the
    fractional row / column positions of the grid points over the frame.
    """

    psfs: np.ndarray = field(init=False)  # the grid's PSFs as (N, C, K, K), a view
    grid: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1, 1, 1, 1), np.float32))
    geometry: str = "polar"
    axis1: np.ndarray = field(default_factory=lambda: np.zeros(1))
    axis2: np.ndarray = field(default_factory=lambda: np.zeros(1))
    description: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.grid.ndim == 6, f"bank grid must be 6-D, got shape {self.grid.shape}")
        s, g1, g2 = self.grid.shape[:3]
        require(
            len(self.states) == s and len(self.axis1) == g1 and len(self.axis2) == g2,
            f"bank axes ({len(self.states)} states, {len(self.axis1)}, {len(self.axis2)}) "
            f"do not match its PSF array {self.grid.shape}",
        )
        require(self.geometry in GEOMETRIES, f"bank geometry {self.geometry!r}")
        self.psfs = self.grid.reshape(-1, *self.grid.shape[3:])

    def cell(self, fy: float, fx: float) -> tuple[int, int]:
        """Nearest grid point of a patch centre at fractional frame position (fy, fx)."""
        return GEOMETRIES[self.geometry].cell(self, fy, fx)

    def index_at(self, fy: float, fx: float, state: int) -> int:
        s, g1, g2 = self.grid.shape[:3]
        require(0 <= state < s, f"lens state {state} is outside 0..{s - 1}")
        i, j = self.cell(fy, fx)
        return (state * g1 + i) * g2 + j

    def index_for(self, fy: float, fx: float, rng: np.random.Generator) -> int:
        s = self.grid.shape[0]
        return self.index_at(fy, fx, 0 if s == 1 else int(rng.integers(s)))

    def state_of(self, index: int) -> LensState:
        return self.states[self.state_number(index)]

    def state_number(self, index: int) -> int:
        """The lens state (0..S-1) of bank PSF ``index``."""
        return int(index) // (self.grid.shape[1] * self.grid.shape[2])


def zernike_bank(
    wavelengths_nm: Sequence[float],
    f_number: float,
    pixel_pitch_um: float,
    size: int,
    zernike_um: Mapping | None = None,
    oversample: int | None = None,
    focal_length_mm: float | None = None,
    focus_m: float | None = None,
    where: str = "lens",
) -> PSFBank:
    """One diffraction + aberration PSF per channel (at that channel's wavelength)."""
    require(
        math.isfinite(f_number) and f_number > 0,
        f"{where}.f_number = {f_number} must be > 0",
    )
    require(pixel_pitch_um > 0, f"{where}.pixel_pitch_um = {pixel_pitch_um} must be > 0")
    require(size >= 1 and size % 2 == 1, f"{where}.size = {size} must be odd and >= 1")
    for w in wavelengths_nm:
        require(w > 0, f"{where}.wavelengths_nm contains {w}; wavelengths must be > 0 nm")
    coeffs = parse_zernike(zernike_um, f"{where}.zernike_um")
    psfs = np.stack(
        [pixel_psf(w, f_number, pixel_pitch_um, size, coeffs, oversample) for w in wavelengths_nm]
    )
    state = LensState(
        zoom=float("nan") if focal_length_mm is None else float(focal_length_mm),
        f_number=float(f_number),
        focus=float("nan") if focus_m is None else float(focus_m),
    )
    return PSFBank(validate_psf(psfs, len(wavelengths_nm), where)[None], [state], "zernike")


# ---- storage -------------------------------------------------------------------------
_STATE_DTYPE = np.dtype([("zoom", "<f8"), ("f_number", "<f8"), ("focus", "<f8")])


def description_hash(description: Mapping, channels: int) -> str:
    """Cache key of a bank: its description, the channel count and the bank format."""
    blob = json.dumps(
        {"lens": description, "channels": channels, "format": BANK_FORMAT},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class BankHeader(Record):
    """The attributes of a bank file (:func:`save_bank`), None where a file lacks one.

    ``format``: :data:`BANK_FORMAT` of the writer; ``geometry``: a key of
    :data:`GEOMETRIES`; ``axes``: the axis names of ``psfs``; ``sensor_hw``: the frame's
    (height, width) the positions refer to, any one unit (None, stored as NaN: the source
    frame's); ``lens``: the description the bank was built from, as YAML, and
    ``lens_hash`` its :func:`description_hash`."""

    format: int | None = None
    name: str | None = None
    geometry: str | None = None
    axes: str | None = None
    sensor_hw: tuple[float, float] | None = None
    lens: str = "{}"
    lens_hash: str | None = None

    @field_validator("sensor_hw")
    @classmethod
    def _frame(cls, hw: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if hw is None or any(math.isnan(v) for v in hw) else hw

    @property
    def description(self) -> dict:
        """The lens description (``{}`` when none is stored)."""
        return yaml.safe_load(self.lens) or {}

    @classmethod
    def of(cls, attrs: Mapping, path: Path) -> BankHeader:
        """``attrs`` of the bank file ``path`` (an :class:`InputError` naming the file and
        the attribute when one has the wrong type)."""
        return parse(cls, dict(attrs), f"PSF bank {path}: attributes")


def save_bank(bank: FieldBank, path: str | Path) -> Path:
    """Write ``bank`` to HDF5 (temporary name, then rename): PSFs, axes, states, lens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", track_order=False) as f:
            f.create_dataset(
                "psfs", data=bank.grid, compression="gzip", shuffle=True, track_times=False
            )
            f.create_dataset("axis1", data=np.asarray(bank.axis1, np.float64), track_times=False)
            f.create_dataset("axis2", data=np.asarray(bank.axis2, np.float64), track_times=False)
            states = np.array(
                [(s.zoom, s.f_number, s.focus) for s in bank.states], dtype=_STATE_DTYPE
            )
            f.create_dataset("states", data=states, track_times=False)
            f.attrs["format"] = BANK_FORMAT
            f.attrs["name"] = bank.name
            f.attrs["geometry"] = bank.geometry
            f.attrs["axes"] = GEOMETRIES[bank.geometry].axes
            f.attrs["sensor_hw"] = np.asarray(bank.sensor_hw or (np.nan, np.nan), np.float64)
            f.attrs["lens"] = yaml.safe_dump(bank.description, sort_keys=True)
            f.attrs["lens_hash"] = description_hash(bank.description, bank.channels)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_bank(path: str | Path) -> FieldBank:
    """Read a bank written by :func:`save_bank`; every PSF is checked (finite, sum 1)."""
    path = Path(path)
    require(path.is_file(), f"PSF bank {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            for key in ("psfs", "axis1", "axis2", "states"):
                require(key in f, f"PSF bank {path} has no dataset {key!r}; is it a bank file?")
            grid = f["psfs"][()]
            axis1, axis2, states = f["axis1"][()], f["axis2"][()], f["states"][()]
            attrs = dict(f.attrs)
    except InputError:
        raise
    except OSError as e:
        raise InputError(f"PSF bank {path} cannot be read: {e}") from None
    head = BankHeader.of(attrs, path)
    require(
        head.format == BANK_FORMAT,
        f"PSF bank {path} has format {head.format}; this version reads {BANK_FORMAT}",
    )
    require(grid.ndim == 6, f"PSF bank {path}: psfs has shape {grid.shape}, expected 6-D")
    bad = ~np.isfinite(grid)
    require(not bad.any(), f"PSF bank {path}: {int(bad.sum())} non-finite PSF values")
    sums = grid.sum(axis=(-2, -1), dtype=np.float64)
    require(
        np.allclose(sums, 1, atol=1e-4),
        f"PSF bank {path}: PSFs are not normalised (sums {sums.min():.4g}..{sums.max():.4g})",
    )
    return FieldBank(
        states=[LensState(*map(float, s)) for s in states],
        name=path.stem if head.name is None else head.name,
        sensor_hw=head.sensor_hw,
        grid=grid.astype(np.float32),
        geometry=str(head.geometry),
        axis1=axis1,
        axis2=axis2,
        description=head.description,
    )


def cached_bank(description: Mapping, channels: int, cache_dir: str | Path | None, build):
    """The bank of ``description`` from ``cache_dir`` (keyed by its hash), else ``build()``
    and store it there. ``cache_dir=None`` disables the cache."""
    if cache_dir is None:
        return build()
    key = description_hash(description, channels)
    path = Path(cache_dir).expanduser() / f"bank-{key[:20]}.h5"
    if path.is_file():
        try:
            return load_bank(path)
        except InputError:
            pass  # damaged cache entry: rebuild and replace it
    bank = build()
    try:
        save_bank(bank, path)
    except OSError:
        pass  # an unwritable cache only costs time
    return bank
