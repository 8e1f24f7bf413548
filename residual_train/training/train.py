"""Build the DataModule, model, loggers and Trainer from a resolved config and fit.

``train(cfg)`` returns the monitored validation metric (what a sweeper optimises).
Everything written to disk goes under ``cfg['run_dir']`` on global rank 0:
``config.yaml`` (resolved), ``checkpoints/`` (``last.ckpt`` and the best one),
``logs/`` (CSV), ``tb/`` (TensorBoard), ``wandb/`` and ``panels/``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from data_gen.core.environment import environment
from data_gen.core.errors import InputError, require
from data_gen.core.typed import Record
from residual_train.data import ResidualDataModule
from residual_train.models import NET_TARGET, resolve_heads
from residual_train.models.weights import init_from as init_from_weights
from residual_train.training.callbacks import AtomicCheckpointIO, RecordSeenSamples
from residual_train.training.lit import ResidualModule
from residual_train.training.loggers import ResumableCSVLogger
from residual_train.training.result import FILE as RESULT
from residual_train.training.result import RunResult
from residual_train.training.resume import (
    check_resume,
    check_weights_fit,
    checkpoint_info,
    record_resume,
    write_config,
)
from residual_train.training.settings import (
    Int,
    PerfSettings,
    TrainSettings,
    build,
    check_train_config,
    parse,
)

log = logging.getLogger("residual_train")


def monitor_metric(cfg: dict) -> str:
    m = cfg["monitor"]
    if m != "auto":
        return m
    heads = resolve_heads(cfg["model"]["heads"])
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


# what a training run writes into its run_dir (a Slurm log or a user's notes are not a run)
RUN_OUTPUTS = (
    "config.yaml",
    "checkpoints",
    "logs",
    "result.json",
    "panels",
    "tb",
    "wandb",
    "wandb_run_id",
    "resumes.jsonl",
)


def claim_run_dir(run_dir: Path, ckpt_path: str | None, resuming: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an earlier one (nothing written is lost).

    A fresh start (no checkpoint to resume) in a ``run_dir`` that already holds a run is
    refused, unless ``overwrite=true`` (the old run is moved aside to
    ``RUN_DIR.replaced-TIME``, not deleted) or ``ckpt_path=auto`` found nothing to resume
    (a job killed before its first checkpoint: its partial run is moved aside too).
    """
    if resuming or not run_dir.is_dir():
        return
    found = [n for n in RUN_OUTPUTS if (run_dir / n).exists()]
    if not found:
        return
    if not (overwrite or ckpt_path == "auto"):
        raise InputError(
            f"run_dir = {run_dir} already holds a run ({', '.join(found)}): resume it with "
            "ckpt_path=last, choose another run_dir, or pass overwrite=true to move it aside"
        )
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside, n = aside.with_name(f"{aside.name.split('~')[0]}~{n}"), n + 1
    os.replace(run_dir, aside)
    log.warning("run_dir %s held a run: moved aside to %s", run_dir, aside)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision, accelerator: str):
    """``trainer.precision=auto``: ``bf16-mixed`` where the device computes bf16 natively
    (a CUDA GPU that supports it, or an AVX512-BF16 / AMX CPU), else ``32``."""
    if precision != "auto":
        return precision
    import torch

    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if gpu:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 32
    return "bf16-mixed" if cpu_has_bf16() else 32


def save_final_state(trainer: pl.Trainer, last: Callback | None) -> None:
    """Write the state training ended with as ``last.ckpt``. Lightning saves ``last`` only
    after a validation, so a run whose ``max_steps`` is not on a validation step would
    otherwise keep an older state (and export it)."""
    if last is None or trainer.state.status != "finished" or trainer.interrupted:
        return
    if getattr(last, "_last_global_step_saved", None) != trainer.global_step:
        # every rank calls it (DDP); Lightning writes on rank 0 only
        # full state: resumable
        trainer.save_checkpoint(last.format_checkpoint_name({}), weights_only=False)


def apply_perf(module: pl.LightningModule, perf: PerfSettings) -> None:
    """``perf.channels_last`` (NHWC weights: convolutions then run NHWC) and
    ``perf.compile`` (``torch.compile`` of the network in place: checkpoints keep their
    keys). Neither changes what is computed beyond floating-point rounding."""
    import torch

    if perf.channels_last:
        module.to(memory_format=torch.channels_last)
    if perf.compile:
        module.net.compile()


def build_loggers(cfg: dict, run_dir: Path) -> list:
    """One logger per entry of ``cfg['logger']`` (``_target_`` + options), saving in ``run_dir``."""
    out = []
    for key, lc in (cfg["logger"] or {}).items():
        require(
            isinstance(lc, dict) and "_target_" in lc,
            f"logger.{key}: give a _target_ (see conf/logger/), got {lc!r}",
        )
        out.append(instantiate(lc, save_dir=str(run_dir)))
    return out


@dataclass(frozen=True)
class RunCallbacks:
    """The run's callbacks by their ``cfg['callbacks']`` keys (``named``); ``best``: the
    checkpoint callback under ``best`` (it watches the monitored metric: ``result.json``'s
    best checkpoint), ``last``: the one under ``last`` (the newest state); None without."""

    named: dict[str, Callback]
    best: ModelCheckpoint | None = None
    last: ModelCheckpoint | None = None


def run_callbacks(cfg: dict, run_dir: Path, monitor: str) -> RunCallbacks:
    """``cfg['callbacks']`` instantiated; checkpoint callbacks save in ``run_dir/checkpoints``
    and the ``best`` one watches ``monitor``."""
    out, roles = {}, {}
    for key, cc in (cfg["callbacks"] or {}).items():
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
        if key in ("best", "last"):
            roles[key] = out[key]
    if cfg["record_seen"]:
        out["record_seen"] = RecordSeenSamples(run_dir)
    return RunCallbacks(out, **roles)


def build_callbacks(cfg: dict, run_dir: Path, monitor: str) -> dict[str, Callback]:
    """``cfg['callbacks']`` instantiated, by key (:func:`run_callbacks`)."""
    return run_callbacks(cfg, run_dir, monitor).named


def build_trainer(cfg: dict, run_dir: Path, loggers: list, callbacks: list) -> pl.Trainer:
    """``cfg['trainer']`` instantiated (checkpoints written atomically); a bad Trainer
    argument is an :class:`InputError` naming it."""
    from hydra.errors import InstantiationException
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    trainer_cfg = {k: v for k, v in cfg["trainer"].items() if v is not None}
    if "plugins" not in trainer_cfg:
        trainer_cfg["plugins"] = [AtomicCheckpointIO()]
    try:
        return instantiate(
            trainer_cfg,
            default_root_dir=str(run_dir),
            logger=loggers or False,
            callbacks=callbacks,
            use_distributed_sampler=False,  # EpochSampler splits by rank itself
        )
    except (InstantiationException, TypeError, ValueError, MisconfigurationException) as e:
        cause = e.__cause__ or e  # Hydra wraps the Trainer's own error
        raise InputError(f"trainer: {' '.join(str(cause).split())}") from None


def has_checkpoint(run_dir: Path) -> bool:
    return any(run_dir.glob("checkpoints/*.ckpt")) or any(run_dir.glob("hpc_ckpt_*.ckpt"))


def remove_failed_run(run_dir: Path, before: set[str], dir_existed: bool) -> None:
    """Undo what a fresh run that failed before its first checkpoint wrote into ``run_dir``
    (its outputs that were not there before; the directory if it made it), so the corrected
    command starts cleanly. A run with a checkpoint keeps everything: it can be resumed."""
    if has_checkpoint(run_dir):
        log.warning("run_dir %s holds a checkpoint: resume it with ckpt_path=last", run_dir)
        return
    for name in RUN_OUTPUTS:
        p = run_dir / name
        if name not in before and p.exists():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    if not dir_existed and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def build_data(cfg: dict, s: TrainSettings, field: int) -> ResidualDataModule:
    """``data._target_`` with the run's seed; batches carry ``psf_index`` for a model whose
    deconvolution knows where it is (``field``: ``model.field_kernels``)."""
    dm = build(cfg["data"], "data", seed=s.seed, psf_index=field > 0)
    if dm.augment_train:
        log.info("training augmentation: random crops; %s", ", ".join(dm.transform_names))
    return dm


def build_module(cfg: dict, s: TrainSettings, dm, field: int, run_dir: Path) -> ResidualModule:
    """The LightningModule of the run. ``cfg['model']`` is completed with what the data
    fixes (saved so in config.yaml): ``heads: auto`` -> the dataset's components, and a
    field-aware model's ``field_positions`` (the bank's size). The module's
    hyper-parameters keep plain dicts (checkpoints load with ``weights_only``); its
    ``model`` is the config without the default ``_target_`` (as every card records it)."""
    model = {**cfg["model"], "heads": resolve_heads(cfg["model"]["heads"], dm.components)}
    if field:
        bank = dm.psf_bank()
        require(
            bank is not None,
            f"model.field_kernels = {field}: {dm.dir} holds no RGB PSF bank to take the "
            "positions from (packed Bayer data, or shards without psfs)",
        )
        model["field_positions"] = len(bank)
    cfg["model"] = model
    hp = {k: v for k, v in model.items() if not (k == "_target_" and v == NET_TARGET)}
    hp["sigma_map"] = s.data.sigma_map
    loss, optim, val = (dict(cfg[k]) for k in ("loss", "optim", "val"))
    return ResidualModule(hp, dm.channels, loss, optim, val, str(run_dir))


def init_weights(module: ResidualModule, dm, init_from: str | None) -> None:
    """A new run's starting weights: another model's (``init_from``, a fine-tune: its
    deconvolution is learnt), else the deconvolution path as the Wiener inverse of the
    data's PSFs (their mean, or per position for a field-aware model)."""
    net = module.net
    if init_from:
        heads = init_from_weights(net, init_from)
        log.info(
            "init_from %s: heads %s taken, %s start from no correction%s",
            init_from,
            ", ".join(heads["kept"]) or "none",
            ", ".join(heads["new"]) or "none",
            f", {', '.join(heads['dropped'])} left out" if heads["dropped"] else "",
        )
    elif net.field_kernels:
        net.init_field(dm.psf_bank())
        if len(dm.psf_bank()) == 1:
            log.warning(
                "model.field_kernels: the lens's bank holds one PSF; the path is the mean-PSF one"
            )
    elif net.deconv_size:
        psf = dm.mean_psf()
        if psf is None:
            log.warning("model.deconv: no RGB PSF bank in the dataset; the path starts as identity")
        else:
            net.init_deconv(psf)


class FieldModel(Record):
    """What training reads of ``cfg['model']`` itself (the network checks the rest):
    ``field_kernels``, absent (None) in a model of another ``_target_``."""

    field_kernels: Int(0, none_ok=True) = None


def train(cfg: dict, callbacks: list[Callback] | None = None) -> dict:
    """Fit the model described by ``cfg``; returns ``result.json``'s mapping
    (:class:`~residual_train.training.result.RunResult`: ``monitor``, ``value``, ``best``,
    ``run_dir``, ``global_step``).

    Everything is checked before the run_dir is claimed: the config's values
    (:func:`~residual_train.training.settings.check_train_config`), the dataset, the
    network, and on a resume that the checkpoint fits and the config is the run's own
    (:mod:`residual_train.training.resume`). A fresh run that fails before its first
    checkpoint removes what it wrote."""
    run_dir = Path(cfg["run_dir"]).resolve()
    s = check_train_config(cfg)
    pl.seed_everything(s.seed, workers=True, verbose=False)
    ckpt = resolve_ckpt(s.ckpt_path, run_dir)
    info = checkpoint_info(ckpt) if ckpt else None
    tc = cfg["trainer"]
    if tc["precision"] == "auto":  # saved resolved in config.yaml: what this run used
        tc["precision"] = resolve_precision("auto", str(tc["accelerator"]))
        log.info("trainer.precision=auto: %s on this device", tc["precision"])
    field = parse(FieldModel, cfg["model"], "model").field_kernels or 0
    dm = build_data(cfg, s, field)
    module = build_module(cfg, s, dm, field, run_dir)
    changes = {}
    if ckpt:
        check_weights_fit(ckpt, info, module.hparams["model"], module)
        changes = check_resume(cfg, run_dir, ckpt, info)
    apply_perf(module, s.perf)
    if ckpt is None:
        init_weights(module, dm, s.init_from)

    rank0 = rank_zero_only.rank == 0 and environment().first_local_rank
    if rank0:
        claim_run_dir(run_dir, s.ckpt_path, ckpt is not None, s.overwrite)
    dir_existed = run_dir.is_dir()
    before = {n for n in RUN_OUTPUTS if (run_dir / n).exists()}
    try:
        return fit(cfg, run_dir, dm, module, ckpt, info, changes, callbacks)
    except BaseException:
        if ckpt is None and rank0:
            remove_failed_run(run_dir, before, dir_existed)
        raise


def fit(cfg, run_dir, dm, module, ckpt, info, changes, callbacks) -> dict:
    """Write the run's config, fit, write ``result.json``."""
    monitor = monitor_metric(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        write_config(run_dir / ("config.yaml" if ckpt is None else "config.resumed.yaml"), cfg)
        if ckpt is not None:
            allowed = list(cfg["resume"]["allow_changes"])
            record_resume(run_dir, ckpt, info.global_step, changes, allowed)
    loggers = build_loggers(cfg, run_dir)
    if ckpt is not None and rank_zero_only.rank == 0:
        for lg in loggers:
            if isinstance(lg, ResumableCSVLogger) and lg.trim_after(info.global_step):
                log.info(
                    "metrics.csv: dropped rows logged after step %d (resumed)",
                    info.global_step,
                )
    # (Lightning >= 2.5 refreshes save_last only when a top-k file was written in the same
    # step: conf/callbacks/default.yaml's `last` always keeps the newest state instead.)
    checkpoints = run_callbacks(cfg, run_dir, monitor)
    trainer = build_trainer(
        cfg, run_dir, loggers, [*(callbacks or []), *checkpoints.named.values()]
    )
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
        save_final_state(trainer, checkpoints.last)
    finally:  # always close the loggers: one failed sweep point must not break the next
        for lg in loggers:
            lg.finalize("success" if trainer.state.status == "finished" else "failed")
        if any(type(lg).__name__ == "WandbLogger" for lg in loggers) and rank_zero_only.rank == 0:
            import wandb

            wandb.finish()
    score = checkpoints.best.best_model_score if checkpoints.best is not None else None
    if score is None:
        score = trainer.callback_metrics.get(monitor)
    result = RunResult(
        monitor=monitor,
        value=None if score is None else float(score),
        best=(checkpoints.best.best_model_path or None) if checkpoints.best is not None else None,
        run_dir=str(run_dir),
        global_step=trainer.global_step,
    )
    if rank_zero_only.rank == 0:
        result.write(run_dir / RESULT)
    return result.to_dict()
