"""A PSF per position from a chart capture: non-parametric, by regularised least squares.

Given a window of the capture ``I`` ``(W, W)`` and the ideal chart ``C`` rendered from
the fitted geometry over the window plus the PSF's reach (``(W + K − 1)²``, values 0/1),
the capture is modelled as ``I = β + u ⊛ C`` with ``u = α·k`` (chart contrast times the
PSF) and ``β`` (dark level): linear in ``(u, β)``. The normal equations get a small
smoothness term (``smoothness`` × the mean diagonal, on the squared differences of
neighbouring PSF samples) and are solved with ``u ≥ 0`` (non-negative least squares);
``k = u/Σu``. A checkerboard's edges in two directions, its corners (the two-dimensional
structure a PSF elongated along a diagonal leaves) and the slant of its squares (which
spreads its harmonics over the frequency plane) make the system well posed.

The chart fixes a PSF only up to a translation (a shift of the PSF is a shift of the
chart, i.e. distortion); :func:`recentre` puts the centroid of one channel on the centre
pixel (shifting all channels alike, so lateral colour is kept), and :func:`psf_psnr`
compares two PSFs after registering them by a sub-pixel shift as well as without.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import shift as nd_shift
from scipy.optimize import minimize, nnls


def _smoothness(k: int) -> np.ndarray:
    """``(K², K²)`` graph Laplacian of the 4-neighbour grid (squared differences)."""
    n = k * k
    lap = np.zeros((n, n))
    for i in range(k):
        for j in range(k):
            a = i * k + j
            for di, dj in ((1, 0), (0, 1)):
                if i + di < k and j + dj < k:
                    b = (i + di) * k + j + dj
                    lap[a, a] += 1
                    lap[b, b] += 1
                    lap[a, b] -= 1
                    lap[b, a] -= 1
    return lap


def estimate_psf(
    window: np.ndarray, ideal: np.ndarray, k: int, smoothness: float = 1e-5
) -> np.ndarray:
    """PSFs ``(C, K, K)`` (each sums to 1) of a capture ``window`` ``(C, W, W)`` given the
    ideal chart ``ideal`` ``(W + K − 1, W + K − 1)`` (0 = dark, 1 = bright squares)."""
    c, w, _ = window.shape
    require_shape = ideal.shape == (w + k - 1, w + k - 1)
    if not require_shape:
        raise ValueError(f"ideal {ideal.shape} must be {(w + k - 1,) * 2} for W={w}, K={k}")
    # I(y, x) = sum_{a, b} u[a, b] · C(y + K−1−a, x + K−1−b): a flipped sliding window
    patches = sliding_window_view(ideal, (k, k))[:, :, ::-1, ::-1].reshape(w * w, k * k)
    m = np.concatenate([patches, np.ones((w * w, 1))], 1)
    mtm = m.T @ m
    n = k * k
    reg = np.zeros((n + 1, n + 1))
    reg[:n, :n] = _smoothness(k)
    a = mtm + smoothness * np.trace(mtm) / n * reg
    chol = np.linalg.cholesky(a + 1e-10 * np.trace(a) / n * np.eye(n + 1))
    out = np.zeros((c, k, k))
    for ch in range(c):
        rhs = np.linalg.solve(chol, m.T @ window[ch].ravel())
        # min |L^T x − rhs|² = min (x^T A x − 2 x^T b): the normal equations, x >= 0
        x, _ = nnls(chol.T, rhs, maxiter=50 * n)
        u = x[:n].reshape(k, k)
        out[ch] = u / max(u.sum(), 1e-12)
    return out


def centroid(psf: np.ndarray) -> np.ndarray:
    """``(y, x)`` centroid of ``psf`` ``(K, K)`` relative to its centre pixel."""
    k = psf.shape[0]
    c = np.arange(k) - k // 2
    s = max(float(psf.sum()), 1e-12)
    return np.array([(psf.sum(1) * c).sum() / s, (psf.sum(0) * c).sum() / s])


def recentre(psfs: np.ndarray, channel: int = 1) -> np.ndarray:
    """Shift ``psfs`` ``(C, K, K)`` (all channels alike, cubic) so that channel
    ``channel``'s centroid is on the centre pixel; clipped at 0, each renormalised."""
    ref = min(channel, psfs.shape[0] - 1)
    s = -centroid(psfs[ref])
    out = np.stack([np.clip(nd_shift(p, s, order=3, mode="constant"), 0, None) for p in psfs])
    return out / out.sum(axis=(1, 2), keepdims=True)


def psf_psnr(est: np.ndarray, true: np.ndarray) -> tuple[float, float, np.ndarray]:
    """PSNR of ``est`` against ``true`` ``(K, K)``: ``20·log10(max(true)/RMSE)`` as is, and
    after the sub-pixel shift of ``est`` that minimises the error (the chart fixes a PSF
    up to a translation); returns ``(psnr, registered psnr, shift (y, x))``."""

    def err(s) -> float:
        return float(((nd_shift(est, s, order=3, mode="constant") - true) ** 2).mean())

    r = minimize(err, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-16})
    peak = float(true.max())
    plain = 20 * np.log10(peak / np.sqrt(max(err(np.zeros(2)), 1e-30)))
    reg = 20 * np.log10(peak / np.sqrt(max(float(r.fun), 1e-30)))
    return float(plain), float(max(reg, plain)), np.asarray(r.x)
