"""``python -m residual_train.deploy model=PATH|NAME[:TAG] input=FILE out_dir=DIR
strengths.blur=a strengths.noise=b [registry=PATH] [iso=N] [mode=consistent|literal]
[blur_model=PATH|NAME[:TAG]] [linearize=false] [tile=256] [overlap=64] [backend=onnx|torch]``

Runs the network once (tiled), writes the residual maps (32-bit float TIFF) and
``maps.json`` to ``out_dir``, then the composed image as ``composed.tif`` (float,
linear) and ``composed.png`` (sRGB preview). With ``blur_model=`` the pair of
single-head models runs sequentially (noise model, then blur model on the denoised
image). Change strengths later with ``python -m residual_train.deploy.recompose``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from data_gen.cli import parse_kv
from data_gen.errors import InputError, require
from residual_train.deploy import (
    load_model,
    predict_sequential,
    read_input,
    save_maps,
    write_output,
)
from residual_train.deploy.compose import check_strength, compose


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    defaults = {
        "model": None,
        "input": None,
        "out_dir": None,
        "strengths.blur": "1",
        "strengths.noise": "1",
        "registry": "",
        "iso": "",
        "mode": "consistent",
        "blur_model": "",
        "linearize": "false",
        "tile": "256",
        "overlap": "64",
        "backend": "onnx",
        "batch": "4",
    }
    try:
        _, o = parse_kv(
            argv, defaults, doc=__doc__, usage="see python -m residual_train.deploy --help"
        )
        a = check_strength("blur", o["strengths.blur"])
        b = check_strength("noise", o["strengths.noise"])
        out_dir = Path(o["out_dir"])
        require(
            not (out_dir.exists() and any(out_dir.iterdir())),
            f"out_dir = {str(out_dir)!r} already holds files; nothing is overwritten",
        )
        model = load_model(o["model"], o["registry"] or None, o["backend"])
        x = read_input(
            o["input"],
            o["linearize"].lower() in ("1", "true", "yes"),
            model.channels,
            model.card.get("layout", "rgb"),
        )
        iso = float(o["iso"]) if o["iso"] else None
        A, B = model.noise_params(iso)
        kw = dict(
            tile=int(o["tile"]),
            overlap=int(o["overlap"]),
            batch=int(o["batch"]),
            iso=iso,
            progress=True,
        )
        t0 = time.perf_counter()
        if o["blur_model"]:
            maps = predict_sequential(
                model, load_model(o["blur_model"], o["registry"] or None, o["backend"]), x, **kw
            )
        else:
            maps = model.predict(x, **kw)
        seconds = time.perf_counter() - t0
        require(
            {"blur", "noise"} <= set(maps),
            f"composition needs blur and noise residuals; the model gives {sorted(maps)} "
            "(pass the other single-head model as blur_model=)",
        )
        meta = {
            "components": sorted(maps),
            "iso": iso,
            "noise_A": A.tolist(),
            "noise_B": B.tolist(),
            "model": str(model.path),
            "input": str(o["input"]),
            "card": {k: model.card.get(k) for k in ("components", "layout", "scale", "metrics")},
        }
        save_maps(out_dir, x, maps, meta)
        y = compose(o["mode"], x, maps["blur"], maps["noise"], a, b, A, B)
        write_output(out_dir / "composed.tif", y)
        write_output(out_dir / "composed.png", y)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mp = x.shape[1] * x.shape[2] / 1e6
    print(
        json.dumps(
            {
                "out_dir": str(out_dir),
                "megapixels": mp,
                "network_seconds": seconds,
                "strengths": {"blur": a, "noise": b},
                "mode": o["mode"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
