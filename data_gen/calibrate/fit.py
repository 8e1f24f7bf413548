"""The line both noise methods fit: ``σ²(v) = A·max(v, 0) + B`` through binned points.

Each point is a sample variance ``y`` of ``n`` values at mean signal ``x`` (normalised
units). Its own variance is ``2·σ⁴/(n·dof)`` (``dof`` = degrees of freedom per value,
1 for pixel differences), so the fit weights ``w = n·dof/(2·ŷ²)`` with ``ŷ`` the model
(iterated: reweighted least squares). ``A, B ≥ 0`` (non-negative least squares): a
variance is never negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls


@dataclass
class LineFit:
    """Fitted ``A``, ``B`` (normalised units), weighted ``r2``, and the points:
    ``x`` mean signal, ``y`` variance, ``n`` values per point (all ``(P,)``)."""

    A: float
    B: float
    r2: float
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    n: np.ndarray = field(repr=False)

    def model(self, x: np.ndarray) -> np.ndarray:
        return self.A * np.maximum(x, 0) + self.B

    def residuals(self) -> np.ndarray:
        """Relative residuals ``y/ŷ − 1`` of the points."""
        return self.y / np.maximum(self.model(self.x), 1e-30) - 1

    def as_dict(self) -> dict:
        return {
            "A": self.A,
            "B": self.B,
            "r2": self.r2,
            "points": {
                "mean": self.x.tolist(),
                "variance": self.y.tolist(),
                "count": self.n.tolist(),
            },
        }


def fit_line(x, y, n, dof: float = 1.0, iterations: int = 6) -> LineFit:
    """Reweighted non-negative least squares of ``y = A·max(x, 0) + B``; ``x``, ``y``,
    ``n`` ``(P,)``, ``P >= 2``."""
    x, y, n = (np.asarray(a, np.float64) for a in (x, y, n))
    design = np.stack([np.maximum(x, 0), np.ones_like(x)], 1)
    yhat = np.maximum(y, 1e-30)
    coef = np.zeros(2)
    for _ in range(iterations):
        w = n * dof / (2 * np.maximum(yhat, 1e-30) ** 2)
        sw = np.sqrt(w)
        # scale the columns so nnls sees numbers of one order
        scale = np.maximum(np.abs(design * sw[:, None]).max(axis=0), 1e-30)
        c, _ = nnls(design * sw[:, None] / scale, y * sw)
        coef = c / scale
        yhat = design @ coef
        if yhat.min() <= 0:  # B = 0 and a point at v <= 0: weight it by the data
            yhat = np.maximum(yhat, np.maximum(y, 1e-30))
    w = n * dof / (2 * np.maximum(design @ coef, 1e-30) ** 2)
    resid = y - design @ coef
    ybar = (w * y).sum() / w.sum()
    ss = (w * (y - ybar) ** 2).sum()
    r2 = float(1 - (w * resid**2).sum() / ss) if ss > 0 else float("nan")
    return LineFit(float(coef[0]), float(coef[1]), r2, x, y, n)
