"""An exported model ready to run: :class:`DeployedModel` (its card, a backend, tiled
prediction), how one is found (:func:`load_model`: a directory, a registry reference, or
a model shipped inside the package) and the sensor noise model its card records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from data_gen.components import component_class
from data_gen.core.errors import require
from data_gen.core.values import one_of
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import KINDS
from data_gen.optics.symmetry import ALL, NAMES, augmentation_transforms, transform_table
from residual_train.deploy.backends import open_backend
from residual_train.deploy.ensemble import CHOICES, ensemble_maps
from residual_train.deploy.tiling import infer_tiled
from residual_train.release.card import ModelCard, as_card

# a registry inside the package: trained weights that ship with residual-train
SHIPPED = Path(__file__).resolve().parents[1] / "weights"


def default_iso(card: ModelCard | Mapping) -> float:
    """The ISO used when none is given: the geometric middle of the card's ISO range."""
    return as_card(card).sensor_noise().default_iso()


def card_noise_model(card: ModelCard | Mapping, iso: float | None = None) -> NoiseModel:
    """The noise model a card's table gives at ``iso`` (linear interpolation between its
    points; default: :func:`default_iso`)."""
    return as_card(card).sensor_noise().at(iso)


class DeployedModel:
    """An exported model directory: its card and an inference backend
    (:data:`~residual_train.deploy.backends.BACKENDS`: onnxruntime or torch)."""

    def __init__(
        self,
        path: str | Path,
        backend: str = "onnx",
        threads: int | None = None,
        self_ensemble: bool | str = False,
    ) -> None:
        self.path = Path(path)
        self.self_ensemble = one_of(self_ensemble, "self_ensemble", CHOICES)
        require(
            (self.path / "card.json").is_file(),
            f"model = {str(path)!r}: no card.json (not an exported model directory)",
        )
        self.card = ModelCard.read(self.path / "card.json")
        self.heads: list[str] = list(self.card.components)
        self.channels = self.card.channels
        self.sigma_input = "sigma" in self.card.inputs
        self.field_input = self.card.field is not None
        self._bank = None
        self.backend = backend
        self.runner = open_backend(backend, self.path, self.card, threads)
        self._perm = None
        # the views each head's maps average (deploy/ensemble.py); the identity alone: none
        self.head_transforms = self.ensemble_transforms(self.self_ensemble)
        # the network passes a prediction makes: every view some head averages
        self.transforms: tuple[int, ...] = tuple(
            dict.fromkeys(t for v in self.head_transforms.values() for t in v)
        )

    @property
    def views(self) -> dict[str, list[str]]:
        """Per head, the names of the views its maps average (``["identity"]``: none)."""
        return {h: [NAMES[t] for t in v] for h, v in self.head_transforms.items()}

    def ensemble_transforms(self, choice: bool | str = True) -> dict[str, tuple[int, ...]]:
        """Per head, the views of ``self_ensemble = choice``: the flips and turns the network
        was trained with (:meth:`trained_transforms`); with ``true`` (not ``trained``) every
        flip and quarter turn for a head whose degradation has no direction
        (:meth:`~data_gen.components.base.Component.orientation_free`: the default
        pixel-independent sensor noise), unless the model reads positions (a view training
        never made has no position map); with ``false`` the identity alone."""
        if not choice:
            return {h: (0,) for h in self.heads}
        trained = self.trained_transforms()
        if choice == "trained" or self.card.layout != "rgb" or self.field_input:
            return {h: trained for h in self.heads}
        kind = KINDS.get(self.card.noise_kind())
        every = trained + tuple(t for t in ALL if t not in trained)
        return {
            h: every if component_class(h).orientation_free(kind) else trained for h in self.heads
        }

    def trained_transforms(self) -> tuple[int, ...]:
        """The flips and quarter turns the network was trained with (its card's
        ``training.data.geometric``; the identity alone for packed Bayer planes, which a flip
        would give another CFA phase): the views of ``self_ensemble``."""
        if self.card.layout != "rgb":
            return (0,)
        geometric = self.card.trained_geometric()
        what = f"self_ensemble = {str(self.self_ensemble).lower()}: {self.path}"
        require(
            geometric is not None,
            f"{what}'s card does not say which flips the model was trained with"
            " (training.data.geometric); use self_ensemble=false",
        )
        if geometric != "lens":
            return augmentation_transforms(geometric)
        require(
            bool(self.card.lens),
            f"{what}'s model was trained with the flips of its lens (data.geometric = lens)"
            " and its card names no lens; use self_ensemble=false",
        )
        from data_gen.core.paths import bank_cache_dir

        return augmentation_transforms(geometric, self.bank().psfs, bank_cache_dir())

    def psf_perm(self) -> np.ndarray:
        """``(8, N)``: the bank PSF a pixel of PSF ``j`` shows after transform ``t`` (rows of
        the transforms of :attr:`transforms`; :func:`data_gen.optics.symmetry.transform_table`)."""
        if self._perm is None:
            self._perm = transform_table(self.bank().psfs, self.transforms)
        return self._perm

    def noise_model(self, iso: float | None = None) -> NoiseModel:
        """The training sensor's noise model at ``iso`` (interpolated in the card's table;
        default: the geometric middle of its ISO range)."""
        return self.card.sensor_noise(f"{self.path}: the card").at(iso)

    def _run(
        self,
        tiles: np.ndarray,
        noise: NoiseModel | None = None,
        field: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        sigma = None
        if self.sigma_input:  # the conditioning map the loader gives in training
            sigma = noise.std(tiles).astype(np.float32)
        return self.runner(tiles, sigma, field)

    def bank(self):
        """The PSF bank of the card's lens (built once; field-aware models index it)."""
        if self._bank is None:
            from data_gen.core.paths import bank_cache_dir
            from data_gen.optics import build_bank

            lens = self.card.lens
            require(bool(lens), f"{self.path}: the card names no lens (field-aware model)")
            self._bank = build_bank(lens, self.channels, bank_cache_dir())
        return self._bank

    def psf_index(self, hw: tuple[int, int], lens_state: int = 0) -> np.ndarray:
        """``(H, W)`` bank PSF index of every pixel of a whole frame of size ``hw``, with the
        lens in state ``lens_state`` (the renderer's rule, :func:`data_gen.render.psf_index_map`)."""
        from data_gen.render import psf_index_map

        bank = self.bank()
        states = bank.grid.shape[0] if hasattr(bank, "grid") else bank.psfs.shape[0]
        require(
            0 <= int(lens_state) < states,
            f"lens_state = {lens_state}: the card's lens has states 0..{states - 1}",
        )
        return psf_index_map(bank, tuple(hw), tuple(hw), 0, int(lens_state))

    def field_maps(self, psf_index: np.ndarray) -> np.ndarray:
        """``(K, H, W)`` float32 position maps of a ``(H, W)`` bank-index map."""
        return self.card.field.maps(psf_index)

    def predict(
        self,
        x: np.ndarray,
        tile: int = 256,
        overlap: int = 64,
        batch: int = 4,
        iso: float | None = None,
        progress: bool = False,
        psf_index: np.ndarray | None = None,
        lens_state: int = 0,
    ) -> dict[str, np.ndarray]:
        """Residual maps of the whole frame ``x`` ``(C, H, W)``, by tiles. A field-aware
        model also reads each pixel's position: ``psf_index`` ``(H, W)`` (the bank PSF of
        every pixel, e.g. what :func:`data_gen.render.render_frame` rendered with), else the
        frame's own positions through the card's lens in state ``lens_state``. A model loaded
        with ``self_ensemble`` returns, per head, the mean over its views of
        :attr:`head_transforms` (:func:`~residual_train.deploy.ensemble.ensemble_maps`: one
        network pass per view of :attr:`transforms`)."""
        require(
            x.ndim == 3 and x.shape[0] == self.channels,
            f"image has shape {x.shape}; the model wants ({self.channels}, H, W)",
        )
        noise = self.noise_model(iso) if self.sigma_input else None
        if self.field_input:
            if psf_index is None:
                psf_index = self.psf_index(x.shape[1:], lens_state)
            require(
                np.shape(psf_index) == x.shape[1:],
                f"psf_index has shape {np.shape(psf_index)}; the image is {x.shape[1:]}",
            )
        else:
            psf_index = None  # a model that does not read positions ignores them

        def view(v: np.ndarray, index: np.ndarray | None) -> dict[str, np.ndarray]:
            return infer_tiled(
                lambda t, f=None: self._run(t, noise, f),
                v.astype(np.float32, copy=False),
                self.heads,
                tile,
                overlap,
                batch,
                progress,
                None if index is None else self.field_maps(index),
                self.card.stride,
            )

        perm = self.psf_perm() if psf_index is not None and len(self.transforms) > 1 else None
        return ensemble_maps(view, x, self.transforms, psf_index, perm, self.head_transforms)


def load_model(
    model: str | Path,
    registry: str | Path | None = None,
    backend: str = "onnx",
    threads: int | None = None,
    self_ensemble: bool | str = False,
) -> DeployedModel:
    """An export directory, ``NAME[:VERSION|ALIAS]`` in ``registry``, or without a registry a
    model shipped inside the package (``default``; see :data:`SHIPPED`). Registry models are
    sha256-verified on every load. ``self_ensemble``: ``true``: every prediction averages the
    network's maps over the flips and turns it was trained with, the noise's over every flip
    and turn; ``trained``: every map over the trained views only (fewer passes);
    ``false``: one pass (:attr:`DeployedModel.head_transforms`)."""
    from residual_train.release.registry import Registry

    if registry:
        return DeployedModel(Registry(registry).fetch(str(model)), backend, threads, self_ensemble)
    p = Path(str(model)).expanduser()
    if p.is_dir():
        return DeployedModel(p, backend, threads, self_ensemble)
    shipped = shipped_models()
    require(
        str(model).partition(":")[0] in shipped,
        f"model = {str(model)!r}: not an export directory, and not a model shipped with the "
        f"package ({', '.join(shipped) or 'none'}); for a registry reference add registry=DIR",
    )
    return DeployedModel(Registry(SHIPPED).fetch(str(model)), backend, threads, self_ensemble)


def shipped_models() -> list[str]:
    """Names in the registry shipped inside the package (:data:`SHIPPED`)."""
    if not SHIPPED.is_dir():
        return []
    return sorted(p.name for p in SHIPPED.iterdir() if (p / "index.json").is_file())


def predict_sequential(
    noise_model: DeployedModel, blur_model: DeployedModel, x: np.ndarray, **kw
) -> dict[str, np.ndarray]:
    """A pair of single-head models: noise first, blur on the denoised image (docs/design.md §4)."""
    require(
        noise_model.heads == ["noise"] and blur_model.heads == ["blur"],
        f"sequential mode needs a noise-only and a blur-only model, got "
        f"{noise_model.heads} and {blur_model.heads}",
    )
    r_n = noise_model.predict(x, **kw)["noise"]
    r_b = blur_model.predict(x + r_n, **kw)["blur"]
    return {"blur": r_b, "noise": r_n}
