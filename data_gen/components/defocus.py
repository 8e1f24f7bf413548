"""Defocus: a thin-lens circle of confusion from depth and a disc PSF composited in depth
layers, back to front with occlusion (:mod:`data_gen.physics.defocus`); settings
``conf/component/defocus.yaml``; needs depth.

Batched, the compositing is written as the linear map it is: with the layers far to near,
``out = Σ_l w_l ⊙ (disc_l ⊛ (m_l ⊙ x))``, ``w_l = Π_{l' nearer} (1 − α_l') / acc``, the
weights computed once per sample from the depth alone (:meth:`Defocus.prepare_batch`); every
layer of every sample is one FFT of a batch.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import model_validator

from data_gen.backend import conv_same, fft_size
from data_gen.components import register
from data_gen.components.base import BatchContext, Component, DrawContext
from data_gen.core.typed import Integer, Number, Range, Settings, check
from data_gen.physics.defocus import (
    coc_radius_px,
    composite_layers,
    defocus_layers,
    disc_kernel,
    layer_index,
)
from data_gen.physics.depth import check_depth

CHUNK_BYTES = 48 * 2**20  # a batch's layers are convolved this many bytes at a time


class DefocusSettings(Settings):
    focal_mm: Number  # focal length
    f_number: Range  # aperture, log-uniform
    pixel_um: Number  # pixel pitch
    focus: Range  # focus distance: this quantile range of the window's depths, uniform
    max_radius_px: Number  # CoC radii are clipped here (it bounds the margin)
    layers: Integer  # depth layers of the compositing

    @model_validator(mode="after")
    def _physical(self):
        check(self.focal_mm > 0, f"focal_mm = {self.focal_mm}: must be > 0")
        check(self.f_number[0] > 0, f"f_number = {list(self.f_number)}: must be > 0")
        check(self.pixel_um > 0, f"pixel_um = {self.pixel_um}: must be > 0")
        check(
            0 <= self.focus[0] and self.focus[1] <= 1,
            f"focus = {list(self.focus)}: quantiles in [0, 1]",
        )
        check(self.max_radius_px >= 0, f"max_radius_px = {self.max_radius_px}: must be >= 0")
        check(self.layers >= 1, f"layers = {self.layers}: an integer >= 1")
        return self


@register
class Defocus(Component):
    name = "defocus"
    order = 2
    transport = "spread"
    needs_depth = True
    settings_model = DefocusSettings

    @property
    def kernel_side(self) -> int:
        """Side of the largest disc (every layer's disc is padded to it when batched)."""
        return disc_kernel(self.settings.max_radius_px).shape[0]

    def margin(self, lens_size: int) -> int:
        return math.ceil(self.settings.max_radius_px) + 1

    def meta_fields(self, channels: int) -> list[tuple]:
        return [("defocus_focus_m", "<f4"), ("defocus_f_number", "<f4")]

    def draw(self, rng: np.random.Generator, ctx: DrawContext) -> tuple[dict, dict]:
        s = self.settings
        lo, hi = s.f_number
        n = float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
        q = float(rng.uniform(*s.focus))
        focus = max(float(np.quantile(ctx.depth, q)), 2e-3 * s.focal_mm)
        radius = coc_radius_px(ctx.depth, focus, s.focal_mm, n, s.pixel_um)
        radius = np.minimum(radius, s.max_radius_px)
        params = {"radius": radius, "layers": int(s.layers)}
        return params, {"defocus_focus_m": focus, "defocus_f_number": n}

    def prepare(self, params: dict, depth: np.ndarray | None, shape: tuple[int, int]):
        check_depth(depth, shape)
        return defocus_layers(depth, params["radius"], params["layers"])

    def apply(self, x: np.ndarray, prepared) -> np.ndarray:
        return composite_layers(x, prepared)

    # ---- batched -------------------------------------------------------------------------
    def prepare_batch(self, params: list[dict], batch: BatchContext, backend) -> dict:
        """The layers of every sample (far to near, ``L`` = settings.layers): the weight
        ``Σ w_l ⊙ m_l`` ``(B, 1, H, W)`` of the layers whose disc is a point (no blur), and
        for the layers that blur — the pairs ``(sample, layer)`` — their masks, disc spectra
        and weights ``(P, 1, ...)``. Empty layers cost nothing."""
        h, w = batch.shape
        nl, big = self.settings.layers, self.kernel_side
        r = big // 2
        n = fft_size(max(h, w))
        b = len(params)
        masks = np.zeros((b, nl, 1, h, w), np.float32)
        blurs = np.zeros((b, nl), bool)
        discs = []
        for i, (p, depth) in enumerate(zip(params, batch.depth, strict=True)):
            idx = layer_index(depth, nl)
            for j, layer in enumerate(range(nl - 1, -1, -1)):  # far to near
                sel = idx == layer
                if not sel.any():
                    continue
                masks[i, j, 0] = sel
                k = disc_kernel(float(p["radius"][sel].mean()))
                if k.size > 1:
                    blurs[i, j] = True
                    o = r - k.shape[0] // 2
                    disc = np.zeros((1, big, big), np.float32)
                    disc[0, o : o + k.shape[0], o : o + k.shape[1]] = k
                    discs.append(disc)
        pb, pl = np.nonzero(blurs)
        m = backend.asarray(masks)
        alpha = backend.asarray(masks.copy())  # a point's coverage is its mask
        spec = None
        if len(pb):
            spec = backend.kernel_spectrum(np.stack(discs), n)
            alpha[pb, pl] = backend.clip(conv_same(backend, m[pb, pl], spec, r), 0.0, 1.0)
        # far to near: out = out·(1 − α_l) + colour_l -> layer l is seen through Π_{l' > l}(1 − α)
        weights = _front_products(1 - alpha, backend)
        acc = (alpha * weights).sum(1)
        weights = weights / backend.clip(acc, 1e-8, math.inf)[:, None]
        point = backend.asarray(~blurs)[:, :, None, None, None]
        return {
            "points": (weights * m * point).sum(1),
            "pairs": pb,
            "masks": m[pb, pl],
            "spectra": spec,
            "weights": weights[pb, pl],
            "r": r,
            "n": n,
        }

    def apply_batch(self, x, prep: dict, backend):
        out = x * prep["points"]
        pb = prep["pairs"]
        if not len(pb):
            return out
        c, n = x.shape[1], prep["n"]
        step = max(1, CHUNK_BYTES // (c * n * n * 16))
        for s in range(0, len(pb), step):
            sl = slice(s, s + step)
            colour = conv_same(
                backend, x[pb[sl]] * prep["masks"][sl], prep["spectra"][sl], prep["r"]
            )
            out = backend.index_add(out, pb[sl], colour * prep["weights"][sl])
        return out


def _front_products(keep, backend):
    """``Π_{l' > l} keep_l'`` along axis 1 (1 for the last layer): the part of each layer
    that nearer layers leave visible."""
    nl = keep.shape[1]
    ones = keep[:, :1] * 0 + 1
    parts = [ones]
    for j in range(nl - 1, 0, -1):
        parts.append(parts[-1] * keep[:, j : j + 1])
    parts.reverse()
    return backend.cat(parts, 1)
