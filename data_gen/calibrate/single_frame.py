"""``σ² = A·v + B`` from one raw of a scene with smooth regions (Foi et al. 2008's
single-image approach; darktable's recipe: a defocused frame with highlights and shadows).

Per Bayer plane (normalised ``v``), a one-level Haar transform on 2×2 blocks gives the
approximation ``(p00 + p01 + p10 + p11)/4`` and three details; the diagonal one
``(p00 − p01 − p10 + p11)/2`` has variance ``σ²`` for white noise and is 0 for any signal
that varies along x or y alone (edges of a chart, gradients). Coefficients are grouped in
``block × block`` tiles without clipped photosites (at or above ``clip``, or at 0 DN);
a tile is *smooth* when its horizontal / vertical details vary no more than the noise
(texture and curvature make them larger). Smooth tiles are binned by level (bins even in
``sqrt(v)``, so the shadows that fix ``B`` get their own); each bin's variance starts as
a median (robust to tiles that are not smooth after all, corrected for the chi-square
median bias), the line is fitted, and three times the tiles within the 99.9 % chi-square
quantile of the fit are kept and the bins re-estimated by their means (clipping-aware:
a level near white loses its clipped tiles, not its noise).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

from data_gen.calibrate.fit import LineFit, fit_line


def haar(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(h, w)`` -> approximation, diagonal, horizontal, vertical details ``(h/2, w/2)``."""
    h, w = x.shape[0] - x.shape[0] % 2, x.shape[1] - x.shape[1] % 2
    p00, p01 = x[0:h:2, 0:w:2], x[0:h:2, 1:w:2]
    p10, p11 = x[1:h:2, 0:w:2], x[1:h:2, 1:w:2]
    return (
        (p00 + p01 + p10 + p11) / 4,
        (p00 - p01 - p10 + p11) / 2,
        (p00 - p01 + p10 - p11) / 2,
        (p00 + p01 - p10 - p11) / 2,
    )


def tiles(a: np.ndarray, b: int) -> np.ndarray:
    """``(h, w)`` -> ``(h//b · w//b, b·b)``: the whole ``b × b`` tiles, one per row."""
    h, w = a.shape[0] - a.shape[0] % b, a.shape[1] - a.shape[1] % b
    return a[:h, :w].reshape(h // b, b, w // b, b).swapaxes(1, 2).reshape(-1, b * b)


def tile_stats(
    v: np.ndarray, dn_ok: np.ndarray, block: int = 8, clip: float = 0.98
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per whole ``block × block`` tile of coefficients of one plane: the level (mean
    approximation), the noise variance (mean squared diagonal detail) and the structure
    (the larger variance of the horizontal and vertical details), ``(T,)`` float64 each,
    of the tiles without a clipped photosite.

    v: ``(h, w)`` normalised signal; dn_ok: ``(h, w)`` bool, photosites above 0 DN.
    """
    h, w = v.shape[0] - v.shape[0] % 2, v.shape[1] - v.shape[1] % 2
    x = v[:h, :w].astype(np.float64)
    app, dd, dh, dv = haar(x)
    bad = (x >= clip) | ~dn_ok[:h, :w]
    bad2 = bad[0::2, 0::2] | bad[0::2, 1::2] | bad[1::2, 0::2] | bad[1::2, 1::2]
    keep = ~tiles(bad2, block).any(1)
    s2 = (tiles(dd, block) ** 2).mean(1)
    struct = np.maximum(tiles(dh, block).var(1), tiles(dv, block).var(1))
    return tiles(app, block).mean(1)[keep], s2[keep], struct[keep]


def single_frame(
    v: np.ndarray,
    dn_ok: np.ndarray,
    block: int = 4,
    bins: int = 32,
    texture: float = 2.0,
    clip: float = 0.98,
    min_tiles: int = 8,
) -> LineFit | None:
    """Fit ``σ² = A·v + B`` on one plane (see the module docstring); ``None`` when fewer
    than 3 bins hold ``min_tiles`` smooth tiles."""
    mu, s2, struct = tile_stats(v, dn_ok, block, clip)
    return fit_tiles(mu, s2, struct, block * block, bins, texture, min_tiles, clip)


def level_bins(mu: np.ndarray, bins: int, clip: float) -> np.ndarray:
    """Bin of each level: ``bins`` bins even in ``sqrt`` over ``[0, clip)``, below 0 in bin 0."""
    t = np.sqrt(np.clip(mu, 0, None) / clip) * bins
    return np.minimum(t.astype(np.int64), bins - 1)


def fit_tiles(
    mu: np.ndarray,
    s2: np.ndarray,
    struct: np.ndarray,
    dof: int,
    bins: int = 32,
    texture: float = 2.0,
    min_tiles: int = 8,
    clip: float = 0.98,
) -> LineFit | None:
    """The robust binned fit of tile variances ``s2`` (each of ``dof`` coefficients) at
    levels ``mu``, structures ``struct`` (pooled from one or more frames).

    First pass: tiles whose structure is below ``texture`` times their own variance,
    bins by their median variance; then, three times, tiles whose structure and variance
    are both below the 99.9 % chi-square quantile of the fitted model (a test that does
    not select on the tile's own variance), bins by their mean variance."""
    idx = level_bins(mu, bins, clip)
    median_bias = (1 - 2 / (9 * dof)) ** 3  # median of chi2(k)/k (Wilson–Hilferty)

    def points(keep: np.ndarray, robust: bool):
        xs, ys, ns = [], [], []
        for k in range(bins):
            m = (idx == k) & keep
            if m.sum() < min_tiles:
                continue
            xs.append(mu[m].mean())
            ys.append(np.median(s2[m]) / median_bias if robust else s2[m].mean())
            ns.append(m.sum())
        return np.array(xs), np.array(ys), np.array(ns, np.float64)

    x, y, n = points((struct < texture * s2) & (s2 > 0), robust=True)
    if x.size < 3:
        return None
    fit = fit_line(x, y, n, dof)
    limit = chi2.ppf(0.999, dof) / dof
    for _ in range(3):
        model = fit.model(mu)
        x, y, n = points((struct <= limit * model) & (s2 <= limit * model), robust=False)
        if x.size < 3:
            return None
        fit = fit_line(x, y, n, dof)
    return fit
