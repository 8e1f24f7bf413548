"""Depth maps: ``(H, W)`` metres, finite and ≥ 0; stereo disparity to depth."""

from __future__ import annotations

import numpy as np

from data_gen.errors import require


def check_depth(depth: np.ndarray, shape: tuple[int, int] | None = None, name: str = "") -> None:
    """A depth map must be finite, ≥ 0 metres, and (when given) of the image's size."""
    where = f"depth map {name}: " if name else "depth map: "
    d = np.asarray(depth)
    require(d.ndim == 2, f"{where}expected (H, W), got {d.shape}")
    if shape is not None:
        require(
            d.shape == tuple(shape),
            f"{where}{d.shape[1]}x{d.shape[0]} px, the image is {shape[1]}x{shape[0]}",
        )
    require(bool(np.isfinite(d).all()), f"{where}holds NaN or infinite values")
    require(bool((d >= 0).all()), f"{where}holds negative depths (metres are >= 0)")


def depth_from_disparity(disparity: np.ndarray, focal_px: float, baseline_m: float) -> np.ndarray:
    """Stereo disparity (px, > 0) to depth: ``z = f·B / d`` in metres (``f`` in px, ``B`` in
    m); zero or negative disparity (no match) is refused."""
    d = np.asarray(disparity, np.float64)
    require(bool(np.isfinite(d).all() and (d > 0).all()), "disparity must be finite and > 0")
    return (focal_px * baseline_m / d).astype(np.float32)
