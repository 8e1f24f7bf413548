"""Relight: ``S' = G ⊙ S``, a smooth positive gain of broad Gaussian lights over an ambient
level (:mod:`data_gen.physics.relight`); settings ``conf/component/relight.yaml``."""

from __future__ import annotations

import numpy as np
from pydantic import model_validator

from data_gen.components import register
from data_gen.components.base import BatchContext, Component, DrawContext
from data_gen.core.typed import IntRange, Range, Settings, check
from data_gen.physics.relight import draw_relight, estimate_gain, gain_map, relight


class RelightSettings(Settings):
    lights: IntRange  # number of lights, [min, max]
    ambient: Range  # gain everywhere, > 0
    amplitude: Range  # peak gain each light adds, >= 0
    width: Range  # Gaussian width, fraction of the frame diagonal, > 0

    @model_validator(mode="after")
    def _physical(self):
        check(self.lights[0] >= 0, f"lights = {list(self.lights)}: counts must be >= 0")
        check(self.ambient[0] > 0, f"ambient = {list(self.ambient)}: the gain must be > 0")
        check(self.amplitude[0] >= 0, f"amplitude = {list(self.amplitude)}: must be >= 0")
        check(self.width[0] > 0, f"width = {list(self.width)}: widths must be > 0")
        return self


@register
class Relight(Component):
    name = "relight"
    order = 0
    transport = "gain"
    settings_model = RelightSettings

    @property
    def rows(self) -> int:
        """Light rows stored per sample (unused rows have amplitude 0)."""
        return max(1, self.settings.lights[1])

    def meta_fields(self, channels: int) -> list[tuple]:
        return [("relight_ambient", "<f4"), ("relight_lights", "<f4", (self.rows, 4))]

    def draw(self, rng: np.random.Generator, ctx: DrawContext) -> tuple[dict, dict]:
        s = self.settings
        d = draw_relight(rng, s.lights, s.ambient, s.amplitude, s.width)
        top, left, h, w = ctx.window
        g = gain_map((h, w), d["ambient"], d["lights"], ctx.frame_hw, (top, left))
        rows = np.zeros((self.rows, 4), np.float32)
        rows[:, 2] = 1.0  # unused rows: lights of amplitude 0 (no gain)
        rows[: len(d["lights"])] = d["lights"]
        return {"gain": g}, {"relight_ambient": d["ambient"], "relight_lights": rows}

    @staticmethod
    def slope(before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """The local slope ``(H, W)`` of ``after`` against ``before`` (``(C, H, W)``), from the
        images alone: what later blurs follow when this component is corrected."""
        return estimate_gain(before, after)

    def apply(self, x: np.ndarray, prepared: dict) -> np.ndarray:
        return relight(x, prepared["gain"])

    def prepare_batch(self, params: list[dict], batch: BatchContext, backend):
        return backend.asarray(np.stack([p["gain"] for p in params])[:, None])

    def apply_batch(self, x, gain, backend):
        return x * gain
