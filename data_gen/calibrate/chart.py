"""Checkerboard charts: the ideal (sharp) chart as a frame records it, and the chart's
corners found in a capture.

Chart coordinates ``q = (i, j)``: row and column in squares (square ``(i, j)`` spans
``[i, i+1) × [j, j+1)``); a square is bright when ``floor(i) + floor(j) + parity`` is
even. A capture records chart point ``q`` at ``distort(H·q)`` (:mod:`.distortion`).

* :func:`render_chart` — the ideal frame (or a window of it) in ``[lo, hi]``, each pixel
  the average of ``supersample²`` points over its area (the generator's convention: a
  sharp image's pixels are area averages of the scene);
* :func:`saddle_corners` — X-junctions with sub-pixel positions (saddle points of the
  smoothed image: exact at a junction whatever the PSF's symmetry in the junction's
  point-symmetric pattern, up to the PSF's own centroid shift);
* :func:`lattice` — integer chart coordinates of the corners, grown from a seed along
  the two local lattice vectors (following perspective and distortion).
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates, maximum_filter
from scipy.spatial import cKDTree

from data_gen.calibrate.distortion import apply_h, undistort_points


def chart_coordinates(
    window: tuple[int, int, int, int],
    shape: tuple[int, int],
    h: np.ndarray,
    k: tuple[float, float],
    step: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Chart coordinates of the pixel centres of ``window`` ``(y0, x0, hh, ww)`` of a frame
    of ``shape``, ``(2, hh, ww)``, and their Jacobian ``(2, 2, hh, ww)`` (d(i, j)/d(y, x)):
    exact on a grid every ``step`` pixels, bilinear between (the map is smooth)."""
    y0, x0, hh, ww = window
    gy = np.arange(y0 - step, y0 + hh + 2 * step, step, dtype=np.float64)
    gx = np.arange(x0 - step, x0 + ww + 2 * step, step, dtype=np.float64)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    p = undistort_points(np.stack([yy.ravel(), xx.ravel()], 1), shape, k)
    q = apply_h(np.linalg.inv(h), p).reshape(len(gy), len(gx), 2)
    jy = np.gradient(q, step, axis=0)  # d q / d y
    jx = np.gradient(q, step, axis=1)
    cy = (np.arange(y0, y0 + hh) - gy[0]) / step
    cx = (np.arange(x0, x0 + ww) - gx[0]) / step
    cyy, cxx = np.meshgrid(cy, cx, indexing="ij")

    def at(a: np.ndarray) -> np.ndarray:
        return map_coordinates(a, [cyy, cxx], order=1, mode="nearest")

    qq = np.stack([at(q[..., c]) for c in range(2)])
    jac = np.stack([np.stack([at(jy[..., c]), at(jx[..., c])]) for c in range(2)])
    return qq, jac


def render_chart(
    shape: tuple[int, int],
    h: np.ndarray,
    k: tuple[float, float] = (0.0, 0.0),
    window: tuple[int, int, int, int] | None = None,
    levels: tuple[float, float] = (0.0, 1.0),
    parity: int = 0,
    extent: tuple[float, float, float, float] | None = None,
    background: float | None = None,
    supersample: int = 16,
) -> np.ndarray:
    """The ideal checkerboard as recorded in ``window`` ``(y0, x0, hh, ww)`` (default the
    whole frame of ``shape``): ``(hh, ww)`` float64 in ``[lo, hi]``, each pixel the mean
    of the chart over its area (the map taken affine within a pixel): 3×3 points, and
    ``supersample²`` points where those disagree (pixels an edge crosses).
    ``extent`` ``(i0, i1, j0, j1)``: the chart's squares (outside: ``background``,
    default ``lo``)."""
    window = window or (0, 0, *shape)
    q, jac = chart_coordinates(window, shape, h, k)
    lo, hi = levels
    bg = lo if background is None else background

    def value(qi: np.ndarray, qj: np.ndarray) -> np.ndarray:
        bright = ((np.floor(qi) + np.floor(qj) + parity) % 2) == 0
        v = np.where(bright, hi, lo)
        if extent is not None:
            i0, i1, j0, j1 = extent
            inside = (qi >= i0) & (qi < i1) & (qj >= j0) & (qj < j1)
            v = np.where(inside, v, bg)
        return v

    def average(sel: tuple, n: int) -> np.ndarray:
        o = (np.arange(n) + 0.5) / n - 0.5
        qs, js = q[(slice(None), *sel)], jac[(slice(None), slice(None), *sel)]
        acc, first, mixed = np.zeros(qs.shape[1:]), None, np.zeros(qs.shape[1:], bool)
        for dy in o:
            for dx in o:
                v = value(
                    qs[0] + js[0, 0] * dy + js[0, 1] * dx, qs[1] + js[1, 0] * dy + js[1, 1] * dx
                )
                acc += v
                first = v if first is None else first
                mixed |= v != first
        return acc / n**2, mixed

    out, mixed = average((slice(None), slice(None)), 3)
    idx = np.nonzero(mixed)
    if supersample > 3 and idx[0].size:
        out[idx], _ = average(idx, supersample)
    return out


def saddle_corners(
    grey: np.ndarray, sigma: float = 2.0, rel: float = 0.15, min_dist: int = 4
) -> np.ndarray:
    """X-junctions of ``grey`` ``(H, W)``: local maxima of ``g_xy² − g_xx·g_yy`` (Gaussian
    derivatives of scale ``sigma``) above ``rel`` times the 99.99th percentile, refined to
    sub-pixel by Newton steps on the smoothed gradient. ``(N, 2)`` float64 ``(y, x)``."""
    g = grey.astype(np.float64)
    gy = gaussian_filter(g, sigma, order=(1, 0))
    gx = gaussian_filter(g, sigma, order=(0, 1))
    gyy = gaussian_filter(g, sigma, order=(2, 0))
    gxx = gaussian_filter(g, sigma, order=(0, 2))
    gxy = gaussian_filter(g, sigma, order=(1, 1))
    s = gxy * gxy - gxx * gyy
    thr = rel * np.percentile(s, 99.99)
    peak = (s == maximum_filter(s, size=2 * min_dist + 1)) & (s > max(thr, 0))
    m = int(3 * sigma) + 2
    peak[:m], peak[-m:], peak[:, :m], peak[:, -m:] = False, False, False, False
    pts = np.argwhere(peak).astype(np.float64)
    for _ in range(4):
        c = [pts[:, 0], pts[:, 1]]
        dy, dx = (map_coordinates(a, c, order=1) for a in (gy, gx))
        hyy, hxx, hxy = (map_coordinates(a, c, order=1) for a in (gyy, gxx, gxy))
        det = hyy * hxx - hxy * hxy
        det = np.where(np.abs(det) < 1e-20, -1e-20, det)
        sy = -(hxx * dy - hxy * dx) / det
        sx = -(-hxy * dy + hyy * dx) / det
        pts += np.clip(np.stack([sy, sx], 1), -1, 1)
    inside = (
        (pts[:, 0] > m) & (pts[:, 0] < g.shape[0] - m) & (pts[:, 1] > m) & (pts[:, 1] < g.shape[1] - m)
    )  # fmt: skip
    return pts[inside]


def x_junctions(
    grey: np.ndarray, pts: np.ndarray, radius: float, min_symmetry: float = 0.8
) -> np.ndarray:
    """Which corners ``pts`` ``(N, 2)`` are X-junctions of a checkerboard: on a circle of
    ``radius`` around each, the image is point-symmetric (correlation of ``v(θ)`` and
    ``v(θ + π)`` above ``min_symmetry``) and alternates four times (a T-junction, where
    an edge meets the chart's border, is not symmetric). ``(N,)`` bool."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    cy = pts[:, :1] + radius * np.sin(t)[None]
    cx = pts[:, 1:] + radius * np.cos(t)[None]
    v = map_coordinates(grey.astype(np.float64), [cy, cx], order=1, mode="nearest")
    v = v - v.mean(1, keepdims=True)
    w = np.roll(v, 24, axis=1)
    sym = (v * w).sum(1) / np.maximum(np.sqrt((v * v).sum(1) * (w * w).sum(1)), 1e-12)
    changes = (np.diff(np.sign(np.concatenate([v, v[:, :1]], 1)), axis=1) != 0).sum(1)
    return (sym > min_symmetry) & (changes == 4)


def lattice(pts: np.ndarray, tol: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Chart coordinates of corners ``pts`` ``(N, 2)`` (y, x): ``(ij, ok)`` with ``ij``
    ``(N, 2)`` int (row, column; rows run down, columns right) and ``ok`` the corners on
    the lattice grown from a seed near the middle (the others are not chart corners).
    ``tol``: a neighbour is accepted within ``tol`` lattice steps of its prediction."""
    n = len(pts)
    ij = np.zeros((n, 2), np.int64)
    ok = np.zeros(n, bool)
    if n < 5:
        return ij, ok
    tree = cKDTree(pts)
    d, nb = tree.query(pts, 5)
    vec = pts[nb[:, 1:]] - pts[:, None, :]  # (N, 4, 2)
    ang = np.mod(np.arctan2(vec[..., 0], vec[..., 1]), np.pi).ravel()
    step = float(np.median(d[:, 1:]))
    # the two lattice directions: the densest angle and the densest ~90° from it
    hist, edges = np.histogram(ang, 90, (0, np.pi))
    hist = hist + np.roll(hist, 1) + np.roll(hist, -1)
    a1 = edges[hist.argmax()] + np.pi / 180
    off = np.abs(np.angle(np.exp(2j * (edges[:-1] - a1)))) > np.pi / 3
    a2 = edges[np.where(off, hist, -1).argmax()] + np.pi / 180
    dirs = [np.array([np.sin(a), np.cos(a)]) * step for a in (a1, a2)]
    # columns: the direction closer to +x, rows: the other, pointing down (+y)
    if abs(dirs[0][1]) < abs(dirs[1][1]):
        dirs = dirs[::-1]
    vc = dirs[0] if dirs[0][1] > 0 else -dirs[0]
    vr = dirs[1] if dirs[1][0] > 0 else -dirs[1]

    def fit_score(i: int) -> float:
        err = 0.0
        for v in (vc, -vc, vr, -vr):
            dd, _ = tree.query(pts[i] + v)
            err += dd
        return err

    centre = np.median(pts, 0)
    cand = tree.query(centre, min(25, n))[1]
    seed = int(min(np.atleast_1d(cand), key=fit_score))
    ok[seed] = True
    queue = deque([(seed, vc, vr)])
    while queue:
        i, c, r = queue.popleft()
        for dij, v in (((0, 1), c), ((0, -1), -c), ((1, 0), r), ((-1, 0), -r)):
            dd, j = tree.query(pts[i] + v)
            if dd > tol * np.hypot(*v) or ok[j]:
                continue
            ok[j] = True
            ij[j] = ij[i] + dij
            actual = pts[j] - pts[i]
            if dij[1]:
                queue.append((j, actual * dij[1], r))
            else:
                queue.append((j, c, actual * dij[0]))
    ij[ok] -= ij[ok].min(0)
    return ij, ok
