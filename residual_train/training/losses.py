"""The training criterion (``loss._target_``): one pointwise loss per head, weighted.

Per head ``h`` with weight ``w_h``:
* residual domain: ``L(R̂_h, R_h)``;
* image domain: ``L(x + R̂_h, x + R_h)`` (schema v1: ``target_blur = noise`` and
  ``target_noise = blur``).
For point-wise losses the two agree up to rounding (``x`` cancels); they differ once
outputs are clipped or the loss is not point-wise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from data_gen.core.errors import InputError
from data_gen.noise import NoiseModel

# loss.type -> the mean of a pointwise penalty of the error d (eps: charbonnier's epsilon)
LOSSES = {
    "l1": lambda d, eps: d.abs().mean(),
    "l2": lambda d, eps: d.pow(2).mean(),
    "charbonnier": lambda d, eps: torch.sqrt(d * d + eps * eps).mean(),
}


def pointwise_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    if kind not in LOSSES:
        raise InputError(f"loss.type = {kind!r}: use {', '.join(LOSSES)}")
    return LOSSES[kind](pred - target, eps)


class ResidualLoss:
    """``loss(pred, batch)`` -> ``{head: loss, ["full": ...], "total": weighted sum}``.

    ``type``: a key of :data:`LOSSES`; ``domain``: ``residual`` or ``image``;
    ``weights``: per head (a head not named weighs 1); ``sigma_units``: heads (or
    ``full``) whose error is divided by the true noise level σ(signal) per pixel, so every
    ISO and brightness weighs the same (else high-ISO samples dominate the loss); ``full``:
    the weight of a term on the sum of the heads; ``border``: pixels at each patch edge
    left out (they depend on light from outside the patch)."""

    def __init__(
        self,
        heads: Sequence[str],
        type: str,
        eps: float,
        domain: str,
        weights: Mapping[str, float],
        sigma_units: Sequence[str],
        full: float,
        border: int,
    ) -> None:
        if type not in LOSSES:
            raise InputError(f"loss.type = {type!r}: use {', '.join(LOSSES)}")
        if domain not in ("residual", "image"):
            raise InputError(f"loss.domain = {domain!r}: use residual or image")
        self.heads, self.kind, self.eps, self.domain = list(heads), type, float(eps), domain
        self.head_weight = {h: float(weights.get(h, 1.0)) for h in self.heads}  # any head
        self.sigma_units = set(sigma_units)
        unknown = self.sigma_units - {*self.heads, "full"}
        if unknown:
            raise InputError(
                f"loss.sigma_units = {sorted(self.sigma_units)}: {sorted(unknown)} is neither a "
                f"head of this model ({self.heads}) nor 'full'"
            )
        self.full_weight = float(full)
        self.border = int(border)
        if self.border < 0:
            raise InputError(f"loss.border = {self.border}: a number of pixels >= 0")

    def term(self, name: str, p, t, x, sigma) -> torch.Tensor:
        if self.domain == "image":
            p, t = x + p, x + t
        if name in self.sigma_units:
            p, t = p / sigma, t / sigma
        e = self.border
        if e:
            p, t = p[..., e:-e, e:-e], t[..., e:-e, e:-e]
        return pointwise_loss(self.kind, p, t, self.eps)

    def __call__(self, pred: dict, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["x"]
        sigma = (
            NoiseModel(batch["a"], batch["b"]).std(batch["signal"]) if self.sigma_units else None
        )
        out = {h: self.term(h, pred[h], batch[f"R_{h}"], x, sigma) for h in self.heads}
        total = sum(self.head_weight[h] * out[h] for h in self.heads)
        if self.full_weight:
            target = sum(batch[f"R_{h}"] for h in self.heads)
            out["full"] = self.term("full", sum(pred.values()), target, x, sigma)
            total = total + self.full_weight * out["full"]
        out["total"] = total
        return out
