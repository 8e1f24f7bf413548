"""The protocol every degradation component implements (docs/design.md §9).

A component is one physical model — relight, fog, defocus, lens blur, camera shake, sensor
noise — and one object owns everything about it:

* its **settings** (a :class:`~data_gen.core.typed.Settings` model; the defaults live in
  ``conf/component/<name>.yaml``, lens blur's in ``conf/lens/``, noise's in
  ``conf/sensor/``) and the resources they name (kernel files);
* its **place** in the physical order (:attr:`Component.order`) and whether it needs depth;
* the frame **margin** its support needs around a patch;
* the **parameters it draws** per sample (:meth:`Component.draw`, from the sample's own
  generator, in physical order after the crop, exposure, ISO and lens PSF) and their
  ``meta`` fields;
* how it **applies** to an image: :meth:`Component.prepare` + :meth:`Component.apply` on
  one ``(C, H, W)`` numpy image (the reference), :meth:`Component.prepare_batch` +
  :meth:`Component.apply_batch` on a ``(B, C, H, W)`` batch with per-sample parameters on
  any :class:`~data_gen.backend.Backend` (numpy with scipy's FFT, or torch on a CPU or
  GPU);
* how its **residual transports** when earlier components are corrected
  (:attr:`Component.transport`, used by the composition,
  :mod:`residual_train.deploy.compose`):

  - ``gain``: a pointwise affine map with smooth coefficients (relight ``G·x``, fog
    ``t·x + A(1 − t)``); its slope is what later blurs follow;
  - ``spread``: a local blur (defocus, lens blur, camera shake): light is spread in
    proportion to the brightness, so its residual follows the slope of the earlier smooth
    corrections (``B(G·S) ≈ G·B(S)``);
  - ``signal``: signal-dependent noise: re-scaled by ``σ(after)/σ(before)``.

Components are found by name in :data:`data_gen.components.REGISTRY`; adding one is a new
module in this package, its YAML and its tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from data_gen.core.typed import Settings, parse

Transport = Literal["gain", "spread", "signal"]


class NoSettings(Settings):
    """A component whose settings live elsewhere (lens blur: ``lens``; noise: ``sensor``)."""


@dataclass(frozen=True)
class DrawContext:
    """What a component's draw sees of one sample: the frame size ``(H, W)``, the rendered
    window ``(top, left, height, width)`` in it, the window's depth (metres, or None), the
    sample's lens PSF ``(C, K, K)`` and the number of colour channels; for a whole frame
    through a field-varying lens, ``psf_field`` = (the bank's PSFs ``(M, C, K, K)``, the
    bank index of every pixel of the window ``(H, W)``)."""

    frame_hw: tuple[int, int]
    window: tuple[int, int, int, int]
    depth: np.ndarray | None
    psf: np.ndarray
    channels: int
    psf_field: tuple[np.ndarray, np.ndarray] | None = None


class Component:
    """Base of every component (module docstring). Subclasses set the class attributes and
    override what they need; a component with no parameters and no margin needs little."""

    name: ClassVar[str]
    order: ClassVar[int]  # position in the physical order (smaller = met first)
    transport: ClassVar[Transport]
    needs_depth: ClassVar[bool] = False
    # its ``before`` target is its ``without`` target (added last, onto the final signal):
    # stored once, as ``without_<name>``
    before_is_without: ClassVar[bool] = False
    settings_model: ClassVar[type[Settings]] = NoSettings

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def build(cls, cfg: Mapping | None, where: str | None = None) -> Component:
        """The component with its settings checked (one line names a bad key)."""
        return cls(parse(cls.settings_model, cfg, where or f"component.{cls.name}"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    # ---- geometry and records ---------------------------------------------------------
    def margin(self, lens_size: int) -> int:
        """Frame pixels a patch needs on every side for this component's support."""
        return 0

    @classmethod
    def orientation_free(cls, noise_kind: type | None) -> bool:
        """Whether this degradation looks the same in a frame flipped or turned a quarter
        (no direction, no position: a head estimating it may be run on views training never
        showed, :mod:`residual_train.deploy.ensemble`). ``noise_kind``: the class of the
        sensor's :class:`~data_gen.noise_kinds.base.NoiseKind`. Blurs have a direction."""
        return False

    def meta_fields(self, channels: int) -> list[tuple]:
        """The ``meta`` fields (numpy dtype entries) of this component's drawn parameters."""
        return []

    def draw(self, rng: np.random.Generator, ctx: DrawContext) -> tuple[dict, dict]:
        """One sample's parameters from its generator: ``(params, record)`` — ``params``
        as :meth:`prepare` takes them, ``record`` the ``meta`` values."""
        return {}, {}

    # ---- the numpy reference, one image ------------------------------------------------
    def prepare(self, params: dict, depth: np.ndarray | None, shape: tuple[int, int]) -> Any:
        """What :meth:`apply` needs, computed once per sample from its draws and depth
        (``shape``: the window's ``(H, W)``)."""
        return params

    def apply(self, x: np.ndarray, prepared: Any) -> np.ndarray:
        """The component on one image ``(C, H, W)`` float32 (same size)."""
        raise NotImplementedError(f"{self.name} is not applied to an image")

    # ---- batched, any backend ---------------------------------------------------------
    def prepare_batch(self, params: list[dict], batch: BatchContext, backend) -> Any:
        """What :meth:`apply_batch` needs for a batch: by default each sample's
        :meth:`prepare` stacked on the backend."""
        raise NotImplementedError(f"{self.name} has no batched preparation")

    def apply_batch(self, x, prepared: Any, backend):
        """The component on a batch ``(B, C, H, W)`` (the backend's arrays, same size)."""
        raise NotImplementedError(f"{self.name} is not applied to a batch")

    def kernel(self, prepared: Any):
        """``(spectrum, r)`` when the component is one space-invariant convolution per sample
        (a kernel of half side ``r`` in the top-left of the FFT grid), so that consecutive
        ones can be applied in one FFT; None otherwise."""
        return None


@dataclass
class BatchContext:
    """What a batch's preparation sees: the windows' ``(H, W)``, their depths
    ``(B, H, W)`` (numpy, metres) or None, each sample's bank PSF index ``(B,)`` (or, with
    ``psf_per=block``, each pixel's ``(B, H, W)``) and the bank's PSFs ``(M, C, K, K)``."""

    shape: tuple[int, int]
    depth: np.ndarray | None
    psf_index: np.ndarray
    psfs: np.ndarray
