"""Relight removal: estimate the smooth gain ``G`` of ``S' = G ⊙ S`` and divide it out.

Two classical estimates of the illumination, both from the luminance ``L`` (the channel
mean) of the relit image:

* **Retinex** (Land; Jobson, Rahman & Woodell's multi-scale Retinex, 1997): ``Ĝ`` = a heavy
  Gaussian blur of ``L`` (edges reflected) at one scale ``σ`` (a fraction of the frame's
  diagonal), or the multi-scale form — the geometric mean of the blurs at the three
  scales of :data:`MSR_SCALES` (MSR's ``Σ wₖ·log(Fₖ * L)`` with equal weights);
* **low-order fit**: ``log L`` fitted by least squares with a 2-D polynomial of total
  order ``p`` in the frame coordinates (scaled to [−1, 1]), each pixel weighted by ``L``;
  ``Ĝ = exp(fit)``. Unweighted, the logarithms of dark surfaces (large and negative,
  made by the scene's reflectance, not its light) pull the fit, and on the benchmark's
  photographs it was worse than no spatial correction at all.

The output is ``c · S' / Ĝ``. A relight correction is ambiguous up to a global scale
(``G·S = (G/c)·(c·S)``: nothing in one image tells a dim scene under bright light from a
bright scene under dim light), so ``c`` is chosen by oracle (the least-squares scale
against the clean image, in closed form), and so are the scale or order of each estimate
from a short list. Every result here is therefore an ORACLE. The smooth-illumination
prior holds when the scene's own large-scale brightness varies less than its light (a
stationary texture); on a photograph with a dark half the estimates take that half for
shadow — compare them with the input times the oracle scale alone (``c·S'``, the
benchmark's ``scale_only`` reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from data_gen.core.errors import require
from residual_train.evaluate.classical.truth import Truth, check_image
from residual_train.evaluate.oracle import choose, oracle_scale

SCALES = (0.05, 0.1, 0.2, 0.4, 0.8)  # Gaussian σ, fraction of the frame diagonal
# the multi-scale candidate, the geometric mean of these: Jobson et al.'s 15, 80 and 250 px
# on their ~512 px images, as fractions of the diagonal
MSR_SCALES = (0.02, 0.1, 0.4)
RETINEX_OPTIONS = (*SCALES, "msr")
ORDERS = (1, 2, 3, 4, 5, 6)  # polynomial orders of the low-order fit
FLOOR = 1e-4  # luminance floor before logarithms / division (linear; white = 1)
FIT_PIXELS = 65536  # the low-order fit reads about this many pixels (a regular subsample)


def luminance(image: np.ndarray) -> np.ndarray:
    """The channel mean ``(H, W)`` float64, floored at :data:`FLOOR`."""
    return np.maximum(image.astype(np.float64).mean(axis=0), FLOOR)


def illumination_retinex(image: np.ndarray, scale: float | str) -> np.ndarray:
    """``Ĝ`` ``(H, W)``: the luminance blurred by a Gaussian of ``σ = scale`` × the frame
    diagonal (reflected edges), or for ``scale='msr'`` the geometric mean of the blurs at
    :data:`MSR_SCALES`."""
    lum = luminance(image)
    diag = float(np.hypot(*lum.shape))
    if scale == "msr":
        logs = [
            np.log(np.maximum(gaussian_filter(lum, s * diag, mode="reflect"), FLOOR))
            for s in MSR_SCALES
        ]
        return np.exp(np.mean(logs, axis=0))
    require(
        isinstance(scale, (int, float)) and scale > 0,
        f"retinex scale = {scale!r}: a fraction of the diagonal > 0, or 'msr'",
    )
    return np.maximum(gaussian_filter(lum, float(scale) * diag, mode="reflect"), FLOOR)


def _monomials(y: np.ndarray, x: np.ndarray, order: int) -> np.ndarray:
    return np.stack([y**i * x**j for i in range(order + 1) for j in range(order + 1 - i)], -1)


def illumination_polyfit(image: np.ndarray, order: int) -> np.ndarray:
    """``Ĝ`` ``(H, W)``: ``exp`` of the polynomial of total ``order`` fitted to the
    log-luminance by least squares weighted by the luminance (on a regular subsample of
    about :data:`FIT_PIXELS` pixels)."""
    require(
        isinstance(order, (int, np.integer)) and 0 <= order <= 12,
        f"polynomial order = {order!r}: an integer in 0..12",
    )
    lum = luminance(image)
    h, w = lum.shape
    step = max(1, int(np.sqrt(h * w / FIT_PIXELS)))
    yy = np.linspace(-1, 1, h)[:, None] * np.ones((1, w))
    xx = np.ones((h, 1)) * np.linspace(-1, 1, w)[None, :]
    sub = (slice(None, None, step), slice(None, None, step))
    sw = np.sqrt(lum[sub].ravel())  # rows scaled by √weight: weighted least squares
    design = _monomials(yy[sub].ravel(), xx[sub].ravel(), order) * sw[:, None]
    coef, *_ = np.linalg.lstsq(design, np.log(lum[sub]).ravel() * sw, rcond=None)
    return np.exp(_monomials(yy, xx, order) @ coef)


def divide_out(
    image: np.ndarray, gain: np.ndarray, clean: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """ORACLE: ``c · image / gain`` with the global scale ``c`` closest to ``clean``."""
    y = image / gain[None]
    return (oracle_scale(y, clean, mask) * y).astype(np.float32)


def relight_retinex(
    image: np.ndarray,
    clean: np.ndarray,
    mask: np.ndarray | None = None,
    options: Sequence = RETINEX_OPTIONS,
) -> tuple[np.ndarray, object]:
    """ORACLE: the Retinex estimate divided out, scale (or ``'msr'``) and overall gain chosen
    by oracle; ``(estimate, scale)``."""
    x = check_image(image, "relight retinex", Truth(clean=clean, mask=mask))
    y, s, _ = choose(
        lambda s: divide_out(x, illumination_retinex(x, s), clean, mask), options, clean, mask
    )
    return y, s


def relight_polyfit(
    image: np.ndarray,
    clean: np.ndarray,
    mask: np.ndarray | None = None,
    orders: Sequence[int] = ORDERS,
) -> tuple[np.ndarray, int]:
    """ORACLE: the low-order fit divided out, order and overall gain chosen by oracle;
    ``(estimate, order)``."""
    x = check_image(image, "relight polyfit", Truth(clean=clean, mask=mask))
    y, o, _ = choose(
        lambda o: divide_out(x, illumination_polyfit(x, o), clean, mask), orders, clean, mask
    )
    return y, o


def relight_retinex_oracle(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """Registry form of :func:`relight_retinex` (needs ``truth.clean``)."""
    truth.need("relight retinex", "clean")
    return relight_retinex(degraded, truth.clean, truth.mask)[0]


def relight_polyfit_oracle(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """Registry form of :func:`relight_polyfit` (needs ``truth.clean``)."""
    truth.need("relight polyfit", "clean")
    return relight_polyfit(degraded, truth.clean, truth.mask)[0]


def relight_best_oracle(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE: the better of the Retinex and the low-order estimate for this image."""
    truth.need("relight best", "clean")
    return choose(
        lambda f: f(degraded, truth),
        (relight_retinex_oracle, relight_polyfit_oracle),
        truth.clean,
        truth.mask,
    )[0]
