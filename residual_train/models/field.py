"""A deconvolution that knows where it is: the field-varying linear path (docs/design.md §5).

A field-varying lens blurs each pixel ``p`` with the bank PSF ``h_j`` of its position
(``j = psf_index(p)``). The linear path applies the Wiener inverse of *that* PSF as a
product-convolution (the eigen-kernel model of field-varying blur):

    L_p ⊛ d = ḡ ⊛ d + Σ_k w_k(p) · (u_k ⊛ d)

* ``ḡ``: the Wiener inverse of the bank's mean PSF (the path without position);
* ``u_k`` (``k < K``): eigen-kernels, the first ``K`` right singular vectors of the matrix
  whose row ``j`` is ``g_j − ḡ`` (``g_j`` the Wiener inverse of ``h_j``, same size and
  balance as ``ḡ``) less its mean per channel: ``ḡ + Σ_k W[j, k] u_k`` is the best
  rank-``K`` approximation of every ``g_j`` with the DC gain of ``ḡ``, exact when ``K``
  reaches the rank. Every untruncated inverse has the same DC gain ``1/(1 + balance)``;
  cut to ``S × S`` their sums differ, and a position-dependent sum changes brightness by
  position. The network keeps the ``u_k`` at zero sum while they are learnt (unconstrained,
  their sums drifted by ±0.3 within 1,000 steps on the measured 63762BB bank);
* ``W`` ``(N, K)``: the mixing weights of each bank position, scaled to unit RMS per ``k``
  over the bank (the scale moves into ``u_k``) so that they also serve as the trunk's
  position maps.

``ḡ`` and ``u_k`` are learnable and start from that decomposition; ``W`` is fixed (a buffer:
deployment looks the maps up from it). The network reads ``w_k(p)`` as ``K`` per-pixel
maps, the ``field`` input: constant over a training patch rendered with one PSF, per pixel
over a patch rendered with a PSF per block (on the fly, ``psf_per=block``) and over a whole
frame at deployment (``W[psf_index_map]``).
"""

from __future__ import annotations

import numpy as np


def eigen_kernels(
    psfs: np.ndarray, size: int, balance: float, kernels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(base (C, S, S), eigen (K, C, S, S), table (N, K))`` for the bank ``psfs``
    ``(N, C, k, k)``: the decomposition in the module's text (float32). Components beyond
    the bank's rank are zero (kernels and weights)."""
    from data_gen.optics import inverse_filter

    p = np.asarray(psfs, np.float64)
    n, c = p.shape[:2]
    base = inverse_filter(p.mean(axis=0), size, balance).astype(np.float64)
    g = np.stack([inverse_filter(q, size, balance) for q in p]).astype(np.float64)
    d = g - base
    d = (d - d.mean(axis=(-2, -1), keepdims=True)).reshape(n, -1)  # zero sum: ḡ's DC gain
    u, s, vt = np.linalg.svd(d, full_matrices=False)
    r = min(kernels, len(s))
    w = np.zeros((n, kernels))
    v = np.zeros((kernels, d.shape[1]))
    w[:, :r], v[:r] = u[:, :r] * s[:r], vt[:r]
    rms = np.sqrt((w**2).mean(axis=0))
    keep = rms > 1e-12 * max(1.0, float(np.abs(base).max()))
    rms = np.where(keep, rms, 1.0)
    w, v = np.where(keep, w / rms, 0.0), v * (rms * keep)[:, None]
    eigen = v.reshape(kernels, c, size, size)
    return base.astype(np.float32), eigen.astype(np.float32), w.astype(np.float32)


def field_maps(table, index):
    """Per-pixel maps ``(..., K, H, W)`` of a ``psf_index`` map ``(..., H, W)`` (numpy or
    torch), or constant ``(B, K, 1, 1)`` maps of one index per sample ``(B,)`` (torch: use
    ``expand`` to the patch size)."""
    w = table[index]  # (..., H, W, K) or (B, K)
    if w.ndim == 2:
        return w[:, :, None, None]
    if isinstance(w, np.ndarray):
        return np.ascontiguousarray(np.moveaxis(w, -1, -3))
    return w.movedim(-1, -3)


__all__ = ["eigen_kernels", "field_maps"]
