"""Lens blur: each sample's PSF from the lens's bank (drawn with the crop, by image position
and lens state: :func:`data_gen.render.draw_sample`); settings are the lens's
(``conf/lens/``). Space-invariant over a patch; a whole frame takes each region's PSF
(:func:`data_gen.render.render_frame`)."""

from __future__ import annotations

import numpy as np

from data_gen.backend import conv_same, fft_size
from data_gen.components import register
from data_gen.components.base import BatchContext, Component, DrawContext
from data_gen.physics.convolve import blur_image


@register
class Blur(Component):
    name = "blur"
    order = 3
    transport = "spread"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        # (id(backend), n, id(bank), index) -> (backend, bank, spectrum)
        self._spectra: dict[tuple, tuple] = {}

    def margin(self, lens_size: int) -> int:
        return lens_size // 2

    def draw(self, rng: np.random.Generator, ctx: DrawContext) -> tuple[dict, dict]:
        if ctx.psf_field is not None:  # a whole frame: each pixel its own bank PSF
            return {"field": ctx.psf_field}, {}
        return {"psf": ctx.psf}, {}

    def apply(self, x: np.ndarray, prepared: dict) -> np.ndarray:
        if "field" not in prepared:
            return blur_image(x, prepared["psf"])
        psfs, index = prepared["field"]
        out = np.empty_like(x)
        for j in np.unique(index):  # every pixel takes the blur of its own PSF
            sel = index == j
            out[:, sel] = blur_image(x, psfs[j])[:, sel]
        return out

    def spectrum(self, psfs: np.ndarray, index: int, n: int, backend):
        """The transform of bank PSF ``index`` ``(C, K, K)`` in the top-left of ``(n, n)``,
        computed once per backend and size. The entry holds the backend and the bank it was
        made for, so neither is freed while it is cached and their ids, its key, cannot be
        taken by another object (a torch renderer once got a freed numpy backend's spectra)."""
        key = (id(backend), n, id(psfs), int(index))
        if key not in self._spectra:
            self._spectra[key] = (backend, psfs, backend.kernel_spectrum(psfs[int(index)], n))
        return self._spectra[key][2]

    def prepare_batch(self, params: list[dict], batch: BatchContext, backend):
        n = fft_size(max(batch.shape))
        idx = [int(i) for i in batch.psf_index]
        specs = [self.spectrum(batch.psfs, i, n, backend) for i in idx]
        spec = specs[0][None] if all(i == idx[0] for i in idx) else backend.stack(specs)
        return spec, batch.psfs.shape[-1] // 2

    def apply_batch(self, x, prepared, backend):
        spec, r = prepared
        return conv_same(backend, x, spec, r)

    def kernel(self, prepared):
        return prepared
