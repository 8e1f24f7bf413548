"""Test inputs the physics tests share: a dead-leaves scene with depth, a disc lens, and
where a PSF's first dark ring lies."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from data_gen.physics.defocus import disc_kernel
from data_gen.sources import dead_leaves


def lens(radius: float = 2.0, side: int = 15) -> np.ndarray:
    """A disc lens PSF ``(3, side, side)``."""
    k = disc_kernel(radius)
    psf = np.zeros((3, side, side), np.float32)
    o = (side - k.shape[0]) // 2
    psf[:, o : o + k.shape[0], o : o + k.shape[0]] = k
    return psf


def scene(seed: int, size: int, smooth_depth: bool):
    """Dead leaves inside the sensor's range and their depth: exact (a depth edge at every
    leaf) or smoothed (σ = 12 px: the smooth transmission the composition assumes)."""
    rng = np.random.default_rng(seed)
    s, depth = dead_leaves(rng, size=size, supersample=2, depth=(1.0, 20.0))
    if smooth_depth:
        depth = gaussian_filter(depth, 12).astype(np.float32)
    return (0.05 + 0.6 * s).astype(np.float32), depth, rng


def radial_first_minimum(psf: np.ndarray, pitch: float) -> float:
    """Radius (µm) of the first local minimum of the profile along +x from the centre."""
    c = psf.shape[0] // 2
    prof = psf[c, c:]
    i = next(i for i in range(1, len(prof) - 1) if prof[i] <= prof[i - 1] and prof[i] < prof[i + 1])
    return i * pitch
