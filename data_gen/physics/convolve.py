"""Space-invariant convolution of images: ``(C, H, W)`` float32, kernels ``(K, K)`` or
``(C, K, K)`` (odd sides), 'same' output, zero outside the frame."""

from __future__ import annotations

import numpy as np


def blur_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Every channel of ``image`` convolved with ``kernel`` (one 2-D kernel for all channels,
    or one per channel), same size."""
    k = np.asarray(kernel, np.float32)
    ks = [k] * len(image) if k.ndim == 2 else list(k)
    from scipy import signal  # when used: its import costs a command 0.7 s

    return np.stack(
        [signal.fftconvolve(c, kc, mode="same") for c, kc in zip(image, ks, strict=True)]
    ).astype(np.float32)
