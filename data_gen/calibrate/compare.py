"""Comparisons of a calibration with references: darktable's noise profiles, a measured
PSF grid's MTF (the real-data checks in tests and ``bench/calibrate_real.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_gen.calibrate.sfr import mtf50, mtf_along
from data_gen.core.errors import require
from data_gen.darktable import Profile, load_noiseprofiles


def planes_to_rgb(v) -> np.ndarray:
    """Per-plane R, Gr, Gb, B values -> R, mean of the greens, B ``(3,)``."""
    v = np.asarray(v, np.float64)
    return np.array([v[0], (v[1] + v[2]) / 2, v[3]])


def darktable_entries(path: str | Path, maker: str, model: str) -> list[list[Profile]]:
    """Every entry of ``maker model`` in a darktable ``noiseprofiles.json``: a list of its
    profiles (``iso``, ``a``, ``b``; an entry may hold several sets, e.g. the 550D's)."""
    out = [mo.used for mo in load_noiseprofiles(path).models(maker, model)]
    require(bool(out), f"{path}: no profile of {maker} {model}")
    return out


def match_darktable(a_rgb, entries: list[list[Profile]]) -> list[dict]:
    """Every (entry, ISO) of darktable against ``a_rgb`` ``(3,)`` (shot-noise slope, R G B):
    the relative difference per channel and its largest magnitude, best first."""
    a = np.asarray(a_rgb, np.float64)
    rows = []
    for e, profiles in enumerate(entries):
        for p in profiles:
            ref = np.asarray(p.a, np.float64)
            rel = a / ref - 1 if (ref > 0).all() else np.full(3, np.inf)
            rows.append(
                {
                    "entry": e,
                    "iso": float(p.iso),
                    "a": ref.tolist(),
                    "b": list(p.b),
                    "rel_diff": rel.tolist(),
                    "max_abs_rel_diff": float(np.abs(rel).max()),
                }
            )
    return sorted(rows, key=lambda r: r["max_abs_rel_diff"])


def mtf_against_grid(mtf_doc: dict, grid: np.ndarray, min_edges: int = 8) -> list[dict]:
    """Each measured cell and edge orientation of a ``calibrate lens`` ``mtf.json`` next to
    the MTF50 of a PSF grid ``(rows, cols, K, K, C)`` at the same cell (the grid must have
    the calibration's rows x cols), along the measured edges' normal (no pixel box: a
    measured PSF already holds the pixel aperture)."""
    freq = np.linspace(0, 0.5, 2001)
    out = []
    for cell in mtf_doc["cells"]:
        for o, v in cell["orientations"].items():
            if v["edges"] < min_edges:
                continue
            psf = grid[cell["row"], cell["col"]]
            n = np.asarray(v["normal"])
            ref = [
                mtf50(freq, mtf_along(psf[..., c], n, freq, box=False))
                for c in range(psf.shape[-1])
            ]
            out.append(
                {
                    "row": cell["row"],
                    "col": cell["col"],
                    "position_px": [cell["position"]["y_px"], cell["position"]["x_px"]],
                    "orientation": o,
                    "normal": v["normal"],
                    "edges": v["edges"],
                    "measured_mtf50": v["mtf50"],
                    "grid_mtf50": ref,
                }
            )
    return out
