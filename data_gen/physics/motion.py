"""Camera shake: random constant-speed trajectories and their blur kernels; kernels from
files (e.g. Levin et al.'s). Positions in pixels (y, x); kernels non-negative, summing
to 1."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numba
import numpy as np

from data_gen.core.errors import InputError, require


def shake_trajectory(
    rng: np.random.Generator,
    length: float,
    steps: int = 256,
    anxiety: float = 0.1,
    centripetal: float = 0.05,
    p_jerk: float = 0.05,
) -> np.ndarray:
    """A camera-shake path (Boracchi & Foi 2012 style): a random walk of constant speed
    whose velocity turns under Gaussian shake, a pull towards the start and rare jerks;
    ``(steps + 1, 2)`` positions (y, x) in px, total path length exactly ``length``."""
    require(length > 0, f"motion length = {length}: must be > 0 px")
    ang = rng.uniform(0, 2 * math.pi)
    shake = rng.standard_normal((steps, 2))
    jerk = rng.random(steps) < p_jerk
    back = rng.uniform(0.5, 1.0, steps)
    return _walk(length / steps, ang, shake, jerk, back, anxiety, centripetal)


@numba.njit(cache=True)
def _walk(step, ang, shake, jerk, back, anxiety, centripetal):  # pragma: no cover - compiled
    """The random walk of :func:`shake_trajectory` from its drawn normals, jerks and
    turn-back amounts."""
    steps = shake.shape[0]
    pos = np.zeros((steps + 1, 2))
    vy, vx = math.sin(ang) * step, math.cos(ang) * step
    for i in range(steps):
        dy = anxiety * step * shake[i, 0] - centripetal * pos[i, 0] / steps
        dx = anxiety * step * shake[i, 1] - centripetal * pos[i, 1] / steps
        if jerk[i]:  # a sudden turn back
            dy -= 2 * vy * back[i]
            dx -= 2 * vx * back[i]
        vy, vx = vy + dy, vx + dx
        norm = max(math.sqrt(vy * vy + vx * vx), 1e-12)
        vy, vx = vy / norm * step, vx / norm * step  # constant speed: exact length
        pos[i + 1, 0] = pos[i, 0] + vy
        pos[i + 1, 1] = pos[i, 1] + vx
    return pos


def trajectory_kernel(path: np.ndarray, size: int | None = None, samples: int = 16) -> np.ndarray:
    """The blur kernel of a path: light spread uniformly along it in time, splatted
    bilinearly onto a ``size``² grid (odd; default just large enough) centred on the path's
    centroid; non-negative, summing to 1."""
    p = np.asarray(path, np.float64)
    t = np.linspace(0, 1, (len(p) - 1) * samples + 1)
    seg = np.interp(t, np.linspace(0, 1, len(p)), np.arange(len(p)))
    lo = np.floor(seg).astype(int).clip(0, len(p) - 2)
    f = (seg - lo)[:, None]
    pts = p[lo] * (1 - f) + p[lo + 1] * f
    pts -= pts.mean(0)
    extent = np.abs(pts).max()
    if size is None:
        size = 2 * math.ceil(extent) + 3
    require(size % 2 == 1, f"motion kernel size {size}: must be odd")
    require(size >= 2 * extent + 2, f"motion kernel size {size} is too small for the path")
    c = size // 2
    k = np.zeros((size, size))
    y, x = pts[:, 0] + c, pts[:, 1] + c
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return (k / k.sum()).astype(np.float32)


def draw_motion(rng: np.random.Generator, length: tuple[float, float], steps: int) -> dict:
    """A shake kernel of a length drawn uniformly in ``length`` px (defaults:
    ``conf/component/motion.yaml``)."""
    n = float(rng.uniform(*length))
    return {"length": n, "kernel": trajectory_kernel(shake_trajectory(rng, n, steps))}


def load_kernels(path: str | Path) -> dict[str, np.ndarray]:
    """Blur kernels from an ``.npz`` (one 2-D array per name, e.g. Levin et al.'s k1..k8):
    each checked finite and non-negative, returned normalised to sum 1 (float32)."""
    p = Path(path)
    require(p.is_file(), f"motion kernels file {p} does not exist")
    out = {}
    try:
        f = np.load(p, allow_pickle=False)
        require(
            isinstance(f, np.lib.npyio.NpzFile),
            f"motion kernels file {p}: an .npz of 2-D arrays expected (numpy.savez)",
        )
        with f:
            for name in f.files:
                k = np.asarray(f[name], np.float64)
                require(k.ndim == 2 and k.size > 0, f"{p}: kernel {name} is not a 2-D array")
                require(
                    bool(np.isfinite(k).all() and (k >= 0).all() and k.sum() > 0),
                    f"{p}: kernel {name} must be finite, >= 0 and not all zero",
                )
                out[name] = (k / k.sum()).astype(np.float32)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, InputError):
            raise
        why = "holds pickled objects" if "pickle" in str(e) else "cannot be read"
        raise InputError(
            f"motion kernels file {p} {why} ({type(e).__name__}): an .npz of 2-D arrays "
            "saved with numpy.savez is expected"
        ) from None
    return out
