"""Undeveloped RAW files through LibRaw (rawpy): the Bayer mosaic and its levels.

Only 2×2 Bayer sensors are read (X-Trans and 4-colour CFAs are refused). Values are
returned in raw DN and, normalised, as linear 0 = black level, 1 = white level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.cfa import PATTERNS, pack, plane_offsets
from data_gen.errors import InputError, require

RAW_SUFFIXES = (
    ".dng",
    ".kdc",
    ".cr2",
    ".cr3",
    ".nef",
    ".arw",
    ".raf",
    ".orf",
    ".rw2",
    ".pef",
    ".srw",
)


@dataclass
class RawImage:
    """A Bayer RAW: ``mosaic`` ``(H, W)`` uint16 DN (visible area, even size), the CFA
    ``pattern`` of its top-left 2×2 block, ``black`` per packed plane (R, Gr, Gb, B)
    and the ``white`` level, both in DN."""

    path: Path
    mosaic: np.ndarray
    pattern: str
    black: np.ndarray
    white: float

    def packed(self) -> np.ndarray:
        """``(4, H/2, W/2)`` float32 planes R, Gr, Gb, B; 0 = black, 1 = white."""
        planes = pack(self.mosaic, self.pattern).astype(np.float32)
        span = self.white - self.black.astype(np.float32)
        return (planes - self.black[:, None, None].astype(np.float32)) / span[:, None, None]


def read_raw(path: str | Path) -> RawImage:
    """Read a Bayer RAW file; :class:`InputError` names the file when LibRaw cannot."""
    import rawpy

    p = Path(path)
    require(p.is_file(), f"RAW file {p} does not exist")
    try:
        with rawpy.imread(str(p)) as r:
            mosaic = np.array(r.raw_image_visible, copy=True)
            colours = np.array(r.raw_colors_visible[:2, :2])
            desc = r.color_desc.decode("ascii", "replace")
            black_by_colour = list(r.black_level_per_channel)
            white = float(r.white_level)
            ncol = int(r.num_colors)
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise InputError(
            f"RAW file {p} cannot be read by LibRaw: {type(e).__name__}: {e}"
        ) from None
    require(
        ncol == 3 and mosaic.ndim == 2 and colours.shape == (2, 2),
        f"RAW file {p}: not a 2x2 Bayer sensor (colours {desc!r}, {ncol} colours)",
    )
    pattern = "".join(desc[int(c)] for c in colours.ravel())
    require(pattern in PATTERNS, f"RAW file {p}: CFA {pattern!r} is not one of {PATTERNS}")
    h, w = mosaic.shape
    mosaic = mosaic[: h - h % 2, : w - w % 2]
    black = np.array(
        [black_by_colour[int(colours[dy, dx])] for dy, dx in plane_offsets(pattern)], np.float64
    )
    require(
        white > black.max(),
        f"RAW file {p}: white level {white:g} is not above the black level {black.max():g}",
    )
    return RawImage(p, mosaic, pattern, black, white)
