"""Non-blind deblurring with the true blur: camera shake (one kernel) and defocus (one disc
per depth layer), by Wiener (oracle regularisation) or Richardson–Lucy (oracle iteration
count). Padded by reflection (:mod:`residual_train.evaluate.deconvolution`).

Defocus follows the renderer's layers (``defocus_layers``: depth slabs, far to near, each
with the disc of its mean circle-of-confusion radius): the whole image is deconvolved with
each layer's disc and each pixel is taken from the layer it belongs to; in-focus layers
(a 1×1 disc) are left as they are. The oracle picks each layer's parameter on that layer's
own pixels, which minimises the total squared error over every per-layer choice. At depth
edges the rendering is a composite, not a convolution, so no single disc inverts it there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_gen.core.errors import require
from residual_train.evaluate.baselines import BALANCES
from residual_train.evaluate.classical.truth import Truth, check_image
from residual_train.evaluate.deconvolution import deconvolve, deconvolve_each
from residual_train.evaluate.oracle import choose

METHODS = ("wiener", "richardson_lucy")
# Richardson–Lucy iteration counts the oracle picks from: a shake kernel (no spectral
# zeros to speak of, noise-free input) keeps gaining up to the largest; a disc has zeros and
# its layers meet at depth edges, and the oracle stops by 20 or so on the benchmark's images
RL_ITERATIONS = (5, 10, 20, 40, 80, 160)
RL_ITERATIONS_DEFOCUS = (5, 10, 20, 40, 80)
OPTIONS = {"wiener": BALANCES, "richardson_lucy": RL_ITERATIONS}
OPTIONS_DEFOCUS = {"wiener": BALANCES, "richardson_lucy": RL_ITERATIONS_DEFOCUS}


def _check_kernel(kernel: np.ndarray, channels: int, who: str) -> np.ndarray:
    k = np.asarray(kernel, np.float64)
    require(
        k.ndim in (2, 3) and (k.ndim == 2 or k.shape[0] == channels),
        f"{who}: kernel must be (K, K) or ({channels}, K, K), got {k.shape}",
    )
    require(
        bool(np.isfinite(k).all() and (k >= 0).all()),
        f"{who}: the kernel must be finite and >= 0",
    )
    s = k.sum(axis=(-2, -1))
    require(bool((s > 0).all()), f"{who}: the kernel is all zero")
    return k / s[..., None, None]


def _check_method(method: str) -> None:
    require(method in METHODS, f"deblur: method = {method!r}; use one of {', '.join(METHODS)}")


def deblur_kernel(image: np.ndarray, kernel: np.ndarray, method: str, param) -> np.ndarray:
    """``image`` ``(C, H, W)`` deconvolved with the space-invariant ``kernel`` ``(K, K)`` or
    ``(C, K, K)`` (e.g. a camera-shake kernel): ``method`` ``wiener`` (``param`` =
    regularisation balance) or ``richardson_lucy`` (``param`` = iterations)."""
    _check_method(method)
    x = check_image(image, f"deblur ({method})")
    return deconvolve(x, _check_kernel(kernel, x.shape[0], "deblur"), method, param)


def deblur_kernel_oracle(
    image: np.ndarray,
    kernel: np.ndarray,
    method: str,
    clean: np.ndarray,
    mask: np.ndarray | None = None,
    options: Sequence | None = None,
) -> tuple[np.ndarray, object]:
    """ORACLE: :func:`deblur_kernel` with the parameter from ``options`` (default
    :data:`OPTIONS`) closest to ``clean`` (over ``mask``); ``(estimate, parameter)``."""
    _check_method(method)
    x = check_image(image, f"deblur ({method})", Truth(clean=clean, mask=mask))
    k = _check_kernel(kernel, x.shape[0], "deblur")
    cands = deconvolve_each(x, k, method, options or OPTIONS[method])
    y, p, _ = choose(cands.get, cands, clean, mask)
    return y, p


def _check_layers(layers: list, shape: tuple[int, int]) -> None:
    require(bool(layers), "defocus deblur: no depth layers given")
    for i, layer in enumerate(layers):
        require(
            len(layer) == 3 and layer[0].shape == shape,
            f"defocus deblur: layer {i} must be (mask {shape}, disc (K, K), coverage {shape}) "
            "as defocus_layers makes them",
        )


def deblur_layers(image: np.ndarray, layers: list, method: str, params: Sequence) -> np.ndarray:
    """``image`` ``(C, H, W)`` deconvolved layer by layer: layer ``i`` of ``layers`` (as
    ``defocus_layers`` returns them) with its disc and ``params[i]``; each pixel from its
    own layer."""
    _check_method(method)
    x = check_image(image, f"defocus deblur ({method})")
    _check_layers(layers, x.shape[1:])
    require(len(params) == len(layers), "defocus deblur: one parameter per layer")
    out = x.copy()
    for (mask, k, _), p in zip(layers, params, strict=True):
        if k.size > 1:
            sel = mask > 0.5
            out[:, sel] = deconvolve(x, k, method, p)[:, sel]
    return out


def deblur_layers_oracle(
    image: np.ndarray,
    layers: list,
    method: str,
    clean: np.ndarray,
    mask: np.ndarray | None = None,
    options: Sequence | None = None,
) -> tuple[np.ndarray, list]:
    """ORACLE: :func:`deblur_layers` with each layer's parameter from ``options`` (default
    :data:`OPTIONS_DEFOCUS`) closest to ``clean`` on that layer's pixels (within ``mask``);
    ``(estimate, parameters)`` (``None`` for in-focus layers)."""
    _check_method(method)
    x = check_image(image, f"defocus deblur ({method})", Truth(clean=clean, mask=mask))
    _check_layers(layers, x.shape[1:])
    out, chosen = x.copy(), []
    for layer_mask, k, _ in layers:
        sel = layer_mask > 0.5
        judge = sel if mask is None else sel & mask
        if k.size == 1 or not judge.any():  # in focus, or no pixel to judge by
            chosen.append(None)
            continue
        cands = deconvolve_each(x, k, method, options or OPTIONS_DEFOCUS[method])
        y, p, _ = choose(cands.get, cands, clean, judge)
        out[:, sel] = y[:, sel]
        chosen.append(p)
    return out, chosen


def defocus_wiener(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE registry form: Wiener with the true discs per layer, balance by oracle."""
    truth.need("defocus wiener", "layers", "clean")
    return deblur_layers_oracle(degraded, truth.layers, "wiener", truth.clean, truth.mask)[0]


def defocus_richardson_lucy(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE registry form: Richardson–Lucy with the true discs per layer, iterations by
    oracle."""
    truth.need("defocus richardson_lucy", "layers", "clean")
    return deblur_layers_oracle(degraded, truth.layers, "richardson_lucy", truth.clean, truth.mask)[
        0
    ]


def motion_wiener(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE registry form: Wiener with the true shake kernel, balance by oracle."""
    truth.need("motion wiener", "kernel", "clean")
    return deblur_kernel_oracle(degraded, truth.kernel, "wiener", truth.clean, truth.mask)[0]


def motion_richardson_lucy(degraded: np.ndarray, truth: Truth) -> np.ndarray:
    """ORACLE registry form: Richardson–Lucy with the true shake kernel, iterations by
    oracle."""
    truth.need("motion richardson_lucy", "kernel", "clean")
    return deblur_kernel_oracle(degraded, truth.kernel, "richardson_lucy", truth.clean, truth.mask)[
        0
    ]
