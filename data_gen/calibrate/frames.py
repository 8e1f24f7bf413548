"""Raw frames for noise calibration: found, read, checked, grouped by ISO and exposure.

A frame keeps its mosaic packed as planes R, Gr, Gb, B in raw DN (uint16, ``(4, h, w)``)
and its levels. Every check names the file: a frame that is not a raw, frames of another
size / CFA / white level than the first, files with and without an ISO mixed.

Kinds, from the frame's level ``m`` = the median over planes of the mean normalised
signal ``(DN − black)/(white − black)``: **dark** when ``m < dark_max`` (lens cap on);
otherwise **lit** (a flat field, or a scene). Lit frames of one ISO whose levels agree
within ``same_level`` (relative; or that carry the same exposure time) form one exposure
**level**; a level of two or more frames gives frame pairs (photon transfer).
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_gen.cfa import pack
from data_gen.core.errors import InputError, require
from data_gen.raw import RAW_SUFFIXES, TAG_EXPOSURE, _tiff_tags, read_raw

UNKNOWN = "unknown"  # the ISO key of frames that carry no ISO


@dataclass
class Frame:
    """One raw frame: ``dn`` ``(4, h, w)`` uint16 planes R, Gr, Gb, B; ``black`` ``(4,)``
    and ``white`` in DN; ``level`` the median normalised plane mean; ``clipped`` the
    fraction of photosites at or above ``clip·(white − black)``."""

    path: Path
    dn: np.ndarray
    black: np.ndarray
    white: float
    iso: float | None
    pattern: str
    camera: str
    exposure_s: float | None
    level: float
    clipped: float

    @property
    def span(self) -> np.ndarray:
        """``white − black`` per plane, DN ``(4,)``."""
        return self.white - self.black

    def normalised(self, black: np.ndarray | None = None) -> np.ndarray:
        """``(4, h, w)`` float32, 0 = black (``black`` per plane, default the file's), 1 = white."""
        b = self.black if black is None else np.asarray(black, np.float64)
        span = (self.white - b).astype(np.float32)
        return (self.dn.astype(np.float32) - b[:, None, None].astype(np.float32)) / span[
            :, None, None
        ]

    @property
    def iso_key(self) -> str:
        return iso_key(self.iso)


def iso_key(iso: float | None) -> str:
    """``'1600'`` for ISO 1600, ``'unknown'`` for ``None`` (the keys of noise.json)."""
    return UNKNOWN if iso is None else f"{iso:g}"


def find_raws(spec, where: str = "raws") -> list[Path]:
    """Raw files from ``spec``: a directory (its files with a raw suffix, sorted), a glob
    pattern, a file, or a list of those. A named file is taken whatever its suffix (a
    non-raw fails when read, naming it)."""
    require(spec not in (None, "???"), f"{where} is missing: give {where}=DIR_OR_FILES (raw files)")
    items = [spec] if isinstance(spec, (str, Path)) else list(spec or [])
    require(bool(items), f"{where} is empty: give a directory, files or a glob pattern of raws")
    out: list[Path] = []
    for it in items:
        s = str(it)
        p = Path(s).expanduser()
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in RAW_SUFFIXES
            )
            require(
                bool(found),
                f"{where} = {s!r}: the directory holds no raw files ({', '.join(RAW_SUFFIXES)})",
            )
            out += found
        elif any(ch in s for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
            require(bool(found), f"{where} = {s!r}: the pattern matches no file")
            out += found
        else:
            require(p.is_file(), f"{where} = {s!r}: no such file or directory")
            out.append(p)
    seen, unique = set(), []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def _exposure(path: Path) -> float | None:
    v = _tiff_tags(path).get(TAG_EXPOSURE)
    if isinstance(v, (tuple, list)) and len(v) == 2 and v[1]:
        return float(v[0]) / float(v[1]) if v[0] else None
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def load_frame(path: Path, iso: float | None, clip: float) -> Frame:
    """Read one raw (``iso``: used when the file carries none; ``clip``: the normalised
    level from which a photosite counts as clipped, conf/calibrate_noise.yaml)."""
    r = read_raw(path)
    dn = np.ascontiguousarray(pack(r.mosaic, r.pattern))
    span = r.white - r.black
    sub = dn[:, ::4, ::4].astype(np.float32)  # the level from every 4th row / column
    means = (sub.mean(axis=(1, 2)) - r.black) / span
    hi = (r.black + clip * span).astype(np.float32)[:, None, None]
    clipped = float((sub >= hi).mean())
    return Frame(
        path=Path(path),
        dn=dn,
        black=r.black.astype(np.float64),
        white=float(r.white),
        iso=r.iso if r.iso is not None else (None if iso is None else float(iso)),
        pattern=r.pattern,
        camera=r.camera,
        exposure_s=_exposure(Path(path)),
        level=float(np.median(means)),
        clipped=clipped,
    )


def check_same_camera(frames: list[Frame]) -> None:
    """Every frame has the first one's size, CFA and white level, and all or none carry an
    ISO; otherwise an :class:`InputError` names the first file that differs."""
    f0 = frames[0]
    for f in frames[1:]:
        require(
            f.dn.shape == f0.dn.shape,
            f"{f.path}: {2 * f.dn.shape[1]}x{2 * f.dn.shape[2]} photosites, but "
            f"{f0.path.name} has {2 * f0.dn.shape[1]}x{2 * f0.dn.shape[2]}: frames of one "
            "camera and one size per calibration",
        )
        require(
            f.pattern == f0.pattern and f.white == f0.white,
            f"{f.path}: CFA {f.pattern}, white {f.white:g} but {f0.path.name} has CFA "
            f"{f0.pattern}, white {f0.white:g}: one camera per calibration",
        )
    with_iso = [f for f in frames if f.iso is not None]
    if with_iso and len(with_iso) < len(frames):
        f = next(f for f in frames if f.iso is None)
        raise InputError(
            f"{f.path} carries no ISO while {with_iso[0].path.name} has ISO "
            f"{with_iso[0].iso:g}: give iso=VALUE or name the file *_iso1600_*"
        )


def load_frames(paths: Iterable[Path], iso: float | None, clip: float) -> dict[str, list[Frame]]:
    """Read and check every file; frames grouped by ISO key (sorted by ISO, ``unknown``
    last), each group in file order."""
    frames = [load_frame(p, iso, clip) for p in paths]
    require(bool(frames), "no raw files to calibrate from")
    check_same_camera(frames)
    groups: dict[str, list[Frame]] = {}
    for f in sorted(frames, key=lambda f: (f.iso is None, f.iso or 0.0)):
        groups.setdefault(f.iso_key, []).append(f)
    return groups


def split_dark(frames: list[Frame], dark_max: float) -> tuple[list[Frame], list[Frame]]:
    """(dark frames, lit frames): dark when the level is below ``dark_max``."""
    dark = [f for f in frames if f.level < dark_max]
    return dark, [f for f in frames if f.level >= dark_max]


def exposure_levels(lit: list[Frame], same_level: float) -> list[list[Frame]]:
    """Lit frames grouped into exposure levels: by exposure time when every frame carries
    one, else by level (sorted; a frame joins the previous group when its level is within
    ``same_level`` relative of the group's first)."""
    if lit and all(f.exposure_s is not None for f in lit):
        by_t: dict[float, list[Frame]] = {}
        for f in lit:
            by_t.setdefault(round(float(f.exposure_s), 9), []).append(f)
        return [by_t[t] for t in sorted(by_t)]
    groups: list[list[Frame]] = []
    for f in sorted(lit, key=lambda f: f.level):
        if groups and abs(f.level - groups[-1][0].level) <= same_level * groups[-1][0].level:
            groups[-1].append(f)
        else:
            groups.append([f])
    return groups


def pairs(level: list[Frame]) -> list[tuple[Frame, Frame]]:
    """Disjoint pairs (1st, 2nd), (3rd, 4th), ... of one exposure level."""
    return [(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
