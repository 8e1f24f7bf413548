"""Lens blur: each sample's PSF from the lens's bank (drawn with the crop, by image position
and lens state: :func:`data_gen.render.draw_sample`); settings are the lens's
(``conf/lens/``). Space-invariant over a patch, or -- ``psf_per=block``, the batch's
``psf_index`` a map ``(B, W, W)`` -- each pixel its own bank PSF, as a whole frame takes each
region's (:func:`data_gen.render.render_frame`)."""

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
        r = batch.psfs.shape[-1] // 2
        index = np.asarray(batch.psf_index)
        if index.ndim == 3:  # a PSF per pixel: (B, W, W) bank indices
            return _Field([(int(j), self.spectrum(batch.psfs, j, n, backend)) for j in
                           np.unique(index)], index, r)  # fmt: skip
        idx = [int(i) for i in index]
        specs = [self.spectrum(batch.psfs, i, n, backend) for i in idx]
        spec = specs[0][None] if all(i == idx[0] for i in idx) else backend.stack(specs)
        return spec, r

    def apply_batch(self, x, prepared, backend):
        if isinstance(prepared, _Field):
            return prepared.apply(x, backend)
        spec, r = prepared
        return conv_same(backend, x, spec, r)

    def kernel(self, prepared):
        return None if isinstance(prepared, _Field) else prepared


class _Field:
    """A batch's blur with a bank PSF per pixel: for each PSF, the samples that show it are
    convolved with it and keep the result where it is theirs (the rule of
    :meth:`Blur.apply` on a whole frame). Not a spectrum: it does not commute with the
    blurs after it, so the chain applies it in the image domain."""

    def __init__(self, spectra: list[tuple[int, object]], index: np.ndarray, r: int) -> None:
        self.spectra, self.index, self.r = spectra, index, r

    def apply(self, x, backend):
        """:func:`data_gen.backend.conv_same` of each sample with each of its PSFs, the
        image's transform computed once."""
        out = backend.zeros(tuple(x.shape))
        n, w = self.spectra[0][1].shape[-2], x.shape[-1]
        xs = backend.rfft2(x, n)
        for j, spec in self.spectra:
            sel = self.index == j  # (B, W, W)
            rows = np.flatnonzero(sel.any(axis=(1, 2)))
            y = backend.take_same(backend.irfft2(backend.rows(xs, rows) * spec[None], n), self.r, w)
            mask = backend.asarray(sel[rows][:, None].astype(np.float32))
            out = backend.index_add(out, rows, y * mask)
        return out
