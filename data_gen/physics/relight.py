"""Relighting: ``S' = G ⊙ S`` with a smooth positive gain ``G`` of broad Gaussian lights over
an ambient level. Images ``(C, H, W)`` float32 linear (0 = black, 1 = white)."""

from __future__ import annotations

import math

import numpy as np

from data_gen.core.errors import require


def draw_relight(
    rng: np.random.Generator,
    lights: tuple[int, int],
    ambient: tuple[float, float],
    amplitude: tuple[float, float],
    width: tuple[float, float],
) -> dict:
    """A few broad Gaussian lights over an ambient level: ``ambient`` (> 0) and ``lights``
    ``(n, 4)`` rows of (centre y, centre x as frame fractions, width as a fraction of the
    frame diagonal, amplitude ≥ 0)."""
    n = int(rng.integers(lights[0], lights[1] + 1))
    rows = np.stack(
        [
            rng.uniform(0, 1, n),
            rng.uniform(0, 1, n),
            rng.uniform(*width, n),
            rng.uniform(*amplitude, n),
        ],
        1,
    )
    return {"ambient": float(rng.uniform(*ambient)), "lights": rows}


def gain_map(
    shape: tuple[int, int],
    ambient: float,
    lights: np.ndarray,
    frame: tuple[int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """The smooth positive gain ``G`` ``(H, W)`` float32 of :func:`draw_relight`'s params:
    ``G = ambient + Σ a·exp(−d²/2w²)`` (``d``, ``w`` in units of the frame diagonal).

    ``frame``, ``origin``: the map of an ``(H, W)`` window whose top-left pixel is
    ``origin`` (y, x) in a frame of ``frame`` = (height, width) pixels (default: the
    window is the frame)."""
    lights = np.asarray(lights, np.float64).reshape(-1, 4)
    require(ambient > 0, f"relight ambient = {ambient}: the gain must be > 0")
    require(
        bool((lights[:, 2] > 0).all() and (lights[:, 3] >= 0).all()),
        "relight lights: widths must be > 0 and amplitudes >= 0 (the gain must be > 0)",
    )
    h, w = frame if frame is not None else shape
    diag = math.hypot(h, w)
    y = (np.arange(shape[0]) + origin[0] + 0.5)[:, None]
    x = (np.arange(shape[1]) + origin[1] + 0.5)[None, :]
    g = np.full(tuple(shape), float(ambient))
    for cy, cx, width, amp in lights:  # a Gaussian is separable: exp(−dy²/2w²)·exp(−dx²/2w²)
        s2 = 2 * (width * diag) ** 2
        g += (amp * np.exp(-((y - cy * h) ** 2) / s2)) * np.exp(-((x - cx * w) ** 2) / s2)
    return g.astype(np.float32)


def relight(scene: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``S' = G ⊙ S``: ``scene`` ``(C, H, W)`` times the gain ``(H, W)`` (> 0)."""
    require(bool((gain > 0).all()), "relight: the gain map must be > 0 everywhere")
    return (scene * gain[None]).astype(np.float32)


def estimate_gain(
    before: np.ndarray, after: np.ndarray, radius: int = 2, ridge: float = 1e-4
) -> np.ndarray:
    """The smooth gain ``G`` ``(H, W)`` of ``after ≈ G·before`` (``(C, H, W)`` each), from the
    images alone: a least-squares fit through the origin over the channels and a
    ``(2·radius + 1)²`` window (``G`` is the same for every channel and smooth), pulled
    towards the image's overall gain where the window is black (``ridge`` relative to the
    mean energy)."""
    from scipy.ndimage import uniform_filter

    u, v = before.astype(np.float64), after.astype(np.float64)
    num = uniform_filter((u * v).sum(0), 2 * radius + 1, mode="nearest")
    den = uniform_filter((u * u).sum(0), 2 * radius + 1, mode="nearest")
    overall = num.sum() / max(den.sum(), 1e-30)
    eps = ridge * max(float(den.mean()), 1e-30)
    return ((num + eps * overall) / (den + eps)).astype(np.float32)
