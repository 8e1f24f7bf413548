"""Sensor noise beyond Poisson–Gaussian: the pieces of the physical models (ELD, PMN;
docs/design.md §10), as pure functions.

Signals and noise are in normalised linear units (0 = black level, 1 = white level) unless
named ``_dn`` (raw DN). Functions marked *numpy or torch* take either and return the same
kind (the batched renderer runs them on numpy and on torch with the same operations); they
compute in float64 where rounding would otherwise differ between the two, and return
float32.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.ndimage import gaussian_filter

from data_gen.noise import is_torch

# uniforms u in [0, 1) on a 2^-24 grid (float32) are moved by half a step into (0, 1), so
# the Tukey-λ quantile stays finite for λ < 0
HALF_STEP = 2.0**-25
# the Tukey-λ quantile at λ = 0 is the logistic's; |λ| below this is taken as this (the
# quantile is continuous in λ: the two differ by < 1e-4 of the logistic's spread)
LAMBDA_EPS = 1e-4
NORMAL_LAMBDA = 0.14  # the Tukey-λ closest to a normal distribution


def _f64(x):
    return x.double() if is_torch(x) else np.asarray(x, np.float64)


def _f32(x):
    return x.float() if is_torch(x) else np.asarray(x, np.float32)


@functools.lru_cache(maxsize=4096)
def tukey_lambda_std(lam: float) -> float:
    """Standard deviation of the standard Tukey-λ distribution (finite for λ > −1/2)."""
    lam = float(lam)
    if abs(lam) < LAMBDA_EPS:
        lam = LAMBDA_EPS if lam >= 0 else -LAMBDA_EPS
    from scipy import stats  # when used: its import costs every command 0.4 s

    return float(math.sqrt(stats.tukeylambda.var(lam)))


def tukey_lambda_quantile(u, lam):
    """``Q(u) = (u^λ − (1 − u)^λ)/λ`` of uniforms ``u`` in [0, 1) (float32 on a 2^-24
    grid; shifted by half a step into (0, 1)) and shapes ``lam`` broadcastable to ``u``
    (numpy or torch). Computed in float64, returned float32. λ = 0.14 is nearly normal;
    λ < 0.14 has longer tails (ELD's read noise)."""
    u = _f64(u) + HALF_STEP
    lam = _f64(lam)
    lam = lam + (abs(lam) < LAMBDA_EPS) * LAMBDA_EPS  # λ = 0: the logistic's quantile
    return _f32((u**lam - (1 - u) ** lam) / lam)


def quantised(signal, noise, ob: float, span: float):
    """The noise ``n'`` that makes ``signal + n'`` the sensor's output ``signal + noise``
    rounded to whole DN: ``(rint(ob + (s + n)·span) − ob)/span − s`` (``ob`` black level,
    ``span = white − ob``, both DN). numpy or torch, computed in float64, float32 out."""
    s = _f64(signal)
    v = s + _f64(noise)
    dn = ob + v * span
    dn = dn.round() if is_torch(dn) else np.rint(dn)
    return _f32((dn - ob) / span - s)


def row_field(z: np.ndarray, dy: list[int], step: int, rows: int) -> np.ndarray:
    """Row offsets of a patch from one standard normal per sensor row, ``z`` ``(H,)`` (the
    patch's photosite rows), laid out on the stored channels: channel ``k`` row ``i`` takes
    ``z[i·step + dy[k]]``. Packed Bayer planes: ``step = 2``, ``dy`` the plane's row in the
    2×2 block (R and Gr share a sensor row, Gb and B the next); RGB: ``step = 1``,
    ``dy = 0``. Returns ``(C', rows)`` float32."""
    idx = np.arange(rows)[None, :] * step + np.asarray(dy)[:, None]
    return z[idx].astype(np.float32)


def crop_position(y: int, x: int, size: tuple[int, int], frame: tuple[int, int], plane_hw,
                  plane_size: tuple[int, int]) -> tuple[int, int]:  # fmt: skip
    """Top-left ``(r, c)`` in a sensor map of ``plane_hw`` = (h, w) of a crop of ``plane_size``
    for a patch of ``size`` = (H, W) photosites at ``(y, x)`` in a frame of ``frame`` =
    (H_f, W_f): the map position of the patch's centre at the same fraction of the frame
    (a photograph fills the sensor), clamped inside the map."""
    (h, w), (ph, pw) = plane_hw, plane_size
    fy = (y + size[0] / 2) / frame[0]
    fx = (x + size[1] / 2) / frame[1]
    r = round(fy * h - ph / 2)
    c = round(fx * w - pw / 2)
    return min(max(r, 0), h - ph), min(max(c, 0), w - pw)


def synthetic_shading(plane_hw: tuple[int, int], seed: int) -> np.ndarray:
    """A unit dark-shading pattern ``(4, h, w)`` float32 (planes R, Gr, Gb, B; mean 0 and
    standard deviation 1 per plane): a smooth amplifier glow from one corner, column offsets
    shared by every plane, and a little smooth texture per plane — the structures of PMN's
    dark-shading maps. Scaled by a per-ISO amplitude in DN."""
    h, w = plane_hw
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    glow = np.exp(-((y - 1.0) ** 2 + x**2) / 0.15)
    cols = gaussian_filter(rng.standard_normal(w), 1.0)
    base = glow / glow.std() + np.repeat(cols[None] / cols.std(), h, 0)
    out = np.empty((4, h, w), np.float32)
    for p in range(4):
        tex = gaussian_filter(rng.standard_normal((h, w)), 2.0)
        pattern = base + 0.5 * tex / tex.std()
        out[p] = (pattern - pattern.mean()) / pattern.std()
    return out
