"""Composition of stored maps for a request: a region, a scale, an encoding. No network.

``scale = s`` area-averages the input, every residual and slope map over ``s × s`` blocks
first and
composes the smaller maps (what the page composes in the browser, so the two agree);
``scale = 1`` is the full-resolution composition of :mod:`residual_train.deploy.compose`.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

from data_gen.core.errors import require
from data_gen.noise import NoiseModel
from data_gen.sources import linear_to_srgb, shrink
from residual_train.deploy.compose import Strengths, compose

FORMATS = {"png": "image/png", "tiff": "image/tiff"}
# how each format encodes the linear composition: 8-bit sRGB (as an sRGB upload was), or
# float linear light (what a float TIFF holds by convention)
ENCODED = {"png": "srgb", "tiff": "linear"}


@lru_cache(maxsize=1)
def _srgb_lut() -> np.ndarray:
    """8-bit sRGB of every 16-bit linear level (a table: 2 MP encode in milliseconds)."""
    ramp = np.arange(65536, dtype=np.float32) / 65535.0
    return (linear_to_srgb(ramp) * 255.0 + 0.5).astype(np.uint8)


def to_srgb8(y: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` linear -> ``(H, W, 3)`` 8-bit sRGB."""
    q = (np.clip(y, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    return np.ascontiguousarray(_srgb_lut()[q].transpose(1, 2, 0))


def area_downscale(a: np.ndarray, s: int) -> np.ndarray:
    """Mean over ``s × s`` blocks of ``(C, H, W)`` (the last partial blocks are dropped)."""
    if s == 1:
        return np.ascontiguousarray(a, np.float32)
    return shrink(np.asarray(a, np.float32), s)


def region(shape: tuple[int, int], x: int | None, y: int | None, w: int | None, h: int | None):
    """``(y0, y1, x0, x1)`` of a requested region (default: the whole image)."""
    H, W = shape
    x0, y0 = int(x or 0), int(y or 0)
    x1 = W if w is None else x0 + int(w)
    y1 = H if h is None else y0 + int(h)
    require(
        0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H,
        f"region x={x0}, y={y0}, w={x1 - x0}, h={y1 - y0} is not inside the {W}x{H} image",
    )
    return y0, y1, x0, x1


def maps_at(arrays: dict[str, np.ndarray], box, scale: int) -> dict[str, np.ndarray]:
    """The region of each (memory-mapped) array at ``scale``: views at scale 1 (nothing is
    read until composed), area-averaged copies otherwise."""
    y0, y1, x0, x1 = box
    require(1 <= scale <= 64, f"scale = {scale}: an integer from 1 to 64")
    require(
        (y1 - y0) >= scale and (x1 - x0) >= scale,
        f"scale = {scale} leaves nothing of a {x1 - x0}x{y1 - y0} region",
    )
    if scale == 1:
        return {k: v[:, y0:y1, x0:x1] for k, v in arrays.items()}
    return {k: area_downscale(v[:, y0:y1, x0:x1], scale) for k, v in arrays.items()}


def render(maps: dict[str, np.ndarray], strengths: Strengths, noise: NoiseModel, fmt: str) -> bytes:
    """The composition of ``maps`` (``input``, ``R_<c>`` per component, ``S_<c>`` per gain:
    its slope, ``(1, H, W)``) at ``strengths``, encoded: PNG = 8-bit sRGB (the composition
    and the sRGB table in one pass, then :func:`png_bytes`); TIFF = 32-bit float linear,
    lossless."""
    require(fmt in FORMATS, f"format = {fmt!r}: use one of {sorted(FORMATS)}")
    x = maps["input"]
    res = {k[2:]: v for k, v in maps.items() if k.startswith("R_")}
    sl = {k[2:]: np.asarray(v[0], np.float32) for k, v in maps.items() if k.startswith("S_")}
    if fmt == "png":
        return png_bytes(compose(x, res, strengths, noise, slope_maps=sl, lut=_srgb_lut()))
    import tifffile

    y = compose(x, res, strengths, noise, slope_maps=sl)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.moveaxis(y, 0, 2), photometric="rgb")
    return buf.getvalue()


def png_bytes(rgb: np.ndarray, level: int = 1) -> bytes:
    """``(H, W, 3)`` uint8 as PNG: every row "Up"-filtered (a vectorised difference), one
    zlib stream at a fast level. A few times faster than PIL's adaptive filters for the
    same file size class; any PNG decoder reads it."""
    import struct
    import zlib

    h, w, c = rgb.shape
    rows = rgb.reshape(h, w * c)
    raw = np.empty((h, w * c + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    head = struct.pack(">IIBBBBB", w, h, 8, {3: 2, 4: 6, 1: 0}[c], 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", head),
            chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            chunk(b"IEND", b""),
        ]
    )


def pack_f16(maps: dict[str, np.ndarray], header: dict) -> bytes:
    """The page's map format: ``uint32`` header length (little endian), the JSON header,
    padding to 8 bytes, then each array of ``header['arrays']`` as float16 of the shape ``header["shapes"][name]`` (``(C, H, W)``; a slope map ``(1, H, W)``)."""
    import json

    head = json.dumps(header).encode()
    pad = (-(4 + len(head))) % 8
    parts = [np.uint32(len(head) + pad).tobytes(), head, b" " * pad]
    parts += [np.ascontiguousarray(maps[n], np.float16).tobytes() for n in header["arrays"]]
    return b"".join(parts)
