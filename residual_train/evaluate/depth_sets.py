"""Real photographs with real depth, for the depth-dependent components (fog, defocus) and
their evaluation: a name → :class:`DepthImage` (image ``(3, H, W)`` linear float32, depth
``(H, W)`` float32 in metres with every pixel filled, valid ``(H, W)`` bool).

Pixels without a measured depth are filled from their nearest measured neighbour (so a
component can be rendered on the whole frame) and marked invalid: metrics and oracle
choices should count only ``valid`` pixels. The sets, and how their depth is read:

* ``motorcycle``: scikit-image's bundled Middlebury 2014 pair (always available);
  ``z = f·B / (d + doffs)`` with the scene's calibration scaled to the bundled width
  (:func:`data_gen.sources.stereo_example`); invalid where the disparity is not finite.
* ``cones`` (Middlebury 2003, ``disp2.png`` = 4 × disparity px) and ``aloe`` (Middlebury
  2006, ``aloeGT.png`` = disparity px): no calibration ships, so only relative depth is
  known. For a rectified pair ``1/z`` is affine in the disparity; the affine map is fixed
  by an ASSUMED range of :data:`RELATIVE_RANGE_M` for the valid pixels (nearest at 1 m,
  farthest at 2 m: a table-top scene). Defocus with the focus at a depth quantile depends
  only on that ratio; fog depends on the scale too. Invalid where the disparity is 0.
* ``nyu``, ``sun``, ``tum``: one RGB-D frame each (``derived/*_depth_mm.png``, mm; 0 =
  invalid). The NYU frame is raw Kinect, not exactly registered to its colour image.
* ``kitti_000000`` … ``kitti_000002``: street frames with Velodyne depth projected into the
  image (``derived/*_velo_depth_x256.png``, m × 256; 0 = no point): about 4 % of the pixels,
  none in the upper third (sky), so the fill there is a guess and the metrics see only the
  LiDAR pixels.

The shared folders live in ``../shared/data/depth`` beside a project checkout; a fresh clone
has none of them — :func:`available` says which sets can be loaded and why not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.core.errors import require
from data_gen.core.paths import PROJECT

DEPTH_ROOT = PROJECT.parent / "shared" / "data" / "depth"
RELATIVE_RANGE_M = (1.0, 2.0)  # assumed nearest / farthest depth of the relative sets


@dataclass
class DepthImage:
    """One photograph with depth: ``image`` ``(3, H, W)`` linear float32, ``depth`` ``(H, W)``
    float32 metres (filled everywhere), ``valid`` ``(H, W)`` bool (measured), ``source``
    (how the depth was obtained, in words)."""

    name: str
    image: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    source: str


def fill_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``values`` with every invalid pixel replaced by its nearest valid neighbour's."""
    from scipy import ndimage

    require(bool(valid.any()), "depth map: no valid pixel to fill from")
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return values[tuple(idx)]


def _read_rgb(path: Path) -> np.ndarray:
    from data_gen.sources import read_image

    return read_image(path, linearize=True, channels=3)


def _read_uint16(path: Path) -> np.ndarray:
    from PIL import Image

    require(path.is_file(), f"depth map {path} does not exist")
    with Image.open(path) as im:
        return np.asarray(im).astype(np.float64)


def _relative(disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth (m) from a disparity map with an assumed range (module docstring)."""
    valid = disparity > 0
    require(bool(valid.any()), "disparity map holds no valid pixel")
    d_far, d_near = float(disparity[valid].min()), float(disparity[valid].max())
    z_near, z_far = RELATIVE_RANGE_M
    # 1/z = a·d + b through (d_near, 1/z_near) and (d_far, 1/z_far)
    a = (1 / z_near - 1 / z_far) / max(d_near - d_far, 1e-9)
    b = 1 / z_far - a * d_far
    z = 1.0 / (a * fill_nearest(disparity, valid) + b)
    return z.astype(np.float32), valid


def _metric(raw: np.ndarray, per_metre: float) -> tuple[np.ndarray, np.ndarray]:
    valid = raw > 0
    z = fill_nearest(raw, valid) / per_metre
    return z.astype(np.float32), valid


def _motorcycle(root: Path) -> DepthImage:
    from skimage import data

    from data_gen.sources import stereo_example

    f = stereo_example()
    valid = np.isfinite(data.stereo_motorcycle()[2])
    src = "Middlebury 2014 disparity, the scene's calibration (scikit-image)"
    return DepthImage("motorcycle", f.pixels, f.depth, valid, src)


def _cones(root: Path) -> DepthImage:
    d = root / "middlebury2003_ceschini"
    z, valid = _relative(_read_uint16(d / "disp2.png") / 4.0)
    src = f"Middlebury 2003 disparity, relative: assumed {RELATIVE_RANGE_M} m"
    return DepthImage("cones", _read_rgb(d / "im2.png"), z, valid, src)


def _aloe(root: Path) -> DepthImage:
    d = root / "middlebury2006_aloe_opencv"
    z, valid = _relative(_read_uint16(d / "aloeGT.png"))
    src = f"Middlebury 2006 disparity, relative: assumed {RELATIVE_RANGE_M} m"
    return DepthImage("aloe", _read_rgb(d / "aloeL.jpg"), z, valid, src)


def _rgbd(which: str, colour: str) -> Callable[[Path], DepthImage]:
    def load(root: Path) -> DepthImage:
        d = root / "rgbd_open3d_samples"
        z, valid = _metric(_read_uint16(d / "derived" / f"{which}_depth_mm.png"), 1000.0)
        src = f"{which} RGB-D, metric (mm)"
        return DepthImage(which.lower(), _read_rgb(d / colour), z, valid, src)

    return load


def _kitti(frame: str) -> Callable[[Path], DepthImage]:
    def load(root: Path) -> DepthImage:
        d = root / "kitti_object_3frames"
        z, valid = _metric(_read_uint16(d / "derived" / f"{frame}_velo_depth_x256.png"), 256.0)
        src = "KITTI Velodyne projected, metric, sparse"
        return DepthImage(
            f"kitti_{frame}", _read_rgb(d / "image_2" / f"{frame}.png"), z, valid, src
        )

    return load


# name → (folder under DEPTH_ROOT it needs, or None for a bundled set; loader)
SETS: dict[str, tuple[str | None, Callable[[Path], DepthImage]]] = {
    "motorcycle": (None, _motorcycle),
    "cones": ("middlebury2003_ceschini", _cones),
    "aloe": ("middlebury2006_aloe_opencv", _aloe),
    "nyu": ("rgbd_open3d_samples", _rgbd("NYU", "NYU_color.ppm")),
    "sun": ("rgbd_open3d_samples", _rgbd("SUN", "SUN_color.jpg")),
    "tum": ("rgbd_open3d_samples", _rgbd("TUM", "TUM_color.png")),
    **{f"kitti_{f}": ("kitti_object_3frames", _kitti(f)) for f in ("000000", "000001", "000002")},
}


def available(root: str | Path | None = None) -> tuple[list[str], dict[str, str]]:
    """``(names that can be loaded, {name: why not})``."""
    base = Path(root) if root is not None else DEPTH_ROOT
    ok, missing = [], {}
    for name, (folder, _) in SETS.items():
        if folder is None or (base / folder).is_dir():
            ok.append(name)
        else:
            missing[name] = f"needs {base / folder} (../shared/data is not in a fresh clone)"
    return ok, missing


def shrink_depth_image(item: DepthImage, factor: int) -> DepthImage:
    """``item`` box-averaged by an integer ``factor``. A pixel is valid when any pixel it
    averages was measured, and its depth is then the mean of the measured ones (else of the
    filled ones): sparse LiDAR depth (KITTI, ~4 % of the pixels) keeps its points."""
    from data_gen.sources import shrink

    if factor == 1:
        return item
    require(factor >= 1, f"depth image shrink factor {factor}: an integer >= 1")
    img = shrink(item.image, factor)
    measured = item.valid.astype(np.float32)
    frac = shrink(measured[None], factor)[0]
    v = frac > 0
    z_measured = shrink((item.depth * measured)[None], factor)[0] / np.where(v, frac, 1.0)
    z = np.where(v, z_measured, shrink(item.depth[None], factor)[0]).astype(np.float32)
    return DepthImage(item.name, img, z, v, item.source)


def load(name: str, root: str | Path | None = None, shrink_factor: int = 1) -> DepthImage:
    """The photograph ``name`` of :data:`SETS` with its depth (module docstring), shrunk by
    ``shrink_factor``; one line names what is missing or wrong."""
    require(name in SETS, f"depth set {name!r} is unknown; known: {', '.join(SETS)}")
    ok, missing = available(root)
    require(name in ok, f"depth set {name}: {missing.get(name)}")
    base = Path(root) if root is not None else DEPTH_ROOT
    item = SETS[name][1](base)
    require(
        item.image.shape[1:] == item.depth.shape,
        f"depth set {name}: image {item.image.shape[1:]} and depth {item.depth.shape} differ",
    )
    return shrink_depth_image(item, int(shrink_factor))


def crop_centre(item: DepthImage, size: int) -> DepthImage:
    """The centre ``size`` × ``size`` (at most) of ``item``."""
    h, w = item.depth.shape
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    return DepthImage(
        item.name, item.image[(slice(None), *sl)], item.depth[sl], item.valid[sl], item.source
    )
