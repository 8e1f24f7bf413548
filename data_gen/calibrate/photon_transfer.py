"""Photon transfer (EMVA 1288 style): noise variance against signal from frame pairs.

Two frames ``a``, ``b`` of the same exposure (flat fields, or any static scene such as a
chart) differ only by noise, so the temporal variance at a pixel is ``var(a − b)/2``:
the fixed pattern (dark shading, PRNU, the scene itself) cancels. Pixels are binned by
the mean signal of their neighbours (the 5×5 box without the pixel itself, so that the
selection is independent of the pixel's own noise: binning by the pixel's own noisy mean
would shift each bin's level by the noise it selected); in each bin the variance of the differences about
their mean (which removes a small exposure change between the two frames) gives one
point ``(v, σ²)``. Because ``σ²`` is linear in the signal, a bin spread over a vignetted
flat still gives ``σ² = A·mean(v) + B`` exactly. A pair of dark frames gives one point at
``v = 0`` (``B``): its pixels are not binned, since the dark shading offsets them
without light (and without shot noise). Photosites at or above ``clip`` (normalised) in either frame, or at
0 DN, are left out (clipped: no noise).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from data_gen.calibrate.fit import LineFit, fit_line


def bin_index(v: np.ndarray, bins: int, clip: float) -> np.ndarray:
    """Bin of each normalised signal ``v``: ``bins`` bins even in ``sqrt(v)`` over
    ``[0, clip)`` (finer in the shadows); values below 0 go to bin 0. int64, same shape."""
    t = np.sqrt(np.clip(v, 0, None) / clip) * bins
    return np.minimum(t.astype(np.int64), bins - 1)


def pair_points(
    a_dn: np.ndarray,
    b_dn: np.ndarray,
    black: float,
    white: float,
    bins: int = 64,
    clip: float = 0.98,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One plane of two frames (DN ``(h, w)``) -> per bin ``(mean v, variance, pixels)``,
    each ``(bins,)`` float64 (empty bins have 0 pixels), in normalised units."""
    span = np.float32(white - black)
    a = (a_dn.astype(np.float32) - np.float32(black)) / span
    b = (b_dn.astype(np.float32) - np.float32(black)) / span
    m = 0.5 * (a + b)
    d = a - b
    neighbours = (uniform_filter(m, 5, mode="reflect") * 25 - m) / 24
    ok = (np.maximum(a, b) < clip) & (np.minimum(a_dn, b_dn) > 0)
    idx = bin_index(neighbours, bins, clip)[ok]
    m, d = m[ok].astype(np.float64), d[ok].astype(np.float64)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    s_m = np.bincount(idx, m, minlength=bins)
    s_d = np.bincount(idx, d, minlength=bins)
    s_dd = np.bincount(idx, d * d, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s_m / n
        var = (s_dd - s_d**2 / n) / np.maximum(n - 1, 1) / 2
    return np.nan_to_num(mean), np.nan_to_num(var), n


def dark_point(a_dn: np.ndarray, b_dn: np.ndarray, span: float) -> tuple[float, float, float]:
    """One plane of two dark frames -> ``(0, variance, pixels)``, normalised by ``span``
    (DN); photosites at 0 DN are left out."""
    ok = np.minimum(a_dn, b_dn) > 0
    d = (a_dn.astype(np.float64) - b_dn.astype(np.float64))[ok] / span
    return 0.0, float(d.var(ddof=1) / 2), float(d.size)


def photon_transfer(
    lit_pairs: list[tuple[np.ndarray, np.ndarray]],
    dark_pairs: list[tuple[np.ndarray, np.ndarray]],
    black: np.ndarray,
    white: float,
    bins: int = 64,
    clip: float = 0.98,
    min_pixels: int = 1000,
) -> list[LineFit]:
    """Fit ``σ² = A·v + B`` per plane from frame pairs.

    lit_pairs, dark_pairs: ``[(a, b), ...]`` packed frames ``(4, h, w)`` DN; black:
    ``(4,)`` DN, the signal's zero; white: DN. Points of every lit pair with at least
    ``min_pixels`` pixels, and one point per dark pair, enter the fit. Returns one
    :class:`LineFit` per plane.
    """
    fits = []
    for p in range(lit_pairs[0][0].shape[0]):
        xs, ys, ns = [], [], []
        for a, b in lit_pairs:
            m, v, n = pair_points(a[p], b[p], float(black[p]), white, bins, clip)
            keep = n >= min_pixels
            xs.append(m[keep])
            ys.append(v[keep])
            ns.append(n[keep])
        for a, b in dark_pairs:
            m0, v0, n0 = dark_point(a[p], b[p], white - float(black[p]))
            xs.append(np.array([m0]))
            ys.append(np.array([v0]))
            ns.append(np.array([n0]))
        fits.append(fit_line(np.concatenate(xs), np.concatenate(ys), np.concatenate(ns)))
    return fits
