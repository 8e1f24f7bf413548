"""Classical pipelines the network is measured against, given the true PSF and sensor model.

* ``wiener_wavelet``: Wiener deconvolution with the true PSF, then wavelet (BayesShrink)
  denoising.
* ``bm3d_wiener``: BM3D on the variance-stabilised image (generalised Anscombe transform
  for the known ``σ²(v) = A·max(v, 0) + B``), inverse transform, then Wiener
  deconvolution with the true PSF. Needs the optional ``bm3d`` package
  (``pip install 'residual-train[eval]'``).

Both pick the Wiener regularisation per image from :data:`BALANCES` with the clean
image as oracle, which favours the baselines: they are the bar. Deconvolution pads by
reflection (no wrap-around ringing) and, for a field-varying lens, deconvolves each
region with the PSF it was rendered with.

``wiener_wavelet_practical`` and ``bm3d_wiener_practical`` are what a user of these
pipelines gets: the same steps, with the regularisation chosen without the clean image
(:func:`wiener_practical`): a Wiener filter ``G = H* / (|H|² + σ²/P_S)`` whose natural-image
prior ``P_S(ω) = c / |D(ω)|²`` (``D``: the finite-difference gradient, so ``c`` is the
scene's mean squared gradient) takes ``c`` from the degraded image itself
(``c = (mean |∇y|² − 4σ²) / mean |H|²``) and ``σ²`` from the sensor model (before
denoising) or, after BM3D, from scikit-image's wavelet estimate of the noise left.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_gen.core.errors import InputError
from data_gen.noise import NoiseModel
from residual_train.evaluate.deconvolution import wiener_plane
from residual_train.evaluate.oracle import choose, psnr

BALANCES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
NAMES = ("wiener_wavelet", "bm3d_wiener")
PRACTICAL = ("wiener_wavelet_practical", "bm3d_wiener_practical")  # no clean image


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
    den = bm3d_shared(x, noise)
    return best_of(lambda balance: wiener(den, psfs, index, balance), clean)


# ---- practical (non-oracle) versions ------------------------------------------------
PRIOR_FLOOR = 0.05  # c is at least this share of the observed gradient energy / mean|H|²


def gradient_energy(p: np.ndarray) -> float:
    """Mean over pixels of the squared x and y finite differences of a plane."""
    p = p.astype(np.float64)
    return float(np.mean(np.diff(p, axis=0) ** 2) + np.mean(np.diff(p, axis=1) ** 2))


def wiener_prior_plane(y: np.ndarray, kernel: np.ndarray, noise_var: float) -> np.ndarray:
    """Wiener deconvolution of the plane ``y`` with ``kernel`` under the prior
    ``P_S = c/|D|²`` and white noise of variance ``noise_var`` (see the module's text);
    padded by reflection like :func:`wiener_plane`. Float64 out."""
    k = max(kernel.shape)
    big = np.pad(y.astype(np.float64), ((k, k), (k, k)), mode="symmetric")
    n1, n2 = big.shape
    pad = np.zeros((n1, n2))
    pad[: kernel.shape[0], : kernel.shape[1]] = kernel
    pad = np.roll(pad, (-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), axis=(0, 1))
    h = np.fft.rfft2(pad)
    f1 = np.fft.fftfreq(n1)[:, None]
    f2 = np.fft.rfftfreq(n2)[None, :]
    d2 = 4 * np.sin(np.pi * f1) ** 2 + 4 * np.sin(np.pi * f2) ** 2
    h2 = np.abs(h) ** 2
    # mean |H|² over the full (not half) spectrum: the rfft's interior columns count twice
    w = np.full(h2.shape[1], 2.0)
    w[0] = 1.0
    if n2 % 2 == 0:
        w[-1] = 1.0
    mean_h2 = float((h2 * w).sum() / (w.sum() * n1))
    g = gradient_energy(y)
    c = max(g - 4.0 * noise_var, PRIOR_FLOOR * g) / max(mean_h2, 1e-12)
    lam = noise_var / max(c, 1e-30)
    x = np.fft.irfft2(np.conj(h) * np.fft.rfft2(big) / (h2 + lam * d2), s=(n1, n2))
    return x[k:-k, k:-k]


def wiener_practical(
    y: np.ndarray, psfs: np.ndarray, index: np.ndarray, noise_var: np.ndarray
) -> np.ndarray:
    """:func:`wiener` with the regularisation of :func:`wiener_prior_plane` (noise variance
    ``noise_var`` per channel) instead of an oracle's balance."""
    out = np.zeros_like(y, dtype=np.float32)
    for j in np.unique(index):
        sel = index == j
        for c in range(y.shape[0]):
            out[c][sel] = wiener_prior_plane(y[c], psfs[j, c], float(noise_var[c]))[sel]
    return out


def model_noise_var(x: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """Mean noise variance per channel the sensor model gives for the image ``x``."""
    return np.array(
        [float(np.mean(noise.A[c] * np.maximum(x[c], 0) + noise.B[c])) for c in range(len(x))]
    )


def wiener_wavelet_practical(x, psfs, index, noise: NoiseModel, clean=None) -> np.ndarray:
    """Wiener deconvolution regularised from the sensor model and the image's own
    gradient energy, then wavelet (BayesShrink) denoising. No clean image."""
    from skimage.restoration import denoise_wavelet

    dec = wiener_practical(x, psfs, index, model_noise_var(x, noise))
    return denoise_wavelet(
        dec, channel_axis=0, method="BayesShrink", mode="soft", rescale_sigma=True
    ).astype(np.float32)


_BM3D_MEMO: dict = {}  # the last BM3D result: the oracle and practical pipelines share it


def bm3d_shared(x: np.ndarray, noise: NoiseModel) -> np.ndarray:
    """:func:`bm3d_denoise` of ``x``, computed once for consecutive calls on the same input."""
    import hashlib

    key = hashlib.sha1(np.ascontiguousarray(x).tobytes())
    key.update(
        np.asarray(noise.A, np.float64).tobytes() + np.asarray(noise.B, np.float64).tobytes()
    )
    k = key.hexdigest()
    if k not in _BM3D_MEMO:
        _BM3D_MEMO.clear()
        _BM3D_MEMO[k] = bm3d_denoise(x, noise)
    return _BM3D_MEMO[k]


def bm3d_wiener_practical(x, psfs, index, noise: NoiseModel, clean=None) -> np.ndarray:
    """BM3D as in :func:`bm3d_wiener`, then Wiener deconvolution regularised from the noise
    BM3D left (scikit-image's wavelet estimate, per channel) and the image's own gradient
    energy. No clean image."""
    from skimage.restoration import estimate_sigma

    den = bm3d_shared(x, noise)
    left = np.asarray(estimate_sigma(den, channel_axis=0), np.float64) ** 2
    return wiener_practical(den, psfs, index, np.atleast_1d(left))


BASELINES = {
    "wiener_wavelet": wiener_wavelet,
    "bm3d_wiener": bm3d_wiener,
    "wiener_wavelet_practical": wiener_wavelet_practical,
    "bm3d_wiener_practical": bm3d_wiener_practical,
}

__all__ = [
    "BALANCES",
    "BASELINES",
    "NAMES",
    "PRACTICAL",
    "anscombe",
    "anscombe_inverse",
    "best_of",
    "bm3d_denoise",
    "bm3d_wiener",
    "bm3d_wiener_practical",
    "psnr",
    "wiener",
    "wiener_practical",
    "wiener_wavelet",
    "wiener_wavelet_practical",
]
