"""The calibration on real data from ../shared/data (skipped with the reason when absent):
the Canon 550D DNG against darktable's profiles, the 63762BB checkerboard capture against
that lens's measured PSF map. The figures are in bench/calibrate_real.py's JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_gen.calibrate.compare import (
    darktable_entries,
    match_darktable,
    mtf_against_grid,
    planes_to_rgb,
)
from data_gen.calibrate.lens import run as run_lens
from data_gen.calibrate.noise import run as run_noise
from data_gen.core.cli import compose_config
from tests.conftest import CONF, shared

pytestmark = pytest.mark.shared_data


def test_canon_550d_single_frame_matches_a_darktable_iso_within_10_percent(tmp_path):
    dng = shared("raw", "tinydng_colorchart_Canon550D_MagicLantern.dng")
    profiles = shared("darktable", "noiseprofiles.json")
    cfg = compose_config(CONF, "calibrate_noise", [f"raws={dng}", f"out={tmp_path / 'o'}"])
    res = run_noise(cfg)
    r = res["isos"]["unknown"]  # the file carries no ISO
    assert r["method"] == "single" and min(r["r2"]) > 0.99
    a = planes_to_rgb(r["A"])
    # one sensor: the shot-noise slope in raw DN is the same behind every colour filter
    assert a.max() / a.min() < 1.05
    best = match_darktable(a, darktable_entries(profiles, "Canon", "EOS 550D"))[0]
    # measured: ISO 6400 of the equal-channel profile set, R -3.1 %, G -0.5 %, B -1.2 %
    assert best["iso"] == 6400 and len(set(best["a"])) == 1
    assert best["max_abs_rel_diff"] <= 0.10, best


@pytest.mark.slow
def test_real_checkerboard_sfr_against_the_measured_psf_map(tmp_path):
    capture = shared("psf", "lens_63762BB", "real_capture.tif")
    grid = np.load(shared("psf", "lens_63762BB", "psf_matrix_after_shift_9x12x25x25x3.npy"))
    cfg = compose_config(
        CONF, "calibrate_lens",
        [f"captures={capture}", f"out={tmp_path / 'o'}", "grid=[9,12]", "psf_size=25"],
    )  # fmt: skip
    res = run_lens(cfg)
    assert res["corner_rms_px"] < 0.2 and res["cells_measured"] >= 4
    doc = json.loads((tmp_path / "o" / "mtf.json").read_text())
    rows = mtf_against_grid(doc, grid)
    assert len({(r["row"], r["col"]) for r in rows}) >= 4
    for r in rows:
        ratio = r["measured_mtf50"][0] / r["grid_mtf50"][1]  # grey capture vs the map's G
        if r["orientation"] == "rows":  # edges along the chart's rows: blur along y
            assert 0.75 <= ratio <= 1.15, r  # measured: 0.82-1.07 (G of the map)
        else:  # blur along x: the capture is sharper than the map says
            assert 1.0 <= ratio <= 2.0, r  # measured: 1.17-1.85
