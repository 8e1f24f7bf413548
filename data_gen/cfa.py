"""Bayer colour filter arrays: mosaic, pack to 4 planes, unpack.

A pattern names the colours of the 2×2 block at the top-left of the array, row by
row: ``RGGB`` is R G / G B. Packed arrays ``(..., 4, H/2, W/2)`` always hold the
planes in the order ``R, Gr, Gb, B`` (``layout = rggb`` in the shards), where Gr is
the green photosite on the red rows and Gb the one on the blue rows, whatever the
pattern; so a network sees the same plane order from every camera.
"""

from __future__ import annotations

import numpy as np

from data_gen.core.errors import require
from data_gen.noise import is_torch

PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
PLANES = ("R", "Gr", "Gb", "B")
PLANE_COLOUR = (0, 1, 1, 2)  # RGB channel each packed plane samples


def plane_offsets(pattern: str) -> list[tuple[int, int]]:
    """(dy, dx) inside the 2×2 block of each packed plane R, Gr, Gb, B."""
    require(pattern in PATTERNS, f"cfa = {pattern!r}: use one of {', '.join(PATTERNS)}")
    pos = [(i // 2, i % 2) for i in range(4)]
    r = pos[pattern.index("R")]
    b = pos[pattern.index("B")]
    greens = [p for p, ch in zip(pos, pattern, strict=True) if ch == "G"]
    gr = next(g for g in greens if g[0] == r[0])  # the green on the red row
    gb = next(g for g in greens if g[0] == b[0])
    return [r, gr, gb, b]


def _check_even(h: int, w: int) -> None:
    require(h % 2 == 0 and w % 2 == 0, f"a Bayer array needs even height and width, got {h}x{w}")


def pack(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """``(..., H, W)`` mosaic -> ``(..., 4, H/2, W/2)`` planes R, Gr, Gb, B."""
    _check_even(*mosaic.shape[-2:])
    return np.stack([mosaic[..., dy::2, dx::2] for dy, dx in plane_offsets(pattern)], axis=-3)


def unpack(packed: np.ndarray, pattern: str) -> np.ndarray:
    """Inverse of :func:`pack`: ``(..., 4, h, w)`` -> ``(..., 2h, 2w)``."""
    require(packed.shape[-3] == 4, f"packed Bayer data needs 4 planes, got {packed.shape}")
    h, w = packed.shape[-2:]
    out = np.empty((*packed.shape[:-3], 2 * h, 2 * w), packed.dtype)
    for k, (dy, dx) in enumerate(plane_offsets(pattern)):
        out[..., dy::2, dx::2] = packed[..., k, :, :]
    return out


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """``(..., 3, H, W)`` linear RGB -> ``(..., H, W)``: each photosite keeps its colour."""
    require(rgb.shape[-3] == 3, f"mosaicking needs 3 colour channels, got {rgb.shape}")
    _check_even(*rgb.shape[-2:])
    out = np.empty((*rgb.shape[:-3], *rgb.shape[-2:]), rgb.dtype)
    for (dy, dx), c in zip(plane_offsets(pattern), PLANE_COLOUR, strict=True):
        out[..., dy::2, dx::2] = rgb[..., c, dy::2, dx::2]
    return out


def mosaic_packed(rgb, pattern: str):
    """``pack(mosaic(rgb))`` in one step: ``(..., 3, H, W)`` -> ``(..., 4, H/2, W/2)``;
    numpy arrays or torch tensors (the torch renderer)."""
    require(rgb.shape[-3] == 3, f"mosaicking needs 3 colour channels, got {rgb.shape}")
    _check_even(*rgb.shape[-2:])
    planes = [
        rgb[..., c, dy::2, dx::2]
        for (dy, dx), c in zip(plane_offsets(pattern), PLANE_COLOUR, strict=True)
    ]
    if is_torch(rgb):
        import torch

        return torch.stack(planes, dim=-3)
    return np.stack(planes, axis=-3)


def superpixel_rgb(packed: np.ndarray) -> np.ndarray:
    """Packed ``(..., 4, h, w)`` -> half-resolution RGB ``(..., 3, h, w)`` (greens averaged)."""
    return np.stack(
        [
            packed[..., 0, :, :],
            0.5 * (packed[..., 1, :, :] + packed[..., 2, :, :]),
            packed[..., 3, :, :],
        ],
        axis=-3,
    )
