"""``python -m residual_train.deploy model=PATH|NAME[:TAG] input=FILE out_dir=DIR
strengths.<component>=s ... [registry=PATH] [iso=N] [mode=consistent|literal]
[blur_model=PATH|NAME[:TAG]] [linearize=false] [tile=256] [overlap=64] [backend=onnx|torch]``
(every key in ``conf/apps/deploy.yaml``)

Runs the network once (tiled), writes its residual maps, one per component (32-bit float
TIFF), and
``maps.json`` to ``out_dir``, then the composed image as ``composed.tif`` (float,
linear) and ``composed.png`` (sRGB preview). With ``blur_model=`` the pair of
single-head models runs sequentially (noise model, then blur model on the denoised
image). Change strengths later with ``python -m residual_train.deploy.recompose``.
"""

from __future__ import annotations

import time
from pathlib import Path

from data_gen.cli import run_app
from data_gen.errors import require
from data_gen.paths import APPS, require_new_dir
from residual_train.deploy import (
    load_model,
    predict_sequential,
    read_input,
    save_maps,
    write_output,
)
from residual_train.deploy.compose import (
    Strengths,
    check_distortion,
    check_distortion_stage,
    compose,
    correct_distortion_stage,
)


def run(o: dict) -> dict:
    strengths = dict(o["strengths"])
    given = [c for c, v in strengths.items() if v is not None]
    Strengths.resolve(strengths, given)  # bad values stop before the network runs
    k_dist = check_distortion(o.get("distortion"))
    order = int(o.get("distortion_order", 3))
    out_dir = Path(str(o["out_dir"]))
    require_new_dir(out_dir)
    registry = o.get("registry") or None
    model = load_model(str(o["model"]), registry, o["backend"])
    x = read_input(
        str(o["input"]), bool(o["linearize"]), model.channels, model.card.get("layout", "rgb")
    )
    iso = None if o.get("iso") in (None, "") else float(o["iso"])
    noise = model.noise_model(iso)
    kw = dict(
        tile=int(o["tile"]),
        overlap=int(o["overlap"]),
        batch=int(o["batch"]),
        iso=iso,
        progress=True,
    )
    # a field-aware model reads the frame's positions through the card's lens in this state
    kw["lens_state"] = int(o.get("lens_state") or 0)
    t0 = time.perf_counter()
    if o.get("blur_model"):
        blur_model = load_model(str(o["blur_model"]), registry, o["backend"])
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
        "card": {k: model.card.get(k) for k in ("components", "layout", "scale", "metrics")},
        "distortion": list(k_dist) if k_dist else None,
        "distortion_order": order,
    }
    layout = model.card.get("layout", "rgb")
    check_distortion_stage(k_dist, order, layout)
    # composed before anything is written: a strength for a component the model lacks, or
    # a mode its maps do not compose in, stops here
    used = Strengths.resolve(strengths, list(maps))
    y = compose(x, maps, used, noise, o["mode"])
    save_maps(out_dir, x, maps, meta)
    y = correct_distortion_stage(y, k_dist, order, layout)
    write_output(out_dir / "composed.tif", y)
    write_output(out_dir / "composed.png", y)
    return {
        "out_dir": str(out_dir),
        "megapixels": x.shape[1] * x.shape[2] / 1e6,
        "network_seconds": seconds,
        "strengths": used.as_dict(),
        "mode": o["mode"],
    }


def main() -> None:
    run_app(APPS, "deploy", run)


if __name__ == "__main__":
    main()
