"""Sensor-noise kinds, one object each, found by name (``sensor.noise=<name>``;
:data:`KINDS`): ``poisson_gaussian`` (the default), ``physical``, ``dark_frames``.

:class:`~data_gen.noise_kinds.base.NoiseKind` is the protocol. A kind is built with the
sensor (:func:`build_noise_kind`, called by :func:`data_gen.sensor.build_sensor`); the
renderers draw a sample's noise with :func:`draw_noise` after every other draw, stack a
batch's draws with :func:`batch_draws` and let the kind sample the realisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from data_gen.core.errors import require
from data_gen.core.typed import parse
from data_gen.noise_kinds.base import NoiseContext, NoiseKeys, NoiseKind

KINDS: dict[str, type[NoiseKind]] = {}
DEFAULT = "poisson_gaussian"


def register(cls: type[NoiseKind]) -> type[NoiseKind]:
    """Class decorator: make kind ``cls`` known by its ``name``."""
    require(cls.name not in KINDS, f"noise kind {cls.name!r} is registered twice")
    KINDS[cls.name] = cls
    return cls


def kind_name(sensor_cfg: Mapping | None) -> str:
    """The kind a sensor config names (absent or null: the default)."""
    name = parse(NoiseKeys, sensor_cfg, "sensor").noise
    return DEFAULT if name is None else name


def default_kind() -> NoiseKind:
    """The default kind (Poisson–Gaussian: ``n = σ(s)·r``)."""
    return KINDS[DEFAULT]()


def build_noise_kind(keys: NoiseKeys, sensor, channels: int, where: str = "sensor") -> NoiseKind:
    """The kind ``keys.noise`` names (null: the default), built for ``sensor`` (refused in
    one line when unknown or badly set)."""
    name = DEFAULT if keys.noise is None else keys.noise
    require(name in KINDS, f"{where}.noise = {name!r}: use one of {', '.join(KINDS)}")
    return KINDS[name].build(keys, sensor, channels, where)


def unhashed_keys(sensor_cfg: Mapping | None) -> set[str]:
    """Sensor keys that do not count in a dataset's config hash: every kind's keys unless
    that kind is chosen, and ``noise`` itself when it is the default (so datasets made
    before the kinds existed keep their hash)."""
    name = kind_name(sensor_cfg)
    chosen = set(KINDS[name].keys) if name in KINDS else set()
    drop = {k for c in KINDS.values() for k in c.keys} - chosen
    return drop | ({"noise"} if name == DEFAULT else set())


def draw_noise(kind: NoiseKind, rng: np.random.Generator, ctx: NoiseContext,
               fields: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """One sample's noise draws from its generator, after its normals: the kind's
    parameters, then (``fields``) its per-photosite uniforms ``(C', h', w')`` float32 (the
    device renderer draws those from its own generator instead)."""
    draws, record = kind.draw(rng, ctx)
    if fields:
        for name in kind.fields:
            draws[name] = rng.random(ctx.stored, dtype=np.float32)
    return draws, record


def batch_draws(draws: list[dict], backend, fields: dict | None = None) -> dict:
    """Each key's per-sample arrays stacked ``(B, ...)`` on the backend; ``fields``: arrays
    already on it (the device's uniforms)."""
    out = {k: backend.asarray(np.stack([d[k] for d in draws])) for k in (draws[0] if draws else {})}
    out.update(fields or {})
    return out


# the kinds (each module registers its class)
from data_gen.noise_kinds import dark_frames, physical, poisson_gaussian  # noqa: E402

__all__ = [
    "DEFAULT",
    "KINDS",
    "NoiseContext",
    "NoiseKind",
    "batch_draws",
    "build_noise_kind",
    "dark_frames",
    "default_kind",
    "draw_noise",
    "kind_name",
    "physical",
    "poisson_gaussian",
    "unhashed_keys",
]
