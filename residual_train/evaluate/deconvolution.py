"""Non-blind deconvolution of one image plane with a known kernel, padded by reflection
(no wrap-around ringing from the FFT's periodic frame).

* :func:`wiener_plane`: scikit-image's ``restoration.wiener`` (Wiener–Hunt with a
  Laplacian regulariser of weight ``balance``);
* :func:`richardson_lucy_plane`: scikit-image's ``restoration.richardson_lucy`` (``num_iter``
  multiplicative updates from a flat 0.5 start; the data is floored at a tiny positive
  value, as the method assumes non-negative counts); :func:`richardson_lucy_path` runs
  the same update once and returns the iterates at several counts (an oracle choosing
  among counts pays for the largest, not their sum; equal to scikit-image's at each count,
  ``tests/test_classical.py``).

Planes ``(H, W)`` linear float; kernels ``(K, K)`` (odd ``K``, non-negative, summing to 1).
The pad is ``K`` pixels on every side (numpy ``symmetric``: the edge pixel repeated, then
the image mirrored).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RL_FLOOR = 1e-6  # Richardson–Lucy's data floor (linear units; white = 1)


def _pad(y: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, int]:
    k = max(kernel.shape)
    return np.pad(y, ((k, k), (k, k)), mode="symmetric"), k


def wiener_plane(y: np.ndarray, kernel: np.ndarray, balance: float) -> np.ndarray:
    """Wiener deconvolution of the plane ``y`` ``(H, W)`` with ``kernel`` (float64 out)."""
    from skimage.restoration import wiener as sk_wiener

    big, k = _pad(y.astype(np.float64), kernel)
    dec = sk_wiener(big, kernel.astype(np.float64), balance, clip=False)
    return dec[k:-k, k:-k]


def richardson_lucy_plane(y: np.ndarray, kernel: np.ndarray, num_iter: int) -> np.ndarray:
    """Richardson–Lucy deconvolution of the plane ``y`` ``(H, W)`` with ``kernel``, ``num_iter``
    iterations (float32 out)."""
    from skimage.restoration import richardson_lucy

    big, k = _pad(np.maximum(y, RL_FLOOR).astype(np.float32), kernel)
    dec = richardson_lucy(big, kernel.astype(np.float32), num_iter=int(num_iter), clip=False)
    return dec[k:-k, k:-k]


def richardson_lucy_path(
    y: np.ndarray, kernel: np.ndarray, counts: Sequence[int]
) -> dict[int, np.ndarray]:
    """:func:`richardson_lucy_plane` at every iteration count of ``counts`` from one run:
    scikit-image's update (``u ← u · (K̃ ⊛ (y / (K ⊛ u + 10⁻¹²)))``, ``same``-size
    convolutions, flat 0.5 start) written out so that the iterates can be read on the way.
    ``{count: (H, W) float32}``."""
    from scipy.signal import convolve

    counts = sorted({int(n) for n in counts})
    big, k = _pad(np.maximum(y, RL_FLOOR).astype(np.float32), kernel)
    psf = kernel.astype(np.float32)
    mirror = np.flip(psf)
    u = np.full(big.shape, 0.5, np.float32)
    out = {}
    for i in range(1, counts[-1] + 1):
        conv = convolve(u, psf, mode="same") + 1e-12
        u *= convolve(big / conv, mirror, mode="same")
        if i in counts:
            out[i] = u[k:-k, k:-k].copy()
    return out


# method -> one plane deconvolved for each parameter: {param: (H, W)}
METHODS = {
    "wiener": lambda plane, k, params: {p: wiener_plane(plane, k, p) for p in params},
    "richardson_lucy": lambda plane, k, params: richardson_lucy_path(plane, k, params),
}


def deconvolve(image: np.ndarray, kernel: np.ndarray, method: str, param) -> np.ndarray:
    """Every channel of ``image`` ``(C, H, W)`` deconvolved with ``kernel`` ``(K, K)`` (all
    channels) or ``(C, K, K)`` (one per channel); ``method`` ``wiener`` (``param`` = balance)
    or ``richardson_lucy`` (``param`` = iterations). Float32 out."""
    return deconvolve_each(image, kernel, method, [param])[param]


def deconvolve_each(image: np.ndarray, kernel: np.ndarray, method: str, params: Sequence) -> dict:
    """:func:`deconvolve` for each of ``params``: ``{param: (C, H, W) float32}``
    (Richardson–Lucy runs once, to the largest count)."""
    if method not in METHODS:
        raise ValueError(f"deconvolve: method {method!r}: {' or '.join(METHODS)}")
    ks = kernel if kernel.ndim == 3 else [kernel] * image.shape[0]
    planes = [METHODS[method](c, k, params) for c, k in zip(image, ks, strict=True)]
    return {p: np.stack([pl[p] for pl in planes]).astype(np.float32) for p in params}
