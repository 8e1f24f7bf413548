"""What a classical baseline is owed: :class:`Truth`, and the checks of its input.

Every baseline is ``fn(degraded, truth) -> estimate``: ``degraded`` ``(C, H, W)`` float32
linear (0 = black, 1 = white) with one component in, the estimate the same image with that
component removed. ``truth`` carries only what the baseline is given; a baseline that uses
``clean`` (the image without the component) to pick its free parameter is an *oracle*.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from data_gen.core.errors import require
from data_gen.noise import NoiseModel


@dataclass
class Truth:
    """What a baseline may be given (all optional; a baseline names what it needs).

    * ``clean`` ``(C, H, W)``: the image without the component — the oracle's judge;
    * ``mask`` ``(H, W)`` bool: the pixels oracle choices count (e.g. valid depth);
    * fog: ``t`` ``(H, W)`` transmission in (0, 1], ``airlight`` ``(C,)`` linear;
    * defocus: ``layers``, the depth layers of ``defocus_layers`` (far to near: mask
      ``(H, W)``, disc kernel ``(K, K)``, coverage ``(H, W)``), the slabs' radii in their
      discs;
    * motion: ``kernel`` ``(K, K)`` or ``(C, K, K)``, summing to 1;
    * lens blur: ``psfs`` ``(J, C, K, K)`` and ``index`` ``(H, W)`` (the PSF of each pixel);
    * noise: ``noise``, the sensor's ``σ²(v) = A·max(v, 0) + B``.
    """

    clean: np.ndarray | None = None
    mask: np.ndarray | None = None
    t: np.ndarray | None = None
    airlight: np.ndarray | None = None
    layers: list | None = None
    kernel: np.ndarray | None = None
    psfs: np.ndarray | None = None
    index: np.ndarray | None = None
    noise: NoiseModel | None = None

    def need(self, who: str, *names: str) -> None:
        """Refuse in one line when a field ``who`` needs is missing."""
        known = {f.name for f in fields(self)}
        for n in names:
            assert n in known, n
            require(getattr(self, n) is not None, f"baseline {who} needs truth.{n}; it is missing")


def check_image(x: np.ndarray, who: str, truth: Truth | None = None) -> np.ndarray:
    """``x`` as float32 ``(C, H, W)``, finite; ``truth.clean`` / ``mask`` of matching shape."""
    x = np.asarray(x)
    require(x.ndim == 3, f"baseline {who}: expected an image (C, H, W), got shape {x.shape}")
    require(bool(np.isfinite(x).all()), f"baseline {who}: the image holds NaN or infinite values")
    if truth is not None and truth.clean is not None:
        require(
            truth.clean.shape == x.shape,
            f"baseline {who}: truth.clean is {truth.clean.shape}, the image {x.shape}",
        )
    if truth is not None and truth.mask is not None:
        require(
            truth.mask.shape == x.shape[1:] and bool(truth.mask.any()),
            f"baseline {who}: truth.mask must be a non-empty (H, W) = {x.shape[1:]} map, "
            f"got {truth.mask.shape}",
        )
    return x.astype(np.float32, copy=False)
