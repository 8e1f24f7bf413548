"""Steps the demo profiles share: timing each stage, and training a model then exporting
and publishing it into the run's own registry."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from data_gen.core.cli import compose_config
from data_gen.core.paths import CONF
from residual_train.training.result import FILE as RESULT
from residual_train.training.result import RunResult


@dataclass
class Timer:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        print(f"[demo] {name} ...", flush=True)
        t = time.perf_counter()
        yield
        self.stages[name] = time.perf_counter() - t
        print(f"[demo] {name}: {self.stages[name]:.1f} s", flush=True)


def train_and_publish(
    timer: Timer, out: Path, data_dir: Path, run_dir: Path, overrides: list[str], name: str
) -> tuple[dict, dict, str]:
    """Train on ``data_dir`` (reusing a finished run, resuming an interrupted one), export
    the best checkpoint and publish it to ``out/registry`` as ``name``: ``(training
    config, training result, version)``."""
    from data_gen.shards import sha256_file
    from residual_train.release.export import export
    from residual_train.release.registry import Registry
    from residual_train.training.train import train

    with timer.stage("train"):
        train_cfg = compose_config(
            CONF, "train", [f"data.dir={data_dir}", f"run_dir={run_dir}", *overrides]
        )
        if (run_dir / RESULT).is_file():
            print("[demo] reusing the finished training run", flush=True)
        else:
            # an interrupted demo resumes from its checkpoint (or, killed before the first
            # one, moves the partial run aside and starts again)
            train_cfg["ckpt_path"] = "auto"
            train(train_cfg)
        result = RunResult.read(run_dir / RESULT)
    with timer.stage("export + publish"):
        ckpt = Path(result.best or run_dir / "checkpoints" / "last.ckpt")
        version = sha256_file(ckpt)[:10]
        exp_dir = out / f"export-{version}"
        if not (exp_dir / "card.json").is_file():
            export(ckpt, exp_dir)
        reg = Registry(out / "registry")
        if version not in reg.read_index(name).versions:
            reg.publish(exp_dir, name, version)
    return train_cfg, result.to_dict(), version
