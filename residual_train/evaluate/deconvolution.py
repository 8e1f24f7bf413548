"""Non-blind deconvolution of one image plane with a known kernel, padded by reflection
(no wrap-around ringing from the FFT's periodic frame).

* :func:`wiener_plane`: scikit-image's ``restoration.wiener`` (Wiener–Hunt with a
  Laplacian regulariser of weight ``balance``);
* :func:`richardson_lucy_plane`: scikit-image's ``restoration.richardson_lucy`` (``num_iter``
  multiplicative updates from a flat 0.5 start; the data is floored at a tiny positive
  value, as the method assumes non-negative counts).

Planes ``(H, W)`` linear float; kernels ``(K, K)`` (odd ``K``, non-negative, summing to 1).
The pad is ``K`` pixels on every side (numpy ``symmetric``: the edge pixel repeated, then
the image mirrored).
"""

from __future__ import annotations

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


def deconvolve(image: np.ndarray, kernel: np.ndarray, method: str, param) -> np.ndarray:
    """Every channel of ``image`` ``(C, H, W)`` deconvolved with ``kernel`` ``(K, K)`` (all
    channels) or ``(C, K, K)`` (one per channel); ``method`` ``wiener`` (``param`` = balance)
    or ``richardson_lucy`` (``param`` = iterations). Float32 out."""
    fn = {"wiener": wiener_plane, "richardson_lucy": richardson_lucy_plane}[method]
    ks = kernel if kernel.ndim == 3 else [kernel] * image.shape[0]
    return np.stack([fn(c, k, param) for c, k in zip(image, ks, strict=True)]).astype(np.float32)
