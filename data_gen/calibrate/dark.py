"""Dark-frame statistics (lens cap on, ≥ 10 frames per ISO), as PMN / ELD calibrate them.

All in raw DN at the frames' ISO, per packed plane R, Gr, Gb, B; ``N`` frames of planes
``(4, h, w)``:

* **black level** — the mean dark level (bad pixels left out) and its error against the
  file's black level; the per-frame error's spread over frames (PMN's BLE);
* **read variance** — the temporal variance per photosite across frames (unbiased),
  averaged over photosites: every signal-independent temporal noise (read, row,
  quantisation), i.e. ``B·(white − black)²``;
* **row noise** — the spread of row means of ``frame − mean frame``, corrected for the
  pixel noise they average (``σ_row² = (var(ρ)·N/(N−1) − σ²/w)/(1 − 1/w)``);
* **read-noise shape** — on a centre crop, the residual after the black level, the dark
  shading and the row means, pooled over frames (not after the mean frame: with ``N``
  frames that mixes ``1/N`` of the other frames' noise in, which makes the tails look
  Gaussian; pixel-level fixed pattern that the smooth shading misses stays in): the
  Tukey-λ shape by the
  probability-plot correlation (``scipy.stats.ppcc_max``), its scale from the probability
  plot's slope, and the normal distribution's PPCC; ``gaussian`` when λ is within 0.04 of
  0.14 (the λ closest to a normal) or Tukey-λ improves the PPCC by less than 1e-4;
* **dark shading** — the fixed pattern ``mean frame − black``: its row and column means
  kept as they are, the rest smoothed by a Gaussian of ``shading_sigma`` plane pixels
  (the mean of ``N`` frames still holds ``σ/√N`` of temporal noise);
* **bad pixels** — *hot* / *cold*: the mean frame more than ``bad_sigma`` robust σ above /
  below the shading; *noisy*: temporal σ above ``bad_sigma`` times the plane's median;
  *stuck*: the same value in every frame. Positions in mosaic (photosite) coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.ndimage import gaussian_filter

from data_gen.cfa import plane_offsets
from data_gen.core.typed import Count, Number, Settings

NORMAL_LAMBDA = 0.14  # Tukey-λ closest to the normal distribution


def mean_and_variance(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``N`` frames ``(4, h, w)`` DN -> mean ``(4, h, w)``, unbiased temporal variance
    ``(4, h, w)`` (float64), per-frame plane means ``(N, 4)``."""
    n = len(frames)
    s1 = np.zeros(frames[0].shape, np.float64)
    s2 = np.zeros(frames[0].shape, np.float64)
    means = np.zeros((n, frames[0].shape[0]))
    for i, f in enumerate(frames):
        x = f.astype(np.float64)
        s1 += x
        s2 += x * x
        means[i] = x.mean(axis=(1, 2))
    mean = s1 / n
    var = np.maximum(s2 - n * mean * mean, 0) / (n - 1)
    return mean, var, means


def shading_of(m: np.ndarray, bad: np.ndarray, sigma: float) -> np.ndarray:
    """Smoothed fixed pattern of one plane: ``m`` ``(h, w)`` DN above black, ``bad``
    ``(h, w)`` bool (replaced by the plane median first). Row and column means are kept,
    the remainder is Gaussian-smoothed (``sigma`` pixels). float32 ``(h, w)``."""
    x = np.where(bad, np.median(m[~bad]) if (~bad).any() else 0.0, m)
    col, row, g = x.mean(0), x.mean(1), x.mean()
    rest = x - col[None, :] - row[:, None] + g
    smooth = gaussian_filter(rest, sigma, mode="nearest") if sigma > 0 else rest
    return (row[:, None] + col[None, :] - g + smooth).astype(np.float32)


def tukey_shape(e: np.ndarray) -> dict:
    """Shape of a zero-mean sample ``e`` (DN): Tukey-λ ``lambda`` (PPCC maximum), its scale
    ``sigma_tl`` (probability-plot slope), both PPCCs, the normal's σ, and ``kind``."""
    lam = float(stats.ppcc_max(e, brack=(-0.3, 0.3), dist="tukeylambda"))
    (_, _), (s_tl, _, r_tl) = stats.probplot(e, sparams=(lam,), dist="tukeylambda")
    (_, _), (s_n, _, r_n) = stats.probplot(e, dist="norm")
    gaussian = abs(lam - NORMAL_LAMBDA) <= 0.04 or (r_tl - r_n) < 1e-4
    return {
        "kind": "gaussian" if gaussian else "tukey_lambda",
        "lambda": lam,
        "sigma_tl_dn": float(s_tl),
        "ppcc_tl": float(r_tl),
        "sigma_gauss_dn": float(s_n),
        "ppcc_gauss": float(r_n),
    }


class DarkSettings(Settings):
    """``dark`` of ``conf/calibrate_noise.yaml`` (its defaults are the file's)."""

    min_frames: Count  # dark frames per ISO for the statistics (and method dark)
    crop: Count  # centre crop (plane pixels) for the read-noise shape
    shape_samples: Count  # residuals drawn for the Tukey-lambda fit
    shading_sigma: Number  # Gaussian smoothing of the dark shading (plane pixels)
    bad_sigma: Number  # hot / cold / noisy pixels: this many robust sigma off


@dataclass
class PlaneDefects:
    """One plane's bad photosites ``(h, w)`` bool, and the black level measured without them."""

    black: float
    hot: np.ndarray
    cold: np.ndarray
    noisy: np.ndarray
    stuck: np.ndarray

    @property
    def bad(self) -> np.ndarray:
        return self.hot | self.cold | self.noisy | self.stuck


def _robust_sigma(x: np.ndarray) -> float:
    return 1.4826 * np.median(np.abs(x - np.median(x))) + 1e-9


def plane_defects(
    m: np.ndarray, v: np.ndarray, n: int, shading_sigma: float, bad_sigma: float
) -> PlaneDefects:
    """Bad photosites of one plane from its mean ``m`` and temporal variance ``v`` over
    ``n`` frames, in two passes: offsets against a plain smooth of the mean frame, then
    against the dark shading of what is left."""
    v_med = float(np.median(v))
    noisy = v > (bad_sigma**2) * max(v_med, 1e-12)
    stuck = (v == 0) & (v_med > 0.25)
    m0 = m - np.median(m)
    rough = m0 - gaussian_filter(m0, max(shading_sigma, 2.0), mode="nearest")
    bad0 = (np.abs(rough) > bad_sigma * _robust_sigma(rough)) | noisy | stuck
    black = float(m[~bad0].mean()) if (~bad0).any() else float(m.mean())
    resid = m - black - shading_of(m - black, bad0, shading_sigma)
    sr = _robust_sigma(resid[~bad0])
    floor = 3 * np.sqrt(max(v_med, 1e-12) / n)  # never below the mean's own noise
    hot = resid > max(bad_sigma * sr, floor)
    cold = resid < -max(bad_sigma * sr, floor)
    d = PlaneDefects(black, hot, cold, noisy, stuck)
    bad = d.bad
    d.black = float(m[~bad].mean()) if (~bad).any() else black
    return d


def row_variance(frames: list[np.ndarray], p: int, m: np.ndarray, read_var: float) -> float:
    """Row noise of plane ``p``: the variance of the row means of ``frame − mean frame``,
    less the pixel noise they average."""
    n, w = len(frames), m.shape[1]
    rho = np.concatenate([(f[p].astype(np.float64) - m).mean(axis=1) for f in frames])  # (N·h,)
    var_rho = float(rho.var()) * n / (n - 1)
    return max((var_rho - read_var / w) / (1 - 1 / w), 0.0)


def read_residuals(
    frames: list[np.ndarray], p: int, window: tuple[slice, slice], black: float,
    shading: np.ndarray, bad: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Plane ``p``'s read-noise residuals on the centre crop ``window``, pooled over frames:
    each frame less the black level, the dark shading and its row means; bad photosites
    left out."""
    cy, cx = window
    good = ~bad[cy, cx]
    parts = []
    for f in frames:
        r = f[p][cy, cx].astype(np.float64) - black - shading[cy, cx]
        r -= r.mean(axis=1, keepdims=True)
        parts.append(r[good])
    return np.concatenate(parts)


STATS = (
    "black",
    "black_error_dn",
    "black_error_frame_std_dn",
    "read_var_dn2",
    "read_sigma_dn",
    "row_sigma_dn",
    "shading_std_dn",
)
BAD_KINDS = ("hot", "cold", "noisy", "stuck")


def dark_statistics(
    frames: list[np.ndarray],
    black_file: np.ndarray,
    pattern: str,
    settings: DarkSettings,
    seed: int = 0,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Statistics of ``N >= 2`` dark frames ``(4, h, w)`` uint16 DN (see the module
    docstring); ``black_file`` ``(4,)`` DN, ``pattern`` the CFA (for mosaic coordinates).

    Returns ``(stats, shading, residuals)``: a JSON-able dict of per-plane lists (DN), the
    dark shading ``(4, h, w)`` float32 (DN above the measured black level), and up to
    20,000 read-noise residuals per plane ``(4, k)`` float32 DN (for plots).
    """
    s = settings
    n = len(frames)
    planes, h, w = frames[0].shape
    mean, var, frame_means = mean_and_variance(frames)
    rng = np.random.default_rng(seed)
    offsets = plane_offsets(pattern)
    out: dict[str, list] = {k: [] for k in STATS}
    shape, bad_lists, kept = [], {k: [] for k in BAD_KINDS}, []
    shading = np.zeros((planes, h, w), np.float32)
    y0, x0 = max(0, (h - s.crop) // 2), max(0, (w - s.crop) // 2)
    window = slice(y0, y0 + min(s.crop, h)), slice(x0, x0 + min(s.crop, w))
    for p in range(planes):
        m, v = mean[p], var[p]
        d = plane_defects(m, v, n, s.shading_sigma, s.bad_sigma)
        bad, black = d.bad, d.black
        shading[p] = shading_of(m - black, bad, s.shading_sigma)
        read_var = float(v[~bad].mean()) if (~bad).any() else float(v.mean())
        row_var = row_variance(frames, p, m, read_var)
        e = read_residuals(frames, p, window, black, shading[p], bad)
        if e.size > s.shape_samples:
            e = rng.choice(e, s.shape_samples, replace=False)
        shape.append(tukey_shape(e))
        kept.append(e[:20_000].astype(np.float32))
        out["black"].append(black)
        out["black_error_dn"].append(black - float(black_file[p]))
        out["black_error_frame_std_dn"].append(float(frame_means[:, p].std(ddof=1)))
        out["read_var_dn2"].append(read_var)
        out["read_sigma_dn"].append(float(np.sqrt(max(read_var - row_var, 0.0))))
        out["row_sigma_dn"].append(float(np.sqrt(row_var)))
        out["shading_std_dn"].append(float(shading[p].std()))
        dy, dx = offsets[p]
        for kind in BAD_KINDS:
            ys, xs = np.nonzero(getattr(d, kind))
            bad_lists[kind] += np.stack([2 * ys + dy, 2 * xs + dx], 1).tolist()
    out["shape"] = shape
    out["bad_pixels"] = {k: sorted(v) for k, v in bad_lists.items()}
    out["bad_pixel_counts"] = {k: len(v) for k, v in bad_lists.items()}
    out["frames"] = n
    k = min(len(e) for e in kept)
    return out, shading, np.stack([e[:k] for e in kept])
