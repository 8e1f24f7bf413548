"""The chain of :mod:`data_gen.chain`, batched: every stored array of a batch of samples, each
with its own parameters, on a :mod:`data_gen.backend` (numpy with scipy's FFT, or torch on
a CPU or GPU). It serves the generator (``renderer=numpy|torch``) and on-the-fly training.

Per batch: the windows ``(B, C, W, W)`` (each sample's crop with the chain's margin around
its patch, exposed), their depths, the components' prepared parameters, then the chain's
prefixes (the ``before_<c>``) and, from each prefix, the rest of the chain without that
component (the ``without_<c>``); everything is trimmed to the patch, mosaicked for Bayer
sensors, given the sample's one noise realisation and clipped at white. Blurs are FFT
convolutions with per-sample spectra; consecutive blurs continuing a prefix stay in the
frequency domain.

For the two components of schema v1 (``[blur, noise]``) the operations are exactly the
generator's historical ones (same FFT sizes, kernel placement and noise step), so those
shards keep their bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_gen.cfa import mosaic_packed
from data_gen.chain import V1_NAMES, stored_names
from data_gen.components import BatchContext, Chain
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import NoiseKind, default_kind


@dataclass
class Batch:
    """One batch to render: ``windows`` ``(B, C, W, W)`` float32 (numpy or the backend's),
    their ``depth`` ``(B, W, W)`` numpy metres or None, each sample's component ``params``
    (by name), bank ``psf_index`` ``(B,)`` (``psf_per=block``: per pixel ``(B, W, W)``) and
    the bank's ``psfs`` ``(M, C, K, K)``."""

    windows: object
    depth: np.ndarray | None
    params: list[dict]
    psf_index: np.ndarray
    psfs: np.ndarray


def prepare(chain: Chain, batch: Batch, backend) -> dict:
    """Each non-noise component's prepared parameters for the batch."""
    w = batch.windows.shape[-1]
    ctx = BatchContext((w, w), batch.depth, np.asarray(batch.psf_index), batch.psfs)
    return {
        c.name: c.prepare_batch([p.get(c.name, {}) for p in batch.params], ctx, backend)
        for c in chain.body
    }


class _Image:
    """A batch of images with its spectrum, computed at most once (several continuations of
    the same prefix start with a blur)."""

    def __init__(self, x, backend) -> None:
        self.x, self.backend, self._spec = x, backend, {}

    def spectrum(self, n: int):
        if n not in self._spec:
            self._spec[n] = self.backend.rfft2(self.x, n)
        return self._spec[n]


def _run(image: _Image, comps, prepared: dict, backend):
    """``comps`` applied to ``image`` in order; consecutive convolutions are one FFT
    (their spectra multiplied, their half sides added)."""
    x, start = image.x, image
    spec, r = None, 0
    for c in comps:
        k = c.kernel(prepared[c.name])
        if k is not None:
            spec, r = (k[0], k[1]) if spec is None else (spec * k[0], r + k[1])
            continue
        if spec is not None:
            x, spec, r = _convolve(start, x, spec, r, backend), None, 0
        x = c.apply_batch(x, prepared[c.name], backend)
        start = None
    if spec is not None:
        x = _convolve(start, x, spec, r, backend)
    return x


def _convolve(start: _Image | None, x, spec, r: int, backend):
    n = spec.shape[-2]
    xs = start.spectrum(n) if start is not None else backend.rfft2(x, n)
    return backend.take_same(backend.irfft2(xs * spec, n), r, x.shape[-1])


def render(
    chain: Chain,
    batch: Batch,
    margin: int,
    noise: NoiseModel | None,
    normal,
    backend,
    cfa: str | None = None,
    targets: str = "both",
    kind: NoiseKind | None = None,
    draws: dict | None = None,
) -> dict:
    """Every array :func:`data_gen.chain.stored_names` lists for the batch, on the backend,
    ``(B, C', P', P')`` clipped at white (``P = W − 2·margin``; packed Bayer planes
    ``(B, 4, P/2, P/2)`` when ``cfa`` is given). ``noise``: the batch's ``(B, C')`` noise
    model, ``normal``: its standard normals (the backend's, stored shape); ``kind``: the
    sensor's noise kind (default Poisson–Gaussian) and ``draws`` its stacked per-sample
    draws (:func:`data_gen.noise_kinds.batch_draws`). The one realisation is shared by
    every array that keeps the noise. ``targets``: ``both`` (what a shard stores), or
    ``peeling``: only what the peeling residuals need (``input``, ``clean``, the
    ``before_<c>``, ``without_noise``): the leave-one-out renders of a schema-v2 chain are
    skipped (on-the-fly training)."""
    body = chain.body
    x = backend.asarray(batch.windows)
    prepared = prepare(chain, batch, backend)
    m = int(margin)
    w = x.shape[-1]

    def trim(a):
        a = a[..., m : w - m, m : w - m] if m > 0 else a
        return mosaic_packed(a, cfa) if cfa is not None else a

    prefix = [_Image(x, backend)]
    for c in body:
        prefix.append(_Image(_run(prefix[-1], [c], prepared, backend), backend))
    out = {"clean": trim(prefix[0].x)}
    loo = targets == "both" or chain.schema == 1
    for i, c in enumerate(body):
        rest = body[i + 1 :]
        out[f"before_{c.name}"] = trim(prefix[i].x)
        if not loo:
            continue
        if rest:
            out[f"without_{c.name}"] = trim(_run(prefix[i], rest, prepared, backend))
        else:
            out[f"without_{c.name}"] = out["clean"] if i == 0 else trim(prefix[i].x)
    signal = trim(prefix[-1].x)
    n = None
    if chain.noise is not None:
        n = (kind or default_kind()).sample(signal, noise, normal, draws or {})
        out["without_noise"] = signal
    out["input"] = signal
    keep_noise = {"input", *(f"without_{c.name}" for c in body)}
    names = stored_names(chain.names)
    if chain.schema == 1:
        names = [V1_NAMES[k] for k in names]
    result = {}
    for k in names:
        if k not in out:  # a leave-one-out target not asked for
            continue
        v = out[k]
        if n is not None and k in keep_noise:
            v = v + n
        result[k] = backend.minimum(v, 1.0)
    if chain.schema == 1:
        result = {v1: result[k] for v1, k in V1_NAMES.items()}
    return result


def render_chunked(
    chain: Chain,
    batch: Batch,
    margin: int,
    noise: NoiseModel,
    normal,
    backend,
    cfa: str | None = None,
    targets: str = "both",
    kind: NoiseKind | None = None,
    draws: dict | None = None,
) -> dict:
    """:func:`render` in pieces of ``backend.chunk(B)`` samples (numpy: a few at a time, so
    that every FFT and array stays in the CPU's caches; torch: the whole batch), assembled
    into the backend's arrays of the whole batch."""
    n = len(batch.params)
    step = backend.chunk(n)
    if step >= n:
        return render(chain, batch, margin, noise, normal, backend, cfa, targets, kind, draws)
    result: dict = {}
    for i in range(0, n, step):
        sl = slice(i, i + step)
        part = Batch(
            batch.windows[sl],
            None if batch.depth is None else batch.depth[sl],
            batch.params[sl],
            np.asarray(batch.psf_index)[sl],
            batch.psfs,
        )
        model = NoiseModel(noise.A[sl], noise.B[sl])
        part_draws = None if draws is None else {k: v[sl] for k, v in draws.items()}
        out = render(
            chain, part, margin, model, normal[sl], backend, cfa, targets, kind, part_draws
        )
        for k, v in out.items():
            if k not in result:
                result[k] = backend.zeros((n, *v.shape[1:]))
            result[k][sl] = v
    return result
