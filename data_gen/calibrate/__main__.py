"""``python -m data_gen.calibrate noise|lens key=value ...`` (``residual-train calibrate
noise|lens ...``): the first word picks the command and its config
(``conf/calibrate_noise.yaml``, ``conf/calibrate_lens.yaml``); the rest are Hydra overrides.
"""

from __future__ import annotations

import sys

from data_gen.core.cli import run_app
from data_gen.core.paths import CONF

USAGE = (
    "usage: residual-train calibrate noise raws=DIR_OR_FILES out=DIR [method=...]\n"
    "       residual-train calibrate lens captures=DIR_OR_FILES out=DIR [key=value ...]"
)


def _noise(cfg: dict) -> dict:
    from data_gen.calibrate.noise import run

    return run(cfg)


def _lens(cfg: dict) -> dict:
    from data_gen.calibrate.lens import run

    return run(cfg)


COMMANDS = {"noise": _noise, "lens": _lens}


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if argv else 2)
    what = argv[0]
    if what not in COMMANDS:
        print(f"error: calibrate {what!r}: use noise or lens\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"{sys.argv[0]} {what}", *argv[1:]]
    run_app(CONF, f"calibrate_{what}", COMMANDS[what])


if __name__ == "__main__":
    main()
