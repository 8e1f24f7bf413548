"""``python -m residual_train.deploy model=PATH|NAME[:TAG] input=FILE out_dir=DIR
strengths.<component>=s ... [registry=PATH] [iso=N] [mode=consistent|literal]
[blur_model=PATH|NAME[:TAG]] [linearize=auto|true|false] [tile=256] [overlap=64]
[backend=onnx|torch] [self_ensemble=false|trained|true]`` (every key in ``conf/apps/deploy.yaml``)

Decodes the input to linear light (``linearize=auto``: 8-bit PNG / JPEG / TIFF from sRGB,
16-bit and float files as linear), runs the network once (tiled), writes its residual
maps, one per component (32-bit float TIFF), and ``maps.json`` to ``out_dir``, then the
composed image as ``composed.tif`` (float, linear) and ``composed.png`` (8-bit sRGB: at
strengths 0 an 8-bit sRGB input comes back as it was). With ``blur_model=`` the pair of
single-head models runs sequentially (noise model, then blur model on the denoised
image). Change strengths later with ``python -m residual_train.deploy.recompose``.
"""

from __future__ import annotations

import time
from pathlib import Path

from data_gen.core.cli import run_app
from data_gen.core.errors import require
from data_gen.core.paths import APPS, filled_atomically, require_new_dir
from data_gen.core.values import integer, number, one_of, optional
from data_gen.sources import check_linearize
from residual_train.deploy.compose import (
    Strengths,
    check_distortion,
    check_distortion_stage,
    compose,
    correct_distortion_stage,
)
from residual_train.deploy.ensemble import CHOICES
from residual_train.deploy.io import check_capture, read_input_encoded, save_maps, write_output
from residual_train.deploy.model import load_model, predict_sequential


def check_settings(o: dict) -> dict:
    """The numbers of ``conf/apps/deploy.yaml``, typed (one line otherwise)."""
    return {
        "iso": optional(number, None if o["iso"] == "" else o["iso"], "iso", positive=True),
        "tile": integer(o["tile"], "tile", 8),
        "overlap": integer(o["overlap"], "overlap", 4),
        "batch": integer(o["batch"], "batch", 1),
        "distortion_order": integer(o["distortion_order"], "distortion_order"),
        "self_ensemble": one_of(o["self_ensemble"], "self_ensemble", CHOICES),
    }


def run(o: dict) -> dict:
    strengths = dict(o["strengths"])
    given = [c for c, v in strengths.items() if v is not None]
    Strengths.resolve(strengths, given)  # bad values stop before the network runs
    check_linearize(o["linearize"])
    s = check_settings(o)
    k_dist = check_distortion(o["distortion"])
    order, iso = s["distortion_order"], s["iso"]
    out_dir = Path(str(o["out_dir"]))
    require_new_dir(out_dir)
    registry = o["registry"] or None
    ens = s["self_ensemble"]
    model = load_model(str(o["model"]), registry, o["backend"], self_ensemble=ens)
    x, encoding = read_input_encoded(
        str(o["input"]), o["linearize"], model.channels, model.card.layout
    )
    noise = model.noise_model(iso)
    check_capture(x, noise, f"input = {str(o['input'])!r}")
    kw = dict(tile=s["tile"], overlap=s["overlap"], batch=s["batch"], iso=iso, progress=True)
    # a field-aware model reads the frame's positions through the card's lens in this state
    kw["lens_state"] = integer(o["lens_state"] or 0, "lens_state")
    t0 = time.perf_counter()
    if o["blur_model"]:
        blur_model = load_model(str(o["blur_model"]), registry, o["backend"], self_ensemble=ens)
        maps = predict_sequential(model, blur_model, x, **kw)
    else:
        maps = model.predict(x, **kw)
    seconds = time.perf_counter() - t0
    require(
        not set(maps) < {"blur", "noise"},
        f"composition needs blur and noise residuals; the model gives {sorted(maps)} "
        "(pass the other single-head model as blur_model=)",
    )
    meta = {
        "components": sorted(maps),
        "iso": iso,
        "noise_A": noise.A.tolist(),
        "noise_B": noise.B.tolist(),
        "model": str(model.path),
        "input": str(o["input"]),
        "input_encoding": encoding,
        "card": {
            "components": list(model.card.components),
            "layout": model.card.layout,
            "scale": model.card.scale,
            "metrics": model.card.metrics,
        },
        "distortion": list(k_dist) if k_dist else None,
        "distortion_order": order,
        "views": model.views,  # self_ensemble: per head, the flips / turns averaged
    }
    if o["blur_model"]:
        meta["blur_views"] = blur_model.views
    layout = model.card.layout
    check_distortion_stage(k_dist, order, layout)
    # composed before anything is written: a strength for a component the model lacks, or
    # a mode its maps do not compose in, stops here
    used = Strengths.resolve(strengths, list(maps))
    y = compose(x, maps, used, noise, o["mode"])
    y = correct_distortion_stage(y, k_dist, order, layout)
    with filled_atomically(out_dir) as tmp:  # out_dir appears complete, or not at all
        save_maps(tmp, x, maps, meta)
        write_output(tmp / "composed.tif", y)
        write_output(tmp / "composed.png", y)
    return {
        "out_dir": str(out_dir),
        "megapixels": x.shape[1] * x.shape[2] / 1e6,
        "network_seconds": seconds,
        "views": model.views,
        "strengths": used.as_dict(),
        "mode": o["mode"],
    }


def main() -> None:
    run_app(APPS, "deploy", run)


if __name__ == "__main__":
    main()
