"""The protocol of a sensor-noise kind (``sensor.noise=<name>``; docs/design.md §10).

A kind is how the noise component draws its realisation ``n`` of one sample; the noise
*level* the composition, the σ maps and the losses use stays ``σ²(v) = A·max(v, 0) + B``
(:class:`data_gen.noise.NoiseModel`) with ``B`` the kind's total signal-independent
variance (:meth:`NoiseKind.total_variance`). A kind:

* owns some keys of the sensor config (:attr:`NoiseKind.keys`: they count in a dataset's
  config hash only when the kind is chosen);
* reports its **total signal-independent variance** per colour at an ISO, from the
  sensor's ``b`` (the temporal part photon transfer and dark frames measure);
* **draws** one sample's parameters from the sample's generator, after every existing
  draw (crop, exposure, ISO, PSF, the components, the normals), so the default's draw
  order is unchanged; the per-photosite uniform field it may need (:attr:`fields`) is drawn
  after them (from the sample's generator, or the batch's device generator);
* knows the ``meta`` fields of those parameters;
* **samples** the realisation of a batch (or of one image) from the signal, the standard
  normals and its draws, on numpy or torch with the same operations (per-sample
  parameters; packed Bayer planes are photosites: the noise is added after mosaicking).

Kinds are found by name in :data:`data_gen.noise_kinds.KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from data_gen.cfa import PLANE_COLOUR, plane_offsets
from data_gen.core.typed import KindSettings, Text


@dataclass(frozen=True)
class NoiseContext:
    """What one sample's noise draw sees: its ``iso``; the patch's top-left ``(y, x)`` and
    size ``hw`` (photosites) in a frame of ``frame_hw``; the CFA of packed Bayer planes
    (``None``: RGB channels) and the colour channels of the sensor model."""

    iso: float
    y: int
    x: int
    hw: tuple[int, int]
    frame_hw: tuple[int, int]
    cfa: str | None
    channels: int

    @property
    def stored(self) -> tuple[int, int, int]:
        """The stored shape ``(C', h', w')`` of the sample's noise."""
        h, w = self.hw
        return (4, h // 2, w // 2) if self.cfa else (self.channels, h, w)

    @property
    def colour(self) -> list[int]:
        """Colour channel of the sensor model behind each stored channel."""
        return list(PLANE_COLOUR) if self.cfa else list(range(self.channels))

    @property
    def plane(self) -> list[int]:
        """Bayer plane (R, Gr, Gb, B) behind each stored channel: the planes themselves, or
        for RGB R, Gr, B (a calibration's per-plane data taken pattern-aligned)."""
        return [0, 1, 2, 3] if self.cfa else [0, 1, 3][: self.channels]

    @property
    def row_layout(self) -> tuple[list[int], int]:
        """``(dy, step)``: stored row ``i`` of channel ``k`` is sensor row ``i·step + dy[k]``."""
        if self.cfa:
            return [dy for dy, _ in plane_offsets(self.cfa)], 2
        return [0] * self.channels, 1


class NoiseKeys(KindSettings):
    """The noise kinds' keys of a sensor config (each kind reads those in its ``keys``)."""

    noise: Text | None = None  # the kind (null: the default, poisson_gaussian)
    physical: Any = None  # physical's settings (PhysicalSettings)
    dark: Any = None  # a calibration's dark.json (physical, dark_frames)
    dark_frames: Any = None  # dark_frames's settings (DarkFramesSettings)


class NoiseKind:
    """Base of every kind (module docstring); the default draws nothing and samples
    ``σ(s)·r``."""

    name: ClassVar[str]
    keys: ClassVar[tuple[str, ...]] = ()  # sensor config keys this kind reads
    fields: ClassVar[tuple[str, ...]] = ()  # per-photosite fields beside the normals
    # the noise of every photosite independent of where it lies and of its neighbours (the
    # default ``σ(s)·r``): a frame flipped or turned a quarter has noise of the same law
    orientation_free: ClassVar[bool] = True

    def total_variance(self, iso: float, b: np.ndarray) -> np.ndarray:
        """``B`` per colour ``(C,)`` (normalised) at ``iso``, given the sensor's ``b``."""
        return b

    def meta_fields(self, stored_channels: int) -> list[tuple]:
        return []

    def draw(self, rng: np.random.Generator, ctx: NoiseContext) -> tuple[dict, dict]:
        """One sample's ``(draws, record)``: arrays ``sample`` takes (stacked over a batch)
        and the ``meta`` values."""
        return {}, {}

    def sample(self, signal, model, normal, draws: dict[str, Any]):
        """The realisation ``n`` (same shape and type as ``signal``: ``(C', H, W)`` or
        ``(B, C', H, W)``, numpy or torch; ``draws`` stacked likewise). ``model``: the
        :class:`~data_gen.noise.NoiseModel` of the signal (``A``, and ``B`` total)."""
        return model.sample(signal, normal)

    @property
    def default(self) -> bool:
        """Whether this is the byte-identical default (draws and stores nothing extra)."""
        return False
