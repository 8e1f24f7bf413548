"""Callbacks selected by config."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class RecordSeenSamples(Callback):
    """Write ``RUN_DIR/seen/rank{R}-epoch{E}.json``: the (shard, index) pairs each rank
    trained on. For checking data splits under DDP (``record_seen=true``)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir) / "seen"
        self.ids: list[list[int]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ids = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ids.extend(batch["id"].tolist())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        out = self.dir / f"rank{trainer.global_rank}-epoch{trainer.current_epoch}.json"
        out.write_text(json.dumps(self.ids))
