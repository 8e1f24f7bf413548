"""Depth maps: ``(H, W)`` metres, finite and ≥ 0; stereo disparity to depth."""

from __future__ import annotations

import numpy as np

from data_gen.core.errors import require


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


def ground_plane(
    shape: tuple[int, int],
    horizon: float,
    height_m: float,
    focal_px: float,
    far_m: float,
    relief: np.ndarray | None = None,
) -> np.ndarray:
    """A plausible depth map ``(H, W)`` metres for a photograph without a measured one:
    a camera ``height_m`` above a flat ground, optical axis level, horizon at row
    ``horizon·H``. A pixel ``y − y_h`` rows below the horizon sees the ground at
    ``z = height_m·focal_px / (y − y_h)``; rows at or above it see ``far_m``; ``z`` is
    capped at ``far_m``. ``relief`` ``(H, W)`` (optional, > 0): a smooth multiplicative
    factor for what stands on the ground (objects nearer than the ground behind them);
    the result is capped at ``far_m`` again."""
    h, w = shape
    require(0 <= horizon <= 1, f"ground plane horizon = {horizon}: a fraction of the height")
    require(height_m > 0 and focal_px > 0 and far_m > 0, "ground plane: sizes must be > 0")
    below = np.arange(h, dtype=np.float64) + 0.5 - horizon * h
    z = np.where(below > 0, height_m * focal_px / np.maximum(below, 1e-9), far_m)
    z = np.minimum(z, far_m)[:, None].repeat(w, 1)
    if relief is not None:
        z = np.minimum(z * relief, far_m)
    return z.astype(np.float32)
