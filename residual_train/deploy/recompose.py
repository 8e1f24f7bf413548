"""``python -m residual_train.deploy.recompose maps=DIR strengths.<component>=s ...
out=FILE [mode=consistent|literal] [distortion=auto|null|[k1,k2]] [overwrite=false]``

Composes saved residual maps at new strengths without any network (milliseconds per
megapixel): ``out`` as ``.tif`` (32-bit float, linear), ``.npy`` or ``.png`` (sRGB);
then corrects radial distortion by resampling (``auto``: as the deploy run did).
"""

from __future__ import annotations

import time
from pathlib import Path

from data_gen.core.cli import run_app
from data_gen.core.errors import require
from data_gen.core.paths import APPS
from data_gen.core.values import boolean, integer
from data_gen.noise import NoiseModel
from residual_train.deploy.compose import check_distortion, compose, correct_distortion_stage
from residual_train.deploy.io import read_maps, write_output


def run(o: dict) -> dict:
    out = Path(str(o["out"]))
    require(
        not out.exists() or boolean(o["overwrite"], "overwrite"),
        f"out = {str(out)!r} exists; pass overwrite=true to replace it",
    )
    saved = read_maps(str(o["maps"]))
    info = saved.info
    dist = o["distortion"]
    if dist == "auto":  # what the deploy run corrected
        dist, order = info.distortion, info.distortion_order
    else:
        order = integer(o["distortion_order"], "distortion_order")
    k_dist = check_distortion(dist)
    t = time.perf_counter()
    noise = NoiseModel(info.noise_A, info.noise_B)
    y = compose(saved.x, saved.maps, dict(o["strengths"]), noise, o["mode"])
    y = correct_distortion_stage(y, k_dist, order, info.card.layout)
    ms = (time.perf_counter() - t) * 1e3
    write_output(out, y)
    return {"out": str(out), "compose_ms": ms}


def main() -> None:
    run_app(APPS, "recompose", run)


if __name__ == "__main__":
    main()
