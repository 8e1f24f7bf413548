"""Sources of original (component-free) images, as linear float32 ``(C, H, W)`` arrays.

Values are linear, 0 = black, 1 = white (before the per-sample exposure scale).
Two sources: a folder of PNG / TIFF / JPEG files and a procedural dead-leaves
generator that needs no files. Both hand out *frames*; the renderer crops patches.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numba
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict
from skimage.transform import downscale_local_mean

from data_gen.cfa import superpixel_rgb
from data_gen.core.errors import InputError, require
from data_gen.core.paths import preset_path
from data_gen.core.registry import Registry
from data_gen.core.typed import KindSettings, Number, Settings, Text, check, parse
from data_gen.core.values import mapping
from data_gen.raw import RAW_SUFFIXES, read_raw
from data_gen.splits import select_files

log = logging.getLogger("data_gen")

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding: encoded values in [0, 1] -> linear [0, 1]."""
    v = np.asarray(v, dtype=np.float32)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_to_linear` (input clipped to [0, 1])."""
    v = np.clip(np.asarray(v, dtype=np.float32), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055).astype(np.float32)


def _to_unit(a: np.ndarray, where: Path) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if a.dtype.kind == "f":
        return a.astype(np.float32)
    if a.dtype.kind in "iu":  # e.g. PIL's int32 'I' mode for 16-bit greyscale PNG
        return a.astype(np.float32) / 65535.0
    raise InputError(f"{where}: unsupported pixel type {a.dtype}")


LINEARIZE = (True, False, "auto")


def check_linearize(value, key: str = "linearize") -> bool | str:
    """``linearize`` as one of :data:`LINEARIZE` (one line otherwise)."""
    require(
        isinstance(value, bool) or value == "auto",
        f"{key} = {value!r}: auto (8-bit files are sRGB, 16-bit and float ones linear), "
        "true (decode every integer file from sRGB) or false (take it as linear)",
    )
    return value


def srgb_encoded(dtype: np.dtype, linearize: bool | str) -> bool:
    """Whether pixels of ``dtype`` are sRGB-decoded under ``linearize``: never float data
    (linear by convention); with ``auto`` only 8-bit data (an 8-bit file is a display
    image: 8 bits cannot hold linear sensor values without banding in the shadows)."""
    if np.dtype(dtype).kind == "f":
        return False
    if linearize == "auto":
        return np.dtype(dtype) == np.uint8
    return bool(linearize)


def read_image(path: str | Path, linearize: bool | str = False, channels: int = 3) -> np.ndarray:
    """Read an 8/16-bit PNG / TIFF / JPEG (or float TIFF) as ``(C, H, W)`` float32 in [0, 1].

    Integer images are scaled by their full range; float TIFFs are kept as they are.
    ``linearize`` applies sRGB decoding (not to float data, which is taken as linear);
    ``"auto"`` decodes 8-bit files only (:func:`srgb_encoded`).
    Greyscale is repeated to ``channels``; alpha is dropped.
    """
    return read_image_encoded(path, linearize, channels)[0]


def read_image_encoded(
    path: str | Path, linearize: bool | str = False, channels: int = 3
) -> tuple[np.ndarray, str]:
    """:func:`read_image` and the encoding the file was taken in: ``"srgb"`` (decoded to
    linear light) or ``"linear"`` (taken as it is)."""
    p = Path(path)
    check_linearize(linearize)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            a = tifffile.imread(p)
        else:
            with Image.open(p) as im:
                im.load()
                if im.mode in ("P", "PA", "CMYK", "YCbCr", "LA", "1"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                a = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise InputError(f"image {p} cannot be read (corrupt or not an image): {e}") from None
    except Exception as e:  # tifffile raises its own types
        raise InputError(f"image {p} cannot be read: {type(e).__name__}: {e}") from None
    srgb = srgb_encoded(a.dtype, linearize)
    a = _to_unit(a, p)
    if a.ndim == 2:
        a = a[..., None]
    require(a.ndim == 3, f"image {p}: expected 2-D or 3-D pixel array, got shape {a.shape}")
    if a.shape[2] in (2, 4) and channels != a.shape[2]:
        a = a[..., : a.shape[2] - 1]  # drop alpha
    if a.shape[2] == 1 and channels > 1:
        a = np.repeat(a, channels, axis=2)
    require(
        a.shape[2] == channels,
        f"image {p} has {a.shape[2]} channels, expected {channels}",
    )
    if not np.isfinite(a).all():
        raise InputError(f"image {p} contains non-finite values (NaN or inf)")
    if srgb:
        a = srgb_to_linear(a)
    return np.ascontiguousarray(np.moveaxis(a, 2, 0)), "srgb" if srgb else "linear"


# an original is a clean scene in linear light (0 = black): values below black are not
# light. Float files may carry a little rounding below 0 (clipped, with a warning once);
# more than this fraction of white below black means the file is not such an image.
BELOW_BLACK_TOLERANCE = 0.01
_warned_below_black: set[str] = set()


def original_range(img: np.ndarray, path: str | Path) -> np.ndarray:
    """Check an original ``(C, H, W)`` against the physical range: refuse values below
    ``-BELOW_BLACK_TOLERANCE`` (not a linear image with 0 = black), clip smaller negative
    values to 0 with a warning. Values above 1 (white) are kept: HDR originals, which the
    sensor clips after exposure."""
    lo = float(img.min())
    require(
        lo >= -BELOW_BLACK_TOLERANCE,
        f"image {path}: values down to {lo:g}; an original must be linear light with 0 = black "
        f"(at most {BELOW_BLACK_TOLERANCE:g} below black is taken as rounding and clipped)",
    )
    if lo < 0:
        if str(path) not in _warned_below_black:
            _warned_below_black.add(str(path))
            log.warning("image %s: values down to %g below black, clipped to 0", path, lo)
        img = np.maximum(img, 0, dtype=img.dtype)
    return img


def shrink(img: np.ndarray, factor: float) -> np.ndarray:
    """Downscale ``(C, H, W)`` by ``factor >= 1`` with area averaging (in linear light).

    Integer factors average ``factor x factor`` blocks exactly; other factors use
    PIL's box filter per channel.
    """
    require(factor >= 1, f"shrink factor must be >= 1, got {factor}")
    if factor == 1:
        return img
    c, h, w = img.shape
    f = round(factor)
    if abs(factor - f) < 1e-9:
        h2, w2 = h // f, w // f  # whole blocks only (the last partial ones are dropped)
        return downscale_local_mean(img[:, : h2 * f, : w2 * f], (1, f, f))
    h2, w2 = max(1, int(h / factor)), max(1, int(w / factor))
    out = np.empty((c, h2, w2), np.float32)
    for i in range(c):
        im = Image.fromarray(img[i].astype(np.float32), mode="F")
        out[i] = np.asarray(im.resize((w2, h2), Image.Resampling.BOX))
    return out


@dataclass
class Frame:
    """One original image: ``pixels`` ``(C, H, W)`` linear float32, its name, and where
    known its ``depth`` ``(H, W)`` float32 in metres (depth-dependent components need it)."""

    name: str
    pixels: np.ndarray
    depth: np.ndarray | None = None


class FolderSource:
    """Images from a folder (recursively), sorted by relative path for determinism."""

    kind = "images"
    suffixes = IMAGE_SUFFIXES

    def __init__(
        self,
        path: str,
        linearize: bool = True,
        shrink_factor: float = 1.0,
        channels: int = 3,
        check: str = "full",
        depth: Mapping | None = None,
        include: Sequence[str] | str | None = None,
        exclude: Sequence[str] | str | None = None,
        where: str = "source",
    ) -> None:
        self.root = preset_path(path)
        self.depth, self.depth_law = None, None
        if depth is not None and hasattr(depth, "get") and "law" in depth:
            self.depth_law = DepthLaw(**mapping(depth, "source.depth", DEPTH_LAW_KEYS))
        elif depth is not None:
            settings = mapping(depth, "source.depth", DEPTH_MAP_KEYS)
            require("path" in settings, "source.depth needs a path: +source.depth.path=DIR")
            self.depth = DepthMaps(**settings)
        self.linearize = linearize
        self.shrink_factor = float(shrink_factor)
        self.channels = channels
        require(check in ("full", "header"), f"source.check = {check!r}: use 'full' or 'header'")
        self.check = check
        if not self.root.is_dir():
            raise InputError(f"source.path = {str(path)!r}: folder does not exist")
        self.files = sorted(
            f for f in self.root.rglob("*") if f.is_file() and f.suffix.lower() in self.suffixes
        )
        if include is not None or exclude is not None:  # a split (data_gen.splits)
            self.files = select_files(self.files, self.root, include, exclude, where)
        # decoded frames kept in memory, least recently used out first, up to cache_bytes
        # (0: none; on-the-fly training reads the same originals again and again)
        self.cache_bytes = 0
        self._cache: OrderedDict[Path, Frame] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        require(
            bool(self.files),
            f"source.path = {str(path)!r}: no {self.kind} ({', '.join(self.suffixes)}) "
            "in the folder",
        )

    def __len__(self) -> int:
        return len(self.files)

    def validate(self, min_size: int, progress: bool = False) -> None:
        """Open every image before anything is written; error names the first bad file.

        ``min_size``: the smallest height/width a frame needs after shrinking (pixels).
        ``check='full'`` decodes every pixel (catches truncated files); ``'header'``
        only reads the headers.
        """
        from tqdm import tqdm

        for f in tqdm(self.files, desc="checking images", unit="img", disable=not progress):
            if self.check == "full":
                h, w = original_range(read_image(f, self.linearize, self.channels), f).shape[1:]
            else:
                try:
                    with Image.open(f) as im:
                        w, h = im.size
                except (OSError, UnidentifiedImageError) as e:
                    raise InputError(f"image {f} cannot be read: {e}") from None
            h2, w2 = int(h / self.shrink_factor), int(w / self.shrink_factor)
            if min(h2, w2) < min_size:
                raise InputError(
                    f"image {f} is {w}x{h} pixels"
                    + (
                        f" ({w2}x{h2} after shrink {self.shrink_factor:g})"
                        if self.shrink_factor != 1
                        else ""
                    )
                    + f"; patches need at least {min_size}x{min_size} (patch_size + PSF size - 1)"
                )
            if self.depth is not None:  # size, NaN and sign of its depth map, named
                self.depth.load(f.relative_to(self.root), (h, w))

    def lacks_depth(self) -> str | None:
        """An image of this source without a depth map (named), or None when every frame
        comes with one."""
        if self.depth is not None or self.depth_law is not None:
            return None
        return (
            f"image {self.files[0]} has no depth map (give them as +source.depth.path=DIR, or "
            "a law: +source.depth.law=ground_plane)"
        )

    def load(self, f: Path) -> Frame:
        """One of ``self.files`` decoded, linearised and shrunk as configured (with its
        depth map, when ``depth`` is configured)."""
        full = original_range(read_image(f, self.linearize, self.channels), f)
        img = shrink(full, self.shrink_factor)
        rel = f.relative_to(self.root)
        z = None
        if self.depth is not None:
            z = shrink(self.depth.load(rel, full.shape[1:])[None], self.shrink_factor)[0]
        return Frame(str(rel), np.ascontiguousarray(img, dtype=np.float32), z)

    def frame(self, rng: np.random.Generator) -> Frame:
        f = self.files[int(rng.integers(len(self.files)))]
        frame = self._decoded(f)
        if self.depth_law is not None:  # drawn per frame, after the file: not cached
            z = self.depth_law.draw(rng, frame.pixels.shape[1:])
            frame = Frame(frame.name, frame.pixels, z)
        return frame

    def _decoded(self, f: Path) -> Frame:
        if not self.cache_bytes:
            return self.load(f)
        with self._lock:
            if f in self._cache:
                self._cache.move_to_end(f)
                return self._cache[f]
        frame = self.load(f)  # outside the lock: decoding runs in parallel threads
        with self._lock:
            if f not in self._cache:
                self._cache[f] = frame
                self._cached += frame.pixels.nbytes
                while self._cached > self.cache_bytes and len(self._cache) > 1:
                    self._cached -= self._cache.popitem(last=False)[1].pixels.nbytes
        return frame

    def __getstate__(self) -> dict:  # a copy in another process starts with no cache
        state = self.__dict__.copy()
        state["_cache"], state["_cached"], state["_lock"] = OrderedDict(), 0, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class RawSource(FolderSource):
    """Bayer RAW files from a folder (LibRaw), as half-resolution linear camera RGB.

    Each 2×2 block becomes one pixel (R, mean of the greens, B; black subtracted, white
    = 1): no demosaicking, so no interpolation blur, and a factor-2 downscale that the
    method wants for originals anyway. ``shrink`` downscales further (area average).
    Colours stay in camera space (no white balance), as a Bayer sensor model expects.
    """

    kind = "RAW files"
    suffixes = RAW_SUFFIXES

    def __init__(
        self, path: str, shrink_factor: float = 1.0, channels: int = 3, check: str = "full"
    ):
        require(channels == 3, f"channels = {channels}: RAW originals give 3 colour channels")
        super().__init__(path, False, shrink_factor, channels, check)

    def validate(self, min_size: int, progress: bool = False) -> None:
        from tqdm import tqdm

        for f in tqdm(self.files, desc="checking RAW files", unit="file", disable=not progress):
            h, w = read_raw(f).mosaic.shape
            h2, w2 = int(h / 2 / self.shrink_factor), int(w / 2 / self.shrink_factor)
            require(
                min(h2, w2) >= min_size,
                f"RAW file {f} gives {w2}x{h2} pixels (half size, shrink {self.shrink_factor:g}); "
                f"patches need at least {min_size}x{min_size}",
            )

    def load(self, f: Path) -> Frame:
        rgb = superpixel_rgb(read_raw(f).packed())
        img = shrink(np.ascontiguousarray(rgb, dtype=np.float32), self.shrink_factor)
        return Frame(str(f.relative_to(self.root)), np.ascontiguousarray(img, dtype=np.float32))


def _natural_colours(rng: np.random.Generator, n: int, channels: int) -> np.ndarray:
    """Linear-RGB reflectance-like colours: log-uniform brightness, mostly low saturation."""
    value = np.exp(rng.uniform(np.log(0.03), np.log(0.95), n))
    sat = rng.beta(1.2, 2.5, n)
    hue = rng.uniform(0, 1, n)
    # HSV -> RGB, vectorised
    i = np.floor(hue * 6).astype(int) % 6
    f = hue * 6 - np.floor(hue * 6)
    p, q, t = value * (1 - sat), value * (1 - f * sat), value * (1 - (1 - f) * sat)
    # sector i of the hue circle picks each channel from (value, p, q, t): a selection,
    # so the colours are exactly those of the HSV formula
    rgb = np.stack(
        [
            np.choose(i, [value, q, p, p, t, value]),
            np.choose(i, [t, value, value, q, p, p]),
            np.choose(i, [p, p, t, value, value, q]),
        ],
        1,
    )
    if channels != 3:
        rgb = np.repeat(rgb.mean(axis=1, keepdims=True), channels, axis=1)
    return rgb.astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _paint_disks(label, cy, cx, r, first):  # pragma: no cover - compiled
    """Front-to-back fill: disk ``first + k`` takes each still-empty (-1) pixel it covers.

    A pixel belongs to a disk when its centre lies inside: (x+0.5-cx)² + (y+0.5-cy)² <= r².
    Returns the number of pixels newly covered.
    """
    n = label.shape[0]
    covered = 0
    for k in range(r.shape[0]):
        rk, ck_y, ck_x = r[k], cy[k], cx[k]
        y0 = max(0, int(np.floor(ck_y - rk - 0.5)))
        y1 = min(n - 1, int(np.ceil(ck_y + rk - 0.5)))
        for y in range(y0, y1 + 1):
            dy = y + 0.5 - ck_y
            h2 = rk * rk - dy * dy
            if h2 < 0.0:
                continue
            h = np.sqrt(h2)
            x0 = max(0, int(np.ceil(ck_x - h - 0.5)))
            x1 = min(n - 1, int(np.floor(ck_x + h - 0.5)))
            for x in range(x0, x1 + 1):
                if label[y, x] < 0:
                    label[y, x] = first + k
                    covered += 1
    return covered


@numba.njit(cache=True, nogil=True)
def _box_colour(label, palette, s):  # pragma: no cover - compiled
    """``(C, n/s, n/s)`` mean colour of each s x s block of the label map."""
    n = label.shape[0]
    m = n // s
    c = palette.shape[1]
    out = np.zeros((c, m, m), np.float32)
    w = np.float32(1.0 / (s * s))
    for y in range(n):
        for x in range(n):
            col = palette[label[y, x]]
            for ch in range(c):
                out[ch, y // s, x // s] += col[ch] * w
    return out


@numba.njit(cache=True, nogil=True)
def _block_min(label, z, s):  # pragma: no cover - compiled
    """``(n/s, n/s)`` float32: the nearest depth ``z[label]`` of each s x s block."""
    m = label.shape[0] // s
    out = np.empty((m, m), np.float32)
    for by in range(m):
        for bx in range(m):
            best = np.inf
            for y in range(by * s, by * s + s):
                for x in range(bx * s, bx * s + s):
                    best = min(best, z[label[y, x]])
            out[by, bx] = best
    return out


def dead_leaves(
    rng: np.random.Generator,
    size: int = 512,
    channels: int = 3,
    supersample: int = 2,
    r_min: float = 1.5,
    r_max: float = 120.0,
    alpha: float = 3.0,
    coverage: float = 0.999,
    max_disks: int = 1_000_000,
    depth: tuple[float, float] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Dead-leaves image ``(C, size, size)`` float32 linear in [0, 1]; with ``depth`` =
    (near, far) metres also its exact depth map ``(size, size)``.

    Occluding disks with radii drawn from ``p(r) ∝ r^-alpha`` on ``[r_min, r_max]``
    (pixels of the output); disk ``k`` lies in front of every later disk. Painted front
    to back at ``supersample`` times the output resolution until ``coverage`` of the
    pixels is covered (the rest shows a background colour), then box-downscaled so
    edges are sharp but anti-aliased.
    """
    require(size >= 8, f"dead_leaves size must be >= 8, got {size}")
    require(0 < r_min < r_max, f"dead_leaves radii need 0 < r_min < r_max, got {r_min}, {r_max}")
    s = int(supersample)
    n = size * s
    label = np.full((n, n), -1, np.int32)
    a1 = 1.0 - alpha
    colours = []
    drawn = covered = 0
    batch = 4096
    while drawn < max_disks and covered < coverage * n * n:
        u = rng.uniform(0, 1, batch)
        r = (r_min**a1 + u * (r_max**a1 - r_min**a1)) ** (1 / a1) * s
        cy = rng.uniform(-r_max * s * 0.5, n + r_max * s * 0.5, batch)
        cx = rng.uniform(-r_max * s * 0.5, n + r_max * s * 0.5, batch)
        colours.append(_natural_colours(rng, batch, channels))
        covered += _paint_disks(label, cy, cx, r, drawn)
        drawn += batch
    palette = np.concatenate([*colours, _natural_colours(rng, 1, channels)])
    label[label < 0] = drawn  # background behind the last leaves
    if depth is None:
        return _box_colour(label, palette, s)
    # exact depth for free: disk k lies in front of every later disk, so sorted depths
    # follow the occlusion order; the background is the farthest. Drawn after the image
    # (whose bytes therefore do not depend on it). Each output pixel takes the nearest
    # depth of its supersamples (the occluder at an edge).
    near, far = (float(v) for v in depth)
    require(0 < near <= far, f"dead_leaves depth = {depth}: need 0 < near <= far (metres)")
    z = np.sort(rng.uniform(near, far, drawn + 1))
    z[drawn] = far
    return _box_colour(label, palette, s), _block_min(label, z, s)


def check_depth_range(depth) -> list[float]:
    """``source.depth`` of dead leaves: ``[near, far]`` metres, ``0 < near <= far``."""
    ok = isinstance(depth, (list, tuple)) and len(depth) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in depth)
    require(ok, f"source.depth = {depth!r}: [near, far] in metres (two numbers)")
    near, far = (float(v) for v in depth)
    require(0 < near <= far, f"source.depth = {list(depth)}: need 0 < near <= far (metres)")
    return [near, far]


DEAD_LEAVES_DEFAULTS = {
    k: p.default
    for k, p in inspect.signature(dead_leaves).parameters.items()
    if p.default is not inspect.Parameter.empty
}
"""The dead-leaves source's settings and their defaults (those of :func:`dead_leaves`)."""

DEPTH_MAP_KEYS = ("path", "units", "scale", "focal_px", "baseline_m", "offset_px")
DEPTH_LAW_KEYS = ("law", "horizon", "height", "focal", "far", "relief")


class DeadLeavesSource:
    """Procedural originals: one dead-leaves frame per draw, seeded by the caller's rng.

    ``params``: keyword arguments of :func:`dead_leaves` (size, supersample, radii, ...).
    """

    def __init__(self, channels: int = 3, **params) -> None:
        unknown = sorted(set(params) - set(DEAD_LEAVES_DEFAULTS) - {"rng"})
        if unknown:
            raise InputError(f"source.{unknown[0]}: not an option of the dead_leaves source")
        # the function's defaults are the source's (passed explicitly: the same frames)
        self.kw = {**DEAD_LEAVES_DEFAULTS, "channels": channels, **params}
        if self.kw["depth"] is not None:
            self.kw["depth"] = check_depth_range(self.kw["depth"])
        require(int(self.kw["supersample"]) >= 1, "source.supersample must be >= 1")

    def validate(self, min_size: int, progress: bool = False) -> None:
        size = self.kw["size"]
        require(
            size >= min_size,
            f"source.size = {size}: dead-leaves frames must be at least {min_size} px "
            "(patch_size + PSF size - 1)",
        )

    def lacks_depth(self) -> str | None:
        if self.kw["depth"]:
            return None
        return "dead-leaves frames have no depth map unless asked (+source.depth=[NEAR,FAR] m)"

    def frame(self, rng: np.random.Generator) -> Frame:
        seed = int(rng.integers(2**63))
        out = dead_leaves(np.random.default_rng(seed), **self.kw)
        if isinstance(out, tuple):
            return Frame(f"dead_leaves:{seed}", out[0], out[1])
        return Frame(f"dead_leaves:{seed}", out)


class DepthMaps:
    """Per-image depth maps beside a folder of photographs: ``path/<same relative stem>``
    ``.npy`` (float) or 16-bit ``.png``, times ``scale``; ``units``: ``metres``, or
    ``disparity`` in pixels converted as ``z = focal_px · baseline_m / (d + offset_px)``
    (a stereo rig; non-finite or non-positive disparities — no match — are refused)."""

    def __init__(
        self,
        path: str,
        units: str = "metres",
        scale: float = 1.0,
        focal_px: float | None = None,
        baseline_m: float | None = None,
        offset_px: float = 0.0,
    ) -> None:
        self.root = preset_path(path)
        require(self.root.is_dir(), f"source.depth.path = {str(path)!r}: folder does not exist")
        require(
            units in ("metres", "disparity"), f"source.depth.units = {units!r}: metres|disparity"
        )
        if units == "disparity":
            require(
                bool(focal_px and baseline_m),
                "source.depth.units = disparity needs source.depth.focal_px and baseline_m",
            )
        self.units, self.scale = units, float(scale)
        self.focal_px, self.baseline_m, self.offset_px = focal_px, baseline_m, float(offset_px)

    def load(self, rel: Path, shape: tuple[int, int]) -> np.ndarray:
        """The depth map (metres, ``shape``) of the image at ``rel`` in the source folder."""
        from data_gen.physics.depth import check_depth, depth_from_disparity

        stem = self.root / rel.with_suffix("")
        found = [p for p in (stem.with_suffix(".npy"), stem.with_suffix(".png")) if p.is_file()]
        require(bool(found), f"image {rel}: no depth map {stem}.npy or .png")
        p = found[0]
        try:
            raw = np.load(p) if p.suffix == ".npy" else np.asarray(Image.open(p))
        except (OSError, ValueError, UnidentifiedImageError) as e:
            raise InputError(f"depth map {p} cannot be read: {e}") from None
        check_depth_encoding(raw, p)
        d = np.asarray(raw, np.float64) * self.scale
        if self.units == "disparity":
            d = depth_from_disparity(d + self.offset_px, self.focal_px, self.baseline_m)
        check_depth(d, shape, name=str(p))
        return d.astype(np.float32)


class DepthLaw:
    """A plausible depth map for each photograph that has no measured one
    (:func:`data_gen.physics.depth.ground_plane`): a level camera ``height`` m above a flat
    ground (uniform in the range), the horizon at a fraction of the frame's height (uniform
    in ``horizon``), a focal length of ``focal`` frame widths, the sky and anything beyond
    at ``far`` m; times a smooth log-normal ``relief`` (σ of the log, over about a quarter of
    the frame) for what stands on the ground. Drawn per frame from the frame's seed, so it
    never copies a real depth map; not the depth of the photograph's scene, only a law whose
    statistics (near below, far above, smooth) a component needs to be exercised."""

    def __init__(
        self,
        law: str = "ground_plane",
        horizon: tuple[float, float] = (0.3, 0.6),
        height: tuple[float, float] = (1.0, 3.0),
        focal: float = 1.0,
        far: float = 100.0,
        relief: float = 0.3,
    ) -> None:
        require(law == "ground_plane", f"source.depth.law = {law!r}: ground_plane")
        self.horizon, self.height = tuple(horizon), tuple(height)
        self.focal, self.far, self.relief = float(focal), float(far), float(relief)

    def draw(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        from data_gen.physics.depth import ground_plane

        h, w = shape
        bumps = gaussian_filter(rng.standard_normal(shape), max(h, w) / 8, mode="wrap")
        bumps /= max(float(bumps.std()), 1e-12)
        return ground_plane(
            shape,
            float(rng.uniform(*self.horizon)),
            float(rng.uniform(*self.height)),
            self.focal * w,
            self.far,
            np.exp(self.relief * bumps),
        )


def check_depth_encoding(raw: np.ndarray, p: Path) -> None:
    """A depth map in one of its documented encodings: a 2-D float (or integer) ``.npy``,
    or a one-channel 16-bit PNG. An 8-bit PNG (a picture of the depth, 256 levels) or a
    colour PNG is refused: read as values it would give metres 0..255."""
    if p.suffix == ".npy":
        require(
            raw.ndim == 2 and raw.dtype.kind in "fiu",
            f"depth map {p}: a 2-D array of numbers, got {raw.dtype} of shape {raw.shape}",
        )
        return
    require(
        raw.ndim == 2 and raw.dtype in (np.uint16, np.int32),
        f"depth map {p}: a {'x'.join(map(str, raw.shape))} {raw.dtype} PNG; depth maps are "
        "one-channel 16-bit PNGs or float .npy files (values times source.depth.scale, in "
        "metres or as a disparity)",
    )


def stereo_example() -> Frame:
    """scikit-image's bundled Middlebury pair (motorcycle, left view) with depth from its
    disparity: ``z = f·B / (d + doffs)`` with the 2014 calibration scaled to this 741 px
    width (f = 3979.911 / 4 px, B = 0.193001 m, doffs = 124.343 / 4 px); pixels without
    a disparity (∞) take their nearest valid neighbour's. Linear RGB, depth in metres."""
    from scipy import ndimage
    from skimage import data

    from data_gen.physics.depth import depth_from_disparity

    left, _, disp = data.stereo_motorcycle()
    bad = ~np.isfinite(disp)
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    disp = disp[tuple(idx)]
    z = depth_from_disparity(disp + 124.343 / 4, 3979.911 / 4, 0.193001)
    rgb = srgb_to_linear(left.astype(np.float32) / 255).transpose(2, 0, 1)
    return Frame("motorcycle_left", np.ascontiguousarray(rgb, np.float32), z)


def cache_decoded_frames(source, max_bytes: int) -> None:
    """Keep up to ``max_bytes`` of decoded frames in memory in every folder or RAW source
    of ``source`` (members of a mix included)."""
    for member in getattr(source, "sources", [source]):
        if isinstance(member, FolderSource):
            member.cache_bytes = int(max_bytes)


class MixSource:
    """Frames from several named sources, each frame's source drawn with the given weights.

    The choice comes from the frame's own rng (before the source draws the frame), so a
    mixed dataset stays a function of (seed, shard, frame index). Frame names are
    prefixed ``<name>/``.
    """

    def __init__(self, members: dict[str, tuple[object, float]]) -> None:
        require(bool(members), "source.sources is empty: name at least one source to mix")
        self.names = list(members)
        self.sources = [members[n][0] for n in self.names]
        w = np.array([float(members[n][1]) for n in self.names])
        require(
            bool(np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0),
            f"source.sources: weights {dict(zip(self.names, w.tolist(), strict=True))} must be "
            ">= 0 with a positive sum",
        )
        self.cdf = np.cumsum(w / w.sum())

    def validate(self, min_size: int, progress: bool = False) -> None:
        for s in self.sources:
            s.validate(min_size, progress)

    def lacks_depth(self) -> str | None:
        for n, src in zip(self.names, self.sources, strict=True):
            if (why := src.lacks_depth()) is not None:
                return f"{n}: {why}"
        return None

    def frame(self, rng: np.random.Generator) -> Frame:
        k = min(int(np.searchsorted(self.cdf, rng.uniform(), side="right")), len(self.cdf) - 1)
        f = self.sources[k].frame(rng)
        return Frame(f"{self.names[k]}/{f.name}", f.pixels, f.depth)


Source = FolderSource | RawSource | DeadLeavesSource | MixSource
SOURCES = Registry("source")


def _mixable(kind: str) -> str:
    check(kind in SOURCES and kind != "mix", "give kind dead_leaves, folder or raw")
    return kind


class FolderSettings(KindSettings):
    """``conf/source/folder.yaml``; ``weight``: its share in a mix."""

    kind: Literal["folder"] = "folder"
    path: Any = None
    # auto is taken as true here (as it always was: every integer image is sRGB-decoded)
    linearize: Annotated[bool, Strict()] | Literal["auto"] = True
    shrink: Number = 1.0
    check: Text = "full"
    depth: Any = None  # a depth map folder or a depth law (checked by FolderSource)
    include: Any = None  # a split (data_gen.splits)
    exclude: Any = None
    weight: Number = 1.0


class RawSettings(KindSettings):
    """``conf/source/raw.yaml``; ``weight``: its share in a mix."""

    kind: Literal["raw"] = "raw"
    path: Any = None
    shrink: Number = 1.0
    check: Text = "full"
    weight: Number = 1.0


class MemberSettings(Settings):
    """A source of a mix: its kind and weight; the kind's own settings are its builder's."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: Annotated[str, AfterValidator(_mixable)]
    weight: Number = 1.0


class MixSettings(KindSettings):
    """``conf/source/mix.yaml``."""

    kind: Literal["mix"] = "mix"
    sources: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)] = Field(
        default_factory=dict
    )


def _path(path, where: str, what: str) -> str:
    require(
        path not in (None, "???"),
        f"{where}.path is missing: give the {what} folder as {where}.path=DIR",
    )
    return str(path)


# the settings a source of each kind reads beyond those a stored config may hold (an
# on-the-fly ``generator`` override may add them: data.onthefly.generator)
OPTIONAL_KEYS = {
    "folder": ("weight", "linearize", "shrink", "check", "depth", "include", "exclude"),
    "raw": ("weight", "shrink", "check"),
}


@SOURCES.register("dead_leaves")
def _dead_leaves(src: Mapping, channels: int, where: str) -> DeadLeavesSource:
    return DeadLeavesSource(
        channels, **{k: v for k, v in src.items() if k not in ("kind", "weight")}
    )


@SOURCES.register("folder")
def _folder(src: Mapping, channels: int, where: str) -> FolderSource:
    s = parse(FolderSettings, src, where)
    return FolderSource(
        _path(s.path, where, "image"),
        bool(s.linearize),
        s.shrink,
        channels,
        s.check,
        s.depth,
        s.include,
        s.exclude,
        where,
    )


@SOURCES.register("raw")
def _raw(src: Mapping, channels: int, where: str) -> RawSource:
    s = parse(RawSettings, src, where)
    return RawSource(_path(s.path, where, "RAW"), s.shrink, channels, s.check)


@SOURCES.register("mix")
def _mix(src: Mapping, channels: int, where: str) -> MixSource:
    s = parse(MixSettings, src, where)
    built = {}
    for name, sub in s.sources.items():
        at = f"{where}.sources.{name}"
        member = parse(MemberSettings, sub, at)
        built[name] = (build_source(sub, channels, at), member.weight)
    return MixSource(built)


def build_source(src: Mapping, channels: int, where: str = "source") -> Source:
    """A source from its config dict (``kind`` names the builder in :data:`SOURCES`)."""
    return SOURCES.build(src, channels, where=where)
