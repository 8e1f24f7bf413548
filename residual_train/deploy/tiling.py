"""Tiled inference: a network applied to overlapping tiles of a whole frame and blended
back, so memory stays bounded whatever the image size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_gen.core.errors import require


def tile_weights(n: int, start: int, size: int, overlap: int) -> np.ndarray:
    """1-D blending weights of a tile ``[start, start + size)`` on an axis of length ``n``.

    Zero within ``overlap // 4`` of an edge shared with a neighbour tile (where padding
    changes the network's output), rising smoothly over ``overlap // 2``; 1 at the
    image's own borders.
    """
    margin, ramp = overlap // 4, max(1, overlap // 2)
    pos = np.arange(size, dtype=np.float64)
    w = np.ones(size)
    if start > 0:
        t = np.clip((pos - margin + 0.5) / ramp, 0, 1)
        w *= 0.5 - 0.5 * np.cos(np.pi * t)
    if start + size < n:
        t = np.clip((size - 1 - pos - margin + 0.5) / ramp, 0, 1)
        w *= 0.5 - 0.5 * np.cos(np.pi * t)
    return w


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """First pixel of each tile of length ``tile`` covering an axis of length ``n``, the
    tiles overlapping by at least ``overlap`` pixels (the last one flush with the end)."""
    if n <= tile:
        return [0]
    step = tile - overlap
    s = list(range(0, n - tile, step))
    return [*s, n - tile]


def _side(tile: int, n: int, multiple: int) -> int:
    """A tile's side on an axis of ``n`` pixels: ``tile``, or ``n`` when shorter, rounded
    down to a multiple of ``multiple`` where the axis allows (the network pads a side that
    is not one, and the padding it sees is content no photograph has)."""
    side = min(tile, n)
    return side - side % multiple if side >= multiple else side


def infer_tiled(
    run: Callable[..., dict[str, np.ndarray]],
    x: np.ndarray,
    heads: list[str],
    tile: int = 256,
    overlap: int = 64,
    batch: int = 4,
    progress: bool = False,
    aux: np.ndarray | None = None,
    multiple: int = 1,
) -> dict[str, np.ndarray]:
    """Apply ``run(batch (B, C, t, t)) -> {head: (B, C, t, t)}`` over tiles and blend.

    ``aux`` ``(F, H, W)``: per-pixel inputs over the whole frame (a field-aware model's
    position maps), cut into the same tiles: then ``run(tiles, aux_tiles (B, F, t, t))``.
    Memory: the output maps plus ``batch`` tiles, whatever the image size.
    """
    require(tile > overlap >= 4, f"tile = {tile}, overlap = {overlap}: need tile > overlap >= 4")
    c, h, w = x.shape
    require(
        aux is None or aux.shape[1:] == x.shape[1:],
        f"per-pixel inputs of shape {None if aux is None else aux.shape} do not cover the "
        f"image {x.shape}",
    )
    th, tw = _side(tile, h, multiple), _side(tile, w, multiple)
    out = {k: np.zeros((c, h, w), np.float32) for k in heads}
    norm = np.zeros((h, w), np.float64)
    # a side rounded down below the overlap keeps half of it (two tiles then cover the axis)
    oy = min(overlap, th // 2) if th < min(tile, h) else overlap
    ox = min(overlap, tw // 2) if tw < min(tile, w) else overlap
    boxes = [(y0, x0) for y0 in tile_starts(h, th, oy) for x0 in tile_starts(w, tw, ox)]
    from tqdm import tqdm

    for i in tqdm(range(0, len(boxes), batch), desc="tiles", unit="batch", disable=not progress):
        chunk = boxes[i : i + batch]
        tiles = np.stack([x[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0 in chunk])
        if aux is None:
            res = run(np.ascontiguousarray(tiles))
        else:
            extra = np.stack([aux[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0 in chunk])
            res = run(np.ascontiguousarray(tiles), np.ascontiguousarray(extra))
        for j, (y0, x0) in enumerate(chunk):
            wgt = np.outer(tile_weights(h, y0, th, oy), tile_weights(w, x0, tw, ox))
            norm[y0 : y0 + th, x0 : x0 + tw] += wgt
            for k in heads:
                out[k][:, y0 : y0 + th, x0 : x0 + tw] += (res[k][j] * wgt).astype(np.float32)
    inv = (1.0 / norm).astype(np.float32)
    for k in heads:
        out[k] *= inv
    return out
