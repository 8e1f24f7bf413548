"""Sensor noise, always last: ``n = σ(s)·r`` with ``σ²(v) = A·max(v, 0) + B`` per channel at
the sample's ISO (:class:`data_gen.noise.NoiseModel`; settings are the sensor's,
``conf/sensor/``). One realisation ``r`` per sample is shared by every rendering of it that
keeps the noise (:mod:`data_gen.chain`); its standard normals are the last draws of a
sample."""

from __future__ import annotations

from data_gen.components import register
from data_gen.components.base import Component


@register
class Noise(Component):
    name = "noise"
    order = 5
    transport = "signal"
    before_is_without = True

    @classmethod
    def orientation_free(cls, noise_kind: type | None) -> bool:
        """As the sensor's noise kind is (the default's pixel-independent noise is)."""
        return bool(getattr(noise_kind, "orientation_free", False))

    @staticmethod
    def sample(signal, model, normal):
        """One realisation ``σ(signal)·r`` (numpy or torch, same shape)."""
        return model.sample(signal, normal)
