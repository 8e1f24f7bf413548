"""``python -m residual_train.deploy.recompose maps=DIR strengths.blur=a strengths.noise=b
out=FILE [mode=consistent|literal] [overwrite=false]``

Composes saved residual maps at new strengths without any network (milliseconds per
megapixel): ``out`` as ``.tif`` (32-bit float, linear), ``.npy`` or ``.png`` (sRGB).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from data_gen.cli import parse_kv
from data_gen.errors import InputError, require
from residual_train.deploy import load_maps, write_output
from residual_train.deploy.compose import compose


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        _, o = parse_kv(
            argv,
            {
                "maps": None,
                "strengths.blur": "1",
                "strengths.noise": "1",
                "out": None,
                "mode": "consistent",
                "overwrite": "false",
            },
            doc=__doc__,
            usage="see python -m residual_train.deploy.recompose --help",
        )
        out = Path(o["out"])
        require(
            not out.exists() or o["overwrite"].lower() in ("1", "true", "yes"),
            f"out = {str(out)!r} exists; pass overwrite=true to replace it",
        )
        x, maps, meta = load_maps(o["maps"])
        t = time.perf_counter()
        y = compose(
            o["mode"],
            x,
            maps["blur"],
            maps["noise"],
            o["strengths.blur"],
            o["strengths.noise"],
            np.asarray(meta["noise_A"], np.float32),
            np.asarray(meta["noise_B"], np.float32),
        )
        ms = (time.perf_counter() - t) * 1e3
        write_output(out, y)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "compose_ms": ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
