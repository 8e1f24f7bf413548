"""Lens descriptions (``conf/lens/*.yaml``, ``kind: model``) and their PSF banks.

A description gives the sensor (pixel pitch µm, sensor size mm, channel wavelengths
nm, OLPF, fill factor), a list of lens states (focal length mm, f-number, focus
distance m, residual defocus µm) and the wavefront aberrations as functions of the
normalised image height ``h`` (0 = centre, 1 = frame corner), in µm RMS of the
Noll-normalised Zernike terms:

* ``spherical`` (Z11), constant over the field;
* ``coma`` (Z7/Z8) ∝ h, oriented along the radius through the patch;
* ``astigmatism`` (Z5/Z6) ∝ h², oriented along the radius;
* ``field_curvature`` (Z4) ∝ h²;
* ``chromatic_defocus_um`` (Z4) per channel: longitudinal chromatic aberration;
* per state ``defocus_um`` (Z4): the focus error of that state.

The lens-level aberrations are given at ``reference_f_number`` and scale with the
pupil radius ``r = N_ref / N`` as the Seidel terms do (spherical r⁴, coma r³,
astigmatism, field curvature and defocus r²); a state may instead give its own
``aberrations_um``. Distortion and lateral colour are not blur and are excluded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from data_gen.errors import InputError, require
from data_gen.optics.bank import FieldBank, LensState
from data_gen.optics.psf import ZERNIKE_NAMES, sensor_psf, validate_psf

# term: (power of h, power of the pupil radius ratio)
TERMS: dict[str, tuple[int, int]] = {
    "spherical": (0, 4),
    "coma": (1, 3),
    "astigmatism": (2, 2),
    "field_curvature": (2, 2),
}


@dataclass(frozen=True)
class StateSpec:
    focal_length_mm: float
    f_number: float
    focus_m: float
    defocus_um: float
    aberrations_um: dict[str, float] | None  # own coefficients (no aperture scaling)


@dataclass(frozen=True)
class LensModel:
    """A validated lens description (see the module docstring for units)."""

    name: str
    pixel_pitch_um: float
    sensor_mm: tuple[float, float]  # (height, width)
    wavelengths_nm: tuple[float, ...]
    size: int
    oversample: int | None
    reference_f_number: float
    aberrations_um: dict[str, float]
    chromatic_defocus_um: tuple[float, ...]
    states: tuple[StateSpec, ...]
    heights: int
    azimuths: int
    olpf_separation_um: float
    fill_factor: float


def _num(d: Mapping, key: str, where: str, default=None, positive=False, allow_inf=False):
    v = d.get(key, default)
    require(v is not None, f"{where}.{key} is missing")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{where}.{key} = {v!r} is not a number") from None
    require(
        math.isfinite(x) or (allow_inf and x == math.inf), f"{where}.{key} = {v!r} is not finite"
    )
    if positive:
        require(x > 0, f"{where}.{key} = {v!r} must be > 0")
    return x


def _aberrations(d: Mapping | None, where: str) -> dict[str, float]:
    out = {}
    for k, v in (d or {}).items():
        require(k in TERMS, f"{where}.{k}: unknown aberration; use {sorted(TERMS)}")
        out[k] = _num({k: v}, k, where)
    return out


def parse_lens(d: Mapping, channels: int, where: str = "lens") -> LensModel:
    """Validate a ``kind: model`` description; errors name the key (``lens.states[1]...``)."""
    wl = d.get("wavelengths_nm")
    require(isinstance(wl, (list, tuple)) and wl, f"{where}.wavelengths_nm is missing")
    require(
        len(wl) == channels,
        f"{where}.wavelengths_nm has {len(wl)} values but channels = {channels}",
    )
    wavelengths = tuple(_num({"w": w}, "w", f"{where}.wavelengths_nm", positive=True) for w in wl)
    sensor = d.get("sensor_mm")
    require(
        isinstance(sensor, (list, tuple)) and len(sensor) == 2,
        f"{where}.sensor_mm = {sensor!r}: give [height, width] in mm",
    )
    hw = tuple(_num({"v": v}, "v", f"{where}.sensor_mm", positive=True) for v in sensor)
    size = d.get("size")
    require(
        isinstance(size, int) and size >= 1 and size % 2 == 1,
        f"{where}.size = {size!r} must be an odd integer (PSF window, pixels)",
    )
    chroma = d.get("chromatic_defocus_um") or [0.0] * channels
    require(
        len(chroma) == channels,
        f"{where}.chromatic_defocus_um has {len(chroma)} values but channels = {channels}",
    )
    states_in = d.get("states")
    require(
        isinstance(states_in, (list, tuple)) and len(states_in) > 0,
        f"{where}.states is missing or empty: a lens needs at least one state "
        "(focal_length_mm, f_number, focus_m)",
    )
    states = []
    for i, s in enumerate(states_in):
        w = f"{where}.states[{i}]"
        require(isinstance(s, Mapping), f"{w} = {s!r} must be a mapping")
        states.append(
            StateSpec(
                _num(s, "focal_length_mm", w, positive=True),
                _num(s, "f_number", w, positive=True),
                _num(s, "focus_m", w, default=math.inf, positive=True, allow_inf=True),
                _num(s, "defocus_um", w, default=0.0),
                _aberrations(s["aberrations_um"], f"{w}.aberrations_um")
                if s.get("aberrations_um") is not None
                else None,
            )
        )
    heights, azimuths = d.get("heights", 8), d.get("azimuths", 12)
    require(isinstance(heights, int) and heights >= 1, f"{where}.heights = {heights!r} >= 1")
    require(isinstance(azimuths, int) and azimuths >= 1, f"{where}.azimuths = {azimuths!r} >= 1")
    olpf = d.get("olpf_separation_um")
    return LensModel(
        name=str(d.get("name", "lens")),
        pixel_pitch_um=_num(d, "pixel_pitch_um", where, positive=True),
        sensor_mm=hw,  # type: ignore[arg-type]
        wavelengths_nm=wavelengths,
        size=size,
        oversample=d.get("oversample"),
        reference_f_number=_num(d, "reference_f_number", where, positive=True),
        aberrations_um=_aberrations(d.get("aberrations_um"), f"{where}.aberrations_um"),
        chromatic_defocus_um=tuple(
            _num({"v": v}, "v", f"{where}.chromatic_defocus_um") for v in chroma
        ),
        states=tuple(states),
        heights=heights,
        azimuths=azimuths,
        olpf_separation_um=0.0
        if olpf is None
        else _num(d, "olpf_separation_um", where, positive=False),
        fill_factor=_num(d, "fill_factor", where, default=1.0, positive=True),
    )


def zernike_at(
    lens: LensModel, state: StateSpec, height: float, azimuth: float, channel: int
) -> dict[int, float]:
    """Zernike OPD (Noll index -> µm RMS) at image height ``height`` (0..1) and ``azimuth``
    (radians, y down) for one channel: the Seidel-like terms rotated to the radius."""
    if state.aberrations_um is not None:
        ab, r = state.aberrations_um, 1.0
    else:
        ab, r = lens.aberrations_um, lens.reference_f_number / state.f_number

    def term(name: str) -> float:
        hp, rp = TERMS[name]
        return ab.get(name, 0.0) * height**hp * r**rp

    coma, astig = term("coma"), term("astigmatism")
    defocus = term("field_curvature") + lens.chromatic_defocus_um[channel] * r**2 + state.defocus_um
    z = ZERNIKE_NAMES
    return {
        z["spherical"]: term("spherical"),
        z["coma_x"]: coma * math.cos(azimuth),
        z["coma_y"]: coma * math.sin(azimuth),
        z["astig_0"]: astig * math.cos(2 * azimuth),
        z["astig_45"]: astig * math.sin(2 * azimuth),
        z["defocus"]: defocus,
    }


def model_bank(
    lens: LensModel, description: dict | None = None, progress: bool = False
) -> FieldBank:
    """Compute the polar bank: states × heights (0..1) × azimuths × channels.

    Each PSF is computed at its own azimuth (the aberrations rotated exactly), with the
    OLPF and pixel aperture folded in. On the axis (h = 0) every azimuth shares one PSF.
    """
    from tqdm import tqdm

    heights = np.linspace(0.0, 1.0, lens.heights) if lens.heights > 1 else np.zeros(1)
    azimuths = 2 * math.pi * np.arange(lens.azimuths) / lens.azimuths
    c, k = len(lens.wavelengths_nm), lens.size
    grid = np.zeros((len(lens.states), len(heights), len(azimuths), c, k, k), np.float32)
    total = len(lens.states) * len(heights) * len(azimuths)
    with tqdm(total=total, desc=f"PSF bank {lens.name}", unit="psf", disable=not progress) as bar:
        for s, st in enumerate(lens.states):
            for i, h in enumerate(heights):
                for j, az in enumerate(azimuths):
                    if h == 0 and j > 0:
                        grid[s, i, j] = grid[s, i, 0]
                    else:
                        psf = np.stack(
                            [
                                sensor_psf(
                                    wl,
                                    st.f_number,
                                    lens.pixel_pitch_um,
                                    k,
                                    zernike_at(lens, st, float(h), float(az), ch),
                                    lens.olpf_separation_um,
                                    lens.fill_factor,
                                    lens.oversample,
                                )
                                for ch, wl in enumerate(lens.wavelengths_nm)
                            ]
                        )
                        where = f"lens {lens.name} state {s} h={h:.3f} az={az:.3f}"
                        grid[s, i, j] = validate_psf(psf, c, where)
                    bar.update(1)
    states = [LensState(st.focal_length_mm, st.f_number, st.focus_m) for st in lens.states]
    return FieldBank(
        states=states,
        name=lens.name,
        sensor_hw=lens.sensor_mm,
        grid=grid,
        geometry="polar",
        axis1=heights,
        axis2=azimuths,
        description=dict(description or {}),
    )
