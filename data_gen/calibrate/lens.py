"""``residual-train calibrate lens captures=DIR_OR_FILES out=DIR``: the lens from captures of
a checkerboard (ISO 12233 style: slanted squares) covering positions across the frame.

1. Corners: X-junctions of each capture (:mod:`.chart`), ordered on the chart's lattice.
2. Geometry: a homography per capture and the radial distortion ``[k1, k2]`` of the
   project's model, fitted to the corners (:mod:`.distortion`).
3. Per cell of a ``grid`` = rows × columns division of the frame and per channel: the
   edges (lattice neighbours) whose middle lies in the cell, sampled across their
   perpendicular (:mod:`.sfr`), normalised to the two adjacent squares' levels, pooled
   per orientation (edges along the chart's rows / columns) → ESF → LSF → SFR, MTF50.
4. Per cell: the PSF from a window of the capture that the chart covers, by least
   squares against the ideal chart rendered from the fitted geometry (:mod:`.psf`;
   ``recentre=true`` moves its centroid to the centre pixel). Cells the chart does not
   cover take the nearest measured cell's PSF (``measured: false`` in mtf.json).

Edges enter a cell's SFR only when they and their samples lie inside the cell, and only
between two squares whose four corners were found (not along the chart's border). The
distance to an edge is measured along the lattice's direction for every edge of one
orientation, and an edge that is bright on the negative side enters as ``1 − v``: the
ESF of an asymmetric PSF is not mirrored into its own reflection.

Files in ``out`` (filled in a hidden sibling and renamed when complete):

* ``lens.yaml`` — the generator's lens (``kind: grid``, ``lens=DIR/lens.yaml``);
* ``psf_grid.npy`` — ``(rows, cols, K, K, 3)`` float32, each PSF sums to 1;
* ``mtf.json`` — per cell the position (frame fractions and pixels), per channel and
  edge orientation the MTF50 (cycles/pixel) and the SFR curve; the geometry (``k``,
  corner residuals);
* ``index.html`` — ESF → LSF → SFR per position and channel, the PSFs, the MTF50 map,
  the corner residuals; ``config.yaml`` — the resolved command.
"""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml
from pydantic import Strict
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from data_gen.calibrate.chart import (
    chart_coordinates,
    lattice,
    render_chart,
    saddle_corners,
    x_junctions,
)
from data_gen.calibrate.distortion import Geometry, fit_geometry
from data_gen.calibrate.noise import prepare_output
from data_gen.calibrate.psf import estimate_psf, recentre
from data_gen.calibrate.sfr import SFR, edge_samples, sfr_from_samples
from data_gen.core.errors import InputError, require
from data_gen.core.paths import filled_atomically
from data_gen.core.typed import Integer, Number, Settings, parse

log = logging.getLogger("data_gen")

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
ORIENTATIONS = ("rows", "cols")  # edges along the chart's rows / columns
FORMAT = 1


def find_captures(spec) -> list[Path]:
    """Image files from a directory (its .tif/.png/.jpg files), a glob, a file or a list."""
    require(
        spec not in (None, "???"), "captures is missing: give captures=DIR_OR_FILES (chart images)"
    )
    items = [spec] if isinstance(spec, (str, Path)) else list(spec or [])
    require(bool(items), "captures is empty: give a directory, files or a glob of chart images")
    out: list[Path] = []
    for it in items:
        s = str(it)
        p = Path(s).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            require(bool(found), f"captures = {s!r}: the directory holds no .tif/.png/.jpg image")
            out += found
        elif any(ch in s for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(p)))
            require(bool(found), f"captures = {s!r}: the pattern matches no file")
            out += found
        else:
            require(p.is_file(), f"captures = {s!r}: no such file or directory")
            out.append(p)
    return out


def read_capture(path: Path, gamma: float = 1.0) -> np.ndarray:
    """A capture as ``(C, H, W)`` float64 in [0, 1] (C = 1 grey or 3 RGB; integers scaled
    by their range), raised to ``gamma`` (1 = the file is linear). TIFFs through tifffile,
    or Pillow when tifffile cannot decode them (e.g. LZW without imagecodecs)."""
    from PIL import Image, UnidentifiedImageError

    a = None
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile

            a = tifffile.imread(path)
        except Exception:
            a = None
    if a is None:
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode not in ("L", "I;16", "I", "F", "RGB"):
                    im = im.convert("RGB")
                a = np.asarray(im)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise InputError(f"capture {path} cannot be read as an image: {e}") from None
    if a.dtype.kind in "ui":
        a = a.astype(np.float64) / (255.0 if a.dtype.itemsize == 1 else 65535.0)
    a = np.asarray(a, np.float64)
    if a.ndim == 3 and a.shape[2] in (2, 4):
        a = a[..., : a.shape[2] - 1]
    if a.ndim == 3 and a.shape[2] == 2:
        a = a[..., :1]
    require(a.ndim in (2, 3), f"capture {path}: pixel array of shape {a.shape}")
    a = a[None] if a.ndim == 2 else np.moveaxis(a, 2, 0)
    require(a.shape[0] in (1, 3), f"capture {path}: {a.shape[0]} channels; give grey or RGB")
    return np.clip(a, 0, None) ** gamma


AsGiven = int | float  # written to lens.yaml as given (50 stays 50, not 50.0)


class LensCalibration(Settings):
    """``conf/calibrate_lens.yaml`` (its defaults are the file's)."""

    captures: Any
    out: Any
    gamma: Number
    grid: tuple[Integer, Integer]
    psf_size: Integer
    psf_window: Integer
    smoothness: Number
    recentre: Annotated[bool, Strict()]
    fit_distortion: Annotated[bool, Strict()]
    corner_sigma: Number
    esf_half_width: Number
    edge_trim: Number
    min_edges: Integer
    upsample: Integer
    pixel_pitch_um: AsGiven | None = None
    f_number: AsGiven | None = None
    focal_length_mm: AsGiven | None = None
    name: str | None = None


def find_corners(grey: np.ndarray, c: LensCalibration, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Chart points ``q`` and recorded corners ``x`` ``(N, 2)`` of one capture."""
    pts = saddle_corners(grey, c.corner_sigma)
    require(len(pts) >= 12, f"{where}: found {len(pts)} corner-like points; no checkerboard?")
    step = float(np.median(cKDTree(pts).query(pts, 2)[0][:, 1]))
    pts = pts[x_junctions(grey, pts, 0.3 * step)]
    ij, ok = lattice(pts)
    require(
        ok.sum() >= 12,
        f"{where}: found {int(ok.sum())} checkerboard corners on one lattice; need at least 12 "
        "(a checkerboard of slanted squares, several squares across, in focus)",
    )
    return ij[ok].astype(np.float64), pts[ok]


def sample_at(img: np.ndarray, pts: np.ndarray, r: int = 1) -> np.ndarray:
    """Mean of the ``(2r+1)²`` pixels around each point ``(N, 2)`` of ``img`` ``(H, W)``."""
    acc = np.zeros(len(pts))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            acc += map_coordinates(img, [pts[:, 0] + dy, pts[:, 1] + dx], order=1, mode="nearest")
    return acc / (2 * r + 1) ** 2


def parity_of(grey: np.ndarray, geo: Geometry, cap: int, q: np.ndarray) -> int:
    """0 when squares with ``floor(i) + floor(j)`` even are bright, else 1."""
    lo, hi = q.min(0), q.max(0)
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    centres = np.stack([ii.ravel() + 0.5, jj.ravel() + 0.5], 1)
    v = sample_at(grey, geo.project(cap, centres))
    even = ((ii.ravel() + jj.ravel()) % 2) == 0
    return 0 if v[even].mean() > v[~even].mean() else 1


def cell_edges(q: np.ndarray, x: np.ndarray) -> dict[str, list[tuple[int, int, np.ndarray]]]:
    """Lattice edges per orientation: ``(a, b, side centres)`` with corner indices ``a``,
    ``b`` and the chart coordinates ``(2, 2)`` of the two squares' centres beside it; only
    edges between two squares whose corners were all found (not the chart's border)."""
    index = {(int(i), int(j)): n for n, (i, j) in enumerate(q)}
    out: dict[str, list] = {"rows": [], "cols": []}

    def whole(i: int, j: int) -> bool:  # square (i, j) has its four corners detected
        return all((i + di, j + dj) in index for di in (0, 1) for dj in (0, 1))

    for (i, j), a in index.items():
        b = index.get((i, j + 1))
        if b is not None and whole(i - 1, j) and whole(i, j):  # along a row: above, below
            out["rows"].append((a, b, np.array([[i - 0.5, j + 0.5], [i + 0.5, j + 0.5]])))
        b = index.get((i + 1, j))
        if b is not None and whole(i, j - 1) and whole(i, j):  # along a column: left, right
            out["cols"].append((a, b, np.array([[i + 0.5, j - 0.5], [i + 0.5, j + 0.5]])))
    return out


def covered(q_window: np.ndarray, q: np.ndarray, margin: float = 0.5) -> bool:
    """Whether chart coordinates ``(2, ...)`` of a window lie inside the corners' lattice."""
    lo, hi = q.min(0) + margin, q.max(0) - margin
    return bool(
        (q_window[0] >= lo[0]).all()
        and (q_window[0] <= hi[0]).all()
        and (q_window[1] >= lo[1]).all()
        and (q_window[1] <= hi[1]).all()
    )


def run(cfg: dict) -> dict:
    """The ``calibrate lens`` command (``cfg``: conf/calibrate_lens.yaml, resolved)."""
    c = parse(LensCalibration, cfg, "")
    paths = find_captures(c.captures)
    out, config, inputs, done = prepare_output(c.out, cfg, paths, "mtf.json")
    if done is not None:
        log.info("%s already holds this calibration; nothing to do", out)
        return {"out": str(out), "unchanged": True, "distortion": done["geometry"]["k"]}
    k_size = c.psf_size
    require(k_size % 2 == 1 and k_size >= 3, f"psf_size = {k_size}: an odd number >= 3")
    rows, cols = c.grid
    require(rows >= 1 and cols >= 1, f"grid = {list(c.grid)}: [rows, columns], each >= 1")
    imgs = [read_capture(p, c.gamma) for p in paths]
    shape = imgs[0].shape[1:]
    for p, im in zip(paths, imgs, strict=True):
        require(
            im.shape == imgs[0].shape,
            f"{p}: {im.shape[0]} channel(s) of {im.shape[1]}x{im.shape[2]}, but {paths[0].name} "
            f"has {imgs[0].shape[0]} of {shape[0]}x{shape[1]}: captures of one camera",
        )
    greys = [im.mean(0) for im in imgs]
    corr = [find_corners(g, c, str(p)) for g, p in zip(greys, paths, strict=True)]
    geo, keep = fit_geometry(corr, shape, c.fit_distortion)
    corr = [(q[m], x[m]) for (q, x), m in zip(corr, keep, strict=True)]
    log.info(
        "geometry: %d corners, residual %.3f px RMS, distortion k = [%.5f, %.5f]",
        geo.corners, geo.rms_px, *geo.k,
    )  # fmt: skip
    cells = measure_cells(imgs, greys, corr, geo, c, rows, cols, k_size)
    grid, measured = fill_grid(cells, rows, cols, k_size)
    require(
        measured.any(),
        f"no cell of the {rows}x{cols} grid holds a {c.psf_window} px window covered by the "
        "chart: move the chart across the frame, or use a coarser grid / smaller psf_window",
    )
    doc = mtf_document(cells, geo, shape, paths, corr, c, inputs, config, measured)
    lens = lens_config(c, shape, out.name)
    from data_gen.calibrate.page import lens_page

    with filled_atomically(out) as tmp:
        np.save(tmp / "psf_grid.npy", grid)
        head = (
            "# The calibrated lens: residual-train generate lens=THIS_FILE\n"
            f"# radial distortion (deploy distortion=[k1,k2]): [{geo.k[0]:.6g}, {geo.k[1]:.6g}]\n"
        )
        (tmp / "lens.yaml").write_text(head + yaml.safe_dump(lens, sort_keys=False))
        (tmp / "mtf.json").write_text(json.dumps(doc, indent=1) + "\n")
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True))
        (tmp / "index.html").write_text(lens_page(doc, cells, grid, geo, corr))
    mtf50 = [cell["mtf50"] for cell in doc["cells"] if cell["mtf50"] is not None]
    return {
        "out": str(out),
        "lens": str(out / "lens.yaml"),
        "distortion": list(geo.k),
        "corner_rms_px": geo.rms_px,
        "cells_measured": int(measured.sum()),
        "cells": rows * cols,
        "mtf50_mean": float(np.mean(mtf50)) if mtf50 else None,
        "report": str(out / "index.html"),
    }


def measure_cells(imgs, greys, corr, geo, c, rows, cols, k_size) -> list[dict]:
    """SFRs and the PSF of every cell (see the module docstring)."""
    h, w = geo.shape
    ch = imgs[0].shape[0]
    edges = [cell_edges(q, x) for q, x in corr]
    parities = [
        parity_of(g, geo, i, q) for i, (g, (q, _)) in enumerate(zip(greys, corr, strict=True))
    ]
    cells = []
    win = c.psf_window
    for r in range(rows):
        for cc in range(cols):
            y0, y1 = r * h / rows, (r + 1) * h / rows
            x0, x1 = cc * w / cols, (cc + 1) * w / cols
            cell = {
                "row": r, "col": cc,
                "fy": (r + 0.5) / rows, "fx": (cc + 0.5) / cols,
                "sfr": {}, "normal": {}, "psf": None, "window": None,
            }  # fmt: skip
            for o in ORIENTATIONS:
                samples = [[] for _ in range(ch)]
                dists, normals, halves, n_edges = [], [], [], 0
                for cap, (_, x) in enumerate(corr):
                    for a, b, sides in edges[cap][o]:
                        length = float(np.hypot(*(x[b] - x[a])))
                        half = min(c.esf_half_width, 0.45 * length)
                        lo_pt = np.minimum(x[a], x[b]) - half
                        hi_pt = np.maximum(x[a], x[b]) + half
                        if not (
                            lo_pt[0] >= y0 and hi_pt[0] < y1 and lo_pt[1] >= x0 and hi_pt[1] < x1
                        ):
                            continue  # the edge and its samples lie inside the cell
                        side_px = geo.project(cap, sides)
                        d, _ = edge_samples(greys[cap], x[a], x[b], half, c.edge_trim)
                        if d.size == 0:
                            continue
                        u = (x[b] - x[a]) / length
                        nrm = np.array([-u[1], u[0]])
                        levels = [sample_at(imgs[cap][i], side_px) for i in range(ch)]
                        bright_first = levels[0][0] > levels[0][1] if ch == 1 else (
                            np.mean([lv[0] - lv[1] for lv in levels]) > 0
                        )  # fmt: skip
                        side_d = (side_px - x[a]) @ nrm
                        # d keeps the lattice's direction for every edge of the class; an
                        # edge bright on the negative side enters as 1 − v (not mirrored:
                        # mirroring would average an asymmetric LSF with its reflection)
                        rising = (side_d[0] > 0) == bool(bright_first)
                        values = []
                        for i in range(ch):
                            _, v = edge_samples(imgs[cap][i], x[a], x[b], half, c.edge_trim)
                            lo, hi = sorted(levels[i])
                            values.append((v - lo) / max(hi - lo, 1e-9))
                        if min(abs(lv[0] - lv[1]) for lv in levels) <= 1e-6:
                            continue  # no contrast
                        for i in range(ch):
                            samples[i].append(values[i] if rising else 1 - values[i])
                        dists.append(d)
                        normals.append(nrm)
                        halves.append(half)
                        n_edges += 1
                if n_edges < c.min_edges:
                    continue
                half = float(np.median(halves))
                dd = np.concatenate(dists)
                sfrs = []
                for i in range(ch):
                    s = sfr_from_samples(dd, np.concatenate(samples[i]), half, 0.25, n_edges)
                    sfrs.append(s)
                if any(s is None for s in sfrs):
                    continue
                nm = np.mean(normals, 0)  # one direction per class (the lattice's)
                cell["sfr"][o] = sfrs
                cell["normal"][o] = (nm / np.hypot(*nm)).tolist()
            psf_window(cell, imgs, corr, geo, parities, c, win, k_size, (y0, y1, x0, x1))
            cells.append(cell)
    return cells


def psf_window(cell, imgs, corr, geo, parities, c, win, k_size, bounds) -> None:
    """Estimate the cell's PSF from the first window (the cell's centre, then offsets
    inside the cell) that one capture's chart covers; sets ``cell['psf']``."""
    y0, y1, x0, x1 = bounds
    m = k_size // 2
    h, w = geo.shape
    offsets = [(0.0, 0.0)] + [(dy, dx) for dy in (-0.25, 0, 0.25) for dx in (-0.25, 0, 0.25)]
    for dy, dx in offsets:
        cy = (y0 + y1) / 2 + dy * (y1 - y0)
        cx = (x0 + x1) / 2 + dx * (x1 - x0)
        wy, wx = round(cy - win / 2), round(cx - win / 2)
        if wy - m < 0 or wx - m < 0 or wy + win + m > h or wx + win + m > w:
            continue
        box = (wy - m, wx - m, win + 2 * m, win + 2 * m)
        for cap, (q, _) in enumerate(corr):
            qw, _ = chart_coordinates(box, geo.shape, geo.homographies[cap], geo.k)
            if not covered(qw, q):
                continue
            ideal = render_chart(
                geo.shape, geo.homographies[cap], geo.k, window=box, parity=parities[cap]
            )
            window = imgs[cap][:, wy : wy + win, wx : wx + win]
            psf = estimate_psf(window, ideal, k_size, c.smoothness)
            cell["psf"] = recentre(psf) if c.recentre else psf
            cell["window"] = {"capture": cap, "y": wy, "x": wx, "size": win}
            return


def fill_grid(cells: list[dict], rows: int, cols: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols, K, K, 3)`` float32 grid of the cells' PSFs (grey replicated to RGB;
    unmeasured cells take the nearest measured one) and the ``(rows, cols)`` measured mask."""
    grid = np.zeros((rows, cols, k, k, 3), np.float32)
    measured = np.zeros((rows, cols), bool)
    have = [cell for cell in cells if cell["psf"] is not None]
    for cell in cells:
        r, cc = cell["row"], cell["col"]
        src = cell
        if cell["psf"] is None:
            if not have:
                continue
            src = min(have, key=lambda o: (o["fy"] - cell["fy"]) ** 2 + (o["fx"] - cell["fx"]) ** 2)
        else:
            measured[r, cc] = True
        p = src["psf"]
        if p.shape[0] == 1:
            p = np.repeat(p, 3, axis=0)
        grid[r, cc] = np.moveaxis(p, 0, -1)
    return grid, measured


def mtf_document(cells, geo, shape, paths, corr, c, inputs, config, measured) -> dict:
    h, w = shape
    out_cells = []
    for cell in cells:
        per = {}
        for o, sfrs in cell["sfr"].items():
            per[o] = {
                "normal": cell["normal"][o],
                "edges": sfrs[0].edges,
                "mtf50": [s.mtf50 for s in sfrs],
                "freq": sfrs[0].freq[sfrs[0].freq <= 0.5].round(5).tolist(),
                "sfr": [s.sfr[s.freq <= 0.5].round(5).tolist() for s in sfrs],
            }
        vals = [v for o in per.values() for v in o["mtf50"] if np.isfinite(v)]
        out_cells.append(
            {
                "row": cell["row"],
                "col": cell["col"],
                "position": {
                    "fy": cell["fy"],
                    "fx": cell["fx"],
                    "y_px": cell["fy"] * h,
                    "x_px": cell["fx"] * w,
                },
                "measured": bool(measured[cell["row"], cell["col"]]),
                "psf_window": cell["window"],
                "mtf50": float(np.mean(vals)) if vals else None,
                "orientations": per,
            }
        )
    channels = ["grey"] if cells and _channels(cells) == 1 else ["R", "G", "B"]
    return {
        "format": FORMAT,
        "units": "MTF50 in cycles/pixel; positions as fractions of the frame (0 = top/left) "
        "and pixels; 'rows'/'cols': edges along the chart's rows / columns, 'normal' the "
        "mean edge normal (y, x)",
        "channels": channels,
        "frame": [h, w],
        "grid": list(c.grid),
        "geometry": {
            "k": list(geo.k),
            "model": "r_d = r(1 + k1 r^2 + k2 r^4), r over the half diagonal (data_gen.physics.distortion)",
            "corners": geo.corners,
            "rms_px": geo.rms_px,
            "max_px": geo.max_px,
        },
        "captures": [str(p) for p in paths],
        "cells": out_cells,
        "inputs": inputs,
        "config": config,
    }


def _channels(cells) -> int:
    for cell in cells:
        for sfrs in cell["sfr"].values():
            return len(sfrs)
        if cell["psf"] is not None:
            return cell["psf"].shape[0]
    return 1


def lens_config(c: LensCalibration, shape: tuple[int, int], name: str) -> dict:
    """The ``kind: grid`` lens of ``psf_grid.npy`` (path relative to lens.yaml)."""
    pitch = c.pixel_pitch_um or 1.0
    return {
        "kind": "grid",
        "name": str(c.name or f"calibrated_{name}"),
        "path": "psf_grid.npy",
        "axes": ["row", "col", "y", "x", "c"],
        "sensor_mm": [shape[0] * pitch / 1000, shape[1] * pitch / 1000],
        "upsample": c.upsample,
        "state": {
            "focal_length_mm": c.focal_length_mm,
            "f_number": c.f_number,
            "focus_m": None,
        },
    }


__all__ = ["SFR", "find_captures", "read_capture", "run"]
