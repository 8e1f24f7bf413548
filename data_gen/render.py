"""What a sample draws (:func:`draw_sample`: crop, exposure, ISO, lens PSF), the batch's
noise model, and the lens blur and noise of a whole frame for evaluation
(:func:`render_frame`). Batches are rendered by :mod:`data_gen.render_chain`.

Arrays are float32 in normalised linear units (0 = black level, 1 = white level). One noise
realisation ``n = σ(B)·r`` is shared by ``noise = S + n`` and ``noise_blur = B + n``; all
patches are clipped at the white level (a sensor saturates), values below black are kept
(as raw data does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from data_gen.cfa import PLANE_COLOUR
from data_gen.core.errors import require
from data_gen.noise import NoiseModel
from data_gen.noise_kinds import NoiseContext, NoiseKind, draw_noise
from data_gen.optics import PSFBank
from data_gen.sensor import NoiseParams, SensorModel
from data_gen.sources import Frame

PATCHES = ("clean", "blur", "noise", "noise_blur")


@dataclass
class SampleSpec:
    """What one sample draws: crop position, exposure, ISO, PSF index, its rng."""

    frame: Frame
    y: int  # crop top-left of the patch in the frame, pixels
    x: int
    exposure: float
    noise: NoiseParams
    psf_index: int
    image_height: float  # patch centre distance from frame centre / half diagonal
    azimuth: float  # radians, atan2(dy, dx) with y pointing down (sensor geometry)
    seed: int
    rng: np.random.Generator


def draw_exposure(
    rng: np.random.Generator, law: tuple[float, float, float], size: int | None = None
) -> float | np.ndarray:
    """Exposure scale(s) of the original (unitless: the linear original is multiplied by
    it): log-uniform in ``[min, max]``, then a share ``at_max`` of them set to ``max``
    (``law = (min, max, at_max)``; the second draw is made only when ``at_max > 0`` and
    ``min < max``, so the draws of every config without it are unchanged). ``size``: None
    for one float, else a float64 array of shape ``(size,)``."""
    lo, hi, at_max = law
    if hi > lo:
        e = np.exp(rng.uniform(np.log(lo), np.log(hi), size=size))
    else:
        e = np.full(size, lo) if size is not None else lo
    if at_max > 0 and hi > lo:
        e = np.where(rng.random(size) < at_max, hi, e)
    return float(e) if size is None else e


def draw_sample(
    frame: Frame,
    seed: int,
    patch_size: int,
    psf_size: int,
    exposure: tuple[float, float, float],
    sensor: SensorModel,
    bank: PSFBank,
) -> SampleSpec:
    """Draw a sample's random choices from its own seed (order fixed: crop, exposure, ISO,
    PSF). ``exposure``: ``(min, max, at_max)``, :func:`draw_exposure`'s law."""
    rng = np.random.default_rng(seed)
    _, h, w = frame.pixels.shape
    r = psf_size // 2
    y = int(rng.integers(r, h - patch_size - r + 1))
    x = int(rng.integers(r, w - patch_size - r + 1))
    e = draw_exposure(rng, exposure)
    iso = sensor.iso.draw(rng)
    fy, fx = (y + patch_size / 2) / h, (x + patch_size / 2) / w  # patch centre, fraction
    height, az = bank.locate(fy, fx, (h, w))
    psf_index = bank.index_for(fy, fx, rng)
    return SampleSpec(frame, y, x, e, sensor.params(iso), psf_index, height, az, seed, rng)


def batch_noise_model(params: list[NoiseParams], cfa: str | None) -> NoiseModel:
    """Each sample's noise parameters per stored channel: a ``(B, C)`` :class:`NoiseModel`."""
    a = np.stack([q.a for q in params]).astype(np.float32)
    b = np.stack([q.b for q in params]).astype(np.float32)
    if cfa is not None:
        a, b = a[:, PLANE_COLOUR], b[:, PLANE_COLOUR]
    return NoiseModel(a, b)


@numba.njit(cache=True, nogil=True)
def _add_noise_and_clip(clean, blurred, normal, sigma, noisy, noisy_blur):  # pragma: no cover
    """One pass: ``n = σ(B)·r``; ``noise = S + n``, ``noise_blur = B + n``; all four
    clipped at 1. ``sigma``: :meth:`NoiseModel.std` of the blurred patches."""
    one = np.float32(1)
    nb, nc, h, w = clean.shape
    for i in range(nb):
        for c in range(nc):
            for y in range(h):
                for x in range(w):
                    s, bl = clean[i, c, y, x], blurred[i, c, y, x]
                    n = sigma[i, c, y, x] * normal[i, c, y, x]
                    noisy[i, c, y, x] = min(s + n, one)
                    noisy_blur[i, c, y, x] = min(bl + n, one)
                    clean[i, c, y, x] = min(s, one)
                    blurred[i, c, y, x] = min(bl, one)


def psf_index_map(
    bank: PSFBank,
    shape: tuple[int, int],
    frame_hw: tuple[int, int],
    offset: int,
    state: int,
    block: int = 8,
) -> np.ndarray:
    """Bank PSF index of every pixel of a ``shape`` = (H, W) output whose pixel (0, 0) sits
    at ``(offset, offset)`` in a frame of ``frame_hw``: the generator's per-patch rule
    (nearest bank position, lens ``state``) applied to blocks of ``block`` pixels."""
    corner = (offset, offset)
    return window_index_map(bank, frame_hw, corner, shape, corner, shape, state, block)


def frame_window_index(
    bank: PSFBank, frame_hw: tuple[int, int], top_left: tuple[int, int], shape: tuple[int, int],
    state: int,
) -> np.ndarray:  # fmt: skip
    """The bank PSF index ``(H, W)`` of a window of ``shape`` at ``top_left`` in a frame of
    ``frame_hw`` as :func:`render_frame` blurs it: blocks tiled over the frame's 'valid'
    region (every pixel with the PSF's full support)."""
    k = bank.size
    origin, extent = (k // 2, k // 2), (frame_hw[0] - k + 1, frame_hw[1] - k + 1)
    return window_index_map(bank, frame_hw, top_left, shape, origin, extent, state)


def window_index_map(
    bank: PSFBank,
    frame_hw: tuple[int, int],
    top_left: tuple[int, int],
    shape: tuple[int, int],
    origin: tuple[int, int],
    extent: tuple[int, int],
    state: int,
    block: int = 8,
) -> np.ndarray:
    """Bank PSF index ``(H, W)`` int32 of the pixels of a window of ``shape`` whose pixel
    (0, 0) sits at ``top_left`` (rows, columns) in a frame of ``frame_hw``, by the rule of a
    whole frame's render: blocks of ``block`` pixels tiled from ``origin`` over ``extent``
    (a last block cut by the extent is centred on what is left of it), each with the bank
    PSF nearest its centre in lens ``state``; pixels outside the tiled region take the
    nearest block's. A position-independent bank (no ``index_at``): ``state`` everywhere
    (the one PSF its caller drew)."""
    if not hasattr(bank, "index_at"):
        return np.full(shape, state, np.int32)
    fh, fw = frame_hw
    axes = []
    for t, n, o, e in zip(top_left, shape, origin, extent, strict=True):
        nb = max(1, -(-int(e) // block))
        b = np.clip((t + np.arange(n) - o) // block, 0, nb - 1)  # each pixel's block
        centre = o + b * block + np.minimum(block, e - b * block) / 2
        axes.append((b, centre))
    (by, cy), (bx, cx) = axes
    ub_y, iy = np.unique(by, return_index=True)
    ub_x, ix = np.unique(bx, return_index=True)
    cells = np.array(
        [[bank.index_at(cy[i] / fh, cx[j] / fw, state) for j in ix] for i in iy], np.int32
    )
    return cells[np.searchsorted(ub_y, by)][:, np.searchsorted(ub_x, bx)]


def render_frame(
    pixels: np.ndarray,
    bank: PSFBank,
    noise: NoiseModel,
    rng: np.random.Generator,
    exposure: float = 1.0,
    kind: NoiseKind | None = None,
    iso: float | None = None,
    state: int | None = None,
) -> dict[str, np.ndarray]:
    """The generator's physics on a whole frame (evaluation on real photographs).

    ``pixels`` ``(C, H, W)`` linear. Every output pixel is blurred with the bank PSF
    nearest its position in the frame (the rule :func:`draw_sample` applies to a patch
    centre; one lens state per frame), so a field-varying lens is exercised over the
    whole frame. Output: ``clean``, ``blur``, ``noise``, ``noise_blur`` of shape
    ``(C, H − K + 1, W − K + 1)`` (the 'valid' region: every pixel has its full PSF
    support), clipped at white like the shards, plus ``psf_index`` ``(H', W')``.

    ``kind``: the sensor's noise kind (default Poisson–Gaussian: ``σ(B)·r``); another kind
    draws its parameters for the whole frame at ``iso`` after the normals. ``state``: the
    lens state (None: drawn from ``rng`` when the bank has several).
    """
    from scipy.signal import fftconvolve

    c, h, w = pixels.shape
    k = bank.size
    r = k // 2
    ho, wo = h - k + 1, w - k + 1
    require(ho > 0 and wo > 0, f"frame {w}x{h} is smaller than the PSF ({k} px)")
    states = bank.grid.shape[0] if hasattr(bank, "grid") else bank.psfs.shape[0]
    if state is None:
        state = 0 if states == 1 else int(rng.integers(states))
    index = frame_window_index(bank, (h, w), (r, r), (ho, wo), state)
    frame = pixels.astype(np.float32) * np.float32(exposure)
    blurred = np.zeros((c, ho, wo), np.float32)
    for j in np.unique(index):
        sel = index == j
        for ch in range(c):
            conv = fftconvolve(frame[ch], bank.psfs[j, ch], mode="valid").astype(np.float32)
            blurred[ch][sel] = conv[sel]
    clean = np.ascontiguousarray(frame[:, r : r + ho, r : r + wo])[None]
    blurred = blurred[None]
    normal = rng.standard_normal(clean.shape, dtype=np.float32)
    noisy, noisy_blur = np.empty_like(clean), np.empty_like(clean)
    if kind is None or kind.default:
        _add_noise_and_clip(clean, blurred, normal, noise.std(blurred), noisy, noisy_blur)
    else:
        require(iso is not None, f"noise kind {kind.name}: render_frame needs the frame's iso")
        ctx = NoiseContext(float(iso), r, r, (ho, wo), (h, w), None, c)
        draws, _ = draw_noise(kind, rng, ctx)
        n = kind.sample(blurred[0], noise, normal[0], draws)[None]
        one = np.float32(1)
        np.minimum(clean + n, one, out=noisy)
        np.minimum(blurred + n, one, out=noisy_blur)
        np.minimum(clean, one, out=clean)
        np.minimum(blurred, one, out=blurred)
    return {
        "clean": clean[0],
        "blur": blurred[0],
        "noise": noisy[0],
        "noise_blur": noisy_blur[0],
        "psf_index": index,
    }
