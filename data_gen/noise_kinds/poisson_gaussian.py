"""``sensor.noise=poisson_gaussian`` (the default): ``n = σ(s)·r`` with
``σ²(v) = A·max(v, 0) + B``, the normals the only draws — exactly the noise step every
dataset before the noise kinds existed was rendered with (same bytes, same config hash)."""

from __future__ import annotations

from data_gen.noise_kinds import register
from data_gen.noise_kinds.base import NoiseKeys, NoiseKind


@register
class PoissonGaussian(NoiseKind):
    name = "poisson_gaussian"

    @classmethod
    def build(cls, keys: NoiseKeys, sensor, channels: int, where: str) -> PoissonGaussian:
        return cls()

    @property
    def default(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "PoissonGaussian()"
