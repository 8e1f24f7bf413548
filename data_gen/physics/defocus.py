"""Defocus: the thin-lens circle of confusion and a disc PSF composited in depth layers,
back to front with occlusion. Images ``(C, H, W)`` float32 linear; depth ``(H, W)`` metres;
radii in pixels."""

from __future__ import annotations

import math

import numpy as np

from data_gen.core.errors import require
from data_gen.physics.depth import check_depth


def coc_radius_px(
    depth: np.ndarray | float,
    focus_m: float,
    focal_mm: float,
    f_number: float,
    pixel_um: float,
) -> np.ndarray:
    """Thin-lens circle-of-confusion radius on the sensor, in pixels:
    ``c = f² / (N·(s − f)) · |d − s| / d`` (diameter; ``f`` focal length, ``N`` f-number,
    ``s`` focus distance, ``d`` object distance), halved and divided by the pixel pitch."""
    f = focal_mm * 1e-3
    require(focus_m > f, f"defocus focus = {focus_m} m must be beyond the focal length {f} m")
    d = np.maximum(np.asarray(depth, np.float64), 1e-6)
    c = f * f / (f_number * (focus_m - f)) * np.abs(d - focus_m) / d
    return c / 2 / (pixel_um * 1e-6)


def disc_kernel(radius: float, oversample: int = 8) -> np.ndarray:
    """A uniform disc of ``radius`` px, anti-aliased by area (``oversample``² points per
    pixel), summing to 1; radius < 0.5 gives the identity ``[[1]]``."""
    if radius < 0.5:
        return np.ones((1, 1), np.float32)
    n = math.ceil(radius - 0.5) * 2 + 1
    o = oversample
    c = (np.arange(n * o) + 0.5) / o - n / 2
    inside = (c[:, None] ** 2 + c[None, :] ** 2) <= radius**2
    k = inside.reshape(n, o, n, o).mean(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def layer_index(depth: np.ndarray, layers: int) -> np.ndarray:
    """The depth layer ``(H, W)`` int of every pixel: ``layers`` slabs between the depth
    map's quantiles (0 = nearest)."""
    check_depth(depth)
    require(layers >= 1, f"defocus layers = {layers}: at least 1")
    d = depth.astype(np.float64)
    edges = np.quantile(d, np.linspace(0, 1, layers + 1))
    edges[-1] = np.inf
    return np.clip(np.searchsorted(edges, d, side="right") - 1, 0, layers - 1)


def defocus_layers(
    depth: np.ndarray, radius_px: np.ndarray, layers: int = 12
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The depth layers :func:`defocus` composites, far to near: per non-empty slab its mask
    ``(H, W)``, disc kernel (the slab's mean radius) and blurred coverage ``α`` ``(H, W)``
    (float64). They depend on the depth and radii only, not on the image."""
    idx = layer_index(depth, layers)
    plan = []
    for layer in range(layers - 1, -1, -1):  # far to near
        mask = (idx == layer).astype(np.float64)
        if not mask.any():
            continue
        k = disc_kernel(float(radius_px[idx == layer].mean())).astype(np.float64)
        from scipy import signal  # when used: its import costs a command 0.7 s

        alpha = mask if k.size == 1 else np.clip(signal.fftconvolve(mask, k, mode="same"), 0, 1)
        plan.append((mask, k, alpha))
    return plan


def composite_layers(
    image: np.ndarray, plan: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """``image`` ``(C, H, W)`` blurred layer by layer (:func:`defocus_layers`): each
    layer's premultiplied colour laid over what lies behind, ``out = out·(1 − α) + colour``,
    then divided by the accumulated coverage."""
    out = np.zeros(image.shape, np.float64)
    acc = np.zeros(image.shape[1:], np.float64)
    for mask, k, alpha in plan:
        if k.size == 1:
            colour = image * mask[None]
        else:
            from scipy import signal  # when used: its import costs a command 0.7 s

            colour = np.stack([signal.fftconvolve(c * mask, k, mode="same") for c in image])
        out = out * (1 - alpha[None]) + colour
        acc = acc * (1 - alpha) + alpha
    return (out / np.maximum(acc, 1e-8)[None]).astype(np.float32)


def defocus(
    image: np.ndarray, depth: np.ndarray, radius_px: np.ndarray, layers: int = 12
) -> np.ndarray:
    """Depth-dependent disc blur composited in depth layers, back to front.

    ``radius_px`` ``(H, W)``: each pixel's CoC radius (:func:`coc_radius_px`). The depth
    range is cut into ``layers`` slabs; each slab's premultiplied colour and its coverage
    are blurred with the disc of the slab's mean radius and laid over what lies behind
    (``out = out·(1 − α) + colour``), so a sharp foreground is never covered by a blurred
    background; the result is divided by the accumulated coverage (alpha-normalised: no
    darkening where blur spreads light across the frame edge)."""
    check_depth(depth, image.shape[1:])
    return composite_layers(image, defocus_layers(depth, radius_px, layers))
