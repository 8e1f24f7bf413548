"""``python -m data_gen out_dir=DIR shards=N ...``: generate a dataset of HDF5 shards."""

from __future__ import annotations

import json
import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from data_gen.cli import quote_range_overrides, run_task

log = logging.getLogger("data_gen")


@hydra.main(version_base=None, config_path="../conf", config_name="data_gen")
def main(cfg: DictConfig) -> dict:
    from data_gen.generate import generate

    resolved = OmegaConf.to_container(cfg, resolve=True)
    summary = run_task(lambda: generate(resolved), "data_gen")
    log.info(
        "%s: %d shards written, %d already complete, %.0f quadruples/s; manifest %s",
        summary["out_dir"],
        summary["shards_written"],
        summary["shards_skipped"],
        summary["quadruples_per_s"],
        "written" if summary["manifest"] else "pending other shards",
    )
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.argv[1:] = quote_range_overrides(sys.argv[1:])
    main()
