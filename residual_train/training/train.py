"""Build the DataModule, model, loggers and Trainer from a resolved config and fit.

``train(cfg)`` returns the monitored validation metric (what a sweeper optimises).
Everything written to disk goes under ``cfg['run_dir']`` on global rank 0:
``config.yaml`` (resolved), ``checkpoints/`` (``last.ckpt`` and the best one),
``logs/`` (CSV), ``tb/`` (TensorBoard), ``wandb/`` and ``panels/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
import yaml
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.callbacks import Callback

from data_gen.errors import require
from residual_train.data import ResidualDataModule
from residual_train.training.callbacks import RecordSeenSamples
from residual_train.training.lit import ResidualModule

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
    """One logger per entry of ``cfg['logger']`` (``_target_`` + options), saving in ``run_dir``."""
    from hydra.utils import instantiate

    out = []
    for key, lc in (cfg.get("logger") or {}).items():
        require(
            isinstance(lc, dict) and "_target_" in lc,
            f"logger.{key}: give a _target_ (see conf/logger/), got {lc!r}",
        )
        out.append(instantiate(lc, save_dir=str(run_dir)))
    return out


def build_callbacks(cfg: dict, run_dir: Path, monitor: str) -> dict[str, Callback]:
    """``cfg['callbacks']`` instantiated; checkpoint callbacks save in ``run_dir/checkpoints``
    and the ``best`` one watches ``monitor``."""
    from hydra.utils import instantiate

    out = {}
    for key, cc in (cfg.get("callbacks") or {}).items():
        require(
            isinstance(cc, dict) and "_target_" in cc,
            f"callbacks.{key}: give a _target_ (see conf/callbacks/), got {cc!r}",
        )
        extra = {}
        if cc["_target_"].endswith("ModelCheckpoint"):
            extra["dirpath"] = str(run_dir / "checkpoints")
            if key == "best":
                extra["monitor"] = monitor
        out[key] = instantiate(cc, **extra)
    if cfg.get("record_seen"):
        out["record_seen"] = RecordSeenSamples(run_dir)
    return out


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
    if module.net.deconv_size and ckpt is None:
        psf = dm.mean_psf()
        if psf is None:
            log.warning("model.deconv: no RGB PSF bank in the dataset; the path starts as identity")
        else:
            module.net.init_deconv(psf)

    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        name = "config.yaml" if ckpt is None else "config.resumed.yaml"
        (run_dir / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    loggers = build_loggers(cfg, run_dir)
    # (Lightning >= 2.5 refreshes save_last only when a top-k file was written in the same
    # step: conf/callbacks/default.yaml's `last` always keeps the newest state instead.)
    named = build_callbacks(cfg, run_dir, monitor)
    checkpoint = named.get("best")
    trainer_cfg = {k: v for k, v in (cfg.get("trainer") or {}).items() if v is not None}
    trainer = pl.Trainer(
        **trainer_cfg,
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=[*(callbacks or []), *named.values()],
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
    score = checkpoint.best_model_score if checkpoint is not None else None
    if score is None:
        score = trainer.callback_metrics.get(monitor)
    result = {
        "monitor": monitor,
        "value": None if score is None else float(score),
        "best": (checkpoint.best_model_path or None) if checkpoint is not None else None,
        "run_dir": str(run_dir),
        "global_step": trainer.global_step,
    }
    if rank_zero_only.rank == 0:
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
