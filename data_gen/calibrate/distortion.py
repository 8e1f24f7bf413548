"""Chart geometry: a homography per capture and the lens's radial distortion ``[k1, k2]``.

The distortion model is the project's (:func:`data_gen.physics.distortion.distort_points`:
``r_d = r·(1 + k1·r² + k2·r⁴)``, ``r`` from the frame centre over the half diagonal),
imported here and nowhere else in the calibration, so a move of that function is a
one-line change. A planar chart point ``q`` (chart units: one square = 1) is imaged at
the ideal position ``p = H·q`` (a homography, pixels ``(y, x)``) and recorded at
``distort(p)``; the corners fix ``H`` per capture and ``k`` for all of them by
least squares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from data_gen.physics.distortion import distort_points, undistort_points

__all__ = ["Geometry", "apply_h", "distort_points", "fit_geometry", "fit_homography", "undistort_points"]  # fmt: skip


def apply_h(h: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(N, 2)`` chart points ``(i, j)`` -> ``(N, 2)`` image points ``(y, x)`` through the
    3×3 homography ``h`` (acting on ``(j, i, 1)`` -> ``(x, y, w)``)."""
    q = np.asarray(q, np.float64)
    v = np.stack([q[:, 1], q[:, 0], np.ones(len(q))], 1) @ h.T
    return np.stack([v[:, 1] / v[:, 2], v[:, 0] / v[:, 2]], 1)


def fit_homography(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The homography mapping chart points ``q`` ``(N, 2)`` to image points ``p`` ``(N, 2)``
    (normalised DLT, ``N >= 4``); ``h[2, 2] = 1``."""

    def norm(a):
        c = a.mean(0)
        s = np.sqrt(2) / max(np.sqrt(((a - c) ** 2).sum(1)).mean(), 1e-12)
        t = np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])
        return t, (a - c) * s

    src = np.stack([q[:, 1], q[:, 0]], 1)  # (x, y)
    dst = np.stack([p[:, 1], p[:, 0]], 1)
    ts, s = norm(src)
    td, d = norm(dst)
    rows = []
    for (x, y), (u, v) in zip(s, d, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    hn = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ hn @ ts
    return h / h[2, 2]


@dataclass
class Geometry:
    """Fitted chart geometry: ``homographies`` (one 3×3 per capture), distortion ``k``
    ``(k1, k2)``, the frame ``shape`` ``(H, W)``, RMS and max corner residual (px)."""

    homographies: list[np.ndarray]
    k: tuple[float, float]
    shape: tuple[int, int]
    rms_px: float
    max_px: float
    corners: int

    def project(self, capture: int, q: np.ndarray) -> np.ndarray:
        """Where chart points ``q`` ``(N, 2)`` are recorded in capture ``capture``, ``(N, 2)``."""
        return distort_points(apply_h(self.homographies[capture], q), self.shape, self.k)


def fit_geometry(
    correspondences: list[tuple[np.ndarray, np.ndarray]],
    shape: tuple[int, int],
    fit_distortion: bool = True,
    reject: float = 4.0,
) -> tuple[Geometry, list[np.ndarray]]:
    """Homographies and a shared ``[k1, k2]`` from ``[(q, x), ...]`` per capture (chart
    points ``q`` and recorded corners ``x``, ``(N, 2)`` each, ``N >= 4``), by least
    squares on the corner positions (start: ``k = 0``, DLT homographies). Corners more
    than ``reject`` robust σ (and 0.5 px) off are dropped and the fit repeated (twice).
    Returns the geometry and, per capture, the corners kept ``(N,)`` bool."""
    keep = [np.ones(len(q), bool) for q, _ in correspondences]
    geo = None
    for _ in range(3):
        used = [(q[m], x[m]) for (q, x), m in zip(correspondences, keep, strict=True)]
        geo = _fit(used, shape, fit_distortion)
        new = []
        for c, (q, x) in enumerate(correspondences):
            d = np.sqrt(((geo.project(c, q) - x) ** 2).sum(1))
            s = 1.4826 * np.median(d[keep[c]]) + 1e-9
            new.append(d <= max(reject * s, 0.5))
        if all((a == b).all() for a, b in zip(new, keep, strict=True)):
            break
        keep = new
    assert geo is not None
    return geo, keep


def _fit(
    correspondences: list[tuple[np.ndarray, np.ndarray]],
    shape: tuple[int, int],
    fit_distortion: bool,
) -> Geometry:
    hs0 = [fit_homography(q, x) for q, x in correspondences]

    def unpack(v):
        k = (v[0], v[1]) if fit_distortion else (0.0, 0.0)
        rest = v[2:] if fit_distortion else v
        hs = [np.append(rest[8 * i : 8 * i + 8], 1.0).reshape(3, 3) for i in range(len(hs0))]
        return k, hs

    def resid(v):
        k, hs = unpack(v)
        return np.concatenate(
            [
                (distort_points(apply_h(h, q), shape, k) - x).ravel()
                for h, (q, x) in zip(hs, correspondences, strict=True)
            ]
        )

    v0 = np.concatenate([[0.0, 0.0] if fit_distortion else [], *(h.ravel()[:8] for h in hs0)])
    sol = least_squares(resid, v0, x_scale="jac", method="lm", max_nfev=2000)
    k, hs = unpack(sol.x)
    r = sol.fun.reshape(-1, 2)
    d = np.sqrt((r**2).sum(1))
    return Geometry(
        hs, (float(k[0]), float(k[1])), tuple(shape), float(np.sqrt((d**2).mean())),
        float(d.max()), len(d),
    )  # fmt: skip
