"""Classical baselines per component on real photographs with real depth.

Each component alone — relight, fog, defocus, lens blur, camera shake, noise — is rendered
with the project's physics on each photograph of
:mod:`residual_train.evaluate.depth_sets` (the shared Middlebury, NYU / SUN / TUM and KITTI
frames, and scikit-image's bundled Middlebury motorcycle), with every parameter at the
middle of its range in ``conf/component/<name>.yaml`` (log-uniform ranges at their
geometric middle; random positions, tints and shake paths from a fixed seed). Lens blur is
the ``soft_prime`` lens (whole frame, :func:`data_gen.render.render_frame`); noise is the
``generic_aps_c`` sensor at ISO 800 (the geometric middle of its ISO list). Inputs are
clipped at white, as the generator's are. Every baseline of
``BASELINES_BY_COMPONENT[component]`` then gets the input and what it is owed, and PSNR /
SSIM of the input and of each output are measured against the rendering without the
component (the photograph; after a blur, both trimmed by the blur's radius). Fog and defocus
are measured, and their oracles choose, on the pixels with a measured depth only (the
rendering fills the rest from the nearest measured pixel); the other components on every
pixel. For relight the table adds ``scale_only``: the input times the oracle's global scale,
no spatial estimate (a relight correction is ambiguous up to that scale).

``--validate`` first scores the dark-channel prior's variants (linear or sRGB space, colour
or grey guide, guided-filter ε) on a validation render — scikit-image photographs that are
not in the table, fogged through a depth ramp — and prints which is best (the defaults of
:mod:`residual_train.evaluate.classical.fog` are that choice).

Saves ``bench/results/classical.json``; what needs ``../shared/data`` is skipped with the
reason when it is absent.

    python bench/classical.py [--images cones,nyu] [--components fog,defocus]
                              [--validate] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from data_gen.core.errors import InputError
from data_gen.core.paths import CONF
from data_gen.physics.convolve import blur_image
from data_gen.physics.defocus import coc_radius_px, composite_layers, defocus_layers
from data_gen.physics.fog import add_fog, draw_fog, transmission
from data_gen.physics.motion import shake_trajectory, trajectory_kernel
from data_gen.physics.relight import draw_relight, gain_map, relight
from residual_train.evaluate import depth_sets
from residual_train.evaluate.classical import BASELINES_BY_COMPONENT, Truth
from residual_train.evaluate.metrics import psnr, ssim
from residual_train.evaluate.oracle import oracle_scale

COMPONENTS = ("relight", "fog", "defocus", "blur", "motion", "noise")
LOG_UNIFORM = {("fog", "beta"), ("defocus", "f_number")}  # ranges drawn log-uniformly
SHRINK = {"aloe": 2}  # 1282 x 1110 JPEG: shrunk 2x like the evaluation's photographs
LENS, SENSOR, ISO = "soft_prime", "generic_aps_c", 800.0
SEED = 2024


def mid_params() -> dict[str, dict]:
    """Every component's settings from ``conf/component/<name>.yaml`` with each range
    ``[lo, hi]`` replaced by its middle (geometric for log-uniform ones; integers rounded)."""
    out = {}
    for c in ("relight", "fog", "defocus", "motion"):
        cfg = yaml.safe_load((CONF / "component" / f"{c}.yaml").read_text())[c]
        mid = {}
        for k, v in cfg.items():
            if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
                lo, hi = float(v[0]), float(v[1])
                m = math.sqrt(lo * hi) if (c, k) in LOG_UNIFORM else (lo + hi) / 2
                v = round(m) if all(isinstance(x, int) for x in v) else m
            mid[k] = v
        out[c] = mid
    return out


def trim(a: np.ndarray, m: int) -> np.ndarray:
    return a[..., m:-m, m:-m] if m > 0 else a


def render(c: str, item: depth_sets.DepthImage, p: dict, rng: np.random.Generator, lens):
    """``(input, clean, truth, mask, params)`` of component ``c`` alone on ``item``."""
    S, depth, valid = item.image, item.depth, item.valid
    if c == "relight":
        d = draw_relight(
            rng,
            (p["lights"], p["lights"]),
            (p["ambient"],) * 2,
            (p["amplitude"],) * 2,
            (p["width"],) * 2,
        )
        x = relight(S, gain_map(S.shape[1:], d["ambient"], d["lights"]))
        rec = {"ambient": d["ambient"], "lights": np.round(d["lights"], 3).tolist()}
        return x, S, Truth(clean=S), None, rec
    if c == "fog":
        d = draw_fog(rng, (p["beta"],) * 2, (p["airlight"],) * 2, p["tint"], S.shape[0])
        t = transmission(depth, d["beta"])
        x = add_fog(S, t, d["airlight"])
        truth = Truth(clean=S, mask=valid, t=t, airlight=d["airlight"])
        rec = {"beta": d["beta"], "airlight": d["airlight"].tolist(), "t_min": float(t.min())}
        return x, S, truth, valid, rec
    if c == "defocus":
        focus = max(float(np.quantile(depth, p["focus"])), 2e-3 * p["focal_mm"])
        r = coc_radius_px(depth, focus, p["focal_mm"], p["f_number"], p["pixel_um"])
        r = np.minimum(r, p["max_radius_px"])
        plan = defocus_layers(depth, r, p["layers"])
        m = math.ceil(p["max_radius_px"]) + 1
        x, S2, v = trim(composite_layers(S, plan), m), trim(S, m), trim(valid, m)
        layers = [(trim(a, m), k, trim(b, m)) for a, k, b in plan]
        rec = {
            "focus_m": focus,
            "f_number": p["f_number"],
            "radius_px": [float(r.min()), float(r.max())],
        }
        return x, S2, Truth(clean=S2, mask=v, layers=layers), v, rec
    if c == "motion":
        k = trajectory_kernel(shake_trajectory(rng, p["length"], p["steps"]))
        m = k.shape[0] // 2 + 1
        x, S2 = trim(blur_image(S, k), m), trim(S, m)
        return x, S2, Truth(clean=S2, kernel=k), None, {"length": p["length"], "size": k.shape[0]}
    bank, noise = lens
    if c == "blur":
        from data_gen.render import render_frame

        r = render_frame(S, bank, noise, rng)
        truth = Truth(clean=r["clean"], psfs=bank.psfs, index=r["psf_index"])
        return r["blur"], r["clean"], truth, None, {"lens": LENS, "psf_px": int(bank.size)}
    normal = rng.standard_normal(S.shape, dtype=np.float32)
    x = S + noise.sample(S, normal)
    rec = {"sensor": SENSOR, "iso": ISO, "A": float(noise.A[0]), "B": float(noise.B[0])}
    return x, S, Truth(clean=S, noise=noise), None, rec


def lens_and_sensor():
    from data_gen.optics import build_bank
    from data_gen.sensor import build_sensor

    bank = build_bank(yaml.safe_load((CONF / "lens" / f"{LENS}.yaml").read_text()), 3)
    sensor = build_sensor(yaml.safe_load((CONF / "sensor" / f"{SENSOR}.yaml").read_text()), 3)
    return bank, sensor.params(ISO).model


def run_image(args: tuple) -> list[dict]:
    """Every requested component on one photograph: one row per component."""
    index, name, components = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    item = depth_sets.load(name, shrink_factor=SHRINK.get(name, 1))
    params, lens = mid_params(), lens_and_sensor()
    rows = []
    for c in components:  # draws depend on (seed, image, component), not on what else runs
        rng = np.random.default_rng([SEED, index, COMPONENTS.index(c)])
        x, clean, truth, mask, rec = render(c, item, params.get(c, {}), rng, lens)
        x = np.minimum(x, np.float32(1))  # clipped at white, as the generator stores inputs
        row = {
            "image": name,
            "component": c,
            "size": list(x.shape[1:]),
            "depth": item.source,
            "pixels": int(mask.sum()) if mask is not None else int(x[0].size),
            "params": rec,
            "psnr": {"input": psnr(x, clean, mask)},
            "ssim": {"input": ssim(x, clean, mask)},
            "seconds": {},
            "skipped": {},
        }
        outs = {}
        if c == "relight":
            outs["scale_only"] = oracle_scale(x, clean) * x
        for b, fn in BASELINES_BY_COMPONENT[c].items():
            t = time.perf_counter()
            try:
                outs[b] = fn(x, truth)
            except InputError as e:
                row["skipped"][b] = str(e)
                continue
            row["seconds"][b] = round(time.perf_counter() - t, 2)
        for b, y in outs.items():
            row["psnr"][b], row["ssim"][b] = psnr(y, clean, mask), ssim(y, clean, mask)
        rows.append(row)
        print(f"  {name:13s} {c:8s} " + "  ".join(f"{k} {v:.2f}" for k, v in row["psnr"].items()))
    return rows


def validate_dark_channel() -> dict:
    """Mean PSNR of the dark-channel variants on held-out photographs fogged through a depth
    ramp (2 m at the bottom row to 20 or 60 m at the top), β at the middle of its range."""
    from residual_train.evaluate.classical.fog import dehaze_dark_channel
    from residual_train.evaluate.images import load_images

    beta = mid_params()["fog"]["beta"]
    variants = [
        (space, guide, eps)
        for space in ("linear", "srgb")
        for guide in ("colour", "grey")
        for eps in (1e-4, 1e-3)
    ]
    scores = {f"{s}/{g}/eps={e:g}": [] for s, g, e in variants}
    inputs = []
    for name, img in load_images("builtin", 2.0, True):
        if name.endswith("motorcycle"):  # in the table
            continue
        for far in (20.0, 60.0):
            depth = np.linspace(far, 2.0, img.shape[1], dtype=np.float32)[:, None]
            depth = np.repeat(depth, img.shape[2], 1)
            x = add_fog(img, transmission(depth, beta), np.float32([0.76, 0.75, 0.73]))
            inputs.append(psnr(x, img))
            for s, g, e in variants:
                scores[f"{s}/{g}/eps={e:g}"].append(
                    psnr(dehaze_dark_channel(x, eps=e, space=s, guide=g), img)
                )
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    best = max(means, key=means.get)
    print(
        f"dark channel on the validation render ({len(inputs)} renders, input {np.mean(inputs):.2f} dB):"
    )
    for k, v in sorted(means.items(), key=lambda kv: -kv[1]):
        print(f"  {k:24s} {v:6.2f} dB{'   <- best' if k == best else ''}")
    return {"input": float(np.mean(inputs)), "variants": means, "best": best}


def print_table(rows: list[dict]) -> None:
    for c in COMPONENTS:
        rs = [r for r in rows if r["component"] == c]
        if not rs:
            continue
        names = list(rs[0]["psnr"])
        print(f"\n{c}: PSNR dB / SSIM against the rendering without it")
        print(f"  {'image':13s} " + " ".join(f"{n:>17s}" for n in names))
        for r in rs:
            cells = [
                f"{r['psnr'][n]:7.2f} / {r['ssim'][n]:.3f}" if n in r["psnr"] else "-"
                for n in names
            ]
            print(f"  {r['image']:13s} " + " ".join(f"{s:>17s}" for s in cells))
        mean = [np.mean([r["psnr"][n] for r in rs]) for n in names]
        print(f"  {'mean':13s} " + " ".join(f"{m:7.2f}{'':10s}" for m in mean))
        for b, why in rs[0]["skipped"].items():
            print(f"  ({b} skipped: {why})")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--images",
        default="",
        help="comma-separated depth_sets names (default: every available one)",
    )
    ap.add_argument("--components", default=",".join(COMPONENTS))
    ap.add_argument("--validate", action="store_true", help="score the dark-channel variants first")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    comps = [c for c in a.components.split(",") if c]
    for c in comps:
        if c not in COMPONENTS:
            sys.exit(f"--components: unknown {c!r}; known: {', '.join(COMPONENTS)}")
    ok, missing = depth_sets.available()
    for name, why in missing.items():
        print(f"skipping {name}: {why}")
    names = [n for n in a.images.split(",") if n] or ok
    for n in names:
        if n not in ok:
            sys.exit(f"--images: {n!r} is not available ({missing.get(n, 'unknown name')})")
    result: dict = {
        "components": comps,
        "params": mid_params(),
        "lens": LENS,
        "sensor": SENSOR,
        "iso": ISO,
        "seed": SEED,
        "skipped_images": missing,
    }
    if a.validate:
        result["dark_channel_validation"] = validate_dark_channel()
    t = time.perf_counter()
    jobs = [(list(depth_sets.SETS).index(n), n, comps) for n in names]
    if a.workers > 1:
        with ProcessPoolExecutor(a.workers) as pool:
            per_image = list(pool.map(run_image, jobs))
    else:
        per_image = [run_image(j) for j in jobs]
    rows = [r for rs in per_image for r in rs]
    result["rows"] = rows
    result["seconds"] = round(time.perf_counter() - t, 1)
    print_table(rows)
    print(f"\n{len(names)} images x {len(comps)} components in {result['seconds']:.0f} s")
    print(f"saved {save('classical', result)}")


if __name__ == "__main__":
    main()
