"""Rendering a generator batch: samples drawn by :func:`data_gen.render.draw_sample` through
the chain of any component list (:mod:`data_gen.chain_batch`), on numpy or torch.

Per sample, in this order and from the sample's own generator: the crop, exposure, ISO and
lens PSF (:func:`~data_gen.render.draw_sample`; the crop keeps the chain's margin of frame
on every side), then each component's parameters in physical order
(:meth:`data_gen.components.Chain.draw`), then the standard normals of its noise, then what
the sensor's noise kind draws beyond them (:func:`data_gen.noise_kinds.draw_noise`; the
default draws nothing more). The chain
runs on the patch and its margin (the support of the blurs); every output is trimmed to the
patch before the noise is added and clipped at the white level.

Stored per sample: :func:`data_gen.chain.stored_names` — schema v1's ``clean``, ``blur``,
``noise``, ``noise_blur`` for ``[blur, noise]``, else ``input``, ``clean``,
``without_<c>`` and ``before_<c>`` (schema v2).
"""

from __future__ import annotations

import numpy as np

from data_gen import chain_batch
from data_gen.backend import make_backend
from data_gen.chain import chain_names, render_chain, stored_names
from data_gen.components import Chain, DrawContext
from data_gen.core.errors import require
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import NoiseContext, NoiseKind, batch_draws, default_kind, draw_noise
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


class HostNormals:
    """Each sample's standard normals (and its noise kind's uniforms) from the sample's own
    generator: the same noise on any backend."""

    on_device = False

    @staticmethod
    def start(backend, seed: int, shape: tuple[int, ...], kind: NoiseKind):
        """The batch's normals buffer and the uniforms drawn for it on the device (none)."""
        return np.empty(shape, np.float32), {}

    @staticmethod
    def sample(rng: np.random.Generator, normal: np.ndarray, i: int) -> None:
        rng.standard_normal(dtype=np.float32, out=normal[i])

    @staticmethod
    def finish(backend, normal):
        return backend.asarray(normal)


class DeviceNormals:
    """One torch generator per batch on the device, seeded with the batch's first sample
    seed: the normals, then the noise kind's uniforms."""

    on_device = True

    @staticmethod
    def start(backend, seed: int, shape: tuple[int, ...], kind: NoiseKind):
        g = backend.generator(seed)
        normal = backend.normals(shape, seed, g)
        return normal, {name: backend.uniforms(shape, g) for name in kind.fields}

    @staticmethod
    def sample(rng: np.random.Generator, normal, i: int) -> None:
        """Nothing from the sample's generator (drawn on the device already)."""

    @staticmethod
    def finish(backend, normal):
        return normal


NORMALS = {"host": HostNormals, "device": DeviceNormals}


class SampleRenderer:
    """Renders lists of :class:`~data_gen.render.SampleSpec` through ``chain``.

    ``backend``: ``numpy`` (scipy's FFT, ``threads`` workers) or ``torch`` on ``device``;
    ``normals``: ``host`` (each sample's own generator: the same noise on any backend) or
    ``device`` (one torch generator per batch on the device, seeded with the batch's first
    sample seed; the noise kind's uniforms continue that generator). ``kind``: the sensor's
    noise kind (default Poisson–Gaussian)."""

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
        kind: NoiseKind | None = None,
    ) -> None:
        self.chain, self.psfs, self.patch, self.margin, self.cfa = chain, psfs, patch, margin, cfa
        self.kind = default_kind() if kind is None else kind
        self.backend = make_backend(backend, device, threads)
        require(normals in NORMALS, f"normals = {normals!r}: use one of {', '.join(NORMALS)}")
        require(
            not NORMALS[normals].on_device or not self.backend.reference,
            f"normals = {normals}: only with renderer = torch (the numpy renderer is the "
            "reference)",
        )
        self.normals = normals

    @classmethod
    def for_pipeline(cls, pipe, **overrides) -> SampleRenderer:
        """The renderer of a :class:`data_gen.generate.Pipeline` (its config's ``renderer``,
        ``device`` and ``normals``, unless overridden)."""
        s = pipe.settings
        kw = {
            "backend": s.renderer,
            "device": s.device,
            "normals": s.normals,
            "kind": pipe.sensor.noise,
            **overrides,
        }
        return cls(pipe.chain, pipe.bank.psfs, s.patch_size, pipe.margin, pipe.cfa, **kw)

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
        """The batch's noise model per stored channel, its standard normals, and the noise
        kind's per-sample draws (numpy; plus the device's uniforms) and ``meta`` records."""
        model = batch_noise_model([s.noise for s in specs], self.cfa)
        shape = self.stored_shape(len(specs), channels)
        kind, draws, records = self.kind, [], []
        normals = NORMALS[self.normals]
        normal, fields = normals.start(self.backend, specs[0].seed, shape, kind)
        for i, s in enumerate(specs):
            normals.sample(s.rng, normal, i)
            if not kind.default:
                d, r = draw_noise(
                    kind, s.rng, self.noise_context(s, channels), not normals.on_device
                )
                draws.append(d)
                records.append(r)
        return model, normals.finish(self.backend, normal), (draws, fields), records

    def noise_context(self, s: SampleSpec, channels: int) -> NoiseContext:
        return NoiseContext(
            s.noise.iso, s.y, s.x, (self.patch, self.patch), tuple(s.frame.pixels.shape[1:]),
            self.cfa, channels,
        )  # fmt: skip

    def __call__(self, specs: list[SampleSpec]) -> tuple[dict[str, np.ndarray], list[dict]]:
        """``(patches, records)``: the stored arrays ``(B, C', P', P')`` float32 and each
        sample's component ``meta`` values."""
        win, depth = windows(specs, self.patch, self.margin)
        params, records = self.draw(specs, depth)
        noise, normal, (draws, fields), noise_records = self.noise(specs, win.shape[1])
        for rec, nrec in zip(records, noise_records, strict=False):
            rec.update(nrec)
        batch = chain_batch.Batch(
            win,
            None if depth[0] is None else np.stack(depth),
            params,
            np.array([s.psf_index for s in specs]),
            self.psfs,
        )
        kd = None if self.kind.default else batch_draws(draws, self.backend, fields)
        out = chain_batch.render_chunked(
            self.chain, batch, self.margin, noise, normal, self.backend, self.cfa, "both",
            self.kind, kd,
        )  # fmt: skip
        return {k: self.backend.numpy(v) for k, v in out.items()}, records


def render_frame(
    frame: Frame,
    chain: Chain,
    psf: np.ndarray,
    noise: NoiseModel,
    rng: np.random.Generator,
    margin: int,
    exposure: float = 1.0,
    kind: NoiseKind | None = None,
    iso: float | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """The chain on a whole frame (evaluation on a real photograph with depth) with the
    reference renderer, one lens PSF ``psf`` ``(C, K, K)`` for the frame: the stored arrays
    ``(C, H − 2·margin, W − 2·margin)`` clipped at white, and the drawn ``meta`` values.
    Draws, in order: the components' parameters, the noise normals, then what the noise
    ``kind`` draws (at ``iso``; default Poisson–Gaussian: nothing)."""
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
    hw = (h - 2 * margin, w - 2 * margin)
    normal = rng.standard_normal((c, *hw), dtype=np.float32)
    draws = None
    if kind is not None and not kind.default and chain.noise is not None:
        require(iso is not None, f"noise kind {kind.name}: render_frame needs the frame's iso")
        ctx = NoiseContext(float(iso), margin, margin, hw, (h, w), None, c)
        draws, nrec = draw_noise(kind, rng, ctx)
        rec = {**rec, **nrec}
    t = render_chain(scene, chain, params, frame.depth, noise, normal, margin, kind, draws)
    names = stored_names(chain.names)
    return {k: np.minimum(t[chain_names(k)], np.float32(1)) for k in names}, rec
