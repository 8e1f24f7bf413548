"""``calibrate noise`` at full size: time and accuracy on synthetic 24-megapixel raws.

Three capture sets of the project's ``generic_aps_c`` sensor at ISO 1600 (6000 x 4000
photosites, RGGB, DNG files written by data_gen.raw.write_dng), each calibrated by the
command's own ``run`` (reading the files included):

* ``photon_transfer``: 20 frames, 8 flat-field exposures x 2 (vignetted) + 4 dark frames;
* ``dark``: 20 dark frames with row noise (2.5 DN), Tukey-λ read noise (λ = −0.15), a dark
  shading and hot pixels;
* ``single``: one frame of a defocused chart scene.

Target (issue): under a minute for 20 frames of 24 MP. Prints and saves
``bench/results/calibrate.json`` (seconds and the relative errors against the truth).

    python bench/calibrate.py [--width 6000 --height 4000] [--frames 20]
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
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from data_gen.calibrate.noise import run
from data_gen.calibrate.synthetic import (
    SyntheticSensor,
    chart_scene,
    dark_shading,
    vignette,
    write_frames,
)
from data_gen.cfa import pack
from data_gen.core.cli import compose_config
from data_gen.core.paths import CONF
from data_gen.sensor import build_sensor


def sensor(iso: float, **extra) -> SyntheticSensor:
    cfg = yaml.safe_load((CONF / "sensor" / "generic_aps_c.yaml").read_text())
    p = build_sensor(cfg).params(iso)
    return SyntheticSensor(p.a.astype(float), p.b.astype(float), p.ob, p.white, iso, **extra)


def timed(raws: Path, out: Path) -> tuple[dict, float]:
    cfg = compose_config(CONF, "calibrate_noise", [f"raws={raws}", f"out={out}"])
    t = time.perf_counter()
    res = run(cfg)
    return res, time.perf_counter() - t


def rel(got, want) -> list[float]:
    return (np.asarray(got, float) / np.asarray(want, float) - 1).round(5).tolist()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--frames", type=int, default=20)
    args = ap.parse_args()
    shape = (args.height, args.width)
    iso = 1600
    root = Path(tempfile.mkdtemp(prefix="bench-calibrate-"))
    results, errors = {}, {}
    try:
        # photon transfer: 8 exposures x 2 + 4 darks
        s = sensor(iso)
        levels = np.geomspace(0.02, 0.8, (args.frames - 4) // 2)
        vig = vignette(shape)
        sig = [lv * vig for lv in levels for _ in range(2)] + [np.zeros(shape)] * 4
        exp = [lv / 100 for lv in levels for _ in range(2)] + [1e-3] * 4
        write_frames(root / "pt", s, sig, f"pt_iso{iso}", 1, exp)
        res, sec = timed(root / "pt", root / "pt_out")
        r, t = res["isos"][str(iso)], s.truth()
        results["photon_transfer_seconds"] = sec
        errors["photon_transfer"] = {"A": rel(r["A"], t["A"]), "B": rel(r["B"], t["B"])}
        print(f"photon transfer, {len(sig)} frames: {sec:.1f} s", errors["photon_transfer"])
        shutil.rmtree(root / "pt")
        # dark frames
        rng = np.random.default_rng(2)
        hot = np.stack([rng.integers(0, shape[0], 200), rng.integers(0, shape[1], 200)], 1)
        s = sensor(
            iso, row_sigma=2.5, tukey_lambda=-0.15, shading=dark_shading(shape, rng, 4.0), hot=hot
        )
        write_frames(root / "dark", s, [np.zeros(shape)] * args.frames, f"dark_iso{iso}", 2)
        res, sec = timed(root / "dark", root / "dark_out")
        doc = json.loads((root / "dark_out" / "dark.json").read_text())["isos"][str(iso)]
        shading = np.load(root / "dark_out" / doc["shading_file"])
        truth = pack(s.shading, s.pattern)
        corr = [float(np.corrcoef(shading[p].ravel(), truth[p].ravel())[0, 1]) for p in range(4)]
        results["dark_seconds"] = sec
        errors["dark"] = {
            "B": rel(res["isos"][str(iso)]["B"], s.truth()["B"]),
            "row_sigma": rel(doc["row_sigma_dn"], [s.row_sigma] * 4),
            "tukey_lambda": rel([x["lambda"] for x in doc["shape"]], [s.tukey_lambda] * 4),
            "shading_correlation": corr,
            "hot_found": len(
                {tuple(p) for p in hot.tolist()} & {tuple(p) for p in doc["bad_pixels"]["hot"]}
            ),
            "hot_true": len({tuple(p) for p in hot.tolist()}),
        }
        print(f"dark, {args.frames} frames: {sec:.1f} s", errors["dark"])
        shutil.rmtree(root / "dark")
        # one frame of a scene
        s = sensor(iso)
        write_frames(
            root / "one",
            s,
            [chart_scene(shape, np.random.default_rng(3), patch=400, blur=20)],
            f"scene_iso{iso}",
            3,
        )
        res, sec = timed(root / "one", root / "one_out")
        r, t = res["isos"][str(iso)], s.truth()
        results["single_seconds"] = sec
        errors["single"] = {"A": rel(r["A"], t["A"]), "B": rel(r["B"], t["B"])}
        print(f"single frame: {sec:.1f} s", errors["single"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    worst = max(results["photon_transfer_seconds"], results["dark_seconds"])
    out = save(
        "calibrate",
        {
            "frames": args.frames,
            "megapixels": shape[0] * shape[1] / 1e6,
            "iso": iso,
            "results": results,
            "errors": errors,
            "target_seconds": 60,
            "meets_target": bool(worst < 60),
        },
    )
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
