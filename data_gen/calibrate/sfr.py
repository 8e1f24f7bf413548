"""Slanted-edge SFR (ISO 12233 style): edge spread → line spread → SFR, and MTF50.

Samples near a straight edge are placed by their signed perpendicular distance ``d`` (px)
to the edge line (bright side positive) and their values normalised to the two sides'
levels (0 dark, 1 bright). Pooled over one or more edges of one orientation, they are
averaged in bins of ``bin`` px (4× oversampling: a slanted edge crosses every sub-pixel
phase), giving the edge spread function; its central difference is the line spread
function, windowed by a Tukey window (flat over the inner half) centred on its centroid; the modulus of its
Fourier transform, normalised at 0, is the SFR. Two transfer functions of the method are
divided out (as sfrmat does for the derivative): the central difference
``sin(2πf·bin)/(2πf·bin)`` and the binning ``sinc(f·bin)``. Frequencies in cycles/pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SFR:
    """One SFR: ``freq`` cycles/pixel ``(F,)``, ``sfr`` ``(F,)``; the supersampled ``esf``,
    ``lsf`` and their distances ``d`` (px) ``(D,)``; ``edges`` pooled; ``samples``."""

    freq: np.ndarray
    sfr: np.ndarray
    d: np.ndarray
    esf: np.ndarray
    lsf: np.ndarray
    edges: int
    samples: int

    @property
    def mtf50(self) -> float:
        return mtf50(self.freq, self.sfr)


def mtf50(freq: np.ndarray, mtf: np.ndarray, level: float = 0.5) -> float:
    """The first frequency where ``mtf`` falls to ``level`` (linear between samples); NaN
    when it never does below the last frequency."""
    below = np.nonzero(mtf < level)[0]
    if below.size == 0 or below[0] == 0:
        return float("nan")
    i = below[0]
    f0, f1, m0, m1 = freq[i - 1], freq[i], mtf[i - 1], mtf[i]
    return float(f0 + (m0 - level) * (f1 - f0) / (m0 - m1))


def edge_samples(
    img: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    half_width: float,
    trim: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``img`` ``(H, W)`` near the edge from ``a`` to ``b`` ((y, x) px): those
    whose foot on the line lies in ``[trim, 1 − trim]`` of the segment and within
    ``half_width`` px of it. Returns ``(d, value)`` ``(S,)``: signed distances (positive
    to the left of a→b looking along it) and the pixel values."""
    t = b - a
    length = float(np.hypot(*t))
    u = t / length
    n = np.array([-u[1], u[0]])  # left normal in (y, x)
    lo = np.floor(np.minimum(a, b) - half_width - 1).astype(int)
    hi = np.ceil(np.maximum(a, b) + half_width + 1).astype(int)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array(img.shape) - 1)
    yy, xx = np.mgrid[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1]
    py, px = yy - a[0], xx - a[1]
    s = (py * u[0] + px * u[1]) / length
    d = py * n[0] + px * n[1]
    m = (s >= trim) & (s <= 1 - trim) & (np.abs(d) <= half_width)
    return d[m].astype(np.float64), img[yy[m], xx[m]].astype(np.float64)


def sfr_from_samples(
    d: np.ndarray, v: np.ndarray, half_width: float, bin: float = 0.25, edges: int = 1
) -> SFR | None:
    """SFR of pooled, normalised edge samples (``d`` px, ``v`` 0..1, bright at ``d > 0``);
    ``None`` when fewer than 80 % of the bins hold a sample."""
    nb = round(2 * half_width / bin)
    idx = np.floor((d + half_width) / bin).astype(np.int64)
    ok = (idx >= 0) & (idx < nb)
    cnt = np.bincount(idx[ok], minlength=nb)
    if (cnt > 0).mean() < 0.8:
        return None
    tot = np.bincount(idx[ok], v[ok], minlength=nb)
    centres = -half_width + (np.arange(nb) + 0.5) * bin
    full = cnt > 0
    esf = np.interp(centres, centres[full], tot[full] / cnt[full])
    lsf = np.gradient(esf, bin)
    w = np.abs(lsf)
    c = (w * centres).sum() / max(w.sum(), 1e-12)
    # Tukey window (flat over the inner half, cosine tapers outside): ISO 12233's Hamming
    # would weigh down the tails of a wide PSF and overstate its SFR
    x = np.clip(np.abs(centres - c) / half_width, 0, 1)
    ham = np.where(x < 0.5, 1.0, 0.5 * (1 + np.cos(2 * np.pi * (x - 0.5))))
    spec = np.abs(np.fft.rfft(lsf * ham))
    freq = np.fft.rfftfreq(nb, bin)
    deriv = np.sinc(2 * freq * bin)  # sin(2πfΔ)/(2πfΔ)
    box = np.sinc(freq * bin)
    with np.errstate(divide="ignore", invalid="ignore"):
        sfr = spec / max(spec[0], 1e-12) / np.maximum(deriv * box, 0.1)
    keep = freq <= 1.0
    return SFR(freq[keep], sfr[keep], centres, esf, lsf, edges, int(ok.sum()))


def mtf_along(
    psf: np.ndarray, normal: np.ndarray, freq: np.ndarray, box: bool = True
) -> np.ndarray:
    """The MTF a slanted edge measures of a discrete PSF ``(K, K)`` along the unit
    ``normal`` ``(ny, nx)``: ``|Σ k(u)·exp(−2πi f u·n)|`` at ``freq`` ``(F,)`` cycles/px,
    times (``box``) the pixel-area averaging of the sharp image, ``sinc(f·ny)·sinc(f·nx)``."""
    k = psf.shape[0]
    c = (np.arange(k) - k // 2).astype(np.float64)
    proj = c[:, None] * normal[0] + c[None, :] * normal[1]
    ph = np.exp(-2j * np.pi * freq[:, None] * proj.ravel()[None, :])
    m = np.abs(ph @ psf.ravel().astype(np.float64)) / max(float(psf.sum()), 1e-12)
    if box:
        m = m * np.abs(np.sinc(freq * normal[0]) * np.sinc(freq * normal[1]))
    return m
