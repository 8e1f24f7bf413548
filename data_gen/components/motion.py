"""Camera shake: random constant-speed trajectories (``source: random``) or one of the kernels
of a file such as Levin et al.'s (``source: file``) (:mod:`data_gen.physics.motion`);
settings ``conf/component/motion.yaml``."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import model_validator

from data_gen.backend import conv_same, fft_size
from data_gen.components import register
from data_gen.components.base import BatchContext, Component, DrawContext
from data_gen.core.errors import require
from data_gen.core.typed import Integer, Range, Settings, Text, check
from data_gen.physics.convolve import blur_image
from data_gen.physics.motion import draw_motion, load_kernels


class MotionSettings(Settings):
    source: Literal["random", "file"]
    length: Range  # path length in px (source = random)
    steps: Integer  # trajectory steps
    kernels: Text | None = None  # .npz path (source = file)

    @model_validator(mode="after")
    def _physical(self):
        check(self.length[0] > 0, f"length = {list(self.length)}: must be > 0 px")
        check(self.steps >= 2, f"steps = {self.steps}: an integer >= 2")
        return self


@register
class Motion(Component):
    name = "motion"
    order = 4
    transport = "spread"
    settings_model = MotionSettings

    def __init__(self, settings: MotionSettings) -> None:
        super().__init__(settings)
        self.kernels: dict[str, np.ndarray] | None = None
        if settings.source == "file":
            require(
                settings.kernels not in (None, ""),
                "component.motion.source = file: give component.motion.kernels=FILE.npz",
            )
            self.kernels = load_kernels(settings.kernels)
            require(
                bool(self.kernels),
                f"component.motion.kernels = {settings.kernels}: the file holds no kernel",
            )

    @property
    def half(self) -> int:
        """Half the side of the largest kernel, pixels."""
        if self.kernels is not None:
            return max(max(k.shape) for k in self.kernels.values()) // 2
        # trajectory_kernel: side 2·ceil(extent) + 3, extent <= length from the centroid
        return math.ceil(self.settings.length[1]) + 1

    @property
    def side(self) -> int:
        return 2 * self.half + 1

    def margin(self, lens_size: int) -> int:
        return self.half

    def meta_fields(self, channels: int) -> list[tuple]:
        k = self.side
        return [("motion_length", "<f4"), ("motion_index", "<i4"), ("motion_kernel", "<f4", (k, k))]

    def draw(self, rng: np.random.Generator, ctx: DrawContext) -> tuple[dict, dict]:
        if self.kernels is not None:
            names = sorted(self.kernels)
            i = int(rng.integers(len(names)))
            k, length = self.kernels[names[i]], math.nan
        else:
            d = draw_motion(rng, self.settings.length, self.settings.steps)
            i, k, length = -1, d["kernel"], d["length"]
        padded = np.zeros((self.side, self.side), np.float32)
        ky, kx = k.shape
        oy, ox = (self.side - ky) // 2, (self.side - kx) // 2
        padded[oy : oy + ky, ox : ox + kx] = k
        rec = {"motion_length": length, "motion_index": i, "motion_kernel": padded}
        return {"kernel": padded}, rec

    def apply(self, x: np.ndarray, prepared: dict) -> np.ndarray:
        return blur_image(x, prepared["kernel"])

    def prepare_batch(self, params: list[dict], batch: BatchContext, backend):
        n = fft_size(max(batch.shape))
        kernels = np.stack([p["kernel"] for p in params])[:, None]  # (B, 1, k, k)
        return backend.kernel_spectrum(kernels, n), self.half

    def apply_batch(self, x, prepared, backend):
        spec, r = prepared
        return conv_same(backend, x, spec, r)

    def kernel(self, prepared):
        return prepared
