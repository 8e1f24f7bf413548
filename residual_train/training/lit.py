"""LightningModule: losses per head, AdamW + warm-up/cosine, per-component metrics.

Loss, per head ``h`` with weight ``w_h``:
* residual domain: ``L(R̂_h, R_h)``;
* image domain: ``L(x + R̂_h, x + R_h)`` (schema v1: ``target_blur = noise`` and
  ``target_noise = blur``).
For point-wise losses the two agree up to rounding (``x`` cancels); they differ once
outputs are clipped or the loss is not point-wise.

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

from data_gen.errors import InputError
from data_gen.noise import NoiseModel
from residual_train.models import build_model

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


# loss.type -> the mean of a pointwise penalty of the error d (eps: charbonnier's epsilon)
LOSSES = {
    "l1": lambda d, eps: d.abs().mean(),
    "l2": lambda d, eps: d.pow(2).mean(),
    "charbonnier": lambda d, eps: torch.sqrt(d * d + eps * eps).mean(),
}


def pointwise_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    loss = LOSSES.get(kind)
    if loss is None:
        raise InputError(f"loss.type = {kind!r}: use {', '.join(LOSSES)}")
    return loss(pred - target, eps)


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
        self.loss_cfg, self.optim_cfg, self.val_cfg = loss, optim, val
        weights = loss.get("weights") or {}
        self.head_weight = {h: float(weights.get(h, 1.0)) for h in self.heads}
        self.sigma_units = set(loss.get("sigma_units") or ())
        unknown = self.sigma_units - {*self.heads, "full"}
        if unknown:
            raise InputError(
                f"loss.sigma_units = {sorted(self.sigma_units)}: {sorted(unknown)} is neither a "
                f"head of this model ({self.heads}) nor 'full'"
            )
        self.full_weight = float(loss.get("full", 0.0) or 0.0)
        self.border = int(loss.get("border", 0) or 0)
        if self.border < 0:
            raise InputError(f"loss.border = {self.border}: a number of pixels >= 0")
        self.run_dir = Path(run_dir) if run_dir else None
        self.iso_edges = [float(e) for e in val.get("iso_bins", [])]
        self.iso_names = iso_bin_names(self.iso_edges)
        self._acc: dict[str, torch.Tensor] = {}
        self._panel_batch: dict | None = None

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, field: torch.Tensor | None = None
    ):
        return self.net(x, sigma, field)

    def field(self, batch: dict) -> torch.Tensor | None:
        """The position maps of a batch for a field-aware model: constant over each patch
        (one bank PSF per patch, ``batch['psf_index']``); None for other models."""
        if not self.net.field_kernels:
            return None
        if "psf_index" not in batch:
            raise InputError(
                "model.field_kernels: the batch has no psf_index (the data module gives it "
                "with psf_index=True; training sets it for such models)"
            )
        h, w = batch["x"].shape[-2:]
        return self.net.field_of(batch["psf_index"], h, w)

    def predict_batch(self, batch: dict) -> dict[str, torch.Tensor]:
        return self(batch["x"], batch.get("sigma"), self.field(batch))

    def losses(self, batch: dict, pred: dict | None = None) -> dict[str, torch.Tensor]:
        if pred is None:
            pred = self.predict_batch(batch)
        kind, eps = self.loss_cfg.get("type", "charbonnier"), float(self.loss_cfg.get("eps", 1e-3))
        domain = self.loss_cfg.get("domain", "residual")
        if domain not in ("residual", "image"):
            raise InputError(f"loss.domain = {domain!r}: use residual or image")
        x = batch["x"]
        # σ units: the error divided by the true noise level σ(signal) of each pixel, so every
        # ISO and brightness weighs the same (else high-ISO samples dominate the loss)
        sigma = (
            NoiseModel(batch["a"], batch["b"]).std(batch["signal"]) if self.sigma_units else None
        )

        e = self.border  # pixels near a patch edge depend on light from outside the patch

        def term(name: str, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if domain == "image":
                p, t = x + p, x + t
            if name in self.sigma_units:
                p, t = p / sigma, t / sigma
            if e:
                p, t = p[..., e:-e, e:-e], t[..., e:-e, e:-e]
            return pointwise_loss(kind, p, t, eps)

        out = {h: term(h, pred[h], batch[f"R_{h}"]) for h in self.heads}
        total = sum(self.head_weight[h] * out[h] for h in self.heads)
        if self.full_weight:
            target = sum(batch[f"R_{h}"] for h in self.heads)
            out["full"] = term("full", sum(pred.values()), target)
            total = total + self.full_weight * out["full"]
        out["total"] = total
        return out

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
            n = self.val_cfg.get("panel_samples", 4)
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
        every = int(self.val_cfg.get("panel_every", 0) or 0)
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
        o = self.optim_cfg
        fused = o.get("fused", "auto")
        if fused not in (True, False, "auto"):
            raise InputError(f"optim.fused = {fused!r}: true, false or auto")
        # Lightning refuses gradient clipping with an optimizer that unscales gradients
        # itself (a fused one) under mixed precision
        clip = bool(self.trainer.gradient_clip_val) if self._trainer is not None else False
        mixed = "mixed" in str(self.trainer.precision) if self._trainer is not None else False
        if fused is True and clip and mixed:
            raise InputError(
                "optim.fused = true: Lightning cannot clip gradients "
                f"(trainer.gradient_clip_val = {self.trainer.gradient_clip_val}) with a fused "
                f"optimizer under trainer.precision = {self.trainer.precision}; use "
                "optim.fused=auto or trainer.gradient_clip_val=0"
            )
        if fused == "auto":  # one kernel for the whole update on a GPU, where allowed
            fused = self.device.type == "cuda" and not (clip and mixed)
        opt = torch.optim.AdamW(
            self.parameters(),
            lr=float(o.get("lr", 2e-4)),
            weight_decay=float(o.get("weight_decay", 1e-4)),
            betas=tuple(o.get("betas", (0.9, 0.99))),
            fused=bool(fused),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = int(o.get("warmup_steps", 0))
        floor = float(o.get("min_lr_ratio", 0.01))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = min(1.0, (step - warm) / max(1, total - warm))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
