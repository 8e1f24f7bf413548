"""Synthetic raw captures with known noise, for the calibration's tests and benchmarks.

A sensor is the project's own noise model at one ISO (``A``, ``B`` normalised, per
channel; e.g. ``build_sensor(conf/sensor/generic_aps_c.yaml).params(iso)``), expressed in
DN: photon noise ``K·Poisson(s/K)`` with ``K = A·(white − black)`` DN per electron, so
``var = A·span·s``; a signal-independent read noise of variance ``B·span²``, Gaussian or
Tukey-λ; optional row noise, dark shading and hot pixels; rounded to integers (the files
then also hold quantisation noise, ``1/12`` DN²) and clipped to ``[0, white]``. Frames
are ``(H, W)`` uint16 mosaics written by :func:`data_gen.raw.write_dng`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.ndimage import gaussian_filter

from data_gen.cfa import PLANE_COLOUR, plane_offsets
from data_gen.raw import write_dng

QUANTISATION = 1 / 12  # DN², variance of rounding to integers


@dataclass
class SyntheticSensor:
    """Noise in normalised units per colour channel R, G, B (``a``, ``b`` ``(3,)``), the
    levels in DN, and the optional extras (DN): ``row_sigma`` (per sensor row and frame),
    ``tukey_lambda`` (read noise of Tukey-λ shape with variance ``b·span²``; ``None`` =
    Gaussian), ``shading`` (``(H, W)`` fixed pattern added to every frame), ``hot``
    (``(K, 2)`` photosite rows, columns) at ``+hot_dn``."""

    a: np.ndarray
    b: np.ndarray
    black: float
    white: float
    iso: float
    pattern: str = "RGGB"
    row_sigma: float = 0.0
    tukey_lambda: float | None = None
    shading: np.ndarray | None = field(default=None, repr=False)
    hot: np.ndarray | None = field(default=None, repr=False)
    hot_dn: float = 400.0

    @property
    def span(self) -> float:
        return self.white - self.black

    def per_photosite(self, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A per-colour ``(3,)`` value laid out on the mosaic ``(H, W)``."""
        out = np.empty(shape)
        for (dy, dx), c in zip(plane_offsets(self.pattern), PLANE_COLOUR, strict=True):
            out[dy::2, dx::2] = values[c]
        return out

    def truth(self) -> dict:
        """What a calibration should find, per packed plane R, Gr, Gb, B: ``A``; ``B`` with
        the row noise and quantisation the files hold; the read variance in DN²."""
        a = np.array([self.a[c] for c in PLANE_COLOUR])
        b = np.array([self.b[c] for c in PLANE_COLOUR])
        extra = (self.row_sigma**2 + QUANTISATION) / self.span**2
        return {"A": a, "B": b + extra, "read_var_dn2": (b + extra) * self.span**2}


def capture(sensor: SyntheticSensor, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One raw frame ``(H, W)`` uint16 of ``signal`` ``(H, W)`` (normalised, the value each
    photosite would record without noise; above 1 clips)."""
    h, w = signal.shape
    span = sensor.span
    k = sensor.per_photosite(sensor.a, (h, w)) * span  # DN per electron
    s = np.clip(signal, 0, None) * span
    shot = rng.poisson(s / k) * k
    read_var = sensor.per_photosite(sensor.b, (h, w)) * span**2
    if sensor.tukey_lambda is None:
        read = rng.standard_normal((h, w)) * np.sqrt(read_var)
    else:
        lam = sensor.tukey_lambda
        unit = stats.tukeylambda.ppf(rng.uniform(size=(h, w)), lam)
        read = unit * np.sqrt(read_var / stats.tukeylambda.var(lam))
    dn = sensor.black + shot + read
    if sensor.row_sigma > 0:
        dn += rng.standard_normal((h, 1)) * sensor.row_sigma
    if sensor.shading is not None:
        dn += sensor.shading
    if sensor.hot is not None and len(sensor.hot):
        dn[sensor.hot[:, 0], sensor.hot[:, 1]] += sensor.hot_dn
    return np.clip(np.rint(dn), 0, sensor.white).astype(np.uint16)


def vignette(shape: tuple[int, int], falloff: float = 0.2) -> np.ndarray:
    """A smooth radial falloff ``(H, W)``: 1 in the centre, ``1 − falloff`` at the corners."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((y - (h - 1) / 2) ** 2 + (x - (w - 1) / 2) ** 2) / (
        ((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2
    )
    return 1 - falloff * r2


def chart_scene(
    shape: tuple[int, int], rng: np.random.Generator, blur: float = 6.0, patch: int = 64
) -> np.ndarray:
    """A defocused scene ``(H, W)`` after darktable's recipe: the left quarter in deep
    shadow (0, no light), the rest flat patches of about ``patch`` px, levels log-spaced
    from 0.002 to beyond white (clipped highlights), shuffled; blurred by a Gaussian of
    ``blur`` px."""
    h, w = shape
    dark = w // 4
    ty, tx = max(h // patch, 2), max((w - dark) // patch, 2)
    levels = np.geomspace(0.002, 1.3, ty * tx)
    rng.shuffle(levels)
    grid = levels.reshape(ty, tx)
    yi = np.minimum(np.arange(h) * ty // h, ty - 1)
    xi = np.minimum(np.arange(w - dark) * tx // (w - dark), tx - 1)
    scene = np.zeros(shape)
    scene[:, dark:] = grid[yi][:, xi]
    return gaussian_filter(scene, blur, mode="nearest") if blur > 0 else scene


def dark_shading(
    shape: tuple[int, int], rng: np.random.Generator, amplitude: float = 3.0
) -> np.ndarray:
    """A fixed dark pattern ``(H, W)`` DN: a smooth glow from one corner plus column
    offsets, standard deviation about ``amplitude``."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    glow = np.exp(-((y - 1.0) ** 2 + (x - 0.0) ** 2) / 0.15)
    cols = np.repeat(gaussian_filter(rng.standard_normal(w), 1.0)[None], h, 0)
    pattern = glow / glow.std() + cols / cols.std()
    return amplitude * (pattern - pattern.mean()) / pattern.std()


def write_frames(
    out: Path, sensor: SyntheticSensor, signals: list[np.ndarray], stem: str, seed: int = 0,
    exposures: list[float] | None = None,
) -> list[Path]:  # fmt: skip
    """Capture each ``signal`` once and write ``out/<stem>_<i>.dng``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, s in enumerate(signals):
        p = out / f"{stem}_{i:03d}.dng"
        write_dng(
            p,
            capture(sensor, s, rng),
            sensor.pattern,
            sensor.black,
            sensor.white,
            sensor.iso,
            None if exposures is None else exposures[i],
        )
        paths.append(p)
    return paths
