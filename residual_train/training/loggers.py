"""Loggers built from ``conf/logger/`` (each entry's ``_target_``), adjusted for runs that
are resumed or requeued in the same run directory."""

from __future__ import annotations

import csv
import os
import secrets
from pathlib import Path

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv`` (Lightning's writer deletes it) and its columns."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose ``metrics.csv`` continues across ``ckpt_path=last`` resumes."""

    def trim_after(self, step: int) -> int:
        """Drop the rows a killed attempt logged after the checkpoint at ``step`` (the
        resumed run logs those steps again); returns how many were dropped.

        Training rows logged at ``step`` or later came after the checkpoint; validation at
        ``step`` itself ran before it was saved (the checkpoint holds its result)."""
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        if not path.is_file():
            return 0
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or "step" not in rows[0]:
            return 0
        head, body = rows[0], rows[1:]
        si = head.index("step")
        train_cols = [i for i, k in enumerate(head) if k.startswith("train/") or k == "lr"]

        def before(r: list[str]) -> bool:
            try:
                s = int(float(r[si]))
            except (ValueError, IndexError):
                return True
            is_train = any(i < len(r) and r[i] != "" for i in train_cols)
            return s < step or (s == step and not is_train)

        keep = [r for r in body if before(r)]
        if len(keep) < len(body):
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows([head, *keep])
            os.replace(tmp, path)
        return len(body) - len(keep)

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_logger(
    save_dir: str,
    project: str = "residual-train",
    entity: str | None = None,
    name: str | None = None,
    mode: str | None = None,
):
    """A WandbLogger that is one wandb run per training run: its id is kept in
    ``save_dir/wandb_run_id``, so resumes and Slurm requeues continue the same run (and
    under DDP only rank 0 writes the id)."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only
    from pytorch_lightning.loggers import WandbLogger

    if mode:
        os.environ.setdefault("WANDB_MODE", str(mode))
    id_file = Path(save_dir) / "wandb_run_id"
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        run_id = secrets.token_hex(4)
        if rank_zero_only.rank == 0:
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id + "\n")
    return WandbLogger(
        project=project,
        entity=entity,
        name=name or Path(save_dir).name,
        id=run_id,
        resume="allow",
        save_dir=str(save_dir),
        log_model=False,
    )
