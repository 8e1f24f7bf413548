"""The training config checked before anything is claimed or written: every value a user
can set has its type and range, one line naming the key and the value otherwise."""

from __future__ import annotations

from data_gen.errors import require
from data_gen.values import boolean, integer, mapping, number, numbers, one_of, optional
from residual_train.training.lit import LOSSES


def check_train_config(cfg: dict) -> None:
    """Types and ranges of ``seed``, ``loss``, ``optim``, ``val``, ``data``, ``resume`` and
    the run flags (the model's own options are checked by :func:`build_model`)."""
    integer(cfg.get("seed", 0), "seed", 0)
    for key in ("overwrite", "record_seen"):
        boolean(cfg.get(key, False), key)
    check_loss(cfg.get("loss") or {})
    check_optim(cfg.get("optim") or {})
    check_val(cfg.get("val") or {})
    check_data(cfg.get("data") or {})
    allowed = (cfg.get("resume") or {}).get("allow_changes") or []
    require(
        isinstance(allowed, list) and all(isinstance(k, str) for k in allowed),
        f"resume.allow_changes = {allowed!r}: a list of setting names, e.g. [optim.lr]",
    )


def check_loss(loss: dict) -> None:
    one_of(loss.get("type", "charbonnier"), "loss.type", tuple(LOSSES))
    number(loss.get("eps", 1e-3), "loss.eps", positive=True)
    one_of(loss.get("domain", "residual"), "loss.domain", ("residual", "image"))
    for head, w in mapping(loss.get("weights"), "loss.weights").items():
        number(w, f"loss.weights.{head}", lo=0)
    units = loss.get("sigma_units") or []
    require(
        isinstance(units, list) and all(isinstance(u, str) for u in units),
        f"loss.sigma_units = {units!r}: a list of heads (or 'full')",
    )
    number(loss.get("full", 0.0) or 0.0, "loss.full", lo=0)
    integer(loss.get("border", 0) or 0, "loss.border", 0)


def check_optim(optim: dict) -> None:
    number(optim.get("lr", 2e-4), "optim.lr", positive=True)
    number(optim.get("weight_decay", 0.0), "optim.weight_decay", lo=0)
    numbers(optim.get("betas", [0.9, 0.99]), "optim.betas", 2, lo=0, hi=1)
    integer(optim.get("warmup_steps", 0), "optim.warmup_steps", 0)
    number(optim.get("min_lr_ratio", 0.0), "optim.min_lr_ratio", lo=0, hi=1)
    one_of(optim.get("fused", "auto"), "optim.fused", ("auto", True, False))


def check_val(val: dict) -> None:
    numbers(val.get("iso_bins", []), "val.iso_bins", lo=0)
    integer(val.get("panel_every", 1), "val.panel_every", 0)
    integer(val.get("panel_samples", 4), "val.panel_samples", 1)


def check_data(data: dict) -> None:
    """What the DataModule does not check itself before it reads the dataset."""
    optional(integer, data.get("crop"), "data.crop", 1)
    integer(data.get("batch_size", 16), "data.batch_size", 1)
    optional(integer, data.get("val_batch_size"), "data.val_batch_size", 1)
    integer(data.get("num_workers", 0), "data.num_workers", 0)
    for key in ("augment", "sigma_map"):
        boolean(data.get(key, False), f"data.{key}")
    onthefly = mapping(data.get("onthefly"), "data.onthefly")
    if "enabled" in onthefly:
        boolean(onthefly["enabled"], "data.onthefly.enabled")
    for key in ("samples_per_epoch", "pool", "threads"):
        if key in onthefly:
            integer(onthefly[key], f"data.onthefly.{key}", 1)
    if "prefetch" in onthefly:
        integer(onthefly["prefetch"], "data.onthefly.prefetch", 0)
    if "cache_gb" in onthefly:
        number(onthefly["cache_gb"], "data.onthefly.cache_gb", lo=0)
