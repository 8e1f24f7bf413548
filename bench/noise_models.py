"""What noise beyond Poisson–Gaussian buys, measured: one recipe trained on each noise kind
of one calibrated sensor, evaluated on real photographs rendered with the camera's own
(richer) noise at high ISO.

The camera: the project's ``generic_aps_c`` sensor made into synthetic raws
(:mod:`data_gen.calibrate.synthetic`) with what real high-ISO dark frames show — row noise
(6 DN at ISO 3200, 10 DN at 6400, against a temporal σ of 17 / 24 DN), long-tailed
Tukey-λ read noise (λ = −0.15), a dark shading (5 / 10 DN) and hot pixels — ten dark
frames per ISO, calibrated by ``calibrate noise`` with a hypothesised ``k1`` (the
"Noise Modeling in One Hour" recipe: dark frames only). Its ``sensor.yaml`` is the
sensor of every run; only ``sensor.noise`` differs:

* ``poisson_gaussian``: the calibrated ``A``, ``B`` (B = the dark frames' temporal variance);
* ``physical``: row / Tukey-λ / black-level / shading / rounding from the dark.json;
* ``dark_frames`` (``--kinds``): the calibration's own dark frames.

Each dataset is the same draws (BSD400 photographs shrunk 2×, the soft_prime lens,
48 px patches, ISO 3200 and 6400); each run the same model (the default dual-head U-Net
at width 16, so that a run fits in about ten minutes of two shared CPU cores) and steps. Evaluation: Kodak24
(shrunk 2×, centre 256 px), ISO 3200 and 6400, exposures 0.25 and 1, rendered with
``dark_frames`` (the camera's frames: the truth) and with ``physical``; the same
realisation for every model. Reported per model: PSNR of the input, of the model at
a = b = 1 and of the noise head (``x + R̂_n`` against the noise-free ``blur``), and the
**banding** left by the noise head: the row means of ``x + R̂_n − blur`` (their standard
deviation in DN and their power spectrum over row frequency), with the column means as
the control (no column noise in this camera: they hold only the averaged pixel noise);
``banding_excess_dn = √(σ_rows² − σ_columns²)`` is what the rows hold beyond it.

Prints a table and saves ``bench/results/noise_models.json``.

    nice -n 10 python bench/noise_models.py [--steps 1000] [--kinds poisson_gaussian,physical]
    python bench/noise_models.py --quick        # minutes: tiny sizes, the flow only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save
from data_gen.calibrate.synthetic import SyntheticSensor, dark_shading, write_frames
from data_gen.sensor import build_sensor

ROOT = Path(__file__).resolve().parents[1]
ISOS = (3200, 6400)
ROW_DN = {3200: 6.0, 6400: 10.0}
SHADING_DN = {3200: 5.0, 6400: 10.0}
SHARED = ROOT.parent / "shared" / "data"


def make_camera(d: Path, shape: tuple[int, int], frames: int) -> Path:
    """Synthetic dark frames of the camera at each ISO, calibrated; returns the folder."""
    cfg = yaml.safe_load((ROOT / "conf" / "sensor" / "generic_aps_c.yaml").read_text())
    base = build_sensor(cfg)
    rng = np.random.default_rng(11)
    unit = dark_shading(shape, rng, 1.0)
    n_hot = max(1, shape[0] * shape[1] // 10_000)
    hot = np.stack([rng.integers(0, shape[0], n_hot), rng.integers(0, shape[1], n_hot)], 1)
    for iso in ISOS:
        p = base.params(iso)
        row = ROW_DN[iso]
        # the temporal variance stays the sensor's: the row noise takes its share
        b = np.maximum(p.b.astype(float) - row**2 / (p.white - p.ob) ** 2, 0)
        cam = SyntheticSensor(p.a.astype(float), b, p.ob, p.white, iso, row_sigma=row,
                              tukey_lambda=-0.15, shading=unit * SHADING_DN[iso], hot=hot)  # fmt: skip
        write_frames(d / "raws", cam, [np.zeros(shape)] * frames, f"dark_iso{iso}", seed=iso)
    out = d / "calib"
    run([sys.executable, "-m", "data_gen.calibrate", "noise", f"raws={d / 'raws'}", f"out={out}",
         "k1=0.63"], d / "calibrate.log")  # fmt: skip
    return out


def run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({log}):\n{log.read_text()[-3000:]}")
    print(f"  {' '.join(cmd[2:4])}: {time.perf_counter() - t:.0f} s", flush=True)


def train_one(kind: str, calib: Path, work: Path, a) -> tuple[Path, dict]:
    """Dataset, training and export of one noise kind; returns the export dir and times."""
    data, runs, exp = work / f"data_{kind}", work / f"run_{kind}", work / f"export_{kind}"
    source = (
        ["source=folder", f"source.path={SHARED / 'bsds400'}", "source.shrink=2"]
        if (SHARED / "bsds400").is_dir() and not a.quick
        else ["source.size=256"]
    )
    times = {}
    if (exp / "card.json").is_file():  # a finished run in --work: reused
        print(f"  reusing {exp}", flush=True)
        f = work / f"times_{kind}.json"
        return exp, json.loads(f.read_text()) if f.is_file() else {}
    t = time.perf_counter()
    run([sys.executable, "-m", "data_gen", f"out_dir={data}", f"sensor={calib / 'sensor.yaml'}",
         f"sensor.noise={kind}", "lens=soft_prime", f"patch_size={a.patch}", f"shards={a.shards}",
         f"samples_per_shard={a.samples}", "patches_per_source=32", "batch_size=64",
         f"workers={a.workers}", "progress=false", *source], work / f"generate_{kind}.log")  # fmt: skip
    times["generate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    run([sys.executable, "-m", "residual_train", f"data.dir={data}", f"run_dir={runs}",
         "experiment=default", f"data.crop={a.patch}", f"model.width={a.width}",
         f"trainer.max_steps={a.steps}", "trainer.max_epochs=1000", "optim.warmup_steps=100",
         "data.num_workers=0", "val.panel_every=0", "data.verify=size",
         *(["model.depth=2", "model.blocks=1", "data.batch_size=4"]
           if a.quick else [])], work / f"train_{kind}.log")  # fmt: skip
    times["train_s"] = time.perf_counter() - t
    run([sys.executable, "-m", "residual_train.release.export", f"ckpt={runs / 'checkpoints' / 'last.ckpt'}",
         f"out_dir={exp}"], work / f"export_{kind}.log")  # fmt: skip
    (work / f"times_{kind}.json").write_text(json.dumps(times))
    return exp, times


def bands(e: np.ndarray, axis: int) -> np.ndarray:
    """Means of a residual ``(C, H, W)`` along ``axis`` (2: row means, 1: column means),
    each channel's mean removed: ``(C, L)``."""
    m = e.mean(axis=axis)
    return m - m.mean(axis=1, keepdims=True)


def spectrum(r: np.ndarray) -> np.ndarray:
    """Power spectrum ``(L//2 + 1,)`` of row-mean series ``(C, L)``, averaged over channels."""
    return (np.abs(np.fft.rfft(r, axis=1)) ** 2 / r.shape[1]).mean(0)


def evaluate(models: dict, calib: Path, a) -> dict:
    from data_gen.render import render_frame
    from residual_train.deploy import load_model
    from residual_train.deploy.compose import compose_blur_noise
    from residual_train.evaluate import load_images
    from residual_train.evaluate.metrics import psnr
    from residual_train.evaluate.run import card_bank

    loaded = {k: load_model(str(p), threads=2) for k, p in models.items()}
    card = next(iter(loaded.values())).card
    bank = card_bank(card)
    cfg = yaml.safe_load((calib / "sensor.yaml").read_text())
    cfg["dark"] = str(calib / cfg["dark"])
    images = (
        load_images(str(SHARED / "kodak24"), 2.0, True, a.images, a.size)
        if (SHARED / "kodak24").is_dir()
        else load_images("builtin", 2.0, True, a.images, a.size)
    )
    span = float(cfg["white"] - cfg["ob"])
    out = {}
    for render_kind in ("dark_frames", "physical"):
        rich = build_sensor({**cfg, "noise": render_kind})
        for iso in ISOS:
            for exposure in (0.25, 1.0):
                acc = {k: {"psnr_model": [], "psnr_noise_head": [], "row": [], "col": []}
                       for k in loaded}  # fmt: skip
                acc_in = {"psnr_input": [], "psnr_noise_input": [], "row": [], "col": []}
                for i, (_, img) in enumerate(images):
                    noise = rich.params(iso).model
                    rng = np.random.default_rng([i, iso, int(exposure * 100)])
                    r = render_frame(img, bank, noise, rng, exposure, rich.noise, iso)
                    x, clean, blur = r["noise_blur"], r["clean"], r["blur"]
                    acc_in["psnr_input"].append(psnr(x, clean))
                    acc_in["psnr_noise_input"].append(psnr(x, blur))
                    acc_in["row"].append(bands(x - blur, 2))
                    acc_in["col"].append(bands(x - blur, 1))
                    for k, m in loaded.items():
                        maps = m.predict(x, tile=256, overlap=64, iso=iso)
                        y = compose_blur_noise(x, maps["blur"], maps["noise"], 1, 1, noise)
                        left = x + maps["noise"] - blur
                        acc[k]["psnr_model"].append(psnr(y, clean))
                        acc[k]["psnr_noise_head"].append(psnr(x + maps["noise"], blur))
                        acc[k]["row"].append(bands(left, 2))
                        acc[k]["col"].append(bands(left, 1))
                key = f"{render_kind}/iso{iso}/exposure{exposure:g}"

                def summary(d: dict, prefix: str = "") -> dict:
                    rows = [np.asarray(v) for v in d["row"]]
                    cols = [np.asarray(v) for v in d["col"]]
                    spec = np.mean([spectrum(v) for v in rows], 0) * span**2
                    f = np.fft.rfftfreq(rows[0].shape[1])
                    s = {k: float(np.mean(v)) for k, v in d.items() if k.startswith("psnr")}
                    s["banding_row_std_dn"] = float(
                        np.sqrt(np.mean([v.var() for v in rows])) * span
                    )
                    s["control_col_std_dn"] = float(
                        np.sqrt(np.mean([v.var() for v in cols])) * span
                    )
                    # what the rows hold beyond the averaged pixel noise the columns show too
                    s["banding_excess_dn"] = float(
                        np.sqrt(max(s["banding_row_std_dn"] ** 2 - s["control_col_std_dn"] ** 2, 0))
                    )
                    s["row_spectrum_dn2"] = {
                        "0.02-0.1": float(spec[(f >= 0.02) & (f < 0.1)].mean()),
                        "0.1-0.25": float(spec[(f >= 0.1) & (f < 0.25)].mean()),
                        "0.25-0.5": float(spec[f >= 0.25].mean()),
                    }
                    s["row_spectrum_curve_dn2"] = [
                        round(float(v), 3) for v in np.interp(np.linspace(0, 0.5, 26), f, spec)
                    ]
                    return s

                out[key] = {"input": summary(acc_in), **{k: summary(v) for k, v in acc.items()}}
                print(f"  {key}: " + ", ".join(
                    f"{k} {v['psnr_model']:.2f} dB / noise head {v['psnr_noise_head']:.2f} dB, "
                    f"banding {v['banding_excess_dn']:.2f} DN"
                    for k, v in out[key].items() if k != "input"
                ) + f"; input banding {out[key]['input']['banding_excess_dn']:.2f} DN", flush=True)  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default="poisson_gaussian,physical")
    p.add_argument("--steps", type=int, default=1000, help="training steps of each run")
    p.add_argument("--width", type=int, default=16, help="U-Net width (experiment=default: 32)")
    p.add_argument("--shards", type=int, default=6)
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--work", default=None, help="keep the data and runs here")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the flow in minutes")
    a = p.parse_args()
    if a.quick:
        a.steps, a.width, a.shards, a.samples, a.patch = 8, 8, 2, 32, 32
        a.images, a.size = 2, 128
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="noise-models-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    shape = (320, 448) if a.quick else (600, 800)
    calib = work / "calib"
    if not (calib / "sensor.yaml").is_file():
        calib = make_camera(work, shape, 10)
    doc = json.loads((calib / "dark.json").read_text())["isos"]
    calibrated = {
        iso: {k: doc[iso][k] for k in ("row_sigma_dn", "read_var_dn2", "black_error_frame_std_dn")}
        | {"lambda": [s["lambda"] for s in doc[iso]["shape"]], "shading_std_dn": doc[iso]["shading_std_dn"]}
        for iso in doc
    }  # fmt: skip
    models, times = {}, {}
    for kind in a.kinds.split(","):
        print(f"{kind}:", flush=True)
        models[kind], times[kind] = train_one(kind, calib, work, a)
    print("evaluation:", flush=True)
    results = evaluate(models, calib, a)
    deltas = {}
    for key, r in results.items():
        base = r.get("poisson_gaussian")
        if base is None:
            continue
        deltas[key] = {
            k: {
                "psnr_model_db": v["psnr_model"] - base["psnr_model"],
                "psnr_noise_head_db": v["psnr_noise_head"] - base["psnr_noise_head"],
                "banding_excess_dn": v["banding_excess_dn"] - base["banding_excess_dn"],
            }
            for k, v in r.items()
            if k not in ("input", "poisson_gaussian")
        }
    out = save(
        "noise_models" + ("-quick" if a.quick else ""),
        {
            "camera": {
                "sensor": "generic_aps_c, synthetic dark frames",
                "shape": list(shape),
                "row_dn": ROW_DN,
                "shading_dn": SHADING_DN,
                "tukey_lambda": -0.15,
                "calibrated": calibrated,
            },
            "recipe": {k: getattr(a, k) for k in ("steps", "width", "shards", "samples", "patch")}
            | {
                "model": f"experiment=default (dual-head U-Net, depth 3) at width {a.width}",
                "batch": 4 if a.quick else 16,
                "train_data": "bsds400 shrunk 2x"
                if (SHARED / "bsds400").is_dir()
                else "dead leaves",
                "isos": list(ISOS),
            },
            "times_s": times,
            "results": results,
            "deltas_vs_poisson_gaussian": deltas,
            "total_s": time.perf_counter() - t0,
            "work": str(work),
        },
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
