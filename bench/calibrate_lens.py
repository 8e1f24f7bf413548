"""``calibrate lens`` on full-size renders of the project's own lenses.

For each lens (``sharp_prime``, ``soft_zoom``; their first state, the full PSF bank) a
checkerboard of 44 px squares slanted 5° with a mild perspective is rendered at
``--height`` x ``--width`` (the sensor's 2:3 aspect) through the bank PSF of each cell of
a 5 x 7 grid, with radial distortion k = (−0.04, 0.01) and 1 % Gaussian noise; the
command's own ``run`` calibrates it. Per cell and channel: the PSF's PSNR
(``20·log10(max(true)/RMSE)``, as is and after the best sub-pixel shift) against the
true PSF, the MTF50 per edge orientation against the true PSF's MTF along the edges'
normal (times the pixel-area box of the rendered chart), and over the frame the largest
distance between the fitted and the true distortion; also the largest difference
between the measured SFR curve and the true MTF over 0..0.5 cycles/px (MTF50 is
ill-conditioned where an MTF has a plateau near 0.5). Targets (issue): PSF PSNR ≥ 40 dB
per position, MTF50 within 3 %, distortion within 0.1 px. Prints and saves
``bench/results/calibrate_lens.json``.

    python bench/calibrate_lens.py [--height 2000 --width 3000] [--lenses sharp_prime,soft_zoom]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from data_gen.calibrate.distortion import distort_points
from data_gen.calibrate.lens import run
from data_gen.calibrate.psf import psf_psnr
from data_gen.calibrate.sfr import mtf50, mtf_along
from data_gen.calibrate.synthetic import chart_capture, chart_homography
from data_gen.core.cli import compose_config
from data_gen.core.paths import CONF, bank_cache_dir
from data_gen.optics import build_bank, load_psf_grid

K_TRUE = (-0.04, 0.01)
FREQ = np.linspace(0, 0.5, 2001)


def validate(
    name: str, shape: tuple[int, int], grid: tuple[int, int], root: Path, window: int
) -> dict:
    lens = yaml.safe_load((CONF / "lens" / f"{name}.yaml").read_text())
    bank = build_bank(lens, 3, bank_cache_dir(), progress=False)
    t = time.perf_counter()
    img, truth = chart_capture(
        lambda fy, fx: bank.psfs[bank.index_at(fy, fx, 0)],
        shape, grid, chart_homography(shape, 44.0), K_TRUE, noise=0.01, seed=7,
    )  # fmt: skip
    render_s = time.perf_counter() - t
    d = root / name
    d.mkdir()
    tifffile.imwrite(d / "chart.tif", np.moveaxis(img, 0, -1), photometric="rgb")
    cfg = compose_config(
        CONF, "calibrate_lens",
        [f"captures={d / 'chart.tif'}", f"out={d / 'out'}", f"grid=[{grid[0]},{grid[1]}]",
         f"psf_size={bank.size}", f"psf_window={window}"],
    )  # fmt: skip
    t = time.perf_counter()
    res = run(cfg)
    calib_s = time.perf_counter() - t
    doc = json.loads((d / "out" / "mtf.json").read_text())
    est = load_psf_grid(d / "out" / "psf_grid.npy", 3)
    cells = []
    for cell in doc["cells"]:
        r, c = cell["row"], cell["col"]
        ps = [psf_psnr(est[r, c, ch], truth["psfs"][r, c, ch]) for ch in range(3)]
        errs, curve = {}, {}
        for o, v in cell["orientations"].items():
            n = np.asarray(v["normal"])
            want = [mtf50(FREQ, mtf_along(truth["psfs"][r, c, ch], n, FREQ)) for ch in range(3)]
            errs[o] = (np.asarray(v["mtf50"]) / np.asarray(want) - 1).round(4).tolist()
            f = np.asarray(v["freq"])  # the whole SFR curve, 0..0.5 cycles/px
            curve[o] = [
                round(
                    float(
                        np.abs(
                            np.asarray(v["sfr"][ch]) - mtf_along(truth["psfs"][r, c, ch], n, f)
                        ).max()
                    ),
                    4,
                )
                for ch in range(3)
            ]
        cells.append(
            {
                "row": r, "col": c, "measured": cell["measured"],
                "psnr_db": [round(p[0], 2) for p in ps],
                "psnr_registered_db": [round(p[1], 2) for p in ps],
                "mtf50_rel_error": errs,
                "sfr_max_abs_diff": curve,
            }
        )  # fmt: skip
    yy, xx = np.meshgrid(
        np.linspace(0, shape[0] - 1, 41), np.linspace(0, shape[1] - 1, 61), indexing="ij"
    )
    p = np.stack([yy.ravel(), xx.ravel()], 1)
    dd = distort_points(p, shape, tuple(res["distortion"])) - distort_points(p, shape, K_TRUE)
    reg = [x for cell in cells for x in cell["psnr_registered_db"]]
    plain = [x for cell in cells for x in cell["psnr_db"]]
    mtf = [abs(x) for cell in cells for v in cell["mtf50_rel_error"].values() for x in v]
    sfr = [x for cell in cells for v in cell["sfr_max_abs_diff"].values() for x in v]
    summary = {
        "render_seconds": render_s,
        "calibrate_seconds": calib_s,
        "cells_measured": res["cells_measured"],
        "psnr_min_db": min(plain),
        "psnr_median_db": float(np.median(plain)),
        "psnr_registered_min_db": min(reg),
        "psnr_registered_median_db": float(np.median(reg)),
        "positions_psnr_registered_ge_40": int(
            sum(min(c_["psnr_registered_db"]) >= 40 for c_ in cells)
        ),
        "mtf50_max_abs_rel_error": max(mtf),
        "mtf50_median_abs_rel_error": float(np.median(mtf)),
        "sfr_curve_max_abs_diff": max(sfr),
        "sfr_curve_median_max_abs_diff": float(np.median(sfr)),
        "distortion_max_error_px": float(np.sqrt((dd**2).sum(1)).max()),
        "distortion_fitted": res["distortion"],
        "corner_rms_px": res["corner_rms_px"],
    }
    print(name, json.dumps(summary))
    return {"summary": summary, "cells": cells}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--width", type=int, default=3000)
    ap.add_argument("--lenses", default="sharp_prime,soft_zoom")
    ap.add_argument("--psf-window", type=int, default=192)
    args = ap.parse_args()
    shape, grid = (args.height, args.width), (5, 7)
    root = Path(tempfile.mkdtemp(prefix="bench-lens-"))
    out = {}
    try:
        for name in args.lenses.split(","):
            out[name] = validate(name, shape, grid, root, args.psf_window)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    targets = {
        name: {
            "psf_psnr_ge_40_everywhere": r["summary"]["psnr_registered_min_db"] >= 40,
            "mtf50_within_3_percent": r["summary"]["mtf50_max_abs_rel_error"] <= 0.03,
            "distortion_within_0_1_px": r["summary"]["distortion_max_error_px"] <= 0.1,
        }
        for name, r in out.items()
    }
    path = save(
        "calibrate_lens",
        {"frame": list(shape), "grid": list(grid), "noise": 0.01, "k_true": list(K_TRUE),
         "psf_window": args.psf_window, "targets_met": targets, "lenses": out},
    )  # fmt: skip
    print(json.dumps(targets))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
