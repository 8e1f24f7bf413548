"""Undeveloped RAW files through LibRaw (rawpy): the Bayer mosaic, its levels and ISO.

Only 2×2 Bayer sensors are read (X-Trans and 4-colour CFAs are refused). Values are
returned in raw DN and, normalised, as linear 0 = black level, 1 = white level.

The ISO of a file (:func:`raw_iso`), first found of:

1. LibRaw's (``rawpy``'s ``other.iso_speed``; most makers' raws);
2. the TIFF/EXIF tag ISOSpeedRatings (34855) of a TIFF-based raw (DNG, CR2, NEF, ...), in
   IFD0 or the EXIF IFD, read with ``tifffile`` (LibRaw ignores it in a DNG's IFD0);
3. the file name: ``..._iso1600_...`` / ``ISO1600`` (case-insensitive);
4. none (``None``): callers name it (e.g. ``calibrate noise iso=...``).

:func:`write_dng` writes a minimal uncompressed DNG (CFA, per-plane black, white, ISO,
exposure time) that LibRaw reads back exactly: synthetic raws for tests and benchmarks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.cfa import PATTERNS, pack, plane_offsets
from data_gen.core.errors import InputError, require

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
    iso: float | None = None  # see raw_iso; None = the file carries none
    camera: str = ""  # maker and model, as LibRaw / the TIFF tags name them

    def packed(self) -> np.ndarray:
        """``(4, H/2, W/2)`` float32 planes R, Gr, Gb, B; 0 = black, 1 = white."""
        planes = pack(self.mosaic, self.pattern).astype(np.float32)
        span = self.white - self.black.astype(np.float32)
        return (planes - self.black[:, None, None].astype(np.float32)) / span[:, None, None]


_ISO_NAME = re.compile(r"(?:^|[^a-z0-9])iso[_-]?(\d+(?:\.\d+)?)(?![0-9])", re.IGNORECASE)
TAG_ISO, TAG_EXPOSURE = 34855, 33434


def _tiff_tags(path: Path) -> dict:
    """IFD0 tags of a TIFF-based raw merged with its EXIF IFD (``{}`` when not a TIFF)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as t:
            tags = {tag.code: tag.value for tag in t.pages[0].tags.values()}
    except Exception:  # not a TIFF container (CR3, RAF, ...): no tags
        return {}
    exif = tags.get(34665)
    if isinstance(exif, dict):
        names = {"ISOSpeedRatings": TAG_ISO, "ExposureTime": TAG_EXPOSURE}
        for name, code in names.items():
            if name in exif and code not in tags:
                tags[code] = exif[name]
    return tags


def raw_iso(path: str | Path, libraw_iso: float | None = None) -> float | None:
    """ISO of a raw file: LibRaw's value, the TIFF/EXIF tag, the file name, or ``None``."""
    if libraw_iso and libraw_iso > 0:
        return float(libraw_iso)
    v = _tiff_tags(Path(path)).get(TAG_ISO)
    if isinstance(v, (tuple, list)):
        v = v[0] if v else None
    if isinstance(v, (int, float)) and v > 0:
        return float(v)
    m = _ISO_NAME.search(Path(path).stem)
    return float(m.group(1)) if m and float(m.group(1)) > 0 else None


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
            libraw_iso = float(getattr(getattr(r, "other", None), "iso_speed", 0.0) or 0.0)
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
    return RawImage(p, mosaic, pattern, black, white, raw_iso(p, libraw_iso), _camera(p))


def _camera(path: Path) -> str:
    tags = _tiff_tags(path)
    make, model = str(tags.get(271, "")).strip(), str(tags.get(272, "")).strip()
    return model if model.lower().startswith(make.lower()) else f"{make} {model}".strip()


def write_dng(
    path: str | Path,
    mosaic: np.ndarray,
    pattern: str,
    black,
    white: float,
    iso: float | None = None,
    exposure_s: float | None = None,
    camera: tuple[str, str] = ("residual-train", "synthetic"),
) -> Path:
    """Write ``mosaic`` ``(H, W)`` (DN, cast to uint16, H and W even) as an uncompressed
    DNG 1.4: CFA ``pattern`` (one of :data:`data_gen.cfa.PATTERNS`), ``black`` a scalar or
    one value per packed plane R, Gr, Gb, B (DN), ``white`` (DN), the ISO and exposure
    time (s) as TIFF/EXIF tags, ``camera`` = (maker, model). :func:`read_raw` returns the
    same mosaic, levels and ISO."""
    import tifffile

    require(pattern in PATTERNS, f"cfa = {pattern!r}: use one of {', '.join(PATTERNS)}")
    m = np.asarray(mosaic)
    require(
        m.ndim == 2 and m.shape[0] % 2 == 0 and m.shape[1] % 2 == 0, "mosaic must be (H, W), even"
    )
    colour = {"R": 0, "G": 1, "B": 2}
    bl = np.broadcast_to(np.asarray(black, np.float64), (4,))
    # BlackLevel is given per position of the 2x2 repeat, row by row
    by_pos = np.zeros((2, 2))
    for (dy, dx), v in zip(plane_offsets(pattern), bl, strict=True):
        by_pos[dy, dx] = v
    ident = (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1)  # ColorMatrix1 = I
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, " ".join(camera), True),  # UniqueCameraModel
        (271, "s", 0, camera[0], True),  # Make
        (272, "s", 0, camera[1], True),  # Model
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, tuple(colour[c] for c in pattern), True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "f", 4, tuple(float(v) for v in by_pos.ravel()), True),  # BlackLevel
        (50717, "I", 1, int(white), True),  # WhiteLevel
        (50721, "2i", 9, ident, True),  # ColorMatrix1 (SRATIONAL)
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
    ]
    if iso is not None:
        tags.append((TAG_ISO, "H", 1, round(float(iso)), True))
    if exposure_s is not None:
        tags.append((TAG_EXPOSURE, "2I", 1, (round(float(exposure_s) * 1e6), 1000000), True))
    p = Path(path)
    tifffile.imwrite(
        p,
        np.ascontiguousarray(m.astype(np.uint16)),
        photometric=32803,  # CFA
        subfiletype=0,
        compression=None,
        extratags=tags,
    )
    return p
