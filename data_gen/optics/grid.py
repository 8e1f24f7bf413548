"""Measured (or fitted) PSF grids: PSFs at rows × columns of points over the frame.

A grid file is a ``.npy`` array whose axes are named by ``axes`` (default
``[row, col, y, x, c]``: rows × columns × K × K × channels). Grid point ``(i, j)``
sits at the centre of cell ``(i, j)`` of an even rows × columns division of the
frame, i.e. at fractional position ``((i + 0.5) / rows, (j + 0.5) / cols)``.
Between points the PSF is interpolated bilinearly (a convex combination of
normalised PSFs, so it stays normalised); outside the outermost points it is the
nearest edge PSF.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from data_gen.core.errors import InputError, require
from data_gen.core.paths import PROJECT, preset_path
from data_gen.core.typed import (
    Count,
    KindSettings,
    Number,
    Positive,
    PositiveOrInf,
    Settings,
    Text,
    parse,
)
from data_gen.optics.bank import FieldBank, LensState

AXES = ("row", "col", "y", "x", "c")


def load_psf_grid(
    path: str | Path, channels: int, axes: Sequence[str] = AXES, where: str = "lens"
) -> np.ndarray:
    """Read and check a grid; returns ``(rows, cols, C, K, K)`` float32, each PSF sum 1."""
    p = preset_path(path)
    require(
        p.is_file(),
        f"{where}.path = {str(path)!r} does not exist (a .npy PSF grid; relative paths are "
        f"taken from {Path.cwd()} or {PROJECT})",
    )
    axes = [str(a) for a in axes]
    require(
        sorted(axes) == sorted(AXES),
        f"{where}.axes = {axes}: name each of {list(AXES)} once",
    )
    try:
        a = np.load(p, allow_pickle=False)
    except Exception as e:
        raise InputError(f"PSF grid {p} cannot be read: {e}") from None
    require(
        a.ndim == 5,
        f"PSF grid {p} has shape {a.shape}; expected 5 axes {axes} (rows, columns, K, K, channels)",
    )
    require(a.dtype.kind in "fiu", f"PSF grid {p}: dtype {a.dtype} is not numeric")
    g = np.transpose(a, [axes.index(n) for n in ("row", "col", "c", "y", "x")]).astype(np.float64)
    _rows, _cols, c, ky, kx = g.shape
    named = dict(zip(axes, a.shape, strict=True))
    require(
        c == channels and ky == kx and ky % 2 == 1,
        f"PSF grid {p} has shape {a.shape} read as axes {axes} ({named}); need c = {channels} "
        "channels and square odd PSFs (y = x, odd) — are the axes right?",
    )
    bad = ~np.isfinite(g)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"PSF grid {p}: {int(bad.sum())} non-finite values (first at row, col, c, y, x = {i})"
        )
    if (g < 0).any():
        i = tuple(int(v) for v in np.argwhere(g < 0)[0])
        raise InputError(f"PSF grid {p}: negative values (first at row, col, c, y, x = {i})")
    sums = g.sum(axis=(-2, -1))
    if (sums <= 0).any():
        i = tuple(int(v) for v in np.argwhere(sums <= 0)[0])
        raise InputError(f"PSF grid {p}: the PSF at row, col, c = {i} sums to 0")
    return (g / sums[..., None, None]).astype(np.float32)


def grid_points(n: int) -> np.ndarray:
    """Fractional positions of ``n`` grid points (cell centres) across the frame."""
    return (np.arange(n) + 0.5) / n


def interpolate_grid(grid: np.ndarray, fy: float, fx: float) -> np.ndarray:
    """Bilinear PSF ``(C, K, K)`` at fractional frame position (fy, fx) from ``grid``
    ``(rows, cols, C, K, K)``; clamped to the outermost grid points."""
    rows, cols = grid.shape[:2]

    def axis(f: float, n: int) -> tuple[int, int, float]:
        t = min(max(f * n - 0.5, 0.0), n - 1.0)
        i0 = min(math.floor(t), n - 1)
        i1 = min(i0 + 1, n - 1)
        return i0, i1, t - i0

    i0, i1, ty = axis(fy, rows)
    j0, j1, tx = axis(fx, cols)
    g = grid.astype(np.float64)
    psf = (
        (1 - ty) * (1 - tx) * g[i0, j0]
        + (1 - ty) * tx * g[i0, j1]
        + ty * (1 - tx) * g[i1, j0]
        + ty * tx * g[i1, j1]
    )
    return psf.astype(np.float32)


class GridState(Settings):
    """The lens state a measured grid was taken at (null: unknown, NaN in ``meta``)."""

    focal_length_mm: Number | None = None
    f_number: Positive | None = None
    focus_m: PositiveOrInf | None = None


class GridLensSettings(KindSettings):
    """A ``kind: grid`` description (``conf/lens/measured_63762bb.yaml``)."""

    kind: Literal["grid"] = "grid"
    name: Text | None = None  # null: the file's stem
    path: Any = None
    axes: list[Text] | None = None  # null: AXES
    sensor_mm: tuple[Positive, Positive]  # the frame's [height, width]
    upsample: Count = 1
    state: GridState = Field(default_factory=GridState)


def grid_bank(d: Mapping, channels: int, where: str = "lens") -> FieldBank:
    """Bank from a ``kind: grid`` description: the measured points, and ``upsample - 1``
    interpolated points between neighbours along each axis."""
    s = parse(GridLensSettings, d, where)
    require(s.path not in (None, "???"), f"{where}.path is missing (the .npy PSF grid)")
    g = load_psf_grid(s.path, channels, s.axes or AXES, where)
    up = s.upsample
    rows, cols = g.shape[:2]
    ys = np.linspace(grid_points(rows)[0], grid_points(rows)[-1], (rows - 1) * up + 1)
    xs = np.linspace(grid_points(cols)[0], grid_points(cols)[-1], (cols - 1) * up + 1)
    dense = np.stack([np.stack([interpolate_grid(g, y, x) for x in xs]) for y in ys])
    nan = float("nan")
    st = {k: nan if v is None else v for k, v in s.state.model_dump().items()}
    return FieldBank(
        states=[LensState(st["focal_length_mm"], st["f_number"], st["focus_m"])],
        name=s.name if s.name is not None else Path(s.path).stem,
        sensor_hw=s.sensor_mm,
        grid=dense[None],
        geometry="grid",
        axis1=ys,
        axis2=xs,
        description=dict(d),
    )
