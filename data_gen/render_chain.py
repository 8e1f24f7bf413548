"""Rendering a generator batch: samples drawn by :func:`data_gen.render.draw_sample` through
the chain of any component list (:mod:`data_gen.chain_batch`), on numpy or torch.

Per sample, in this order and from the sample's own generator: the crop, exposure, ISO and
lens PSF (:func:`~data_gen.render.draw_sample`; the crop keeps the chain's margin of frame
on every side), then each component's parameters in physical order
(:meth:`data_gen.components.Chain.draw`), then the standard normals of its noise. The chain
runs on the patch and its margin (the support of the blurs); every output is trimmed to the
patch before the noise is added and clipped at the white level.

Stored per sample: :func:`data_gen.chain.stored_names` — schema v1's ``clean``, ``blur``,
``noise``, ``noise_blur`` for ``[blur, noise]``, else ``input``, ``clean``,
``without_<c>`` and ``before_<c>`` (schema v2).
"""

from __future__ import annotations

import numpy as np

from data_gen import chain_batch
from data_gen.backend import NumpyBackend, make_backend
from data_gen.chain import chain_names, render_chain, stored_names
from data_gen.components import Chain, DrawContext
from data_gen.errors import require
from data_gen.noise import NoiseModel
from data_gen.render import SampleSpec, batch_noise_model
from data_gen.sources import Frame


def windows(specs: list[SampleSpec], patch: int, margin: int) -> tuple[np.ndarray, list]:
    """Each sample's window — its patch and ``margin`` pixels of frame around it, times its
    exposure — ``(B, C, W, W)`` float32 with ``W = patch + 2·margin``, and its depth window
    (or None)."""
    side = patch + 2 * margin
    c = specs[0].frame.pixels.shape[0]
    out = np.empty((len(specs), c, side, side), np.float32)
    depth = []
    for i, s in enumerate(specs):
        y0, x0 = s.y - margin, s.x - margin
        np.multiply(
            s.frame.pixels[:, y0 : y0 + side, x0 : x0 + side], np.float32(s.exposure), out=out[i]
        )
        fd = s.frame.depth
        depth.append(None if fd is None else fd[y0 : y0 + side, x0 : x0 + side])
    return out, depth


class SampleRenderer:
    """Renders lists of :class:`~data_gen.render.SampleSpec` through ``chain``.

    ``backend``: ``numpy`` (scipy's FFT, ``threads`` workers) or ``torch`` on ``device``;
    ``normals``: ``host`` (each sample's own generator: the same noise on any backend) or
    ``device`` (one torch generator per batch on the device, seeded with the batch's first
    sample seed)."""

    def __init__(
        self,
        chain: Chain,
        psfs: np.ndarray,
        patch: int,
        margin: int,
        cfa: str | None = None,
        backend: str = "numpy",
        device="cpu",
        threads: int = 1,
        normals: str = "host",
    ) -> None:
        self.chain, self.psfs, self.patch, self.margin, self.cfa = chain, psfs, patch, margin, cfa
        self.backend = make_backend(backend, device, threads)
        require(
            normals == "host" or not isinstance(self.backend, NumpyBackend),
            "normals = device: only with renderer = torch (the numpy renderer is the reference)",
        )
        self.normals = normals

    @classmethod
    def for_pipeline(cls, pipe, **overrides) -> SampleRenderer:
        """The renderer of a :class:`data_gen.generate.Pipeline` (its config's ``renderer``,
        ``device`` and ``normals``, unless overridden)."""
        c = pipe.cfg
        kw = {
            "backend": c.get("renderer", "numpy"),
            "device": c.get("device", "cpu"),
            "normals": c.get("normals", "host"),
            **overrides,
        }
        return cls(pipe.chain, pipe.bank.psfs, c["patch_size"], pipe.margin, pipe.cfa, **kw)

    def stored_shape(self, n: int, channels: int) -> tuple[int, ...]:
        p = self.patch
        return (n, 4, p // 2, p // 2) if self.cfa else (n, channels, p, p)

    def draw(self, specs: list[SampleSpec], depth: list) -> tuple[list[dict], list[dict]]:
        """Each sample's component parameters and ``meta`` values, from its generator."""
        side = self.patch + 2 * self.margin
        params, records = [], []
        for s, d in zip(specs, depth, strict=True):
            hw = s.frame.pixels.shape[1:]
            for name in self.chain.needs_depth:
                require(
                    d is not None,
                    f"component {name} needs a depth map, and image {s.frame.name} has none",
                )
            ctx = DrawContext(
                hw,
                (s.y - self.margin, s.x - self.margin, side, side),
                d,
                self.psfs[s.psf_index],
                int(s.frame.pixels.shape[0]),
            )
            p, r = self.chain.draw(s.rng, ctx)
            params.append(p)
            records.append(r)
        return params, records

    def noise(self, specs: list[SampleSpec], channels: int):
        """The batch's noise model per stored channel and its standard normals."""
        model = batch_noise_model([s.noise for s in specs], self.cfa)
        shape = self.stored_shape(len(specs), channels)
        if self.normals == "device":
            return model, self.backend.normals(shape, specs[0].seed)
        normal = np.empty(shape, np.float32)
        for i, s in enumerate(specs):
            s.rng.standard_normal(dtype=np.float32, out=normal[i])
        return model, self.backend.asarray(normal)

    def __call__(self, specs: list[SampleSpec]) -> tuple[dict[str, np.ndarray], list[dict]]:
        """``(patches, records)``: the stored arrays ``(B, C', P', P')`` float32 and each
        sample's component ``meta`` values."""
        win, depth = windows(specs, self.patch, self.margin)
        params, records = self.draw(specs, depth)
        noise, normal = self.noise(specs, win.shape[1])
        batch = chain_batch.Batch(
            win,
            None if depth[0] is None else np.stack(depth),
            params,
            np.array([s.psf_index for s in specs]),
            self.psfs,
        )
        out = chain_batch.render_chunked(
            self.chain, batch, self.margin, noise, normal, self.backend, self.cfa
        )
        return {k: self.backend.numpy(v) for k, v in out.items()}, records


def render_frame(
    frame: Frame,
    chain: Chain,
    psf: np.ndarray,
    noise: NoiseModel,
    rng: np.random.Generator,
    margin: int,
    exposure: float = 1.0,
) -> tuple[dict[str, np.ndarray], dict]:
    """The chain on a whole frame (evaluation on a real photograph with depth) with the
    reference renderer, one lens PSF ``psf`` ``(C, K, K)`` for the frame: the stored arrays
    ``(C, H − 2·margin, W − 2·margin)`` clipped at white, and the drawn ``meta`` values.
    Draws, in order: the components' parameters, then the noise normals."""
    scene = frame.pixels * np.float32(exposure)
    c, h, w = scene.shape
    require(min(h, w) > 2 * margin, f"frame {frame.name}: {w}x{h} px, the margin is {margin} px")
    for name in chain.needs_depth:
        require(
            frame.depth is not None,
            f"component {name} needs a depth map, and image {frame.name} has none",
        )
    ctx = DrawContext((h, w), (0, 0, h, w), frame.depth, psf, c)
    params, rec = chain.draw(rng, ctx)
    normal = rng.standard_normal((c, h - 2 * margin, w - 2 * margin), dtype=np.float32)
    t = render_chain(scene, chain, params, frame.depth, noise, normal, margin)
    names = stored_names(chain.names)
    return {k: np.minimum(t[chain_names(k)], np.float32(1)) for k in names}, rec
