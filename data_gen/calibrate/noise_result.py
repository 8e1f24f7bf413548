"""One ISO of a noise calibration (:func:`data_gen.calibrate.noise.calibrate_iso`; what
``noise.json`` holds under ``isos.<ISO>``) as its readers take it: the report page, the
generator's sensor, the command's summary."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, InstanceOf

from data_gen.calibrate.fit import LineFit
from data_gen.core.typed import Record, parse

# the dark frames' statistics (dark.json's per-ISO entry), their shading (4, h, w) and
# their read-noise residuals per plane
DarkStats = tuple[InstanceOf[dict], InstanceOf[np.ndarray], InstanceOf[np.ndarray]]


class IsoNoise(Record):
    """The noise of one ISO, per Bayer plane R, Gr, Gb, B: ``σ²(v) = A·max(v, 0) + B`` in
    units of the normalised signal, the levels (DN) and what it was measured from. A key
    the method does not give is None (``A`` from dark frames alone without ``k1``; ``r2``
    without a fit; ``k1``, ``k0`` without the frames' ISO).

    In memory only (not in ``noise.json``): ``line_fits`` (the fits, for their figure) and
    ``dark`` (the dark frames' statistics, shading and residuals)."""

    method: str  # photon_transfer, single or dark
    frames: list[str]  # the files used
    white: float  # DN
    black: list[float]  # DN, the signal's zero
    black_source: str = "file"  # or "dark frames" (measured)
    black_file: list[float] | None = None  # DN, the file's own black level
    A: list[float] | None = None
    A_source: str | None = None  # "k1 (hypothesised)" for A from dark frames alone
    B: list[float] | None = None
    r2: list[float] | None = None
    k1: list[float] | None = None  # DN/DN: the project's raw model at ISO 100
    k0: list[float] | None = None  # DN²
    dark_frames: int | None = None  # how many dark frames the statistics are from
    line_fits: list[InstanceOf[LineFit]] | None = Field(None, alias="_fits")
    dark: DarkStats | None = Field(None, alias="_dark")

    @classmethod
    def of(cls, result: dict[str, Any], where: str) -> IsoNoise:
        """One ISO's result (``calibrate_iso``'s, or ``noise.json``'s entry) typed; one line
        naming ``where``, the key and the value otherwise."""
        return parse(cls, result, where)
