"""Radial lens distortion ``r_d = r·(1 + k1·r² + k2·r⁴ + …)`` (``r``: distance from the frame
centre over the half diagonal) and its correction by resampling. Kept out of the blur:
corrected after it. Images ``(C, H, W)`` float32; points ``(N, 2)`` (y, x) in pixels with
``(0, 0)`` the centre of the top-left pixel."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import map_coordinates


def _normalise(pts: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    h, w = shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    scale = math.hypot(h, w) / 2  # radius 1 = the frame's corner
    return (np.asarray(pts, np.float64) - centre) / scale, centre, scale


def distort_points(pts: np.ndarray, shape: tuple[int, int], k: tuple[float, ...]) -> np.ndarray:
    """Where the lens images ideal positions ``pts`` ``(N, 2)`` (y, x px):
    ``r_d = r·(1 + k1·r² + k2·r⁴ + …)`` with ``r`` = distance from the frame centre over the
    half diagonal."""
    u, centre, scale = _normalise(pts, shape)
    return u * radial_factor((u**2).sum(-1, keepdims=True), k) * scale + centre


def undistort_points(
    pts: np.ndarray, shape: tuple[int, int], k: tuple[float, ...], iterations: int = 50
) -> np.ndarray:
    """The inverse of :func:`distort_points` (fixed-point iteration ``u = d / f(|u|²)``)."""
    d, centre, scale = _normalise(pts, shape)
    u = d.copy()
    for _ in range(iterations):
        u = d / radial_factor((u**2).sum(-1, keepdims=True), k)
    return u * scale + centre


def _resample(image: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    h, w = image.shape[1:]
    grid = coords.reshape(h, w, 2).transpose(2, 0, 1)
    return np.stack([map_coordinates(c, grid, order=order, mode="nearest") for c in image]).astype(
        np.float32
    )


def _pixel_grid(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)


def distort_image(image: np.ndarray, k: tuple[float, ...], order: int = 3) -> np.ndarray:
    """What a lens with radial coefficients ``k`` records of an ideal ``image``."""
    shape = image.shape[1:]
    return _resample(image, undistort_points(_pixel_grid(shape), shape, k), order)


def correct_distortion(image: np.ndarray, k: tuple[float, ...], order: int = 3) -> np.ndarray:
    """Undo radial distortion by resampling (``order`` 1: bilinear, 3: bicubic): each output
    pixel reads the recorded image where the lens put that ideal position."""
    shape = image.shape[1:]
    return _resample(image, distort_points(_pixel_grid(shape), shape, k), order)


def radial_factor(r2: np.ndarray, k: tuple[float, ...]) -> np.ndarray:
    """``1 + k1·r² + k2·r⁴ + …`` at squared normalised radii ``r2``."""
    return 1 + sum(ki * r2 ** (i + 1) for i, ki in enumerate(k))


MAX_SHIFT = 0.5  # largest |r_d − r| over the frame, in half diagonals


def check_coefficients(k: tuple[float, ...], where: str = "distortion") -> tuple[float, ...]:
    """Radial coefficients a lens can have: finite, the map ``r -> r_d`` increasing over the
    frame (``r`` in [0, 1], 1 = the corner: a decreasing map folds the frame over itself)
    and moving no point by more than :data:`MAX_SHIFT` half diagonals (a larger one is no
    lens the polynomial model describes). Returns ``k`` as floats."""
    from data_gen.core.errors import require

    k = tuple(float(v) for v in k)
    require(all(math.isfinite(v) for v in k), f"{where} = {list(k)}: coefficients must be finite")
    r = np.linspace(0.0, 1.0, 2001)
    rd = r * radial_factor(r * r, k)
    slope = np.diff(rd)
    require(
        bool((slope > 0).all()),
        f"{where} = {list(k)}: the radial map r -> r(1 + k1 r² + ...) is not increasing over "
        f"the frame (it turns at r = {r[int(np.argmax(slope <= 0))]:.2f} of the half "
        "diagonal): such a lens would fold the image over itself",
    )
    shift = float(np.abs(rd - r).max())
    require(
        shift <= MAX_SHIFT,
        f"{where} = {list(k)}: moves points by up to {shift:.2f} half diagonals (at most "
        f"{MAX_SHIFT} for a lens this model describes)",
    )
    return k
