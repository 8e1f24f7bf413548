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
        u = rng.uniform(size=(h, w))
        # the Tukey-λ quantile function (λ ≠ 0), in closed form
        unit = (u**lam - (1 - u) ** lam) / lam if lam != 0 else np.log(u / (1 - u))
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


# ---- chart captures through a lens ------------------------------------------------------


def chart_homography(
    shape: tuple[int, int], square: float, angle_deg: float = 5.0, tilt: float = 0.05
) -> np.ndarray:
    """A chart of ``square``-pixel squares slanted by ``angle_deg``, its square (0, 0)
    corner at the frame centre, with a mild perspective (``tilt``: relative change of
    scale across the frame)."""
    h, w = shape
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    per = tilt / max(h, w)
    return np.array(
        [
            [square * c, -square * s, (w - 1) / 2],
            [square * s, square * c, (h - 1) / 2],
            [per * square * 0.6, per * square * 0.8, 1.0],
        ]
    )


def chart_capture(
    psf_at,
    shape: tuple[int, int],
    grid: tuple[int, int],
    homography: np.ndarray,
    k: tuple[float, float] = (0.0, 0.0),
    levels: tuple[float, float] = (0.1, 0.9),
    noise: float = 0.01,
    seed: int = 0,
    supersample: int = 32,
) -> tuple[np.ndarray, dict]:
    """A capture ``(C, H, W)`` of a checkerboard through a field-varying lens: the ideal
    frame (:func:`data_gen.calibrate.chart.render_chart`, radial distortion ``k``) is
    blurred in each cell of a ``grid`` = (rows, cols) division of the frame by
    ``psf_at(fy, fx)`` ``(C, K, K)``, the PSF at the cell centre (fractions of the frame),
    plus Gaussian noise of ``noise`` (of the range [0, 1]). Returns the capture and the
    truth: ``{"psfs": (rows, cols, C, K, K), "k": k}``."""
    from scipy.signal import fftconvolve

    from data_gen.calibrate.chart import render_chart

    h, w = shape
    sharp = render_chart(shape, homography, k, levels=levels, supersample=supersample)
    rows, cols = grid
    psfs = np.stack(
        [
            np.stack([np.asarray(psf_at((r + 0.5) / rows, (c + 0.5) / cols)) for c in range(cols)])
            for r in range(rows)
        ]
    )
    ch, kk = psfs.shape[2], psfs.shape[-1]
    m = kk // 2
    padded = np.pad(sharp, m, mode="edge")
    out = np.zeros((ch, h, w))
    for r in range(rows):
        y0, y1 = r * h // rows, (r + 1) * h // rows
        for c in range(cols):
            x0, x1 = c * w // cols, (c + 1) * w // cols
            region = padded[y0 : y1 + 2 * m, x0 : x1 + 2 * m]
            for i in range(ch):
                out[i, y0:y1, x0:x1] = fftconvolve(region, psfs[r, c, i], mode="valid")
    rng = np.random.default_rng(seed)
    out += rng.normal(0, noise, out.shape)
    return out.astype(np.float32), {"psfs": psfs.astype(np.float32), "k": k}
