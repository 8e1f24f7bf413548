"""``python -m data_gen out_dir=DIR shards=N ...``: generate a dataset of HDF5 shards."""

from __future__ import annotations

import logging

from data_gen.core.cli import run_app
from data_gen.core.paths import CONF

log = logging.getLogger("data_gen")


def run(cfg: dict) -> dict:
    from data_gen.generate import generate

    summary = generate(cfg)
    log.info(
        "%s: %d shards written, %d already complete, %.0f quadruples/s; manifest %s",
        summary["out_dir"],
        summary["shards_written"],
        summary["shards_skipped"],
        summary["quadruples_per_s"],
        "written" if summary["manifest"] else "pending other shards",
    )
    return summary


def main() -> None:
    run_app(CONF, "data_gen", run)


if __name__ == "__main__":
    main()
