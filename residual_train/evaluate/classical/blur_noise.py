"""Lens blur and sensor noise alone, by today's pipelines (:mod:`..baselines`) in the
registry's ``fn(degraded, truth)`` form.

* lens blur: ``wiener`` (Wiener with the true PSF of each pixel, balance by oracle),
  ``wiener_wavelet`` and ``bm3d_wiener`` (today's two pipelines: they denoise too, which
  costs a little when the input has no noise; ``bm3d_wiener`` needs the noise model);
* noise: their denoising halves — ``wavelet`` (BayesShrink, blind) and ``bm3d`` (BM3D under
  the generalised Anscombe transform of the true ``σ²(v) = A·max(v, 0) + B``).
"""

from __future__ import annotations

import numpy as np

from residual_train.evaluate.baselines import (
    best_of,
    bm3d_denoise,
    bm3d_wiener,
    wiener,
    wiener_wavelet,
)
from residual_train.evaluate.classical.truth import Truth, check_image


def blur_wiener(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE: Wiener deconvolution with the true PSFs, balance by oracle."""
    truth.need("blur wiener", "psfs", "index", "clean")
    x = check_image(degraded, "blur wiener", truth)
    return best_of(lambda b: wiener(x, truth.psfs, truth.index, b), truth.clean)


def blur_wiener_wavelet(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE: today's ``wiener_wavelet`` with the true PSFs."""
    truth.need("blur wiener_wavelet", "psfs", "index", "clean")
    x = check_image(degraded, "blur wiener_wavelet", truth)
    return wiener_wavelet(x, truth.psfs, truth.index, truth.noise, truth.clean)


def blur_bm3d_wiener(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE: today's ``bm3d_wiener`` with the true PSFs and noise model."""
    truth.need("blur bm3d_wiener", "psfs", "index", "noise", "clean")
    x = check_image(degraded, "blur bm3d_wiener", truth)
    return bm3d_wiener(x, truth.psfs, truth.index, truth.noise, truth.clean)


def noise_wavelet(degraded: np.ndarray, truth: Truth | None = None) -> np.ndarray:
    """Blind wavelet denoising (BayesShrink, soft thresholds; ``truth`` unused)."""
    from skimage.restoration import denoise_wavelet

    x = check_image(degraded, "noise wavelet")
    return denoise_wavelet(
        x, channel_axis=0, method="BayesShrink", mode="soft", rescale_sigma=True
    ).astype(np.float32)


def noise_bm3d(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """BM3D given the true noise model (variance-stabilised)."""
    truth.need("noise bm3d", "noise")
    return bm3d_denoise(check_image(degraded, "noise bm3d"), truth.noise)
