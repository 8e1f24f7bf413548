"""Per-ISO parameter tables of the noise kinds: values per ISO and colour channel, linear in
ISO between the listed ISOs (as the ``table`` and ``darktable`` sensors' ``a``, ``b``).

A setting is a number (every ISO, every channel), or one entry per ISO of ``isos``, each a
number or one value per colour channel (or per Bayer plane R, Gr, Gb, B, which a
3-channel sensor takes as R, the mean of the greens, B).
"""

from __future__ import annotations

import numpy as np

from data_gen.core.errors import require
from data_gen.noise import at_iso


def planes_to_colours(v: np.ndarray, channels: int, where: str) -> np.ndarray:
    """``(..., 4)`` Bayer-plane values -> ``(..., 3)`` colours R, mean G, B for a 3-channel
    sensor; ``(..., channels)`` as is."""
    v = np.asarray(v, np.float64)
    if v.shape[-1] == 4 and channels == 3:
        return np.stack([v[..., 0], (v[..., 1] + v[..., 2]) / 2, v[..., 3]], -1)
    require(
        v.shape[-1] == channels,
        f"{where}: {v.shape[-1]} values per ISO; give one, one per channel ({channels}) or "
        "4 Bayer planes for 3 channels",
    )
    return v


class ISOTable:
    """``values`` ``(n, C)`` at ``isos`` ``(n,)`` (``None``: one row for every ISO)."""

    def __init__(self, isos: np.ndarray | None, values: np.ndarray, where: str) -> None:
        self.isos, self.values, self.where = isos, np.asarray(values, np.float64), where

    @classmethod
    def parse(cls, value, isos, channels: int, where: str) -> ISOTable:
        """A setting (module docstring) as a table; one line names a bad one."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(None, np.full((1, channels), float(value)), where)
        require(
            isinstance(value, (list, tuple)) and len(value) > 0,
            f"{where} = {value!r}: a number or one entry per ISO",
        )
        require(
            isos is not None and len(isos) == len(value),
            f"{where} has {len(value)} entries; give one per ISO of isos "
            f"({'none given' if isos is None else len(isos)})",
        )
        rows = []
        for v in value:
            row = np.atleast_1d(np.asarray(v, np.float64))
            if row.size == 1:
                row = np.repeat(row, channels)
            rows.append(planes_to_colours(row, channels, where))
        arr = np.stack(rows)
        require(bool(np.isfinite(arr).all()), f"{where} = {value!r}: values must be finite")
        return cls(np.asarray(isos, np.float64), arr, where)

    @property
    def knots(self) -> list[float]:
        return [] if self.isos is None else self.isos.tolist()

    def at(self, iso: float) -> np.ndarray:
        """The values ``(C,)`` at ``iso`` (linear between the rows)."""
        if self.isos is None:
            return self.values[0]
        return at_iso(iso, self.isos, self.values)

    def check_covers(self, lo: float, hi: float, key: str) -> None:
        """The sensor's ISO range ``lo..hi`` lies inside the table's ISOs."""
        if self.isos is None:
            return
        require(
            lo >= self.isos[0] and hi <= self.isos[-1],
            f"{key}: the sensor draws ISO {lo:g}..{hi:g} but the table covers ISO "
            f"{self.isos[0]:g}..{self.isos[-1]:g}",
        )


def check_isos(isos, where: str) -> np.ndarray | None:
    """``isos`` as positive increasing floats (or ``None``)."""
    if isos is None:
        return None
    arr = np.asarray(isos, np.float64).reshape(-1)
    require(
        arr.size >= 1 and bool((arr > 0).all()) and bool(np.all(np.diff(arr) > 0)),
        f"{where} = {list(isos)!r} must be positive and increasing",
    )
    return arr


def bracket(iso: float, isos: np.ndarray) -> tuple[int, int, float]:
    """``(i0, i1, w)``: ``iso`` between ``isos[i0]`` and ``isos[i1]`` with weight ``w`` on
    ``i1`` (clamped at the ends)."""
    if iso <= isos[0] or len(isos) == 1:
        return 0, 0, 0.0
    if iso >= isos[-1]:
        n = len(isos) - 1
        return n, n, 0.0
    i1 = int(np.searchsorted(isos, iso))
    i0 = i1 - 1
    return i0, i1, float((iso - isos[i0]) / (isos[i1] - isos[i0]))
