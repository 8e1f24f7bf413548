"""``python -m residual_train data.dir=DIR run_dir=DIR experiment=tiny ...``: train.

Prints the result as one JSON line and returns the monitored validation metric, so a
Hydra sweeper can optimise it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from data_gen.core.cli import (
    check_value_types,
    quote_range_overrides,
    report_hydra_errors,
    run_task,
)
from data_gen.core.environment import environment
from data_gen.core.paths import CONF

# Lightning's DDP launcher re-runs this command for ranks > 0 with the parent's argv,
# which under multirun would sweep again and under ${now:} pick another run_dir. The
# parent pins its job's overrides (run_dir included) here; children use them instead.
JOB_ENV = "RESIDUAL_TRAIN_JOB_OVERRIDES"


def _child_argv() -> list[str] | None:
    if not environment().first_local_rank and JOB_ENV in os.environ:
        return json.loads(os.environ[JOB_ENV])
    return None


@hydra.main(version_base=None, config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from residual_train.training.train import train

    resolved = OmegaConf.to_container(cfg, resolve=True)
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and not any(o.startswith("run_dir=") for o in hc.overrides.task):
        # sweep jobs can start within the same second: each gets its sweep subdirectory
        resolved["run_dir"] = hc.runtime.output_dir
    run_dir = str(Path(resolved["run_dir"]).resolve())
    resolved["run_dir"] = run_dir
    if _child_argv() is None:
        overrides = [o for o in hc.overrides.task if not o.startswith("run_dir=")]
        os.environ[JOB_ENV] = json.dumps([*overrides, f"run_dir={run_dir}"])

    def task() -> dict:
        check_value_types(CONF, "train", resolved)
        return train(resolved)

    result = run_task(task, "train")
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        print(json.dumps(result), flush=True)
    return result["value"]


if __name__ == "__main__":
    child = _child_argv()
    sys.argv[1:] = child if child is not None else quote_range_overrides(sys.argv[1:])
    report_hydra_errors(main)
