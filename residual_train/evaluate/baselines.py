"""Classical pipelines the network is measured against, given the true PSF and sensor model.

* ``wiener_wavelet``: Wiener deconvolution with the true PSF, then wavelet (BayesShrink)
  denoising.
* ``bm3d_wiener``: BM3D on the variance-stabilised image (generalised Anscombe transform
  for the known ``σ²(v) = A·max(v, 0) + B``), inverse transform, then Wiener
  deconvolution with the true PSF. Needs the optional ``bm3d`` package
  (``pip install 'residual-train[eval]'``).

Both pick the Wiener regularisation per image from :data:`BALANCES` with the clean
image as oracle, which favours the baselines. Deconvolution pads by reflection (no
wrap-around ringing) and, for a field-varying lens, deconvolves each region with the
PSF it was rendered with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_gen.errors import InputError
from data_gen.noise import NoiseModel
from residual_train.evaluate.deconvolution import wiener_plane
from residual_train.evaluate.oracle import choose, psnr

BALANCES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
NAMES = ("wiener_wavelet", "bm3d_wiener")


def wiener(y: np.ndarray, psfs: np.ndarray, index: np.ndarray, balance: float) -> np.ndarray:
    """Wiener deconvolution of ``y`` ``(C, H, W)``; pixel ``p`` takes the result of the PSF
    ``psfs[index[p]]`` ``(C, K, K)`` it was blurred with."""
    out = np.zeros_like(y, dtype=np.float32)
    for j in np.unique(index):
        sel = index == j
        for c in range(y.shape[0]):
            out[c][sel] = wiener_plane(y[c], psfs[j, c], balance)[sel]
    return out


def best_of(candidates: Callable[[float], np.ndarray], clean: np.ndarray) -> np.ndarray:
    """The candidate over :data:`BALANCES` closest to ``clean`` (oracle choice)."""
    return choose(candidates, BALANCES, clean)[0]


def wiener_wavelet(x, psfs, index, noise: NoiseModel, clean) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    def run(balance: float) -> np.ndarray:
        dec = wiener(x, psfs, index, balance)
        return denoise_wavelet(
            dec, channel_axis=0, method="BayesShrink", mode="soft", rescale_sigma=True
        ).astype(np.float32)

    return best_of(run, clean)


def anscombe(v: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """Generalised Anscombe transform: noise of variance ``A·v + B`` becomes ~unit variance."""
    A, B = noise.A[:, None, None], noise.B[:, None, None]
    c = 0.375 * A**2 + B  # Poisson-Gaussian constant of the transform
    return 2.0 / A * np.sqrt(np.maximum(A * v + c, 0.0))


def anscombe_inverse(d: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """Asymptotically unbiased inverse of :func:`anscombe`."""
    A, B = noise.A[:, None, None], noise.B[:, None, None]
    return ((A * d / 2.0) ** 2 - A * A / 8.0 - B) / A


def bm3d_denoise(x: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """BM3D (colour, YCbCr-like opponent transform) in the variance-stabilised domain."""
    try:
        import bm3d
    except ImportError:
        raise InputError(
            "baseline bm3d_wiener needs the bm3d package: pip install bm3d "
            "(or pip install 'residual-train[eval]'), or leave it out of baselines="
        ) from None
    require_positive = bool((noise.A > 0).all())
    if not require_positive:
        raise InputError(f"bm3d_wiener needs A > 0 in every channel, got {noise.A.tolist()}")
    z = anscombe(x.astype(np.float64), noise)
    lo, hi = float(z.min()), float(z.max())
    scale = max(hi - lo, 1e-6)
    zn = np.moveaxis((z - lo) / scale, 0, 2)
    den = bm3d.bm3d_rgb(zn, sigma_psd=1.0 / scale)
    return anscombe_inverse(np.moveaxis(den, 2, 0) * scale + lo, noise).astype(np.float32)


def bm3d_wiener(x, psfs, index, noise: NoiseModel, clean) -> np.ndarray:
    den = bm3d_denoise(x, noise)
    return best_of(lambda balance: wiener(den, psfs, index, balance), clean)


BASELINES = {"wiener_wavelet": wiener_wavelet, "bm3d_wiener": bm3d_wiener}

__all__ = [
    "BALANCES",
    "BASELINES",
    "NAMES",
    "anscombe",
    "anscombe_inverse",
    "best_of",
    "bm3d_denoise",
    "bm3d_wiener",
    "psnr",
    "wiener",
    "wiener_wavelet",
]
