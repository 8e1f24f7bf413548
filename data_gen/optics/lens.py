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
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field, Strict

from data_gen.core.errors import require
from data_gen.core.typed import (
    Count,
    KindSettings,
    Number,
    Positive,
    PositiveOrInf,
    Settings,
    Text,
    check,
    parse,
)
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


class Aberrations(Settings):
    """µm RMS of each term (absent: 0); see :data:`TERMS`."""

    spherical: Number | None = None
    coma: Number | None = None
    astigmatism: Number | None = None
    field_curvature: Number | None = None

    def given(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class StateSettings(Settings):
    focal_length_mm: Positive
    f_number: Positive
    focus_m: PositiveOrInf = math.inf
    defocus_um: Number = 0.0
    aberrations_um: Aberrations | None = None  # own coefficients (no aperture scaling)


def _odd(v: int) -> int:
    check(v >= 1 and v % 2 == 1, "must be an odd integer (PSF window, pixels)")
    return v


class ModelLensSettings(KindSettings):
    """A ``kind: model`` description (module docstring; ``conf/lens/sharp_prime.yaml``)."""

    kind: Literal["model"] = "model"
    name: Text = "lens"
    pixel_pitch_um: Positive
    sensor_mm: tuple[Positive, Positive]  # [height, width]
    wavelengths_nm: list[Positive]
    size: Annotated[int, Strict(), AfterValidator(_odd)]
    oversample: Count | None = None  # null: Nyquist for the bluest channel
    reference_f_number: Positive
    aberrations_um: Aberrations = Field(default_factory=Aberrations)
    chromatic_defocus_um: list[Number] | None = None  # null: none
    states: list[StateSettings] | None = None
    heights: Count = 8
    azimuths: Count = 12
    olpf_separation_um: Number | None = None  # null: no OLPF
    fill_factor: Positive = 1.0


def parse_lens(d: Mapping, channels: int, where: str = "lens") -> LensModel:
    """Validate a ``kind: model`` description; errors name the key (``lens.states[1]...``)."""
    s = parse(ModelLensSettings, d, where)
    require(
        len(s.wavelengths_nm) == channels,
        f"{where}.wavelengths_nm has {len(s.wavelengths_nm)} values but channels = {channels}",
    )
    chroma = s.chromatic_defocus_um or [0.0] * channels
    require(
        len(chroma) == channels,
        f"{where}.chromatic_defocus_um has {len(chroma)} values but channels = {channels}",
    )
    require(
        bool(s.states),
        f"{where}.states is missing or empty: a lens needs at least one state "
        "(focal_length_mm, f_number, focus_m)",
    )
    states = tuple(
        StateSpec(
            st.focal_length_mm,
            st.f_number,
            st.focus_m,
            st.defocus_um,
            None if st.aberrations_um is None else st.aberrations_um.given(),
        )
        for st in s.states
    )
    return LensModel(
        name=s.name,
        pixel_pitch_um=s.pixel_pitch_um,
        sensor_mm=s.sensor_mm,
        wavelengths_nm=tuple(s.wavelengths_nm),
        size=s.size,
        oversample=s.oversample,
        reference_f_number=s.reference_f_number,
        aberrations_um=s.aberrations_um.given(),
        chromatic_defocus_um=tuple(float(v) for v in chroma),
        states=states,
        heights=s.heights,
        azimuths=s.azimuths,
        olpf_separation_um=0.0 if s.olpf_separation_um is None else s.olpf_separation_um,
        fill_factor=s.fill_factor,
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
