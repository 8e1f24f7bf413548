"""Callbacks selected by config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback


def _plain(v):
    """A numpy scalar as its Python value (for JSON); anything else as it is."""
    return v.item() if isinstance(v, np.generic) else v


class RecordSeenSamples(Callback):
    """Write ``RUN_DIR/seen/rank{R}-epoch{E}.json``: the (shard, index) pairs each rank
    trained on — (batch number, position) for batches rendered on the fly, whose
    per-sample records (source frame, crop, ISO, PSF, exposure, seed; as a shard's
    ``meta``) go to ``rank{R}-epoch{E}-meta.jsonl``. For checking data splits under DDP
    and what a run saw (``record_seen=true``)."""

    FIELDS = ("source", "y", "x", "psf_index", "iso", "exposure", "seed")

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir) / "seen"
        self.ids: list[list[int]] = []
        self.meta: list[dict] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ids, self.meta = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ids.extend(batch["id"].tolist())
        for rec in batch.get("meta", ()):
            self.meta.append({k: _plain(rec[k]) for k in self.FIELDS})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = f"rank{trainer.global_rank}-epoch{trainer.current_epoch}"
        (self.dir / f"{stem}.json").write_text(json.dumps(self.ids))
        if self.meta:
            lines = (json.dumps(m) for m in self.meta)
            (self.dir / f"{stem}-meta.jsonl").write_text("\n".join(lines) + "\n")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each checkpoint to a hidden sibling and
    renaming it (:func:`data_gen.core.paths.written_atomically`): a checkpoint appears under its
    name only complete. (Lightning's own writes a temporary file in the system's temporary
    directory and moves it across file systems, which on a full disk leaves a truncated
    checkpoint under the final name.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        import torch

        from data_gen.core.paths import written_atomically

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_atomically(path) as tmp:
            torch.save(checkpoint, tmp)
