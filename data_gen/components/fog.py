"""Fog: ``I = J·t + A·(1 − t)``, ``t = exp(−β·depth)`` (:mod:`data_gen.physics.fog`);
settings ``conf/component/fog.yaml``; needs depth."""

from __future__ import annotations

import numpy as np
from pydantic import model_validator

from data_gen.components import register
from data_gen.components.base import BatchContext, Component, DrawContext
from data_gen.core.typed import Number, Range, Settings, check
from data_gen.physics.depth import check_depth
from data_gen.physics.fog import add_fog, draw_fog, estimate_transmission, transmission


class FogSettings(Settings):
    beta: Range  # scattering coefficient, 1/m, log-uniform
    airlight: Range  # airlight grey level
    tint: Number  # ... times 1 ± tint per channel

    @model_validator(mode="after")
    def _physical(self):
        check(self.beta[0] > 0, f"beta = {list(self.beta)}: β > 0 (1/m; drawn log-uniformly)")
        check(self.airlight[0] > 0, f"airlight = {list(self.airlight)}: must be > 0")
        check(0 <= self.tint < 1, f"tint = {self.tint}: must be in [0, 1)")
        return self


@register
class Fog(Component):
    name = "fog"
    order = 1
    transport = "gain"
    needs_depth = True
    settings_model = FogSettings

    def meta_fields(self, channels: int) -> list[tuple]:
        return [("fog_beta", "<f4"), ("fog_airlight", "<f4", (channels,))]

    def draw(self, rng: np.random.Generator, ctx: DrawContext) -> tuple[dict, dict]:
        s = self.settings
        d = draw_fog(rng, s.beta, s.airlight, s.tint, ctx.channels)
        return d, {"fog_beta": d["beta"], "fog_airlight": d["airlight"]}

    def prepare(self, params: dict, depth: np.ndarray | None, shape: tuple[int, int]) -> dict:
        check_depth(depth, shape)
        return {"t": transmission(depth, params["beta"]), "airlight": params["airlight"]}

    @staticmethod
    def slope(before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """The local slope ``(H, W)`` of ``after`` against ``before`` (``(C, H, W)``), from the
        images alone: what later blurs follow when this component is corrected."""
        return estimate_transmission(before, after)

    def apply(self, x: np.ndarray, prepared: dict) -> np.ndarray:
        return add_fog(x, prepared["t"], prepared["airlight"])

    def prepare_batch(self, params: list[dict], batch: BatchContext, backend):
        t = np.stack([transmission(d, p["beta"]) for p, d in zip(params, batch.depth, strict=True)])
        a = np.stack([np.asarray(p["airlight"], np.float32) for p in params])
        return backend.asarray(t[:, None]), backend.asarray(a[:, :, None, None])

    def apply_batch(self, x, prepared, backend):
        t, a = prepared
        return x * t + a * (1 - t)
