"""LightningModule: the network, its criterion, optimiser and schedule built from their
``_target_`` (Hydra), and per-component metrics.

The losses are :class:`~residual_train.training.losses.ResidualLoss` (``loss._target_``).

Validation PSNR (data range 1 = white level), mean over samples, per head ``h``:
``psnr_<h>`` = PSNR(x + R̂_h, x + R_h) (that component corrected, the others kept; schema
v1: ``psnr_blur`` = PSNR(x + R̂_b, noise), ``psnr_noise`` = PSNR(x + R̂_n, blur)) and
``psnr_full`` = PSNR(x + Σ R̂, clean), each with the input's own PSNR (``*_input``) for
reference, ``psnr_full`` also per ISO bin.
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from data_gen.core.errors import InputError
from residual_train.models import build_model
from residual_train.training.losses import LOSSES, pointwise_loss  # noqa: F401 (their home)
from residual_train.training.settings import (
    LossSettings,
    OptimSettings,
    ValSettings,
    build,
    completed,
    parse,
)

# validation metrics are summed over ranks by hand (strategy.reduce) before self.log, so
# Lightning's advice to pass sync_dist=True does not apply
warnings.filterwarnings("ignore", message=r".*self\.log\('val/.*sync_dist=True.*")

TARGET_IMAGE = {"blur": "noise", "noise": "blur"}  # schema v1's stored target of each head


def target_image(batch: dict, head: str) -> torch.Tensor:
    """The image with component ``head`` corrected: schema v1's stored patch, else
    ``x + R_head``."""
    key = TARGET_IMAGE.get(head)
    if key in batch:
        return batch[key]
    return batch["x"] + batch[f"R_{head}"]


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB for data range 1: ``(B, C, H, W)`` -> ``(B,)``."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return -10.0 * torch.log10(mse)


def iso_bin_names(edges: list[float]) -> list[str]:
    bounds = [0, *edges, math.inf]
    return [
        f"iso{int(lo)}-{'inf' if math.isinf(hi) else int(hi)}"
        for lo, hi in itertools.pairwise(bounds)
    ]


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """``optim.scheduler``: the learning rate rises linearly over ``warmup_steps`` (step
    ``s`` < ``warmup_steps``: ``lr·(s + 1)/warmup_steps``), then falls along a cosine to
    ``min_lr_ratio·lr`` at ``total_steps``, and stays there.

    A ``LambdaLR``, not torch's ``SequentialLR(LinearLR, CosineAnnealingLR)``, which gives
    the same warm-up but not the same schedule: (1) its cosine is computed recursively, so
    its rates differ in the last bits at almost every step (up to ~1e-12 relative over
    200k steps): a run would no longer train bit for bit as it did; (2) past
    ``total_steps`` it rises again instead of staying at the floor; (3) the checkpoints of
    runs started before hold a ``LambdaLR`` state, which ``SequentialLR.load_state_dict``
    cannot read (``KeyError: '_schedulers'``): ``ckpt_path=auto`` could not resume them."""
    warm, floor = warmup_steps, min_lr_ratio

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ResidualModule(pl.LightningModule):
    """Trains a :class:`~residual_train.models.ResidualNet` on residual targets."""

    def __init__(
        self,
        model: dict,
        channels: int,
        loss: dict,
        optim: dict,
        val: dict,
        run_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # plain dicts only: checkpoints load with weights_only
        self.net = build_model(model, channels)
        self.heads = self.net.heads
        # a checkpoint from before a setting existed: the setting at its default
        self.loss_cfg = parse(LossSettings, completed("loss", loss), "loss")
        self.optim_cfg = parse(OptimSettings, completed("optim", optim), "optim")
        self.val_cfg = parse(ValSettings, completed("val", val), "val")
        self.criterion = build(self.loss_cfg.model_dump(by_alias=True), "loss", heads=self.heads)
        self.run_dir = Path(run_dir) if run_dir else None
        self.iso_edges = [float(e) for e in self.val_cfg.iso_bins]
        self.iso_names = iso_bin_names(self.iso_edges)
        self._acc: dict[str, torch.Tensor] = {}
        self._panel_batch: dict | None = None

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, field: torch.Tensor | None = None
    ):
        return self.net(x, sigma, field)

    def field(self, batch: dict) -> torch.Tensor | None:
        """The position maps of a batch for a field-aware model, from ``batch['psf_index']``:
        constant over each patch (one bank PSF per patch, ``(B,)``) or per pixel (on the fly
        with ``psf_per=block``, ``(B, P, P)``); None for other models."""
        if not self.net.field_kernels:
            return None
        if "psf_index" not in batch:
            raise InputError(
                "model.field_kernels: the batch has no psf_index (the data module gives it "
                "with psf_index=True; training sets it for such models)"
            )
        h, w = batch["x"].shape[-2:]
        return self.net.field_of(batch["psf_index"], h, w)

    def sigma(self, batch: dict) -> torch.Tensor | None:
        """The noise-level map of a batch for a model conditioned on one
        (``batch['sigma']``); None for other models, which do not read it."""
        if not self.net.sigma_map:
            return None
        if "sigma" not in batch:
            raise InputError(
                "data.sigma_map: the batch has no sigma (the model is conditioned on a "
                "noise-level map; the data module gives it with sigma_map=True)"
            )
        return batch["sigma"]

    def predict_batch(self, batch: dict) -> dict[str, torch.Tensor]:
        return self(batch["x"], self.sigma(batch), self.field(batch))

    def losses(self, batch: dict, pred: dict | None = None) -> dict[str, torch.Tensor]:
        if pred is None:
            pred = self.predict_batch(batch)
        return self.criterion(pred, batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        b = batch["x"].shape[0]
        for k, v in losses.items():
            self.log(
                f"train/loss_{k}" if k != "total" else "train/loss",
                v,
                batch_size=b,
                prog_bar=k == "total",
            )
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=b)
        return losses["total"]

    # ---- validation -------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._acc = {
            n: torch.zeros(2, dtype=torch.float64, device=self.device) for n in self.metric_names()
        }
        self._panel_batch = None

    def metric_names(self) -> list[str]:
        """Every accumulated metric; the same on every rank (one all-reduce each)."""
        names = [f"psnr_{h}{s}" for h in self.heads for s in ("", "_input")]
        for base in ("psnr_full", "psnr_full_input"):
            names += [base, *(f"{base}/{b}" for b in self.iso_names)]
        return names

    def _add(self, name: str, values: torch.Tensor) -> None:
        """Accumulate (sum, count) of per-sample values."""
        s = torch.stack(
            [values.double().sum(), values.new_tensor(values.numel(), dtype=torch.float64)]
        )
        self._acc[name] = self._acc[name] + s

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x = batch["x"]
        pred = self.predict_batch(batch)
        losses = self.losses(batch, pred)
        self.log("val/loss", losses["total"], batch_size=x.shape[0], sync_dist=True)
        metrics = {}
        for h in self.heads:
            target = target_image(batch, h)
            metrics[f"psnr_{h}"] = psnr(x + pred[h], target)
            metrics[f"psnr_{h}_input"] = psnr(x, target)
        full = x + sum(pred.values())
        metrics["psnr_full"] = psnr(full, batch["clean"])
        metrics["psnr_full_input"] = psnr(x, batch["clean"])
        bins = torch.bucketize(
            batch["iso"].float(), torch.tensor(self.iso_edges, device=x.device), right=True
        )
        for name, v in metrics.items():
            self._add(name, v)
            if name in ("psnr_full", "psnr_full_input"):
                for i, bin_name in enumerate(self.iso_names):
                    self._add(f"{name}/{bin_name}", v[bins == i])
        if batch_idx == 0:
            n = self.val_cfg.panel_samples
            self._panel_batch = {k: v[:n].detach().cpu() for k, v in batch.items()}
            self._panel_batch["pred"] = {k: v[:n].detach().cpu() for k, v in pred.items()}

    def on_validation_epoch_end(self) -> None:
        for name in self.metric_names():  # same order on every rank
            s = self.trainer.strategy.reduce(self._acc[name], reduce_op="sum")
            if s[1] > 0:
                # already summed over ranks above: every rank logs the same value
                self.log(
                    f"val/{name}",
                    (s[0] / s[1]).float(),
                    sync_dist=False,
                    prog_bar=name == "psnr_full",
                )
        every = self.val_cfg.panel_every
        if (
            every
            and self._panel_batch is not None
            and self.trainer.is_global_zero
            and not self.trainer.sanity_checking
            and self.current_epoch % every == 0
        ):
            self._save_panel()

    def _save_panel(self) -> None:
        from residual_train.training.panels import residual_panel

        img = residual_panel(self._panel_batch)
        if self.run_dir is not None:
            out = self.run_dir / "panels" / f"epoch{self.current_epoch:04d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            img.save(out)
        arr = np.asarray(img)
        for logger in self.loggers:
            exp = getattr(logger, "experiment", None)
            if hasattr(exp, "add_image"):  # TensorBoard
                exp.add_image("val/panel", arr, self.global_step, dataformats="HWC")
            elif hasattr(logger, "log_image"):  # wandb
                logger.log_image("val/panel", [arr], step=self.global_step)

    # ---- optimisation -----------------------------------------------------------------
    def configure_optimizers(self):
        """``optim._target_`` called with the parameters (``fused`` resolved), and
        ``optim.scheduler._target_`` called with it, stepped every step."""
        o = self.optim_cfg
        opt = build(o.optimizer_kwargs(), "optim")
        try:
            opt = opt(self.parameters(), fused=self.fused())
        except TypeError as e:  # a keyword argument the optimiser does not take
            raise InputError(f"optim: {o.target}: {e}") from None
        sched = build(o.scheduler.model_dump(by_alias=True), "optim.scheduler")(
            opt,
            total_steps=max(1, int(self.trainer.estimated_stepping_batches)),
            warmup_steps=o.warmup_steps,
            min_lr_ratio=o.min_lr_ratio,
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def fused(self) -> bool:
        """``optim.fused``: ``auto`` is one kernel for the whole update on a GPU, unless
        Lightning must clip gradients under mixed precision (it refuses a fused optimizer
        there, which unscales gradients itself)."""
        fused = self.optim_cfg.fused
        clip = bool(self.trainer.gradient_clip_val) if self._trainer is not None else False
        mixed = "mixed" in str(self.trainer.precision) if self._trainer is not None else False
        if fused is True and clip and mixed:
            raise InputError(
                "optim.fused = true: Lightning cannot clip gradients "
                f"(trainer.gradient_clip_val = {self.trainer.gradient_clip_val}) with a fused "
                f"optimizer under trainer.precision = {self.trainer.precision}; use "
                "optim.fused=auto or trainer.gradient_clip_val=0"
            )
        if fused == "auto":
            fused = self.device.type == "cuda" and not (clip and mixed)
        return bool(fused)
