"""Fog (atmospheric scattering): ``I = J·t + A·(1 − t)``, ``t = exp(−β·depth)``. Images
``(C, H, W)`` float32 linear; depth ``(H, W)`` in metres; ``β`` in 1/m."""

from __future__ import annotations

import math

import numpy as np

from data_gen.core.errors import require
from data_gen.physics.depth import check_depth


def transmission(depth: np.ndarray, beta: float) -> np.ndarray:
    """``t = exp(−β·depth)`` ``(H, W)``; ``beta`` in 1/m (≥ 0), ``depth`` in m (≥ 0)."""
    require(beta >= 0 and math.isfinite(beta), f"fog beta = {beta}: must be >= 0 (1/m)")
    check_depth(depth)
    return np.exp(-float(beta) * depth.astype(np.float64)).astype(np.float32)


def add_fog(scene: np.ndarray, t: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    """Atmospheric scattering: ``I = J·t + A·(1 − t)``; ``airlight`` ``A`` per channel."""
    a = np.asarray(airlight, np.float32).reshape(-1, 1, 1)
    return (scene * t[None] + a * (1 - t[None])).astype(np.float32)


def remove_fog(foggy: np.ndarray, t: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    """The scene ``J = (I − A·(1 − t)) / t`` (the exact inverse of :func:`add_fog`)."""
    require(bool((t > 0).all()), "remove_fog: transmission must be > 0 everywhere")
    a = np.asarray(airlight, np.float64).reshape(-1, 1, 1)
    t64 = t.astype(np.float64)[None]
    return ((foggy.astype(np.float64) - a * (1 - t64)) / t64).astype(np.float32)


def draw_fog(
    rng: np.random.Generator,
    beta: tuple[float, float],
    airlight: tuple[float, float],
    tint: float,
    channels: int,
) -> dict:
    """Scattering coefficient ``beta`` (1/m, log-uniform in the range) and a near-grey
    airlight per channel (a grey level drawn in ``airlight`` times ``1 ± tint``). The
    ranges' defaults live in ``conf/component/fog.yaml``."""
    b = float(np.exp(rng.uniform(np.log(beta[0]), np.log(beta[1]))))
    a = rng.uniform(*airlight) * (1 + rng.uniform(-tint, tint, channels))
    return {"beta": b, "airlight": a.astype(np.float32)}


def estimate_airlight(before: np.ndarray, after: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """The airlight ``A`` ``(C,)`` of ``after = t·before + A·(1 − t)`` from the images alone:
    every pixel moves along the line from its colour towards ``A``, so ``A`` is the point
    nearest to all those lines (least squares, each line weighted by how far its pixel
    moved), with a small ``ridge`` towards the colour the fog moved most."""
    u = before.reshape(before.shape[0], -1).astype(np.float64)
    d = after.reshape(after.shape[0], -1).astype(np.float64) - u
    w = (d * d).sum(0)
    c = u.shape[0]
    if w.max() <= 0:
        return np.ones(c, np.float32)
    n = d / np.sqrt(np.maximum(w, 1e-300))
    # Σ w (I − n nᵀ) A = Σ w (I − n nᵀ) u
    lhs = np.eye(c) * w.sum() - (n * w) @ n.T
    rhs = (u * w).sum(1) - (n * w) @ (n * u).sum(0)
    far = u[:, int(np.argmax(w))] + d[:, int(np.argmax(w))]
    lam = ridge * w.sum()
    a = np.linalg.solve(lhs + lam * np.eye(c), rhs + lam * far)
    return a.astype(np.float32)


def estimate_transmission(
    before: np.ndarray, after: np.ndarray, radius: int = 1, ridge: float = 1e-4
) -> np.ndarray:
    """The transmission ``t`` ``(H, W)`` of ``after = t·before + A·(1 − t)`` from the images
    alone (:func:`estimate_airlight` first): ``1 − t`` is each pixel's move towards ``A``
    over its distance to ``A``, fitted over the channels and a ``(2·radius + 1)²`` window,
    pulled towards the image's overall value where a colour lies on the airlight."""
    from scipy.ndimage import uniform_filter

    a = estimate_airlight(before, after).astype(np.float64)[:, None, None]
    u = before.astype(np.float64)
    d = after.astype(np.float64) - u
    to_a = a - u
    size = 2 * radius + 1
    num = uniform_filter((d * to_a).sum(0), size, mode="nearest")
    den = uniform_filter((to_a * to_a).sum(0), size, mode="nearest")
    overall = num.sum() / max(den.sum(), 1e-30)
    eps = ridge * max(float(den.mean()), 1e-30)
    return (1 - (num + eps * overall) / (den + eps)).astype(np.float32)
