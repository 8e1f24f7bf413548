"""Training batches rendered on the training device from originals: no shards needed.

:class:`OnTheFlyRenderer` holds a pool of originals (frames) and renders a batch with the
generator's physics, for any component list (:mod:`data_gen.chain_batch`; on a CPU the numpy
backend a few samples at a time, on a GPU torch, the whole batch): each sample's crop,
exposure, ISO and PSF are drawn as :func:`data_gen.render.draw_sample` draws them and its
components' parameters by the components' own ``draw``; the windows (the patch and the
chain's margin) are cut from the resident frames and go through the chain (relight gain
maps, fog through depth, layered defocus, the lens PSF bank and camera shake by FFT with
per-sample spectra), are mosaicked, given one shared noise realisation and clipped at
white; then flipped / turned by one of the allowed dihedral transforms. Training with
peeling targets renders only what they need (no leave-one-out renders).

Determinism: batch ``k`` (a global batch number) depends on (seed, k) only.

* Frames: frame ``j`` of the stream is ``source.frame(rng(seed, j))``. Batch ``k`` sees
  frames ``R .. R + F − 1`` (``F`` = pool size, ``R = k·B // patches_per_source``: each
  frame yields on average as many patches as in a shard), so a resumed run rebuilds the
  same pool. The next frames are prepared in a background thread while the device works.
* Draws: one numpy generator per batch (frame slot, crop, exposure, ISO, PSF, transform;
  drawn for the whole batch at once, with the laws of ``draw_sample``; then each sample's
  component parameters in turn, then its noise kind's) and one torch generator on the
  device for the standard normals (and the noise kind's uniforms after them). The same
  batches come
  back on the same kind of device; torch's CPU and CUDA generators differ, so the noise
  realisations differ across device kinds (the statistics do not).

Arrays: float32 ``(B, C, P, P)``, 0 = black level, 1 = white level.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from data_gen import chain_batch
from data_gen.backend import NumpyBackend, TorchBackend
from data_gen.components import DrawContext
from data_gen.core.errors import require
from data_gen.generate import Pipeline, sample_seed
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import NoiseContext, batch_draws, draw_noise
from data_gen.optics.symmetry import dihedral
from data_gen.render import batch_noise_model, draw_exposure, frame_window_index
from data_gen.sources import Frame, cache_decoded_frames

_POOL_STREAM = 2  # seed domains: frames of the on-the-fly stream, and its batches
_BATCH_STREAM = 3


class OnTheFlyRenderer:
    """Renders training batches of ``pipe``'s physics on ``device``.

    ``patch``: rendered patch size in pixels of the originals (the stored size is half of
    it for packed Bayer planes). ``pool``: frames held on the device. ``transforms``: the
    dihedral transforms (0..7) drawn uniformly per sample (``(0,)``: none).
    """

    def __init__(
        self,
        pipe: Pipeline,
        patch: int,
        batch: int,
        device: str | torch.device = "cpu",
        pool: int = 16,
        seed: int = 0,
        transforms: tuple[int, ...] = (0,),
        prefetch: int = 4,
        threads: int = 2,
        cache_bytes: int = 0,
        targets: str = "both",
    ) -> None:
        require(pool >= 1, f"data.onthefly.pool = {pool}: at least one frame")
        require(
            pipe.cfa is None or patch % 2 == 0,
            f"on-the-fly patch {patch} px must be even for layout = rggb",
        )
        require(
            pipe.cfa is None or tuple(transforms) == (0,),
            "on-the-fly Bayer planes cannot be flipped or turned (the CFA phase would change)",
        )
        self.pipe, self.patch, self.batch, self.pool_size = pipe, int(patch), int(batch), pool
        self.seed, self.transforms = int(seed), tuple(int(t) for t in transforms)
        self.targets = targets  # peeling: the leave-one-out renders are skipped
        cache_decoded_frames(pipe.source, cache_bytes)  # photographs are decoded once
        self._params: dict[float, object] = {}
        self.device = torch.device(device)
        # on a CPU the numpy backend, a few samples at a time, renders faster than torch's
        # FFT; on a GPU torch, the whole batch
        self.backend = TorchBackend(self.device) if self.device.type != "cpu" else NumpyBackend()
        self.margin = pipe.margin
        self.window = self.patch + 2 * self.margin
        c = pipe.settings
        self.per_frame = c.patches_per_source
        self.exposure = c.exposure.law
        self.slots: list[tuple[int, Frame] | None] = [None] * pool
        # originals are made in threads (dead leaves and decoding release the GIL)
        self._executor = ThreadPoolExecutor(max(1, threads), thread_name_prefix="onthefly-frames")
        self._pending: OrderedDict[int, Future] = OrderedDict()
        self._lock = threading.Lock()
        self.prefetch = max(0, int(prefetch), int(threads))
        self._canvas_t: torch.Tensor | None = None
        self._canvas_ids: list[int | None] = []
        for name in pipe.chain.needs_depth:
            require(
                pipe.source.lacks_depth() is None,
                f"data.onthefly: component {name} needs a depth map: {pipe.source.lacks_depth()}",
            )

    def __getstate__(self) -> dict:  # the pool and the thread stay in their process
        raise TypeError("OnTheFlyRenderer lives on its device; build one per process")

    # ---- frames -----------------------------------------------------------------------
    def _load(self, j: int) -> Frame:
        rng = np.random.default_rng(sample_seed(self.seed, 0, j, _POOL_STREAM))
        frame = self.pipe.source.frame(rng)
        _, h, w = frame.pixels.shape
        m = self.window
        require(
            h >= m and w >= m,
            f"source frame {frame.name} is {w}x{h} px; on-the-fly patches need {m}x{m} "
            "(patch + the blurs' support)",
        )
        return frame

    def _future(self, j: int) -> Future:
        with self._lock:
            if j not in self._pending:
                self._pending[j] = self._executor.submit(self._load, j)
            return self._pending[j]

    def first_frame(self, k: int) -> int:
        """Stream index of the oldest frame in the pool batch ``k`` sees."""
        return k * self.batch // self.per_frame

    def ensure_pool(self, k: int) -> None:
        """Make the pool hold frames ``R .. R + F − 1`` for batch ``k``; queue the next."""
        r = self.first_frame(k)
        wanted = range(r, r + self.pool_size)
        for j in wanted:
            slot = self.slots[j % self.pool_size]
            if slot is None or slot[0] != j:
                self.slots[j % self.pool_size] = (j, self._future(j).result())
        with self._lock:
            for j in [j for j in self._pending if j < r + self.pool_size]:
                del self._pending[j]
        for j in range(r + self.pool_size, r + self.pool_size + self.prefetch):
            self._future(j)

    # ---- batches ----------------------------------------------------------------------
    def batch_seed(self, k: int) -> int:
        return sample_seed(self.seed, 0, k, _BATCH_STREAM)

    def _canvas(self) -> torch.Tensor:
        """The pool's frames in one ``(F, C, H, W)`` tensor (zero-padded to the largest),
        so that a batch's crops are one gather; a slot is copied when its frame changed."""
        h = max(int(f.pixels.shape[-2]) for _, f in self.slots)
        w = max(int(f.pixels.shape[-1]) for _, f in self.slots)
        if self._canvas_t is None or tuple(self._canvas_t.shape[-2:]) != (h, w):
            c = int(self.slots[0][1].pixels.shape[0])
            self._canvas_t = torch.zeros((self.pool_size, c, h, w), device=self.device)
            self._canvas_ids = [None] * self.pool_size
        for s, (j, f) in enumerate(self.slots):
            if self._canvas_ids[s] != j:  # the frames live on the device here only
                t = torch.from_numpy(f.pixels).to(self.device)
                self._canvas_t[s].zero_()
                self._canvas_t[s, :, : t.shape[-2], : t.shape[-1]] = t
                self._canvas_ids[s] = j
        return self._canvas_t

    def draw(self, rng: np.random.Generator, n: int, seed: int) -> dict[str, np.ndarray]:
        """The batch's random choices, vectorised (the laws of
        :func:`data_gen.render.draw_sample`; one generator for the whole batch): frame
        slot, crop top-left ``y``, ``x`` (pixels), exposure, ISO, PSF index, transform."""
        pipe, p = self.pipe, self.patch
        r = self.margin
        slot = rng.integers(self.pool_size, size=n)
        hw = np.array([f.pixels.shape[1:] for _, f in self.slots])[slot]
        h, w = hw[:, 0], hw[:, 1]
        y = r + (rng.random(n) * (h - p - 2 * r + 1)).astype(np.int64)
        x = r + (rng.random(n) * (w - p - 2 * r + 1)).astype(np.int64)
        e = draw_exposure(rng, self.exposure, n)
        iso = pipe.sensor.iso.draw_many(rng, n)
        fy, fx = (y + p / 2) / h, (x + p / 2) / w
        bank = pipe.bank
        if hasattr(bank, "index_at"):  # field-varying: the nearest grid PSF of a drawn state
            psf = np.array([bank.index_for(a, b, rng) for a, b in zip(fy, fx, strict=True)])
        else:
            m = bank.psfs.shape[0]
            psf = np.zeros(n, np.int64) if m == 1 else rng.integers(m, size=n)
        height, az = bank.locate(fy, fx, (h, w))
        t = np.asarray(self.transforms)[rng.integers(len(self.transforms), size=n)]
        return {
            "slot": slot,
            "y": y,
            "x": x,
            "exposure": e.astype(np.float32),
            "iso": iso,
            "psf_index": psf,
            "image_height": height,
            "azimuth": az,
            "transform": t,
            "seed": seed + np.arange(n, dtype=np.uint64),
        }

    def _noise(self, iso: np.ndarray) -> tuple[NoiseModel, np.ndarray, np.ndarray]:
        """The batch's noise model (per stored channel) and ``k0``, ``k1`` (DN, per
        colour) of the drawn ISOs; the sensor model is asked once per distinct ISO."""
        pipe = self.pipe
        values, inverse = np.unique(iso, return_inverse=True)
        params = []
        for v in values.tolist():
            if v not in self._params:
                if len(self._params) > 4096:  # a continuous ISO range: keep it bounded
                    self._params.clear()
                self._params[v] = pipe.sensor.params(v)
            params.append(self._params[v])
        colour = pipe.channel_colour
        k0, k1 = (np.stack([getattr(q, k) for q in params])[inverse] for k in ("k0", "k1"))
        noise = batch_noise_model([params[i] for i in inverse], pipe.cfa)
        return noise, k0[:, colour], k1[:, colour]

    def components(self, rng: np.random.Generator, d: dict) -> tuple[list, list, list]:
        """Each sample's component parameters, drawn in turn from the batch's generator by
        the components themselves (the generator's laws), with its depth window."""
        chain, side, r = self.pipe.chain, self.window, self.margin
        params, records, depths = [], [], []
        for i in range(len(d["slot"])):
            frame = self.slots[int(d["slot"][i])][1]
            y0, x0 = int(d["y"][i]) - r, int(d["x"][i]) - r
            depth = None
            if frame.depth is not None:
                depth = frame.depth[y0 : y0 + side, x0 : x0 + side]
            ctx = DrawContext(
                tuple(frame.pixels.shape[1:]),
                (y0, x0, side, side),
                depth,
                self.pipe.bank.psfs[int(d["psf_index"][i])],
                int(frame.pixels.shape[0]),
            )
            p, rec = chain.draw(rng, ctx)
            params.append(p)
            records.append(rec)
            depths.append(depth)
        return params, records, depths

    def render(self, k: int, n: int | None = None) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """Batch ``k``: the arrays a shard stores (:func:`data_gen.chain.stored_names`)
        ``(n, C, P, P)`` on the device and the per-sample ``meta`` records (as stored in
        shards)."""
        out, meta, _, _ = self.render_with_transforms(k, n)
        return out, meta

    def psf_maps(self, d: dict) -> np.ndarray | None:
        """``psf_per=block`` with a field-varying lens: each window's bank PSF index per pixel
        ``(n, W, W)`` (the rule of a whole frame, in the lens state of the sample's drawn
        ``psf_index``); None when each patch has one PSF."""
        bank = self.pipe.bank
        if self.pipe.settings.psf_per != "block" or not hasattr(bank, "index_at"):
            return None
        m, r = self.window, self.margin
        out = np.empty((len(d["slot"]), m, m), np.int32)
        for i in range(len(out)):
            hw = self.slots[int(d["slot"][i])][1].pixels.shape[1:]
            top = (int(d["y"][i]) - r, int(d["x"][i]) - r)
            state = bank.state_number(int(d["psf_index"][i]))
            out[i] = frame_window_index(bank, hw, top, (m, m), state)
        return out

    def stored_maps(self, maps: np.ndarray | None, d: dict) -> np.ndarray | None:
        """``psf_per=block``: the stored pixels' PSF indices ``(n, P', P')`` of the windows'
        ``maps``, flipped and turned as the patches were (packed Bayer planes: each 2 × 2
        block's top-left pixel); None otherwise."""
        if maps is None:
            return None
        r, p = self.margin, self.patch
        maps = np.ascontiguousarray(maps[:, r : r + p, r : r + p])
        if self.pipe.cfa:
            maps = np.ascontiguousarray(maps[:, ::2, ::2])
        for t in np.unique(d["transform"]):
            if t != 0:
                sel = d["transform"] == t
                maps[sel] = dihedral(maps[sel], int(t))
        return maps

    def render_with_transforms(
        self, k: int, n: int | None = None
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`render`, the dihedral transform ``(n,)`` given to each sample after
        rendering (``meta`` has the PSF it was rendered with), and :meth:`stored_maps`."""
        n = self.batch if n is None else int(n)
        self.ensure_pool(k)
        seed = self.batch_seed(k)
        rng = np.random.default_rng(seed)
        d = self.draw(rng, n, seed)
        params, records, depths = self.components(rng, d)
        pipe, p, r, m = self.pipe, self.patch, self.margin, self.window
        # one gather of every window: canvas[slot, :, y - r + i, x - r + j]
        dev = self.device
        ar = torch.arange(m, device=dev)
        s_i = torch.from_numpy(d["slot"]).to(dev)[:, None, None]
        y_i = (torch.from_numpy(d["y"] - r).to(dev)[:, None] + ar)[:, :, None]
        x_i = (torch.from_numpy(d["x"] - r).to(dev)[:, None] + ar)[:, None, :]
        crops = self._canvas()[s_i, :, y_i, x_i].permute(0, 3, 1, 2)  # (n, C, m, m)
        c = crops.shape[1]
        x = crops * torch.from_numpy(d["exposure"]).to(dev)[:, None, None, None]
        if self.device.type == "cpu":  # the numpy backend renders from host arrays
            x = x.numpy()
        noise, k0, k1 = self._noise(d["iso"])
        stored = (n, 4, p // 2, p // 2) if pipe.cfa else (n, c, p, p)
        tb = TorchBackend(dev)  # the device's generator, on CPU too (then as numpy)
        g = tb.generator(seed)
        normal = tb.normals(stored, seed, g)
        kind, draws = pipe.sensor.noise, None
        if not kind.default:  # its parameters from the batch's generator, uniforms from g
            per, noise_records = [], []
            for i in range(n):
                frame = self.slots[int(d["slot"][i])][1]
                ctx = NoiseContext(
                    float(d["iso"][i]), int(d["y"][i]), int(d["x"][i]), (p, p),
                    tuple(frame.pixels.shape[1:]), pipe.cfa, c,
                )  # fmt: skip
                dr, rec = draw_noise(kind, rng, ctx, fields=False)
                per.append(dr)
                noise_records.append(rec)
            fields = {f: tb.uniforms(stored, g) for f in kind.fields}
            if self.device.type == "cpu":
                fields = {k: v.numpy() for k, v in fields.items()}
            draws = batch_draws(per, self.backend, fields)
            for rec, nrec in zip(records, noise_records, strict=True):
                rec.update(nrec)
        if self.device.type == "cpu":
            normal = normal.numpy()
        maps = self.psf_maps(d)
        batch = chain_batch.Batch(
            x,
            None if depths[0] is None else np.stack(depths),
            params,
            d["psf_index"] if maps is None else maps,
            pipe.bank.psfs,
        )
        out = chain_batch.render_chunked(
            pipe.chain, batch, r, noise, normal, self.backend, pipe.cfa, self.targets, kind, draws
        )
        out = {k: torch.as_tensor(v, device=dev) for k, v in out.items()}
        for t in np.unique(d["transform"]):
            if t != 0:
                sel = torch.from_numpy(np.flatnonzero(d["transform"] == t)).to(dev)
                for v in out.values():
                    v[sel] = dihedral(v[sel], int(t))
        meta = np.zeros(n, pipe.meta_dtype)
        names = np.array([f.name for _, f in self.slots], dtype=object)
        meta["source"] = names[d["slot"]]
        for key in ("y", "x", "psf_index", "iso", "image_height", "azimuth", "exposure", "seed"):
            meta[key] = d[key]
        states = {i: pipe.bank.state_of(int(i)) for i in np.unique(d["psf_index"])}
        for key in ("zoom", "f_number", "focus"):
            meta[key] = [getattr(states[i], key) for i in d["psf_index"]]
        meta["k0"], meta["k1"] = k0, k1
        meta["ob"], meta["white"] = pipe.sensor.ob, pipe.sensor.white
        if pipe.extra_meta:
            for j, rec in enumerate(records):
                for key, v in rec.items():
                    meta[key][j] = v
        return out, meta, np.asarray(d["transform"], np.int64), self.stored_maps(maps, d)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
