"""Training as several test files drive it: a tiny dataset, the training config composed
as ``python -m residual_train`` composes it, and runs that stop, crash and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback

from data_gen.generate import generate
from residual_train.training.train import train
from tests.conftest import CONF, compose_cfg


def tiny_dataset(d: Path, shards: int, samples_per_shard: int) -> Path:
    """``shards`` x ``samples_per_shard`` samples of 24 px patches (float32) in ``d``."""
    generate(
        compose_cfg(
            f"out_dir={d}",
            f"shards={shards}",
            f"samples_per_shard={samples_per_shard}",
            "patch_size=24",
            "source.size=96",
            "patches_per_source=8",
            "sensor.iso=[400,3200]",
        )
    )
    return d


def train_cfg(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=["experiment=tiny", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


class StopAfterEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


class CrashAtStep(Callback):
    """Dies mid-epoch, after a checkpoint and a few more logged steps (like a kill -9)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated crash")


def assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a = torch.load(a_dir / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(b_dir / "checkpoints" / "last.ckpt", weights_only=True)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def crash_mid_epoch_and_resume(common: list[str], tmp_path: Path) -> None:
    """An uninterrupted 3-epoch run (12 steps each, checkpoints every 6) in ``full``; a run
    killed at step 21 and resumed from its step-18 checkpoint (mid-epoch 1) in ``part``."""
    common = [
        *common,
        "trainer.max_epochs=3",
        "+trainer.val_check_interval=6",
        "trainer.deterministic=true",
        "val.panel_every=0",
    ]
    train(train_cfg(*common, f"run_dir={tmp_path / 'full'}"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(train_cfg(*common, f"run_dir={tmp_path / 'part'}"), [CrashAtStep(21)])
    ck = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ck["global_step"] == 18
    resumed = train(train_cfg(*common, f"run_dir={tmp_path / 'part'}", "ckpt_path=last"))
    assert resumed["global_step"] == 36
    assert_same_weights(tmp_path / "full", tmp_path / "part")
