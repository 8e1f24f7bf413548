"""Build the DataModule, model, loggers and Trainer from a resolved config and fit.

``train(cfg)`` returns the monitored validation metric (what a sweeper optimises).
Everything written to disk goes under ``cfg['run_dir']`` on global rank 0:
``config.yaml`` (resolved), ``checkpoints/`` (``last.ckpt`` and the best one),
``logs/`` (CSV), ``tb/`` (TensorBoard), ``wandb/`` and ``panels/``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

import pytorch_lightning as pl
import yaml
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from data_gen.errors import InputError, require
from residual_train.callbacks import RecordSeenSamples
from residual_train.data import ResidualDataModule
from residual_train.lit import ResidualModule

log = logging.getLogger("residual_train")


def monitor_metric(cfg: dict) -> str:
    m = cfg.get("monitor", "auto")
    if m != "auto":
        return m
    heads = cfg["model"].get("heads", ["blur", "noise"])
    return "val/psnr_full" if len(heads) > 1 else f"val/psnr_{heads[0]}"


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last`` -> ``RUN_DIR/checkpoints/last.ckpt`` (must exist); a path must exist.

    ``auto`` (Slurm jobs): the newest of Lightning's requeue checkpoints
    (``RUN_DIR/hpc_ckpt_N.ckpt``) and ``last.ckpt``, or a fresh start when there is none.
    """
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "auto":
        found = [*run_dir.glob("hpc_ckpt_*.ckpt"), run_dir / "checkpoints" / "last.ckpt"]
        found = [p for p in found if p.is_file()]
        return str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else None
    p = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    require(
        p.is_file(),
        f"ckpt_path = {ckpt_path!r}: {p} does not exist"
        + (" (nothing to resume in this run_dir)" if ckpt_path == "last" else ""),
    )
    return str(p)


def build_loggers(cfg: dict, run_dir: Path) -> list:
    kind = (cfg.get("logger") or {}).get("kind", "csv")
    lc = cfg.get("logger") or {}
    if kind in (None, "none"):
        return []
    if kind == "csv":
        from residual_train.loggers import ResumableCSVLogger

        return [ResumableCSVLogger(save_dir=str(run_dir), name="logs", version="")]
    if kind == "tensorboard":
        from pytorch_lightning.loggers import TensorBoardLogger

        return [TensorBoardLogger(save_dir=str(run_dir), name="tb", version="")]
    if kind == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        if lc.get("mode"):
            os.environ.setdefault("WANDB_MODE", str(lc["mode"]))
        # one wandb run per training run: the id survives restarts and requeues
        id_file = run_dir / "wandb_run_id"
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(4)
            if rank_zero_only.rank == 0:
                id_file.write_text(run_id + "\n")
        return [
            WandbLogger(
                project=lc.get("project", "residual-train"),
                entity=lc.get("entity"),
                name=lc.get("name") or run_dir.name,
                id=run_id,
                resume="allow",
                save_dir=str(run_dir),
                log_model=False,
            )
        ]
    raise InputError(f"logger.kind = {kind!r}: use csv, tensorboard, wandb or none")


def train(cfg: dict, callbacks: list[Callback] | None = None) -> dict:
    """Fit the model described by ``cfg``; returns ``{"monitor", "value", "best", "run_dir"}``."""
    run_dir = Path(cfg["run_dir"]).resolve()
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    data_cfg = dict(cfg["data"])
    require(
        data_cfg.get("dir") not in (None, "???"),
        "data.dir is missing: give the dataset directory as data.dir=DIR",
    )
    dm = ResidualDataModule(**data_cfg, seed=int(cfg.get("seed", 0)))
    model_cfg = dict(cfg["model"])
    model_cfg["sigma_map"] = bool(data_cfg.get("sigma_map", False))
    module = ResidualModule(
        model_cfg,
        dm.channels,
        dict(cfg["loss"]),
        dict(cfg["optim"]),
        dict(cfg.get("val") or {}),
        str(run_dir),
    )
    ckpt = resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    monitor = monitor_metric(cfg)

    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        name = "config.yaml" if ckpt is None else "config.resumed.yaml"
        (run_dir / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    loggers = build_loggers(cfg, run_dir)
    ckpt_dir = str(run_dir / "checkpoints")
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-epoch{epoch:03d}-step{step}",
        monitor=monitor,
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    # Lightning >= 2.5 refreshes save_last only when a top-k file was written in the same
    # step; this one always keeps the newest state as last.ckpt (what a resume wants).
    latest = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    extra: list[Callback] = []
    if cfg.get("record_seen"):
        extra.append(RecordSeenSamples(run_dir))
    trainer_cfg = {k: v for k, v in (cfg.get("trainer") or {}).items() if v is not None}
    trainer = pl.Trainer(
        **trainer_cfg,
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=[*extra, *(callbacks or []), checkpoint, latest],
        use_distributed_sampler=False,  # EpochSampler splits by rank itself
    )
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
    finally:  # always close the loggers: one failed sweep point must not break the next
        for lg in loggers:
            lg.finalize("success" if trainer.state.status == "finished" else "failed")
        if any(type(lg).__name__ == "WandbLogger" for lg in loggers) and rank_zero_only.rank == 0:
            import wandb

            wandb.finish()
    score = checkpoint.best_model_score
    if score is None:
        score = trainer.callback_metrics.get(monitor)
    result = {
        "monitor": monitor,
        "value": None if score is None else float(score),
        "best": checkpoint.best_model_path or None,
        "run_dir": str(run_dir),
        "global_step": trainer.global_step,
    }
    if rank_zero_only.rank == 0:
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
