"""Physics of the further degradation components (issue: more components), in the order a
camera meets them: relight → fog → defocus → (lens blur: :mod:`data_gen.render`) →
motion blur → (noise: :mod:`data_gen.noise`), and lens distortion with its correction.

Pure functions, numpy in and out. Images are float32 ``(C, H, W)`` in linear units
(0 = black level, 1 = white level); depth maps ``(H, W)`` in metres; positions in pixels
with ``(0, 0)`` the centre of the top-left pixel. Each ``draw_*`` returns the parameter
dict of one sample from a caller's generator, applied as ``f(x, **params)`` (deepinv's
convention), so a sample's draws are explicit and can be stored in its metadata.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.signal import fftconvolve

from data_gen.errors import require

# ---- relight: S' = G ⊙ S ------------------------------------------------------------------


def draw_relight(
    rng: np.random.Generator,
    lights: tuple[int, int] = (1, 3),
    ambient: tuple[float, float] = (0.3, 1.0),
    amplitude: tuple[float, float] = (0.2, 1.5),
    width: tuple[float, float] = (0.2, 0.6),
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
    for cy, cx, width, amp in lights:
        d2 = ((y - cy * h) ** 2 + (x - cx * w) ** 2) / diag**2
        g += amp * np.exp(-d2 / (2 * width**2))
    return g.astype(np.float32)


def relight(scene: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``S' = G ⊙ S``: ``scene`` ``(C, H, W)`` times the gain ``(H, W)`` (> 0)."""
    require(bool((gain > 0).all()), "relight: the gain map must be > 0 everywhere")
    return (scene * gain[None]).astype(np.float32)


# ---- fog: I = J·t + A·(1 − t), t = exp(−β·depth) -----------------------------------------


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
    beta: tuple[float, float] = (0.05, 0.5),
    airlight: tuple[float, float] = (0.6, 1.0),
    tint: float = 0.05,
    channels: int = 3,
) -> dict:
    """Scattering coefficient ``beta`` (1/m, log-uniform) and a near-grey airlight per
    channel."""
    b = float(np.exp(rng.uniform(np.log(beta[0]), np.log(beta[1]))))
    a = rng.uniform(*airlight) * (1 + rng.uniform(-tint, tint, channels))
    return {"beta": b, "airlight": a.astype(np.float32)}


# ---- depth --------------------------------------------------------------------------------


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


# ---- defocus: thin-lens circle of confusion, layered with occlusion ------------------------


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


def defocus_layers(
    depth: np.ndarray, radius_px: np.ndarray, layers: int = 12
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The depth layers :func:`defocus` composites, far to near: per non-empty slab its mask
    ``(H, W)``, disc kernel (the slab's mean radius) and blurred coverage ``α`` ``(H, W)``
    (float64). They depend on the depth and radii only, not on the image."""
    check_depth(depth)
    require(layers >= 1, f"defocus layers = {layers}: at least 1")
    d = depth.astype(np.float64)
    edges = np.quantile(d, np.linspace(0, 1, layers + 1))
    edges[-1] = np.inf
    idx = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, layers - 1)
    plan = []
    for layer in range(layers - 1, -1, -1):  # far to near
        mask = (idx == layer).astype(np.float64)
        if not mask.any():
            continue
        k = disc_kernel(float(radius_px[idx == layer].mean())).astype(np.float64)
        alpha = mask if k.size == 1 else np.clip(fftconvolve(mask, k, mode="same"), 0, 1)
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
            colour = np.stack([fftconvolve(c * mask, k, mode="same") for c in image])
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


# ---- motion blur: camera shake ---------------------------------------------------------------


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
    step = length / steps
    pos = np.zeros((steps + 1, 2))
    ang = rng.uniform(0, 2 * math.pi)
    v = np.array([math.sin(ang), math.cos(ang)]) * step
    for i in range(steps):
        dv = anxiety * step * rng.standard_normal(2) - centripetal * pos[i] / steps
        if rng.random() < p_jerk:
            dv += -2 * v * rng.uniform(0.5, 1.0)  # a sudden turn back
        v = v + dv
        v = v / max(np.linalg.norm(v), 1e-12) * step  # constant speed: exact length
        pos[i + 1] = pos[i] + v
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


def draw_motion(
    rng: np.random.Generator, length: tuple[float, float] = (4.0, 24.0), steps: int = 256
) -> dict:
    """A shake kernel of a length drawn uniformly in ``length`` px."""
    n = float(rng.uniform(*length))
    return {"length": n, "kernel": trajectory_kernel(shake_trajectory(rng, n, steps))}


def load_kernels(path: str | Path) -> dict[str, np.ndarray]:
    """Blur kernels from an ``.npz`` (one 2-D array per name, e.g. Levin et al.'s k1..k8):
    each checked finite and non-negative, returned normalised to sum 1 (float32)."""
    p = Path(path)
    require(p.is_file(), f"motion kernels file {p} does not exist")
    out = {}
    with np.load(p) as f:
        for name in f.files:
            k = np.asarray(f[name], np.float64)
            require(k.ndim == 2 and k.size > 0, f"{p}: kernel {name} is not a 2-D array")
            require(
                bool(np.isfinite(k).all() and (k >= 0).all() and k.sum() > 0),
                f"{p}: kernel {name} must be finite, >= 0 and not all zero",
            )
            out[name] = (k / k.sum()).astype(np.float32)
    return out


def blur_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Space-invariant blur of every channel, same size (zero outside the frame)."""
    return np.stack([fftconvolve(c, kernel, mode="same") for c in image]).astype(np.float32)


# ---- distortion: radial polynomial, corrected by resampling ---------------------------------


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
    r2 = (u**2).sum(-1, keepdims=True)
    factor = 1 + sum(ki * r2 ** (i + 1) for i, ki in enumerate(k))
    return u * factor * scale + centre


def undistort_points(
    pts: np.ndarray, shape: tuple[int, int], k: tuple[float, ...], iterations: int = 50
) -> np.ndarray:
    """The inverse of :func:`distort_points` (fixed-point iteration ``u = d / f(|u|²)``)."""
    d, centre, scale = _normalise(pts, shape)
    u = d.copy()
    for _ in range(iterations):
        r2 = (u**2).sum(-1, keepdims=True)
        u = d / (1 + sum(ki * r2 ** (i + 1) for i, ki in enumerate(k)))
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
